"""The sweep: models × precisions × proposal counts, measured and written out."""

from __future__ import annotations

import itertools
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import torch

from app.errors import UserError
from detector.config import ConfigError, DetectorConfig
from detector.detector import Detector, own_score_threshold, resolve_device
from detector.factory import ASSETS_DIR, DEFAULT_MODEL_PATH, create_model
from detector.profiles import model_identity, weights_sha256

from . import grid, measure, profile, report
from .accuracy import LabelledFrames, load_labels
from .defaults import DEFAULT_FRAMES, DEFAULT_PROPOSALS, DEFAULT_WARMUP
from .stats import Progress, median_p90, peak_rss_mb, reset_peak_rss

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
_FIELD = re.compile(r"\b(?:min_size|max_size|score_threshold)\b")  # DetectorConfig's names of bench options
BUNDLED_SAMPLE = ASSETS_DIR / "sample.mp4"
# The default model's held-out evaluation set for the bundled sample (vtest.avi frames 650–794):
# (COCO JSON, frame offset) — the teacher labels that `make model` writes for those frames (their
# frame_index counts from the start of vtest.avi). No labels ship in assets/.
BUNDLED_LABELS: tuple[tuple[Path, int], ...] = (
    (ASSETS_DIR.parent / ".cache" / "data" / "vtest_heldout.json", 650),
)


@dataclass(frozen=True)
class BenchConfig:
    """Everything one benchmark run needs; validated on construction (``UserError``, one line).

    ``models`` pairs each model name with its weights; ``precisions`` None = fp32 on the CPU,
    fp32 and fp16 on CUDA; ``annotations`` None = the bundled labels when ``video`` is the bundled
    sample, else no AP.
    """

    video: Path
    models: tuple[tuple[str, str], ...] = (("default", "default"),)
    proposals: tuple[int, ...] = DEFAULT_PROPOSALS
    precisions: tuple[str, ...] | None = None
    device: str = "auto"
    frames: int = DEFAULT_FRAMES
    warmup: int = DEFAULT_WARMUP
    score_threshold: float = 0.05
    min_size: int | None = None
    max_size: int | None = None
    backbone: str = "mobilenet_v2"
    annotations: Path | None = None
    frame_offset: int = 0
    out: Path = Path("bench")
    overwrite: bool = False
    pipeline: bool = True
    baseline: bool = True
    note: str = ""
    profile_file: Path | None = None
    scales: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise UserError("no model to benchmark")
        if not self.proposals or any(not isinstance(p, int) or p < 1 for p in self.proposals):
            raise UserError(f"proposals {self.proposals!r} must be integers ≥ 1")
        if self.precisions is not None:
            bad = [p for p in self.precisions if p not in PRECISIONS]
            if bad or not self.precisions:
                raise UserError(f"precision {','.join(bad) or '(none)'} is unknown; expected fp32, fp16, bf16 or int8")
        if not isinstance(self.frames, int) or self.frames < 1:
            raise UserError(f"--frames {self.frames!r} must be an integer ≥ 1")
        if self.scales is not None and (not self.scales or any(not isinstance(s, int) or not 32 <= s <= 4096 for s in self.scales)):
            scales = ",".join(map(str, self.scales))
            raise UserError(f"--scales {scales} must be short sides in pixels, 32..4096")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise UserError(f"--warmup {self.warmup!r} must be an integer ≥ 0")

    def detector_config(self, model: str, weights: str, precision: str = "fp32") -> DetectorConfig:
        """The model's ``DetectorConfig``; a bad value is a ``ConfigError`` naming the option (--min-size)."""
        try:
            return DetectorConfig(model=model, weights=weights, backbone=self.backbone, device=self.device,
                                  precision=precision, proposals=max(self.proposals),
                                  score_threshold=self.score_threshold, min_size=self.min_size,
                                  max_size=self.max_size)
        except ConfigError as exc:
            raise ConfigError(_FIELD.sub(lambda m: "--" + m[0].replace("_", "-"), str(exc))) from None


@dataclass
class BenchResult:
    rows: list[dict]
    document: dict
    table: str
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse an output folder that is a file, or that holds anything, unless ``overwrite``.
    Touches nothing."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"--out {out} exists and is not empty; pass --overwrite to write the results into it (it was left untouched)")
    parent = out if out.exists() else next((p for p in out.absolute().parents if p.exists()), Path("/"))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: {parent} is not writable")


def default_factory(config: DetectorConfig) -> Detector:
    """The staged detector, with frames of the bundled sample to calibrate int8 on."""
    from app.pipeline.fastpath import sample_frames

    return Detector(config, calibration=sample_frames)


