"""The adaptive controller on a simulated clock: a fake detector whose cost follows the pixel count
and the proposal count. It must converge to the target, not oscillate, move one knob at a time,
never skip a file's frame, and come back up when there is headroom. Then a real short run."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from app.pipeline.adapt import AdaptConfig, AdaptiveController, Setting, fps_series, oscillations
from app.stats import MultiStats
from tests.conftest import ROOT, SAMPLE


class FakeDetector:
    """Costs ms per frame: preprocess/backbone/RPN ∝ pixels, RoI head ∝ proposals (the default
    model's shape on a CPU: ~95 ms of pixels at 480 px, 0.09 ms per proposal)."""

    def __init__(self, input_size: int = 480, proposals: int = 300, pixel_ms: float = 95.0, roi_ms: float = 0.09) -> None:
        self.input_size = self.base_input_size = input_size
        self.proposal_count = proposals
        self.pixel_ms, self.roi_ms = pixel_ms, roi_ms
        self.calls: list[tuple[int, int]] = []

    def set_input_size(self, n: int) -> None:
        self.input_size = n

    def set_proposal_count(self, n: int) -> None:
        self.proposal_count = n

    def stage_ms(self, rng: random.Random) -> dict[str, float]:
        px = (self.input_size / 480) ** 2
        jitter = lambda: rng.uniform(0.92, 1.10)  # noqa: E731 — a noisy shared machine
        return {"preprocess": 4 * px * jitter(), "backbone": (self.pixel_ms - 14) * px * jitter(), "rpn": 10 * px * jitter(),
                "roi_heads": (2 + self.roi_ms * self.proposal_count) * jitter(), "postprocess": 0.5}


def simulate(detector: FakeDetector, config: AdaptConfig, frames: int = 100, seed: int = 0, overhead_ms: float = 3.0,
             change_at: int | None = None, new_pixel_ms: float | None = None):
    """Run ``frames`` frames through the controller on a simulated clock; returns (controller, done times, knobs per frame)."""
    rng = random.Random(seed)
    controller = AdaptiveController(detector, config)
    t, times, knobs = 0.0, [], []
    for i in range(frames):
        if change_at is not None and i == change_at:
            detector.pixel_ms = new_pixel_ms  # the machine gets busier (or quieter) mid-run
        assert controller.detect_next(), "a file frame was skipped"
        knobs.append((detector.input_size, detector.proposal_count))
        stages = detector.stage_ms(rng)
        t += (sum(stages.values()) + overhead_ms * rng.uniform(0.8, 1.5)) / 1000
        controller.observe(t, stages)
        times.append(t)
    return controller, times, knobs


def default_fps(detector: FakeDetector, seed: int = 0) -> float:
    _, times, _ = simulate(detector, AdaptConfig(target_fps=None), frames=40, seed=seed)
    return 39 / (times[-1] - times[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_it_holds_1_8x_the_default_rate_after_10_frames_without_oscillating(seed):
    target = 1.8 * default_fps(FakeDetector(), seed)
    controller, times, knobs = simulate(FakeDetector(), AdaptConfig(target_fps=target), frames=100, seed=seed)
    blocks = fps_series(times[10:91], 10)
    assert len(blocks) == 8
    assert min(blocks) >= 0.9 * target, f"target {target:.1f}: fps per 10 frames {blocks}"
    status = controller.status()
    assert oscillations(status.history) == 0, status.history
    assert status.changes <= 6
    # one knob per move
    for (s0, p0), (s1, p1) in zip(knobs, knobs[1:], strict=False):
        assert s0 == s1 or p0 == p1, f"two knobs moved at once: {(s0, p0)} → {(s1, p1)}"
    # it chose a setting that is cheaper than the default, not the cheapest there is
    final = status.setting
    assert final != Setting(480, 300) and final != Setting(240, 50)
    assert status.state in ("holding", "ceiling")


def test_it_raises_the_setting_again_when_the_machine_gets_quieter():
    detector = FakeDetector(pixel_ms=190.0)  # busy at first
    target = 12.0
    controller, times, knobs = simulate(detector, AdaptConfig(target_fps=target), frames=160, change_at=60, new_pixel_ms=60.0)
    before, after = knobs[55], knobs[-1]
    assert after[0] * after[0] * after[1] > before[0] * before[0] * before[1], (before, after)
    assert fps_series(times[-30:], 10)[-1] >= 0.9 * target
    assert oscillations(controller.status().history) <= 1


def test_an_unreachable_target_ends_at_the_cheapest_setting_and_says_so():
    controller, times, _ = simulate(FakeDetector(pixel_ms=400.0, roi_ms=0.5), AdaptConfig(target_fps=200.0), frames=60)
    status = controller.status()
    assert status.setting == Setting(240, 50)
    assert status.state == "floor" and "cheapest" in status.reason


def simulate_live(detector: FakeDetector, config: AdaptConfig, frames: int = 80) -> AdaptiveController:
    """A live source: skipped frames cost ~nothing, then one is detected (the worker's calls)."""
    controller = AdaptiveController(detector, config)
    rng, t = random.Random(0), 0.0
    for _ in range(frames):
        shown = 0
        while True:
            shown += 1
            if controller.detect_next():
                break
        stages = detector.stage_ms(rng)
        t += (sum(stages.values()) + 3.0 * shown) / 1000
        controller.observe(t, stages, shown=shown, detected=1)
    return controller


def test_live_sources_skip_frames_only_after_the_other_knobs_are_at_their_floor():
    detector = FakeDetector(pixel_ms=400.0, roi_ms=0.5)
    status = simulate_live(detector, AdaptConfig(target_fps=20.0, live=True, source_fps=30.0)).status()
    assert status.setting.skip > 1
    settings = [Setting(480, 300)] + [h[2] for h in status.history]
    first_skip = next(i for i, s in enumerate(settings) if s.skip > 1)
    assert settings[first_skip - 1] == Setting(240, 50, 1), settings  # skipping came last


def test_a_live_target_only_frame_skip_reaches_is_lowered_to_never_raised_while_too_slow():
    """Only frame skip reaches 25 fps here. The most accurate setting that does was one with skip at a
    large input size; the controller moved towards its size — up, while too slow — then 'lowered
    nothing' every few frames, stuck at ~15 fps and never skipping."""
    detector = FakeDetector(pixel_ms=150.0, roi_ms=0.1)
    config = AdaptConfig(target_fps=25.0, live=True, source_fps=30.0)
    status = simulate_live(detector, config, frames=120).status()
    settings = [Setting(480, 300)] + [h[2] for h in status.history]
    trace = [s.describe() for s in settings]
    for before, after, (_, _, _, why) in zip(settings, settings[1:], status.history, strict=False):
        assert after != before, trace  # every recorded move changes a knob
        if "lower" in why:
            assert after.input_size <= before.input_size and after.proposals <= before.proposals, (why, trace)
    assert status.setting.skip > 1 and status.state != "lowering", (status.reason, trace)


@pytest.mark.parametrize(("base", "measured"), [(128, (96, 128)), (1024, (900, 1024))])
def test_a_grid_measured_between_or_beyond_the_levels_steers_within_it(monkeypatch, base, measured):
    """A model's AP50 grid measured at sizes none of SCALES falls in (a small model at 96 and 128 px,
    a large one at 900 and 1024): the levels were cut to nothing and the first decision crashed."""
    from app.pipeline import adapt

    table = {"scales": list(measured), "proposals": [100, 300], "ap50": [[40.0, 41.0], [50.0, 51.0]]}
    grid = adapt.table_accuracy(table)
    monkeypatch.setattr(adapt, "accuracy_for", lambda detector: (grid, measured, "measured"))
    detector = FakeDetector(input_size=base, pixel_ms=95.0 * (base / 480) ** 2)
    target = 1.5 * default_fps(FakeDetector(input_size=base, pixel_ms=95.0 * (base / 480) ** 2))
    controller, _, knobs = simulate(detector, AdaptConfig(target_fps=target), frames=40)
    status = controller.status()
    assert status.changes and status.state in ("holding", "ceiling", "floor", "lowering"), status.reason
    assert all(size <= base for size, _ in knobs)


def test_turning_the_target_off_restores_the_users_setting():
    detector = FakeDetector()
    controller, _, _ = simulate(detector, AdaptConfig(target_fps=20.0), frames=30)
    assert (detector.input_size, detector.proposal_count) != (480, 300)
    controller.set_target(None)
    assert (detector.input_size, detector.proposal_count) == (480, 300)
    assert controller.status().state == "off"


def test_a_real_run_with_a_target_fps_speeds_up_and_loses_no_frame(tiny_detector):
    """The tiny model on 50 real frames of the sample (768×576) at 1000 proposals, then with a
    target of 3× that rate: the controller lowers the cost, every frame is delivered in order. (A
    warm-up run first and 3×, not 1.5×: a cold or busy first run measured 12.7 fps where the next
    one ran 24, and 1.5× of it was met without a move — it failed so once.)"""
    from app.config import PipelineConfig
    from app.pipeline.pipeline import Pipeline

    config = PipelineConfig(source_kind="video", source=str(SAMPLE), max_frames=50, headless=True)
    tiny_detector.set_proposal_count(1000)
    try:
        Pipeline(config.with_(max_frames=10), tiny_detector).run()  # warm-up: first calls, allocations
        own = Pipeline(config, tiny_detector).run()
        target = round(3 * own.mean_fps, 1)
        seen = []
        stats = Pipeline(config.with_(target_fps=target), tiny_detector,
                         on_result=lambda r, _a: seen.append(r.frame.index)).run()
    finally:
        tiny_detector.set_proposal_count(300)
        tiny_detector.set_input_size(tiny_detector.base_input_size)
    assert seen == list(range(50))  # a file loses no frame, and keeps its order
    status = stats.adapt
    assert status is not None and status.changes >= 1, status
    first = status.history[0][2]  # the first move lowered a cost: proposals or input size, whichever the
    # measured stage times predicted to pay more (on a loaded machine the backbone's share varies)
    assert first.proposals < 1000 or first.input_size < tiny_detector.base_input_size, status.history
    assert first.skip == 1  # never frame skip on a file
    assert oscillations(status.history) <= 1
    summary = MultiStats(streams={"clip": stats}, adapt=stats.adapt).summary()
    assert f"adaptive: target {target:g} fps → " in summary and "\n  fps per 10 frames: " in summary
    print(f"own {own.mean_fps:.1f} fps, target {target}, series {fps_series(stats.done_times, 10)}")


def test_the_cli_writes_the_controllers_log(tmp_path, tiny_weights):
    log = tmp_path / "adapt.json"
    run = subprocess.run([sys.executable, "run.py", "--video", str(SAMPLE), "--headless", "--weights", str(tiny_weights),
                          "--max-frames", "20", "--precision", "fp32", "--channels-last", "off", "--target-fps", "500",
                          "--adapt-log", str(log)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "adaptive: target 500 fps" in run.stderr
    record = json.loads(log.read_text())
    assert record["frames"] == 20 and record["target_fps"] == 500
    assert record["moves"] and all(m["skip"] == 1 for m in record["moves"])  # a file is never skipped
    bad = subprocess.run([sys.executable, "run.py", "--video", str(SAMPLE), "--headless", "--adapt-log", str(log)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--adapt-log needs --target-fps" in bad.stderr


def test_bursts_of_slow_frames_from_other_processes_do_not_make_it_oscillate():
    """A shared machine: one frame in seven takes 2–4× as long (another process ran). The median
    of the recent intervals and the cap after a failed move up keep the setting steady."""

    class Bursty(FakeDetector):
        def stage_ms(self, rng):
            ms = super().stage_ms(rng)
            if rng.random() < 1 / 7:
                ms = {k: v * rng.uniform(2.0, 4.0) for k, v in ms.items()}
            return ms

    for seed in range(3):
        target = 1.8 * default_fps(FakeDetector(), seed)
        controller, times, _ = simulate(Bursty(), AdaptConfig(target_fps=target), frames=120, seed=seed)
        status = controller.status()
        moves = [h[2] for h in status.history]
        trace = [(h[0], h[2].describe()) for h in status.history]
        back_and_forth = [(moves[i - 1], moves[i]) for i in range(2, len(moves)) if moves[i] == moves[i - 2]]
        assert len(back_and_forth) <= 2, trace
        for a, b in back_and_forth:  # never more than one step back and forth
            assert b in controller._neighbours(a), (a, b, trace)
        assert status.changes <= 12, trace  # creeping up one level at a time after an overshoot down
        mean = 100 / (times[110] - times[10])
        # the bursts cost ~25 % of the time whatever the setting: the mean lands near the target
        assert mean >= 0.8 * target, (mean, target)
