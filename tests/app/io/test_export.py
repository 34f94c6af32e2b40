"""Export rows: one per detection, JSON, JSON Lines and CSV, complete after every frame (not only after
close), cut back to the last whole frame when the disk refuses a write, from a real pipeline run."""

from __future__ import annotations

import json
import time
from fractions import Fraction

import numpy as np
import pytest

from app.config import PipelineConfig
from app.frames import Frame, Result
from app.io.export import COLUMNS, Exporter, read_rows, result_rows
from app.pipeline.pipeline import Pipeline
from detector.detections import Detections
from tests.app.fakes import NAMES, FakeDetector


def result(index: int, n: int) -> Result:
    boxes = np.array([[i, 2 * i, i + 10.5, 2 * i + 20.25] for i in range(n)], np.float32)
    det = Detections(boxes, np.linspace(0.9, 0.5, n), [1 + i % 2 for i in range(n)], NAMES)
    frame = Frame(index, index * 1001, Fraction(1, 30000), np.zeros((4, 4, 3), np.uint8), time.monotonic())
    return Result(frame, det)


@pytest.mark.parametrize("ext", ["json", "jsonl", "csv"])
def test_rows_round_trip(tmp_path, ext):
    path = tmp_path / f"dets.{ext}"
    with Exporter(path) as exporter:
        for i, n in enumerate([2, 0, 3]):
            exporter.write(result(i, n))
    rows = read_rows(path)
    assert len(rows) == 5 and exporter.frames_written == 3
    assert list(rows[0]) == list(COLUMNS)
    assert [r["frame"] for r in rows] == [0, 0, 2, 2, 2]
    assert rows[2]["timestamp_s"] == pytest.approx(2 * 1001 / 30000, abs=1e-6)
    assert [r["class"] for r in rows[:2]] == ["person", "car"]
    assert rows[1]["x2"] == pytest.approx(11.5) and rows[1]["y2"] == pytest.approx(22.25)
    assert rows[0]["score"] == pytest.approx(0.9)


def test_empty_json_is_valid(tmp_path):
    path = tmp_path / "none.json"
    Exporter(path).close()
    assert json.loads(path.read_text()) == []


def test_unknown_extension():
    with pytest.raises(ValueError, match=r"\.json, \.jsonl or \.csv"):
        Exporter("dets.txt")


def test_result_rows_follow_the_detections():
    rows = result_rows(result(5, 3))
    assert [(r["x1"], r["y1"]) for r in rows] == [(0, 0), (1, 2), (2, 4)]


def test_pipeline_exports_every_frame(clip10, tmp_path):
    path = tmp_path / "run.csv"
    Pipeline(PipelineConfig(source_kind="video", source=str(clip10), export=str(path)), FakeDetector()).run()
    rows = read_rows(path)
    assert [r["frame"] for r in rows] == list(range(10))
    assert [r["x1"] for r in rows] == list(range(10))  # the box the detector gave frame i
    assert [r["timestamp_s"] for r in rows] == pytest.approx([i / 10 for i in range(10)])


@pytest.mark.parametrize("ext", ["json", "jsonl", "csv"])
def test_track_ids_round_trip(tmp_path, ext):
    """The tracker's IDs come back from the file as they went in; -1 when a row has none."""
    path = tmp_path / f"tracked.{ext}"
    sent = [[7, -1], [], [7, 12, 0]]
    with Exporter(path) as exporter:
        for i, ids in enumerate(sent):
            r = result(i, len(ids))
            exporter.write(Result(r.frame, r.detections.with_track_ids(ids)))
        exporter.write(result(3, 2))  # tracking off for this frame: no IDs
    rows = read_rows(path)
    assert [r["track_id"] for r in rows] == [7, -1, 7, 12, 0, -1, -1]
    assert all(isinstance(r["track_id"], int) for r in rows)


def test_pipeline_with_tracking_exports_the_ids_it_drew(clip10, tmp_path):
    """The real tracker in the pipeline on 10 real frames (the fake detector's box moves 1 px a
    frame): the export's track_id column is the IDs of the results the sinks received."""
    path = tmp_path / "tracked.csv"
    seen = []
    config = PipelineConfig(source_kind="video", source=str(clip10), export=str(path), track=True)
    Pipeline(config, FakeDetector(), on_result=lambda r, _img: seen.append(r)).run()
    rows = read_rows(path)
    ids = [int(t) for r in seen for t in r.detections.track_ids]
    assert [r["track_id"] for r in rows] == ids and len(rows) == 10
    assert ids[:2] == [-1, -1] and set(ids[2:]) == {0}  # confirmed on its third frame, then one ID


@pytest.mark.parametrize("ext", ["json", "jsonl", "csv"])
def test_the_file_is_whole_after_every_frame_without_close(tmp_path, ext):
    """What a SIGKILL would leave: read while the exporter is still open, after each frame."""
    path = tmp_path / f"open.{ext}"
    exporter = Exporter(path)
    expected = []
    for i, n in enumerate([2, 0, 1, 3]):
        exporter.write(result(i, n))
        expected += [i] * n
        assert [r["frame"] for r in read_rows(path)] == expected
    exporter.close()
    assert [r["frame"] for r in read_rows(path)] == expected


@pytest.mark.parametrize("ext", ["json", "jsonl", "csv"])
def test_a_refused_write_keeps_every_whole_frame(tmp_path, ext):
    """The disk refuses the 3rd frame's rows (as a full disk or a file-size limit would): the file
    keeps frames 0-1, parses, the failure is one line, and later frames are ignored."""
    path = tmp_path / f"full.{ext}"
    exporter = Exporter(path)
    exporter.write(result(0, 2))
    exporter.write(result(1, 1))
    real_write, room = exporter._file.write, [path.stat().st_size + 20]

    def filling_disk(data):  # takes what fits, then ENOSPC for anything past the end of the room
        f = exporter._file
        fits = max(0, room[0] - f.tell())
        if fits == 0:
            raise OSError(28, "No space left on device")
        return real_write(bytes(data)[:fits])

    exporter._file.write = filling_disk
    exporter.write(result(2, 3))
    exporter.write(result(3, 1))
    exporter.close()
    assert exporter.failed == f"export {path} stopped after 2 frames: No space left on device"
    assert [r["frame"] for r in read_rows(path)] == [0, 0, 1]
    assert exporter.frames_written == 2 and exporter.rows_written == 3


@pytest.mark.parametrize("ext", ["jsonl", "csv"])
def test_a_cut_last_frame_is_left_out_when_read(tmp_path, ext):
    """A kill may stop a frame's write partway (Linux stops a write of several pages at a fatal
    signal): the rows before it read back, the cut line is left out, not an error."""
    path = tmp_path / f"cut.{ext}"
    with Exporter(path) as exporter:
        for i, n in enumerate([2, 3]):
            exporter.write(result(i, n))
    whole = path.read_bytes()
    path.write_bytes(whole[: whole.rstrip(b"\n").rfind(b"\n") + 1 + 25])  # the last row cut after 25 bytes
    assert [r["frame"] for r in read_rows(path)] == [0, 0, 1, 1]


def test_a_url_s_password_stays_out_of_the_stream_name():
    """The stream's name goes into file names, the export's ``stream`` column, events and alerts:
    like the query (a token), the user and password of ``rtsp://user:pass@host`` are left out."""
    from app.io.paths import stream_name

    assert stream_name("url", "rtsp://admin:s3cret@10.0.0.5:554/live") == "10.0.0.5-554-live"
    assert stream_name("url", "http://me@cam.local/feed.ts?token=x") == "cam.local-feed"
