"""Events (app/analytics/events.py), their clips (app/analytics/clips.py) and the heat map (app/analytics/heatmap.py), on the
rendered crossing clip: decoded by PyAV through the real pipeline, the true boxes standing in for
the detector (as in test_count), the real tracker and counters. What each path implies comes from
tests/app/crossing_clip.py, not from the code under test."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from app.analytics.count import Shape
from app.analytics.events import EventsConfig
from app.config import PipelineConfig
from app.pipeline.pipeline import Pipeline
from tests.app import crossing_clip as clip


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return clip.write_clip(tmp_path_factory.mktemp("crossing") / "crossing.mp4")


def run_events(video: Path, detector=None, *, zone: bool = False, **events) -> tuple[Pipeline, list[dict]]:
    """Run the pipeline on ``video`` with the line (and the zone) and these event settings; the
    records of the events file (written to ``events["events"]``)."""
    config = PipelineConfig(source_kind="video", source=str(video), lines=(Shape.parse("line", clip.LINE).coords,),
                            zones=(Shape.parse("zone", clip.ZONE).coords,) if zone else (),
                            events=EventsConfig(counting=True, **events))
    pipeline = Pipeline(config, detector or clip.TruthDetector())
    stats = pipeline.run()
    assert stats.frames_written == clip.FRAMES
    return pipeline, read_events(events["events"])


def read_events(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def decoded_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [float(f.time) for f in c.decode(video=0)]


def test_line_crossings_become_events_with_clips(rendered, tmp_path):
    pre, post = 1.0, 1.0
    pipeline, records = run_events(rendered, events=str(tmp_path / "events.jsonl"), clips=str(tmp_path / "clips"),
                                   pre_s=pre, post_s=post)
    expected = clip.expected_counts()
    wanted = Counter({(way, name): n for way in ("in", "out") for name, n in expected[way].items()})
    assert Counter((r["event"], r["class"]) for r in records) == wanted
    # the same crossings, at the same frames, as the counters' own record (one source of truth)
    counted = pipeline.analytics.report()["lines"][0]["events"]
    assert [(r["frame"], r["track_id"], r["event"]) for r in records] == \
           [(e["frame"], e["track_id"], e["event"]) for e in counted]
    for r in records:
        assert r["kind"] == "line" and r["line"] == "line 1" and r["stream"] == "crossing"
        assert r["time_s"] == pytest.approx(r["frame"] / clip.RATE)
        x1, y1, x2, y2 = r["box"]
        assert x1 - 1 <= clip.LINE_X <= x2 + 1 and 0.9 <= r["score"] <= 1.0  # a box at the line when it crossed
        assert r["wall_time"].endswith("+00:00")
    # each clip: pre before its first event, post after its last (the stream's ends cut it), ± one frame
    by_clip: dict[str, list[dict]] = {}
    for r in records:
        by_clip.setdefault(r["clip"], []).append(r)
    assert len(by_clip) < len(records)  # the crossings at 2.5 and 2.7 s overlap: one clip
    assert any(len(rs) == 1 for rs in by_clip.values())  # and one stands alone
    frame_s = 1 / clip.RATE
    end_of_stream = (clip.FRAMES - 1) / clip.RATE
    for path, rs in by_clip.items():
        times = decoded_times(Path(path))
        start = max(0.0, rs[0]["time_s"] - pre)
        end = min(end_of_stream, rs[-1]["time_s"] + post)
        assert abs((times[-1] - times[0] + frame_s) - (end - start)) <= frame_s + 1e-6, (path, times[0], times[-1])
        if len(rs) == 1 and start > 0 and end < end_of_stream:
            assert abs(len(times) * frame_s - (pre + post)) <= frame_s + 1e-6
        assert times == sorted(times) and len(set(times)) == len(times)
    assert sorted(Path(p).name for p in by_clip) == sorted(p.name for p in (tmp_path / "clips").iterdir())


def test_clips_are_annotated_not_the_raw_source(rendered, tmp_path):
    """The clip shows what the recording shows: the line is drawn on it."""
    _, records = run_events(rendered, events=str(tmp_path / "e.jsonl"), clips=str(tmp_path / "c"), pre_s=0.5, post_s=0.5)
    with av.open(records[0]["clip"]) as c:
        image = next(c.decode(video=0)).to_ndarray(format="rgb24")
    raw = clip.boxes_frame(0)
    column = np.abs(image[5:60, int(clip.LINE_X) - 2: int(clip.LINE_X) + 3].astype(int) - raw[5:60, 318:323]).max()
    assert column > 60  # the line's pixels differ from the grey ground the source has there


class FlickerDetector(clip.TruthDetector):
    """The true boxes plus a 'car' that shows for ``flicker`` frames only, from frame 70."""

    def __init__(self, flicker: int) -> None:
        super().__init__()
        self.flicker = flicker

    def detect(self, frames, **kwargs):
        out = []
        for det in super().detect(frames):
            index = self.seen - 1
            if 70 <= index < 70 + self.flicker:
                from detector.detections import Detections

                box = np.array([[60, 20, 140, 70]], np.float32)
                det = Detections(np.concatenate([det.boxes, box]), [*det.scores.tolist(), 0.95],
                                 [*det.class_ids.tolist(), clip.NAMES.index("car")], clip.NAMES)
            out.append(det)
        return out


@pytest.mark.parametrize("flicker, cars", [(5, 2), (9, 3)])
def test_a_watched_class_appearing_is_one_event_per_track_and_a_flicker_is_none(rendered, tmp_path, flicker, cars):
    _, records = run_events(rendered, FlickerDetector(flicker), events=str(tmp_path / "e.jsonl"),
                            alert_classes=("car",), min_frames=4)
    appear = [r for r in records if r["kind"] == "class"]
    # the two cars of the paths, once each; the extra car only when it stays past the tracker's 3
    # frames of confirmation plus 4 seen frames (9 frames do, 5 do not)
    assert len(appear) == cars and len({r["track_id"] for r in appear}) == cars
    assert all(r["event"] == "appear" and r["class"] == "car" for r in appear)
    first_seen = sorted(o.keys[0][0] for o in clip.OBJECTS if o.name == "car")
    # the cars of the paths (the flicker's box is the fixed one painted at frames 70…): each is an
    # event only after its 4 seen frames
    paths = sorted(r["frame"] for r in appear if not np.allclose(r["box"], [60, 20, 140, 70], atol=2))
    assert len(paths) == 2
    assert all(frame >= f + 4 - 1 for frame, f in zip(paths, first_seen, strict=True))


def test_zone_events_match_the_counts(rendered, tmp_path):
    pipeline, records = run_events(rendered, zone=True, events=str(tmp_path / "e.jsonl"))
    zone = [r for r in records if r["kind"] == "zone"]
    assert Counter(r["class"] for r in zone if r["event"] == "enter") == Counter(clip.expected_counts()["entries"])
    assert all(r["zone"] == "zone 1" for r in zone)
    counted = pipeline.analytics.report()["zones"][0]["events"]
    assert sorted((r["frame"], r["track_id"], r["event"]) for r in zone) == \
           sorted((e["frame"], e["track_id"], e["event"]) for e in counted)


def test_heatmap_is_where_the_objects_walked(rendered, tmp_path):
    import cv2

    run_events(rendered, events=str(tmp_path / "e.jsonl"), heatmap=str(tmp_path / "heat.png"))
    first = clip.boxes_frame(0)
    heat = cv2.imread(str(tmp_path / "heat.png"))[..., ::-1].astype(int)
    person = cv2.imread(str(tmp_path / "heat-person.png"))[..., ::-1].astype(int)
    car = cv2.imread(str(tmp_path / "heat-car.png"))[..., ::-1].astype(int)
    assert heat.shape == first.shape
    # where the first person's feet passed (y = 110) at mid-frame, and where nobody went (top middle)
    def changed(image, x, y):
        return np.abs(image[y - 2: y + 3, x - 2: x + 3] - first[y - 2: y + 3, x - 2: x + 3]).max() > 40

    assert changed(heat, 300, 110) and changed(person, 300, 110) and not changed(car, 300, 110)
    assert changed(car, 300, 195) and not changed(person, 300, 195)
    assert not changed(heat, 320, 40) and not changed(heat, 600, 60)


def test_an_existing_events_file_is_refused_untouched(rendered, tmp_path):
    from app.errors import UserError

    out = tmp_path / "e.jsonl"
    out.write_text("keep\n")
    config = PipelineConfig(source_kind="video", source=str(rendered), lines=(Shape.parse("line", clip.LINE).coords,),
                            events=EventsConfig(events=str(out), counting=True))
    with pytest.raises(UserError, match="already exists"):
        config.check_outputs()
    assert out.read_text() == "keep\n"


def test_a_clip_whose_writes_fail_says_so(tmp_path, monkeypatch):
    """A full disk under a clip: the Recorder stops itself (``failed``) without raising; the clip
    writer must still report it, not count a clip cut short as a whole one."""
    from fractions import Fraction
    from types import SimpleNamespace

    from app.analytics import clips as clips_module

    class FullDisk(clips_module.Recorder):
        def write(self, image, pts, time_base=None):
            if self.frames_written == 2 and self.failed is None:
                self._fail(OSError(28, "No space left on device"))
                return False
            return super().write(image, pts, time_base)

    monkeypatch.setattr(clips_module, "Recorder", FullDisk)
    writer = clips_module.ClipWriter(tmp_path, stream="s", pre_s=0.0, post_s=1.0, rate=Fraction(10))
    image = np.zeros((16, 16, 3), np.uint8)
    for i in range(6):
        frame = SimpleNamespace(seconds=i / 10, pts=i, time_base=Fraction(1, 10), image=image)
        if i == 1:
            writer.on_event(frame.seconds, "line-1-in")
        writer.add_frame(frame, image)
    writer.close()
    assert len(writer.errors) == 1 and "No space left on device" in writer.errors[0]
    assert "1 error(s)" in writer.summary()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_stops_the_events_file_only():
    """Writing the events file fails (/dev/full: every write is 'No space left on device'): the file
    stops with one line in ``failed`` — no exception out of the sink thread, whose other outputs
    (the recording, the export) must go on."""
    from app.analytics.events import EventLog

    log = EventLog("/dev/full")
    log.write({"event": "in"})
    log.write({"event": "out"})
    log.close()
    assert log.written == 0
    assert log.failed == "events file /dev/full stopped after 0 events: No space left on device"


def test_only_the_heat_maps_written_are_refused(tmp_path):
    """Several streams write h-<stream>.png, not h.png: an h.png of an earlier run must not stop them
    (it did: "heat map output h.png already exists"); a single stream's h.png is still refused."""
    from app.analytics.events import Events
    from app.errors import UserError

    (tmp_path / "h.png").write_bytes(b"earlier run")
    config = EventsConfig(heatmap=str(tmp_path / "h.png"), counting=True)
    with Events(config) as events:
        sinks = events.sinks_for("a", None, None, heatmap_path=str(tmp_path / "h-a.png"))
        assert [s.path.name for s in sinks] == ["h-a.png"]
        with pytest.raises(UserError, match="h.png already exists"):
            events.sinks_for("a", None, None)
    assert (tmp_path / "h.png").read_bytes() == b"earlier run"


