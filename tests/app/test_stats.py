"""The fps meter counts intervals, not ticks, over a sliding window; the summary names every count."""

from __future__ import annotations

import pytest

from app.stats import FpsMeter, MultiStats, PipelineStats, StageAverages


def test_fps_is_intervals_over_time_not_ticks():
    meter = FpsMeter(window_s=2.0)
    for i in range(11):  # 11 ticks 0.1 s apart: 10 intervals in 1 s
        meter.tick(i * 0.1)
    assert meter.fps() == pytest.approx(10.0)  # (n - 1) / span, not n / span = 11


def test_window_slides_and_one_slow_frame_does_not_dominate():
    meter = FpsMeter(window_s=1.0)
    t = 0.0
    for _ in range(30):
        t += 1 / 30
        meter.tick(t)
    t += 0.2  # one slow frame
    meter.tick(t)
    assert 20 < meter.fps() < 30  # 1/last-interval would say 5
    for _ in range(60):  # two seconds at 10 fps push the old ticks out of the window
        t += 0.1
        meter.tick(t)
    assert meter.fps() == pytest.approx(10.0)


def test_stalled_stream_reads_none():
    meter = FpsMeter(window_s=1.0)
    meter.tick(0.0)
    assert meter.fps() is None  # one tick is no rate
    meter.tick(0.5)
    assert meter.fps(now=0.6) == pytest.approx(2.0)
    assert meter.fps(now=5.0) is None


def test_stage_averages():
    avg = StageAverages(recent=2)
    for backbone in (10.0, 20.0, 30.0):
        avg.add({"backbone": backbone, "total": backbone})
    assert avg.recent()["backbone"] == pytest.approx(25.0)
    assert avg.mean()["backbone"] == pytest.approx(20.0)


def test_summary_names_every_count():
    one = PipelineStats(frames_read=12, frames_processed=11, frames_written=10, frames_dropped=2, bad_frames=1,
                        mean_fps=9.5, mean_stage_ms={"backbone": 40.0}, elapsed_s=1.2, mean_latency_ms=80, proposals=7)
    text = MultiStats(streams={"clip": one}).summary()
    assert text.splitlines()[0].startswith("frames: 12 read, 11 processed, 10 written, 2 dropped, 1 bad; ")
    assert "9.50 fps" in text and "backbone 40.0" in text and "80 ms" in text and "proposals 7" in text
    assert "all " not in text and "clip" not in text  # one stream: no total, no name


def test_one_summary_for_several_streams_each_led_by_its_name_then_the_total():
    """The same line per stream as for one, led by its name; a failed stream says why; then the total."""
    a = PipelineStats(frames_read=12, frames_processed=12, frames_written=12, mean_fps=4.0, elapsed_s=3.0,
                      mean_stage_ms={"backbone": 40.0}, proposals=50)
    b = PipelineStats(frames_read=6, frames_processed=6, frames_written=6, frames_dropped=3, mean_fps=2.0, elapsed_s=3.0,
                      mean_stage_ms={"backbone": 10.0}, proposals=50)
    text = MultiStats(streams={"a": a, "b": b}, states={"a": "ended", "b": "failed: gone"}, mean_fps=6.0, elapsed_s=3.0,
                      batches=9, batch_sizes={1: 3, 2: 6}).summary()
    lines = text.splitlines()
    assert lines[0].startswith("a: 12 read, 12 processed, 12 written, 0 dropped, 0 bad; 4.00 fps") and "(" not in lines[0]
    assert lines[1].startswith("b: 6 read, 6 processed, 6 written, 3 dropped, 0 bad; 2.00 fps")
    assert lines[1].endswith("(failed: gone)")
    assert lines[2] == "all 2 streams: 18 frames, 6.00 fps together over 3.0 s; 9 batches, mean size 1.67 (size×count: 1×3, 2×6)"
    assert lines[3] == "detector ms per frame: backbone 30.0"  # each stream weighted by the frames it processed


def test_the_tracker_is_its_own_stage_averaged_over_the_frames_it_ran():
    avg = StageAverages(recent=10)
    avg.add({"backbone": 10.0, "total": 10.0})
    avg.add({"backbone": 30.0, "total": 30.0, "track": 1.0})  # tracking switched on
    avg.add({"backbone": 20.0, "total": 20.0, "track": 3.0})
    assert avg.mean()["backbone"] == pytest.approx(20.0) and avg.mean()["track"] == pytest.approx(2.0)
    assert avg.recent()["track"] == pytest.approx(2.0)
    text = MultiStats(streams={"clip": PipelineStats(mean_stage_ms=avg.mean())}).summary()
    assert "tracker ms per frame: 2.00" in text and "track 2" not in text.split("tracker")[0]
