"""The benchmark: the sweep writes its three files, AP is pycocotools' on the right frames, and the
naive loop and the pipeline process the very same frames. Small: a 6-frame 160×120 clip cut from the
sample, a 64-px random ``paper`` model."""

from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from app.bench import measure
from app.bench.accuracy import load_labels
from app.bench.report import COLUMNS, OUTPUT_NAMES, lines
from app.bench.sweep import BenchConfig, build_baseline_model, run_bench
from app.cli.cli import main as cli_main
from app.errors import UserError
from detector.builders import COCO_CLASS_NAMES
from detector.config import DetectorConfig
from detector.detections import Detections
from detector.detector import Detector, StageTimes

SAMPLE = Path(__file__).resolve().parents[3] / "assets" / "sample.mp4"
RATE = Fraction(30000, 1001)  # 29.97 fps: timestamps that a rounding error would shift
TINY = dict(models=(("paper", "random"),), min_size=64, max_size=96, warmup=1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """6 real frames of the sample, 160×120, H.264 at 29.97 fps."""
    path = tmp_path_factory.mktemp("bench") / "clip.mp4"
    with av.open(str(SAMPLE)) as src, av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.codec_context.time_base = 1 / RATE
        for i, frame in enumerate(src.decode(video=0)):
            if i == 6:
                break
            small = frame.reformat(width=160, height=120, format="rgb24")
            vf = av.VideoFrame.from_ndarray(small.to_ndarray(), format="rgb24")
            vf.pts, vf.time_base = i, 1 / RATE
            out.mux(stream.encode(vf))
        out.mux(stream.encode())
    return path


def labels_json(path: Path, frames: int = 3, offset: int = 0, size=(160, 120)) -> Path:
    """A COCO JSON with two boxes (a person, a car) on each of the first ``frames`` frames, moving."""
    images, annotations = [], []
    for i in range(frames):
        images.append({"id": 10 + i, "file_name": f"frame_{i + offset:06d}.jpg", "width": size[0], "height": size[1],
                       "frame_index": i + offset})
        for k, (category, box) in enumerate(((1, [10 + 5 * i, 20, 30, 60]), (2, [90, 40 + 3 * i, 50, 30]))):
            annotations.append({"id": 100 + 2 * i + k, "image_id": 10 + i, "category_id": category, "bbox": box,
                                "area": box[2] * box[3], "iscrowd": 0})
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]}))
    return path


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with path.open() as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def test_sweep_writes_the_three_files_with_the_columns(clip, tmp_path):
    out = tmp_path / "out"
    result = run_bench(BenchConfig(video=clip, proposals=(5, 50), frames=3, out=out,
                                   annotations=labels_json(tmp_path / "gt.json"), **TINY))
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_NAMES)

    header, rows = read_csv(out / "results.csv")
    assert header == list(COLUMNS)
    assert [int(r["proposals"]) for r in rows] == [5, 50]
    for r in rows:
        assert r["model"] == "paper" and r["precision"] == "fp32" and r["frames"] == "3"
        for column in ("detector_fps", "total_ms_median", "backbone_ms_p90", "pipeline_fps", "baseline_fps",
                       "speedup_vs_baseline", "ap", "ap50", "peak_rss_mb", "track_ms_median", "track_ms_p90"):
            assert r[column] != "", column
        assert float(r["detector_fps"]) > 0 and float(r["total_ms_p90"]) >= float(r["total_ms_median"]) > 0
        assert 0.0 <= float(r["ap"]) <= 1.0 and r["ap_images"] == "3"
        assert float(r["speedup_vs_baseline"]) == pytest.approx(float(r["pipeline_fps"]) / float(r["baseline_fps"]), rel=0.01)
        assert r["pipeline_frames"] == "3"
        assert 0 < float(r["track_ms_median"]) <= float(r["track_ms_p90"])  # the tracker, a stage of its own

    doc = json.loads((out / "results.json").read_text())
    for key in ("cpu", "cores", "gpu", "torch", "torchvision", "date_utc"):
        assert key in doc["machine"], key
    assert doc["machine"]["torch"] == torch.__version__
    assert [r["proposals"] for r in doc["rows"]] == [5, 50]
    # the naive loop ran beside each row's pipeline run, and each row's ratio uses its own
    assert doc["baselines"][0]["frames"] == 3 and len(doc["baselines"][0]["fps_runs"]) == 2
    assert [r["baseline_fps"] for r in doc["rows"]] == pytest.approx(doc["baselines"][0]["fps_runs"], rel=1e-3)
    png = (out / "proposals_vs_fps.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "det fps" in result.table and result.table.count("\n") == 3  # header, rule, two rows


class GroundTruthDetector:
    """A stand-in for ``Detector`` that returns exactly the labelled boxes of each frame (or nothing)."""

    def __init__(self, config: DetectorConfig, boxes_by_frame: dict[bytes, Detections] | None) -> None:
        self.config, self.boxes_by_frame = config, boxes_by_frame
        self.device, self.dtype, self.precision, self.notes = torch.device("cpu"), torch.float32, "fp32", []
        self.info = type("Info", (), {"trained": True})()
        self.last_times, self.last_proposal_counts = StageTimes(1, 1, 1, 1, 1), [1]

    def set_proposal_count(self, n: int, pre_nms: int | None = None) -> None:
        self.last_proposal_counts = [n]

    def detect(self, image, *, bgr=False, timing=True) -> list[Detections]:
        if self.boxes_by_frame is None:
            return [Detections.empty(COCO_CLASS_NAMES)]
        return [self.boxes_by_frame[image.tobytes()]]


@pytest.mark.parametrize(("returns", "expected"), [("truth", 1.0), ("nothing", 0.0)])
def test_ap_is_one_for_the_ground_truth_and_zero_for_nothing(clip, tmp_path, returns, expected):
    gt = json.loads(labels_json(tmp_path / "gt.json").read_text())
    frames = measure.read_frames(clip, 3)
    person, car = COCO_CLASS_NAMES.index("person"), COCO_CLASS_NAMES.index("car")
    truth = {}
    for frame, image in zip(frames, gt["images"], strict=True):
        anns = [a for a in gt["annotations"] if a["image_id"] == image["id"]]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32)
        ids = [person if a["category_id"] == 1 else car for a in anns]
        truth[frame.image.tobytes()] = Detections(boxes, np.ones(len(anns), np.float32), ids, COCO_CLASS_NAMES)

    result = run_bench(
        BenchConfig(video=clip, models=(("paper", "random"),), proposals=(5, 50), frames=3, warmup=1,
                    annotations=tmp_path / "gt.json", out=tmp_path / "out", pipeline=False, baseline=False),
        detector_factory=lambda cfg: GroundTruthDetector(cfg, truth if returns == "truth" else None),
    )
    assert [r["ap"] for r in result.rows] == [expected, expected]
    assert [r["ap50"] for r in result.rows] == [expected, expected]
    _, rows = read_csv(tmp_path / "out" / "results.csv")
    assert [float(r["ap"]) for r in rows] == [expected, expected]
    assert all(r["pipeline_fps"] == "" and r["baseline_fps"] == "" for r in rows)


