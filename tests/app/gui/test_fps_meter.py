"""The fps display logic with synthetic timestamps: sliding window, off-by-one, stalls, targets."""

from __future__ import annotations

import pytest

from app.gui.fps_meter import TARGETS, Level, RollingMean, target_status
from app.stats import FpsMeter


def ticks(meter: FpsMeter, fps: float, n: int, start: float = 0.0) -> float:
    t = start
    for i in range(n):
        t = start + i / fps
        meter.tick(t)
    return t


@pytest.mark.parametrize("rate", [5.0, 29.97, 30.0, 60.0, 144.0])
def test_steady_rate_is_measured_exactly(rate):
    meter = FpsMeter(window_s=1.0)
    ticks(meter, rate, 300)
    # n timestamps span n - 1 intervals: counting n / span would read high by one frame per window.
    assert meter.fps() == pytest.approx(rate, rel=1e-9)


def test_window_slides_to_the_new_rate():
    meter = FpsMeter(window_s=1.0)
    last = ticks(meter, 60.0, 120)
    # The rate falls to 20 fps: one window later the meter shows 20, not an average with the old 60.
    for i in range(1, 41):
        meter.tick(last + i / 20.0)
    assert meter.fps() == pytest.approx(20.0, rel=1e-6)


def test_not_one_over_the_last_interval():
    meter = FpsMeter(window_s=1.0)
    for t in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.51):  # one short hiccup at the end
        meter.tick(t)
    assert meter.fps() == pytest.approx(6 / 0.51)  # 1 / 0.01 would read 100 fps


def test_a_slow_stream_is_still_measured():
    meter = FpsMeter(window_s=1.0)
    for t in (0.0, 2.5, 5.0, 7.5):  # 0.4 fps: never two frames inside one window
        meter.tick(t)
    assert meter.fps(now=8.0) == pytest.approx(0.4)


def test_a_stalled_stream_reads_no_rate():
    meter = FpsMeter(window_s=1.0, stale_s=2.0)
    last = ticks(meter, 30.0, 60)
    assert meter.fps(now=last + 0.5) == pytest.approx(30.0)
    assert meter.fps(now=last + 2.5) is None


def test_fewer_than_two_frames_read_no_rate():
    meter = FpsMeter()
    assert meter.fps() is None
    meter.tick(1.0)
    assert meter.fps() is None


def test_memory_is_bounded():
    meter = FpsMeter(window_s=10.0, max_samples=50)
    ticks(meter, 1000.0, 5000)
    assert len(meter) == 50
    assert meter.fps() == pytest.approx(1000.0, rel=1e-6)


def test_time_going_backwards_is_refused():
    meter = FpsMeter()
    meter.tick(2.0)
    with pytest.raises(ValueError, match="backwards"):
        meter.tick(1.0)


@pytest.mark.parametrize(
    ("fps", "level30", "level60"),
    [
        (0.0, Level.MISSED, Level.MISSED),
        (12.0, Level.MISSED, Level.MISSED),
        (25.0, Level.NEAR, Level.MISSED),
        (29.97, Level.MET, Level.MISSED),  # a 29.97 fps source at full rate meets the 30 target
        (45.0, Level.MET, Level.MISSED),
        (50.0, Level.MET, Level.NEAR),
        (59.94, Level.MET, Level.MET),
        (120.0, Level.MET, Level.MET),
    ],
)
def test_target_levels(fps, level30, level60):
    meter = FpsMeter(window_s=1.0)
    if fps:
        ticks(meter, fps, 200)
    s30, s60 = (target_status(meter.fps() or 0.0, t) for t in TARGETS)
    assert (s30.target, s60.target) == (30.0, 60.0)
    assert (s30.level, s60.level) == (level30, level60)
    assert s30.met == (level30 is Level.MET)


def test_target_status_rejects_nonsense():
    with pytest.raises(ValueError, match="target"):
        target_status(10.0, 0.0)
    with pytest.raises(ValueError, match="fps"):
        target_status(float("nan"), 30.0)


def test_rolling_mean():
    mean = RollingMean(3)
    assert mean.mean == 0.0
    for v in (1, 2, 3, 10):
        mean.add(v)
    assert mean.mean == pytest.approx(5.0)
