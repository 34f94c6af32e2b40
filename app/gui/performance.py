"""The window's "Performance" panel: display fps against the 30/60 fps targets, the pipeline's fps,
latency, dropped frames, progress, and the per-stage ms bar against the 33/17 ms budgets."""

from __future__ import annotations

from PyQt6.QtWidgets import QGroupBox, QLabel, QVBoxLayout, QWidget

from app.gui.widgets import FpsGauge, StageBar
from app.stats import PipelineStats


class PerformancePanel(QGroupBox):
    """Filled from the pipeline's stats (``show_stats``) and the window's own display clock (``show_display``)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Performance", parent)
        self.fps_gauge = FpsGauge()
        self.stage_bar = StageBar()
        self.pipeline_label = QLabel("pipeline: -- fps")
        self.pipeline_label.setToolTip("results per second leaving the pipeline (2 s window), and over the whole run")
        self.latency_label = QLabel("capture → display: -- ms")
        self.dropped_label = QLabel("dropped: 0")
        self.progress_label = QLabel("frame --")
        self.dropped_label.setToolTip("stale: live frames replaced before the detector saw them\n"
                                      "not shown: results replaced before the window could paint them\n"
                                      "bad: frames the source could not decode")
        layout = QVBoxLayout(self)
        layout.addWidget(self.fps_gauge)
        for label in (self.pipeline_label, self.latency_label, self.dropped_label, self.progress_label):
            label.setObjectName("stat")
            layout.addWidget(label)
        layout.addWidget(self.stage_bar)

    def show_stats(self, stats: PipelineStats, not_shown: int) -> None:
        """The pipeline's figures; ``not_shown``: results the window replaced before painting them."""
        ms = stats.stage_ms or {}  # none before the first detected frame: no figures of a former source
        self.fps_gauge.set_capacity(1000.0 / ms["total"] if ms.get("total") else None)
        self.stage_bar.set_times(ms.get("backbone", 0.0), ms.get("rpn", 0.0), ms.get("roi_heads", 0.0),
                                 ms.get("preprocess", 0.0) + ms.get("postprocess", 0.0))
        now = f"{stats.fps:.1f}" if stats.fps else "--"
        mean = f"{stats.mean_fps:.1f}" if stats.mean_fps else "--"
        self.pipeline_label.setText(f"pipeline: {now} fps now · {mean} mean")
        self.dropped_label.setText(f"dropped: {stats.frames_dropped} stale · {not_shown} not shown · {stats.bad_frames} bad")
        total = f" / {stats.total_frames}" if stats.total_frames else ""
        state = " (paused)" if stats.paused else (" (finished)" if stats.finished else "")
        self.progress_label.setText(f"frame {stats.frames_written}{total}{state}")

    def show_display(self, fps: float, latency_s: float | None) -> None:
        """What the window itself shows: frames painted per second and capture → display latency."""
        self.fps_gauge.set_fps(fps)
        latency = "--" if latency_s is None else f"{latency_s * 1e3:.0f}"
        self.latency_label.setText(f"capture → display: {latency} ms")