def run_bench(config: BenchConfig, progress_stream=None,
              detector_factory: Callable[[DetectorConfig], Detector] = default_factory) -> BenchResult:
    """Measure, write results.csv / results.json / proposals_vs_fps.png into ``config.out``, and
    return the rows, the JSON document and the text table.

    ``detector_factory`` builds the staged detector of each model × precision (tests pass a fake).
    """
    check_out_dir(config.out, config.overwrite)
    # Build every detector config first: a bad model, weights or size is reported before any work.
    for model, weights in config.models:
        config.detector_config(model, weights)
    device = resolve_device(config.device)
    precisions = config.precisions or (("fp32", "fp16") if device.type == "cuda" else ("fp32",))
    frames = measure.read_frames(config.video, config.frames)
    notes: list[str] = []
    if len(frames) < config.frames:
        notes.append(f"{config.video} has only {len(frames)} frames; measured on those (asked for {config.frames})")
    if config.note:
        notes.append(config.note)
    labels = _labels(config, frames, notes)
    machine = report.machine_info()

    n = len(frames)
    per_model = (len(precisions) * len(config.proposals) * len(config.scales or (None,)) * _steps_per_row(config, n)
                 + (n + config.warmup if config.baseline and not config.pipeline else 0))
    rows: list[dict] = []
    baselines: list[dict] = []
    profiles: dict[str, dict] = {}
    started = time.monotonic()
    with (Progress(per_model * len(config.models), stream=progress_stream) as progress,  # stops even on an error
          tempfile.TemporaryDirectory(prefix="bench-") as scratch):
        for model_name, weights in config.models:
            key = _model_keys(config.models)[model_name, weights]
            model_rows, baseline = _bench_model(config, model_name, weights, precisions, device, frames, labels,
                                                Path(scratch), progress, notes, detector_factory)
            rows += model_rows
            if baseline:
                baselines.append(baseline)
            if found := _profile(config, model_rows, labels):
                profiles[key] = found
            if "int8" in found:
                gate = found["int8"]
                notes.append(f"{key}: int8 AP50 {gate['ap50_int8']:.3f} vs fp32 {gate['ap50_fp32']:.3f} → "
                             f"{'passes' if gate['ok'] else 'fails'} the int8 gate (within {gate['tolerance']}): "
                             f"{'auto may pick int8' if gate['ok'] else 'auto will not pick int8'}")
    if config.profile_file is not None and not profiles:
        notes.append(f"--profile-file {config.profile_file} not written: a profile needs labelled frames and "
                     "--precision fp32,int8 or --scales with two sizes or more")
    machine["load_average_at_end"] = report._loadavg()
    machine["wall_s"] = round(time.monotonic() - started, 1)

    document = {
        "settings": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
                     "precisions": list(precisions), "frames_measured": n,
                     "frame_timestamps_s": [float(f.timestamp) for f in frames[:3]] + (["…"] if n > 3 else []),
                     "measurement": "batch 1, one frame per detect call; ms per frame; detector_fps = frames / summed call time; "
                                    "pipeline_fps = frames / wall time from opening the file to the closed recording"},
        "machine": machine,
        "labels": None if labels is None else {"source": labels.source, "images": labels.images, "boxes": labels.boxes},
        "weights_files": _weights_files(config),
        "baselines": baselines,
        "model_profiles": profiles,
        "notes": notes,
        "columns": list(report.COLUMNS),
        "rows": rows,
    }
    config.out.mkdir(parents=True, exist_ok=True)
    files = [config.out / name for name in report.OUTPUT_NAMES]
    grid.mark_pareto(rows)
    report.write_csv(files[0], rows)
    report.write_json(files[1], document)
    title = (f"{config.video.name}: {n} frames, {frames[0].image.shape[1]}×{frames[0].image.shape[0]} — "
             f"{machine['cpu']} ({machine['cores']} cores)" + (f", {machine['gpu']['name']}" if machine["gpu"] else "")
             + f" — {machine['date_utc'][:10]}")
    report.plot(files[2], rows, title)
    if config.scales and len(config.scales) > 1:
        files.append(config.out / grid.PLOT_NAME)
        grid.plot(files[-1], rows, title)
    return BenchResult(rows, document, report.format_table(rows), notes, files)


def _profile(config: BenchConfig, rows: list[dict], labels: LabelledFrames | None) -> dict[str, dict]:
    """The int8 verdict (fp32 and int8 rows) and the accuracy grid (``--scales``) of one model,
    written to the user's profile file and to ``--profile-file``; {} without labels."""
    identity = next((r.get("model_identity") for r in rows if r.get("model_identity")), None)
    if labels is None or identity is None:
        return {}
    name = Path(labels.source).name
    found = {"int8": profile.int8_profile(rows, name), "accuracy": profile.accuracy_profile(rows, labels, name)}
    found = {k: v for k, v in found.items() if v is not None}
    profile.write_profile(identity, found, (None, config.profile_file) if config.profile_file else (None,))
    return found