@pytest.mark.parametrize("n", [4, 50])
def test_naive_loop_and_pipeline_read_the_same_frames(clip, tmp_path, n):
    config = DetectorConfig(model="paper", weights="random", device="cpu", min_size=64, max_size=96)
    model, names, _ = build_baseline_model(config)
    naive = measure.naive_loop(model, clip, n, tmp_path / "naive.mp4", torch.device("cpu"), names)
    piped = measure.pipeline_loop(Detector(config), clip, n, tmp_path / "pipeline.mp4")
    expected = [Fraction(i * 1001, 30000) for i in range(min(n, 6))]
    assert naive.timestamps == expected
    assert piped is not None and piped.timestamps == expected
    assert [f.timestamp for f in measure.read_frames(clip, n)] == expected  # the detector's frames too
    with av.open(str(tmp_path / "naive.mp4")) as c:  # the naive loop's recording holds them all
        assert sum(1 for _ in c.decode(video=0)) == len(expected)


def test_labels_tie_images_to_frames_by_frame_index_with_an_offset(tmp_path):
    path = labels_json(tmp_path / "gt.json", frames=5, offset=650)
    labels = load_labels(path, [0, 1, 2], (160, 120), frame_offset=650)
    assert labels.image_of_frame == {0: 10, 1: 11, 2: 12} and labels.boxes == 6
    with pytest.raises(UserError, match="label none of the benchmarked frames 0–2"):
        load_labels(path, [0, 1, 2], (160, 120))
    with pytest.raises(UserError, match=r"is 160×120, but the video's frames are 768×576"):
        load_labels(path, [0, 1, 2], (768, 576), frame_offset=650)


