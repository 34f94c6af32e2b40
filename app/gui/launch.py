"""Starting the desktop window: Qt's platform check, the dark theme, and the event loop with
Ctrl-C / SIGTERM closing the window as its close button does."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from PyQt6.QtCore import QTimer
from PyQt6.QtGui import QColor, QPalette
from PyQt6.QtWidgets import QApplication

from app.config import PipelineConfig
from app.errors import UserError
from app.gui.main_window import MainWindow
from app.pipeline.adapt import write_log
from app.pipeline.pipeline import Stream

# ====================================================================== styling
STYLE_SHEET = """
QMainWindow, #panel { background: #1e2127; }
QGroupBox { color: #e6e8ec; font-weight: 600; border: 1px solid #3a3e46; border-radius: 6px;
            margin-top: 14px; padding: 10px 8px 8px 8px; }
QGroupBox::title { subcontrol-origin: margin; left: 10px; padding: 0 4px; }
QLabel { color: #e6e8ec; }
QLabel#stat { color: #c8ccd4; }
QLabel#muted { color: #969ca6; font-size: 11px; }
#banner-warning { background: #5c4a0f; border-bottom: 1px solid #8a6d12; }
#banner-warning QLabel { color: #ffe08a; }
#banner-error { background: #5e1f1b; border-bottom: 1px solid #92302a; }
#banner-error QLabel { color: #ffd2cc; }
QPushButton { background: #2c3038; color: #e6e8ec; border: 1px solid #444a55; border-radius: 4px; padding: 5px 8px; }
QPushButton:hover { background: #353a44; }
QPushButton:checked { background: #2d6cdf; border-color: #2d6cdf; }
QPushButton#record:checked { background: #c0392b; border-color: #c0392b; }
#strip { background: #181a1f; border-top: 1px solid #2c3038; }
QStatusBar { background: #181a1f; color: #aab0ba; }
QStatusBar QLabel { color: #aab0ba; padding: 0 6px; }
"""
PALETTE = dict(Window="#1e2127", WindowText="#e6e8ec", Base="#16181d", AlternateBase="#23262d",  # ColorRole
               Text="#e6e8ec", Button="#2c3038", ButtonText="#e6e8ec", Highlight="#2d6cdf",
               HighlightedText="#ffffff", ToolTipBase="#2c3038", ToolTipText="#e6e8ec",
               PlaceholderText="#7c828c")


def apply_theme(app: QApplication) -> None:
    """Fusion with a dark palette: video reads best on dark surroundings."""
    app.setStyle("Fusion")
    palette = QPalette()
    for role, color in PALETTE.items():
        palette.setColor(getattr(QPalette.ColorRole, role), QColor(color))
    app.setPalette(palette)
    app.setStyleSheet(STYLE_SHEET)


# ====================================================================== entry point
def platform_problem(timeout_s: float = 30.0) -> str | None:
    """None when Qt can open its windowing plugin here; else Qt's complaint, in one line.

    Qt aborts the whole process when its platform plugin cannot load (on Linux typically a missing
    ``libxcb-cursor0``), which no ``try`` can catch; so a throwaway process tries first.
    """
    code = "import sys; from PyQt6.QtWidgets import QApplication; QApplication(sys.argv[:1])"
    try:
        probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None  # a slow machine, not a broken one: let the real start decide
    if probe.returncode == 0:
        return None
    lines = [line.strip() for line in probe.stderr.splitlines() if line.strip()]
    qt_lines = [line for line in lines if "qt.qpa" in line or "platform plugin" in line]
    return (qt_lines or lines or [f"exit status {probe.returncode}"])[0]


def qt_application() -> QApplication:
    """The running QApplication, or a new one — once Qt's platform plugin is known to load (else a
    one-line ``UserError``: a missing system library would otherwise abort the process) — themed."""
    app = QApplication.instance()
    if app is None:
        problem = platform_problem()
        if problem:
            raise UserError(f"the window cannot open: {problem} — install the missing system library "
                            "(see the README) or run with --headless")
        app = QApplication(sys.argv[:1])
    app.setApplicationName("frcnn-video")
    apply_theme(app)
    return app


def run_gui(pipeline_config: PipelineConfig, detector_config, reprobe: bool = False, streams=None) -> int:
    """Open the window on ``pipeline_config``'s source — or on ``streams`` (``app.pipeline.pipeline.Stream``s,
    sources open, one cell each; ``pipeline_config`` then gives the run's export, overwrite and events) —
    with a detector built from ``detector_config``.

    Qt and the detector are checked first (a missing system library, a bad model or device raises
    here, before any window, as a one-line error for the CLI); then Qt's event loop runs until the
    window closes, which Ctrl-C (or SIGTERM) does too. Returns 0, or 130 after a signal.
    """
    from app.pipeline.fastpath import build_detector

    try:
        app = qt_application()
        detector, setup = build_detector(detector_config, reprobe=reprobe)  # the CPU fast path, as run.py's
        if streams is None:
            pipeline_config = setup.with_threads(pipeline_config)
        else:  # each stream's encoder threads from the budget, as one stream's
            streams = [Stream(s.name, setup.with_threads(s.config), s.source) for s in streams]
            for line in setup.notes:
                print(f"note: {line}", file=sys.stderr)
        output_dir = Path(pipeline_config.record).parent if pipeline_config.record else None
        window = MainWindow(detector, output_dir=output_dir)
    except BaseException:
        for stream in streams or ():
            stream.source.close()
        raise
    window.show()
    if streams is None:
        window.open_source(pipeline_config)
    else:
        window.open_streams(streams, export=pipeline_config.export, overwrite=pipeline_config.overwrite,
                            events=pipeline_config.events)

    interrupted = []

    def on_signal(*_args) -> None:
        interrupted.append(True)
        window.close()  # stops the pipeline and finalises the recordings, as the close button does

    # Ctrl-C and SIGTERM close the window cleanly (headless runs treat them alike).
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    # Python runs signal handlers only between bytecodes: wake the interpreter while Qt's loop runs.
    wake = QTimer(timeout=lambda: None)
    wake.start(200)
    try:
        status = app.exec()
    finally:
        wake.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        window.shutdown()
    pipeline = window.controller.last_pipeline
    if streams is not None and pipeline is not None:  # one stream's failure is in the window's banner
        for name, exc in pipeline.errors().items():
            print(f"stream {name}: {exc}", file=sys.stderr)
    if pipeline_config.adapt_log and pipeline is not None:  # the last source's run, as the window left it
        print(f"adaptive log: {write_log(pipeline_config.adapt_log, pipeline.run_stats())}", file=sys.stdout)
    return 130 if interrupted else int(status)