def _model_keys(models) -> dict[tuple[str, str], str]:
    """The name of each (model, weights) in results.json: the model's, with its weights' tag when the
    run measures that model with several (so that one does not replace the other)."""
    tags = report.weights_tags([{"model": m, "weights": w} for m, w in models])
    return {(m, w): m + tags[m, w] for m, w in models}


def _weights_files(config: BenchConfig) -> dict[str, dict]:
    """Size, date and sha256 of every weights file measured, so that a result names its checkpoint."""
    import datetime as dt

    out = {}
    for (model, weights), key in _model_keys(config.models).items():
        cfg = config.detector_config(model, weights)
        path = cfg.weights_path or (DEFAULT_MODEL_PATH if model == "default" and weights == "default" else None)
        if path is None or not path.is_file():
            continue
        stat = path.stat()
        modified = dt.datetime.fromtimestamp(stat.st_mtime, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        out[key] = {"path": str(path), "bytes": stat.st_size, "modified_utc": modified,
                    "sha256": weights_sha256(path)}
    return out


def _labels(config: BenchConfig, frames, notes: list[str]) -> LabelledFrames | None:
    path, offset = config.annotations, config.frame_offset
    if path is None:
        found = [(p, o) for p, o in BUNDLED_LABELS if p.is_file()]
        if config.video.resolve() == BUNDLED_SAMPLE.resolve() and found:
            path, offset = found[0]
        else:
            notes.append("no labelled frames (pass --annotations COCO.json): AP and AP50 not measured")
            return None
    size = (frames[0].image.shape[1], frames[0].image.shape[0])
    labels = load_labels(path, [f.index for f in frames], size, offset)
    notes.append(f"AP on {labels.images} labelled frames of the {len(frames)} measured ({labels.boxes} boxes) "
                 f"from {path} (frame offset {offset})")
    return labels


def build_baseline_model(config: DetectorConfig):
    """The plain torchvision model of the naive loop: (model, class names, info).

    It keeps the model's own proposal counts and runs in fp32; only the image size (``min_size`` /
    ``max_size``) and the score threshold follow ``config``, so that the naive loop and the detector
    see the same pixels and draw the same kind of boxes."""
    model, class_names, info = create_model(config)
    if config.min_size is not None:
        model.transform.min_size = (config.min_size,)
    if config.max_size is not None:
        model.transform.max_size = config.max_size
    model.roi_heads.score_thresh = (own_score_threshold(info) if config.score_threshold is None
                                    else config.score_threshold)
    return model.eval(), class_names, info


def _bench_model(config: BenchConfig, model_name: str, weights: str, precisions, device: torch.device, frames,
                 labels: LabelledFrames | None, scratch: Path, progress: Progress, notes: list[str],
                 detector_factory: Callable[[DetectorConfig], Detector]):
    """All rows of one model, and its naive-loop record (None with ``--no-baseline``).

    With the pipeline measured, the naive loop runs right beside it for every row, in alternating
    order (naive → pipeline, then pipeline → naive, ...), so that each ratio compares two runs under
    the same load even while the machine's load drifts. Without the pipeline it runs once.
    """
    n = len(frames)
    base_runs: list[measure.LoopRun] = []
    naive = baseline_model = base_info = None
    if config.baseline:
        baseline_model, class_names, base_info = build_baseline_model(config.detector_config(model_name, weights))
        naive = partial(measure.naive_loop, baseline_model, config.video, n, scratch / "naive.mp4", device,
                        class_names, warmup=config.warmup, tick=progress.advance)
    paired = naive is not None and config.pipeline
    if naive is not None and not paired:
        progress.set_label(f"{model_name}: naive loop")
        base_runs.append(measure.on_worker_thread(naive))

    rows: list[dict] = []
    done_dtypes: set = set()
    for precision in precisions:
        detector = detector_factory(config.detector_config(model_name, weights, precision))
        for line in detector.notes:
            if line not in notes:
                notes.append(line)
        if detector.precision in done_dtypes:
            notes.append(f"{model_name} {precision}: runs as {detector.precision} on {device.type}, already measured; skipped")
            progress.advance(_steps_per_row(config, n) * len(config.proposals) * len(config.scales or (None,)))
            continue
        done_dtypes.add(detector.precision)
        for scale, proposals in itertools.product(config.scales or (None,), config.proposals):
            if scale is not None:
                detector.set_input_size(scale)
            detector.set_proposal_count(proposals)
            label = f"{model_name} {detector.precision} {proposals} proposals" + (f" at {scale} px" if scale else "")
            reset_peak_rss()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            progress.set_label(f"{label}: detector")
            run = measure.on_worker_thread(
                partial(measure.measure_detector, detector, frames, config.warmup, tick=progress.advance))
            pipe = base = None
            if config.pipeline:
                naive_first = len(rows) % 2 == 0
                if paired and naive_first:
                    progress.set_label(f"{label}: naive loop")
                    base = measure.on_worker_thread(naive)
                progress.set_label(f"{label}: pipeline")
                pipe = measure.pipeline_loop(detector, config.video, n, scratch / "pipeline.mp4", tick=progress.advance)
                if paired and not naive_first:
                    progress.set_label(f"{label}: naive loop")
                    base = measure.on_worker_thread(naive)
                if base is not None:
                    base_runs.append(base)
            metrics = labels.evaluate(run.detections) if labels is not None else None
            row = _row(detector, model_name, weights, proposals, run, pipe, metrics)
            if labels is not None:
                row["ap50_boxes"] = profile.box_weighted_ap50(row, profile.boxes_per_class(labels))
                row["model_identity"] = model_identity(detector)
            track_ms = measure.measure_tracker(run, frames)  # the tracker on this row's detections
            if track_ms is not None:
                row["track_ms_median"], row["track_ms_p90"] = median_p90(track_ms)
            elif (missing := "tracker not measured: the trackers package is missing") not in notes:
                notes.append(missing)
            row["peak_rss_mb"] = peak_rss_mb()
            if device.type == "cuda":
                row["gpu_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
            base = base or (base_runs[0] if base_runs else None)
            if base is not None:
                row["baseline_fps"] = base.fps
                if pipe is not None:
                    row["speedup_vs_baseline"] = pipe.fps / base.fps
                    if pipe.timestamps != base.timestamps:
                        notes.append(f"{label}: the pipeline processed {pipe.frames} frames, the naive loop {base.frames} "
                                     "(or other timestamps) — the ratio compares different work")
            rows.append(row)
        del detector

    if naive is None:
        return rows, None
    fps_runs = [r.fps for r in base_runs]
    base_fps = sum(fps_runs) / len(fps_runs) if fps_runs else float("nan")
    rpn = baseline_model.rpn
    baseline = {
        "model": model_name, "weights": weights, "trained": base_info.trained, "precision": "fp32",
        "proposals": rpn._post_nms_top_n["testing"], "pre_nms_proposals": rpn._pre_nms_top_n["testing"],
        "frames": base_runs[0].frames if base_runs else 0, "fps_mean": base_fps, "fps_runs": fps_runs,
        "spread": (max(fps_runs) - min(fps_runs)) / base_fps if len(fps_runs) > 1 and base_fps else None,
        "what": "one Python thread: PyAV decode → model([tensor]) → cv2 draw → PyAV H.264 encode; "
                + ("run beside the pipeline for every row, alternating which goes first" if paired else "run once"),
    }
    return rows, baseline


def _steps_per_row(config: BenchConfig, n: int) -> int:
    """Progress steps of one row: detector (warm-up + frames), pipeline, and the paired naive loop."""
    paired = config.baseline and config.pipeline
    return config.warmup + n + (n if config.pipeline else 0) + (n + config.warmup if paired else 0)


def _row(detector: Detector, model_name: str, weights: str, proposals: int, run: measure.DetectorRun,
         pipe: measure.LoopRun | None, metrics: dict | None) -> dict:
    row = {
        "model": model_name, "weights": weights, "trained": detector.info.trained, "device": str(detector.device),
        "precision": detector.precision, "input_size": getattr(detector, "input_size", None), "proposals": proposals,
        "proposals_kept_mean": sum(run.proposals) / len(run.proposals) if run.proposals else None,
        "frames": len(run.wall_ms), "detector_fps": run.fps,
    }
    for stage, (median, p90) in run.stage_stats().items():  # "total" first
        row[f"{stage}_ms_median"], row[f"{stage}_ms_p90"] = median, p90
    row["detections_mean"] = sum(len(d) for d in run.detections.values()) / max(1, len(run.detections))
    row["pipeline_fps"] = pipe.fps if pipe is not None else None
    row["pipeline_frames"] = pipe.frames if pipe is not None else None
    row["baseline_fps"] = row["speedup_vs_baseline"] = None
    row["ap"] = row["ap50"] = row["ap_images"] = None
    if metrics is not None:
        row["ap"], row["ap50"], row["ap_images"] = metrics["AP"], metrics["AP50"], metrics["images"]
        row["ap75"], row["per_class_ap50"] = metrics.get("AP75"), metrics.get("per_class_AP50")
    row["peak_rss_mb"] = row["gpu_peak_mb"] = None
    row["track_ms_median"] = row["track_ms_p90"] = None
    return row