def test_cli_refuses_bad_input_with_one_line(clip, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert cli_main(["bench", "--video", str(clip), "--out", str(out)]) == 2
    assert "not empty; pass --overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    for argv, message in (
        (["--video", str(clip), "--proposals", "50,0"], "--proposals '50,0': 0 must be ≥ 1"),
        (["--video", str(clip), "--proposals", "50,lots"], "'lots' is not an integer"),
        (["--video", str(tmp_path / "missing.mp4")], "does not exist"),
        (["--video", str(clip), "--model", "paper,default", "--weights", "a,b,c"], "--weights has 3 values for 2 models"),
        (["--video", str(clip), "--precision", "fp8"], "precision fp8 is unknown"),
        (["--video", str(clip), "--model", "yolo"], "model 'yolo' is unknown"),
        (["--video", str(clip), "--min-size", "8"], "error: --min-size 8 must be an integer ≥ 32 pixels"),
        (["--video", str(clip), "--score-threshold", "2"], "error: --score-threshold 2.0 must be a number"),
        (["--video", str(clip), "--scales", "240,10"], "error: --scales 10,240 must be short sides"),
    ):
        assert cli_main(["bench", *argv, "--out", str(tmp_path / "new")]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "new").exists()


def test_a_precision_that_runs_as_another_is_measured_once(clip, tmp_path):
    """fp16 on a CPU runs as fp32 (the detector falls back): one set of rows and a note, not two."""
    result = run_bench(
        BenchConfig(video=clip, models=(("paper", "random"),), proposals=(5, 50), precisions=("fp32", "fp16"),
                    frames=2, warmup=0, out=tmp_path / "out", pipeline=False, baseline=False),
        detector_factory=lambda cfg: GroundTruthDetector(cfg, None),
    )
    assert [(r["precision"], r["proposals"]) for r in result.rows] == [("fp32", 5), ("fp32", 50)]
    assert any("paper fp16: runs as fp32" in note and "skipped" in note for note in result.notes)
    assert any("AP and AP50 not measured" in note for note in result.notes)
    assert all(r["ap"] is None for r in result.rows)


def test_a_scale_grid_marks_the_pareto_front_and_writes_the_models_profile(clip, tmp_path):
    """Real tiny detector on real frames: every scale × proposals cell measured, the front is the
    set no other cell beats in both fps and AP50, and the AP50 grid lands in the profile file."""
    labels_json(tmp_path / "gt.json")
    profile_file = tmp_path / "profiles.json"
    result = run_bench(BenchConfig(video=clip, proposals=(5, 50), frames=3, scales=(48, 64, 96),
                                   annotations=tmp_path / "gt.json", out=tmp_path / "out", pipeline=False,
                                   baseline=False, profile_file=profile_file, **TINY))
    rows = result.rows
    assert sorted((r["input_size"], r["proposals"]) for r in rows) == [(s, p) for s in (48, 64, 96) for p in (5, 50)]
    front = [r for r in rows if r["pareto"]]
    assert front
    key = "ap50_boxes"
    for r in rows:
        dominated = any(o["detector_fps"] >= r["detector_fps"] and o[key] >= r[key]
                        and (o["detector_fps"] > r["detector_fps"] or o[key] > r[key]) for o in rows)
        assert r["pareto"] is (not dominated)
    assert (tmp_path / "out" / "scale_vs_proposals.png").stat().st_size > 10_000
    profile = next(iter(json.loads(profile_file.read_text()).values()))
    assert profile["accuracy"]["scales"] == [48, 64, 96] and profile["accuracy"]["proposals"] == [5, 50]
    assert len(profile["accuracy"]["ap50"]) == 3 and "int8" not in profile  # int8 was not measured


