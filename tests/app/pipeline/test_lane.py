"""What a lane of a several-stream pipeline can do on its own, as a single source's pipeline can:
pause while the others go on, start and stop a recording mid-run, take and drop a sink; and a
single source is the pipeline of one lane (same frames, its source's failure raised by ``wait``)."""

from __future__ import annotations

import time

import pytest

from app.config import PipelineConfig
from app.io.reconnect import open_source
from app.pipeline.pipeline import Pipeline, Stream
from app.pipeline.sinks import CallbackSink
from tests.app.fakes import FakeDetector
from tests.conftest import SAMPLE, decode_pts


def streams(*paths, **kw) -> list[Stream]:
    out = []
    for i, path in enumerate(paths):
        config = PipelineConfig(source_kind="video", source=str(path), **kw)
        out.append(Stream(f"s{i}", config, open_source(config)))
    return out


def test_one_lane_paused_while_the_other_goes_on(clip10):
    p = Pipeline.of_streams(streams(clip10, clip10), FakeDetector(delay_s=0.01))
    p.lanes[0].pause()
    p.start()
    deadline = time.monotonic() + 20
    while not p.lanes[1].finished.is_set() and time.monotonic() < deadline:
        time.sleep(0.02)
    stats = p.run_stats()
    assert stats.streams["s1"].frames_written == 10 and stats.streams["s0"].frames_processed == 0
    assert stats.streams["s0"].paused and not p.paused  # one lane paused, not the run
    p.lanes[0].resume()
    assert p.wait(20)
    p.stop()
    assert [s.frames_written for s in p.run_stats().streams.values()] == [10, 10]


def test_the_record_button_records_every_stream_or_none(tmp_path, clip10):
    """``Pipeline.start_recording`` with several streams: rec.mp4 → rec-<stream>.mp4 for each; when
    one of them may not be written, none starts (and nothing is written)."""
    (tmp_path / "taken-s1.mp4").write_bytes(b"keep")
    p = Pipeline.of_streams(streams(clip10, clip10), FakeDetector(delay_s=0.01))
    p.pause()
    p.start()
    with pytest.raises(Exception, match="taken-s1.mp4"):
        p.start_recording(tmp_path / "taken.mp4")
    assert p.record_sinks() == [] and (tmp_path / "taken-s1.mp4").read_bytes() == b"keep"
    sinks = p.start_recording(tmp_path / "rec.mp4")
    assert [s.path for s in sinks] == [tmp_path / "rec-s0.mp4", tmp_path / "rec-s1.mp4"]
    p.resume()
    assert p.wait(30)
    p.stop()
    for name in ("s0", "s1"):
        assert decode_pts(tmp_path / f"rec-{name}.mp4") == decode_pts(clip10), name
    assert not (tmp_path / "taken-s0.mp4").exists()


def test_a_lane_records_from_mid_run_and_takes_and_drops_a_sink(tmp_path):
    out = tmp_path / "mid.mp4"
    p = Pipeline.of_streams(streams(SAMPLE, SAMPLE, max_frames=40), FakeDetector(delay_s=0.05)).start()
    lane = p.lanes[1]
    seen = []
    sink = lane.add_sink(CallbackSink(lambda r, a: seen.append(r.frame.index), needs_image=False))
    while lane.written < 5:
        time.sleep(0.01)
    lane.start_recording(out)
    with pytest.raises(RuntimeError, match="already recording"):
        lane.start_recording(tmp_path / "other.mp4")
    first = lane.written
    while lane.written < first + 10:
        time.sleep(0.01)
    lane.remove_sink(sink)
    assert lane.stop_recording() == out and lane.stop_recording() is None
    last = lane.written
    assert p.wait(30)
    p.stop()
    pts, _ = decode_pts(out)
    assert 10 <= len(pts) <= last - first + 2 and pts[0] == 0  # only what came while recording, clock from 0
    assert seen == list(range(len(seen))) and 10 <= len(seen) < 40  # in order, until it was dropped
    assert p.lanes[1].record_sink is None and p.output_failures() == []
    with pytest.raises(RuntimeError, match="has finished"):
        lane.add_sink(CallbackSink(lambda r, a: None))


def test_a_single_source_is_the_pipeline_of_one_lane(clip10):
    single = Pipeline(PipelineConfig(source_kind="video", source=str(clip10)), FakeDetector())
    one = Pipeline.of_streams(streams(clip10), FakeDetector())
    assert len(single.lanes) == len(one.lanes) == 1 and single.lanes[0].name == "clip10"
    a, b = single.run(), one.run()
    assert a.frames_written == b.frames_written == 10 and len(a.done_times) == 10
    assert one.run_stats().streams["s0"].frames_written == 10 and one.run_stats().batches == 10


def test_a_paced_file_waits_while_paused_and_goes_on_at_its_pace(clip10):
    """A file played in real time (10 fps) stops reading while paused and restarts its clock on
    resume: no burst of the frames it would have shown meanwhile."""
    p = Pipeline(PipelineConfig(source_kind="video", source=str(clip10), realtime=True), FakeDetector()).start()
    while p.stats().frames_written < 3:
        time.sleep(0.01)
    p.pause()
    read = p.stats().frames_read
    time.sleep(1.0)  # longer than the rest of the clip at its pace
    assert p.stats().frames_read <= read + 1 and p.stats().paused
    p.resume()
    resumed = time.monotonic()
    assert p.wait(20)
    p.stop()
    left = 10 - read
    assert p.stats().frames_written == 10
    assert time.monotonic() - resumed >= 0.1 * (left - 2)  # paced again after the pause