def test_a_long_run_keeps_a_bounded_set_of_tracks_and_a_parked_car_appears_once(monkeypatch):
    """Thousands of cars drive past while one stays parked in view: every car appears once, the parked
    one too (never again as its ID ages), and what the sink keeps per track stays bounded."""
    from fractions import Fraction
    from types import SimpleNamespace

    import app.analytics.events as events
    from app.frames import Frame, Result
    from detector.detections import Detections

    monkeypatch.setattr(events, "TRACKS_KEPT", 64)
    sink = events.EventSink(EventsConfig(alert_classes=("car",), min_frames=2), SimpleNamespace(lines=[], zones=[]), "s")
    out = []
    sink.add_listener(out.append)
    image = np.zeros((8, 8, 3), np.uint8)
    for i in range(2000):
        passing = 1000 + i // 2  # a new car every second frame, seen in two frames
        det = Detections(np.array([[0, 0, 4, 4], [2, 2, 6, 6]], np.float32), np.array([0.9, 0.8], np.float32),
                         np.array([1, 1]), ("__background__", "car"), np.array([1, passing]))
        sink.write(Result(Frame(i, i, Fraction(1, 10), image, 0.0), det), None)
    appeared = Counter(r["track_id"] for r in out if r["event"] == "appear")
    assert appeared[1] == 1 and len(appeared) == 1001 and set(appeared.values()) == {1}
    assert max(len(sink._tracks), len(sink._seen), len(sink._appeared)) <= 64