def test_the_int8_verdict_compares_the_same_cells():
    from app.bench.profile import int8_profile

    rows = [{"precision": p, "input_size": 480, "proposals": n, "ap50": ap, "ap_images": 80}
            for p, n, ap in (("fp32", 100, 0.650), ("int8", 100, 0.645), ("fp32", 300, 0.660), ("int8", 300, 0.640))]
    verdict = int8_profile(rows, "labels.json")
    assert verdict["ap50_fp32"] == 0.66 and verdict["ap50_int8"] == 0.64 and verdict["ok"] is False  # 300 decides
    assert int8_profile(rows[:2], "labels.json")["ok"] is True
    assert int8_profile([r for r in rows if r["precision"] == "fp32"], "x") is None


def test_progress_is_a_line_every_tenth_in_a_log_and_a_bar_that_stops_on_a_terminal():
    import io
    import re

    from app.bench.stats import Progress

    log = io.StringIO()
    with Progress(40, stream=log) as progress:
        progress.set_label("m: detector")
        for _ in range(40):
            progress.advance()
    lines = log.getvalue().splitlines()
    assert len(lines) == 11 and lines[-1].startswith("[" + "#" * 28 + "] 100%") and lines[-1].endswith("m: detector")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    with pytest.raises(RuntimeError), Progress(40, stream=terminal) as progress:
        progress.set_label("m: pipeline")
        progress.advance(10)
        raise RuntimeError("a measurement failed")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal.getvalue())
    assert " 25% " in text and "m: pipeline" in text and "100%" not in text  # stopped where it was, not filled
    assert terminal.getvalue().endswith("\x1b[?25h")  # the cursor is shown again


def test_plot_lines_keep_weights_and_input_sizes_apart():
    def row(weights, size, proposals, precision="fp32"):
        return {"model": "fasterrcnn_mobilenet_v3_large_fpn", "weights": weights, "precision": precision,
                "input_size": size, "proposals": proposals, "trained": True}

    rows = [row(w, s, n) for n in (300, 50, 100) for w in ("a/v6.pt", "b/v7.pt") for s in (320, 480)]
    named = lines(rows + [row("a/v6.pt", 320, 50, "int8")])
    assert len(named) == 5 and "mobilenet_v3_large_fpn[v7] fp32 480px" in named
    for name, group in named.items():  # each line is one setting, in proposal order
        assert len({(r["weights"], r["input_size"], r["precision"]) for r in group}) == 1, name
        assert [r["proposals"] for r in group] == sorted(r["proposals"] for r in group)
    assert list(lines([row("a/v6.pt", 320, 50)])) == ["mobilenet_v3_large_fpn fp32"]


def test_two_weights_files_of_one_model_are_both_recorded(clip, tmp_path):
    """results.json names every checkpoint measured: two of one model were one entry, the last."""
    files = [tmp_path / "v6.pt", tmp_path / "v7.pt"]
    for i, path in enumerate(files):
        path.write_bytes(bytes([i]) * 64)
    result = run_bench(
        BenchConfig(video=clip, models=tuple(("paper", str(p)) for p in files), proposals=(5,), frames=2, warmup=0,
                    out=tmp_path / "out", pipeline=False, baseline=False),
        detector_factory=lambda cfg: GroundTruthDetector(cfg, None),
    )
    recorded = json.loads((tmp_path / "out" / "results.json").read_text())["weights_files"]
    assert sorted(entry["path"] for entry in recorded.values()) == sorted(str(p) for p in files)
    assert len({entry["sha256"] for entry in recorded.values()}) == 2
    assert [r["weights"] for r in result.rows] == [str(p) for p in files]


def test_a_profile_file_that_cannot_be_written_is_said(clip, tmp_path):
    """--profile-file needs labels and an int8 pair or a scale grid; without them it is a note, not silence."""
    profile_file = tmp_path / "profiles.json"
    result = run_bench(
        BenchConfig(video=clip, models=(("paper", "random"),), proposals=(5,), frames=2, warmup=0,
                    out=tmp_path / "out", pipeline=False, baseline=False, profile_file=profile_file),
        detector_factory=lambda cfg: GroundTruthDetector(cfg, None),
    )
    assert not profile_file.exists()
    assert any(f"--profile-file {profile_file} not written" in note for note in result.notes), result.notes


def test_plot_lines_of_two_weights_files_with_one_name_stay_apart():
    """runs/a/best.pt and runs/b/best.pt: two lines, each named by the path that tells them apart."""
    rows = [{"model": "paper", "weights": w, "precision": "fp32", "input_size": 320, "proposals": n,
             "trained": True} for w in ("runs/a/best.pt", "runs/b/best.pt") for n in (50, 300)]
    named = lines(rows)
    assert sorted(named) == ["paper[runs/a/best.pt] fp32", "paper[runs/b/best.pt] fp32"]
    assert all(len(group) == 2 for group in named.values())


def test_a_live_stream_of_a_clip_decodes_only_the_frames_it_sends(clip, monkeypatch):
    """clip_frames(video, n) holds n frames in memory, not the whole clip (a long video would not fit)."""
    from app.bench import live_streams

    decoded, real_open = [], av.open

    class Counting:  # the container, counting the frames decoded from it
        def __init__(self, path):
            self.container = real_open(path)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.container.close()

        def __getattr__(self, name):
            return getattr(self.container, name)

        def decode(self, *streams, **kinds):
            for frame in self.container.decode(*streams, **kinds):
                decoded.append(frame.pts)
                yield frame

    monkeypatch.setattr(av, "open", Counting)
    first = [f.image for f in measure.read_frames(clip, 2)]
    frames = live_streams.clip_frames(clip, 2)
    assert len(decoded) == 2 + 2  # read_frames' two, then clip_frames' two of the six
    assert all(np.array_equal(a, b) for a, b in zip(frames, first, strict=True))
    assert len(live_streams.clip_frames(clip, 9)) == 9  # longer than the clip: forwards, then backwards


def test_the_table_tells_two_weights_files_of_a_model_apart():
    from app.bench.report import format_table

    rows = [{"model": "paper", "weights": w, "precision": "fp32", "proposals": 50, "detector_fps": fps}
            for w, fps in (("runs/v6.pt", 10.0), ("runs/v7.pt", 12.0))]
    body = format_table(rows).splitlines()[2:]
    assert [line.split()[0] for line in body] == ["paper[v6]", "paper[v7]"]
    assert format_table(rows[:1]).splitlines()[2].split()[0] == "paper"  # one weights file: the model alone


def test_the_scale_plot_names_each_front_and_keeps_ms_off_its_ap_axis(tmp_path, monkeypatch):
    """Two weights files: two fronts, each named by its file. A cell without AP is left off the AP axis."""
    import matplotlib.figure

    from app.bench import grid

    seen = {}

    def capture(fig, path, **options):
        ax = fig.axes[0]
        seen["labels"] = ax.get_legend_handles_labels()[1]
        seen["y"] = [float(y) for points in ax.collections for _, y in points.get_offsets()]

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", capture)
    cells = ((320, 50, 30.0, 0.5), (480, 100, 10.0, 0.7), (640, 300, 5.0, None))  # the last: AP not measured
    rows = [{"model": "paper", "weights": w, "precision": "fp32", "input_size": s, "proposals": p,
             "detector_fps": fps, "ap50": ap, "total_ms_median": 1000 / fps}
            for w in ("a/v6.pt", "a/v7.pt") for s, p, fps, ap in cells]
    grid.mark_pareto(rows)
    grid.plot(tmp_path / "grid.png", rows, "two checkpoints")
    assert {"Pareto front (paper[v6] fp32)", "Pareto front (paper[v7] fp32)"} <= set(seen["labels"])
    assert seen["y"] and all(0 <= y <= 1 for y in seen["y"])
