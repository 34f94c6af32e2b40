"""The CPU probe: auto never picks a candidate that measured slower than fp32, remembers its answer,
and offers int8 only where its accuracy was checked. The timing is injected, so each rule can fail."""

from __future__ import annotations

import json

import pytest

from detector import profiles
from detector.probe import BASELINE, Candidate, choose_cpu_setup


class FakeClock:
    """``measure`` for the probe: fixed ms per candidate, and a log of what was measured."""

    def __init__(self, ms: dict[str, float]) -> None:
        self.ms = ms
        self.calls: list[str] = []

    def __call__(self, detector, candidate: Candidate, frames) -> float:
        self.calls.append(candidate.name)
        detector.set_precision(candidate.precision)
        return self.ms[candidate.name]


@pytest.fixture()
def cache_file(tmp_path):
    return tmp_path / "probe.json"


@pytest.fixture()
def detector(tiny_detector):
    yield tiny_detector
    tiny_detector.set_precision("fp32")
    tiny_detector.set_memory_format("contiguous")


def _choose(detector, clock, cache_file, **kwargs):
    kwargs.setdefault("precisions", ("fp32", "bf16"))
    return choose_cpu_setup(detector, [None], measure=clock, cache_file=cache_file, profiles={}, **kwargs)


def test_auto_never_picks_a_precision_slower_than_fp32(detector, cache_file):
    # bf16 4-8× slower, as on a CPU without native bf16; channels_last a little slower too
    clock = FakeClock({"fp32": 100.0, "fp32+channels_last": 104.0, "bf16": 600.0, "bf16+channels_last": 420.0})
    result = _choose(detector, clock, cache_file)
    assert result.choice == BASELINE
    assert detector.precision == "fp32" and not detector.channels_last
    assert set(clock.calls) == {"fp32", "fp32+channels_last", "bf16", "bf16+channels_last"}


def test_auto_picks_what_measured_faster(detector, cache_file):
    clock = FakeClock({"fp32": 100.0, "fp32+channels_last": 70.0, "bf16": 90.0, "bf16+channels_last": 60.0})
    result = _choose(detector, clock, cache_file)
    assert result.choice == Candidate("bf16", True)
    assert detector.precision == "bf16" and detector.channels_last
    assert "bf16+channels_last" in result.reason and "measured now" in result.reason


def test_a_gain_inside_the_margin_keeps_fp32(detector, cache_file):
    clock = FakeClock({"fp32": 100.0, "fp32+channels_last": 98.0, "bf16": 97.0, "bf16+channels_last": 99.0})
    assert _choose(detector, clock, cache_file, margin=0.05).choice == BASELINE


def test_the_answer_is_cached_and_refresh_measures_again(detector, cache_file):
    clock = FakeClock({"fp32": 100.0, "fp32+channels_last": 70.0, "bf16": 300.0, "bf16+channels_last": 200.0})
    first = _choose(detector, clock, cache_file)
    measured = len(clock.calls)
    assert measured and first.source == "measured"
    detector.set_memory_format("contiguous")
    second = _choose(detector, clock, cache_file)
    assert len(clock.calls) == measured, "the cached answer must not be measured again"
    assert second.source == "cache" and second.choice == first.choice and detector.channels_last
    assert json.loads(cache_file.read_text())  # a JSON file the user can read and delete
    _choose(detector, clock, cache_file, refresh=True)
    assert len(clock.calls) > measured


def test_int8_is_tried_only_when_its_accuracy_gate_passed(detector, cache_file, monkeypatch):
    clock = FakeClock({"fp32": 100.0, "fp32+channels_last": 100.0, "int8": 20.0})
    monkeypatch.setattr(type(detector), "int8_available", property(lambda self: True))
    monkeypatch.setattr(type(detector), "set_precision", lambda self, p: None)
    identity = profiles.model_identity(detector)

    no_record = choose_cpu_setup(detector, [None], precisions=("fp32", "int8"), measure=clock, cache_file=cache_file,
                                 profiles={})
    assert "int8" not in clock.calls and no_record.choice == BASELINE
    assert "never measured" in no_record.reason

    failed = {identity: {"int8": profiles.int8_record(0.66, 0.62, "labels")}}
    choose_cpu_setup(detector, [None], precisions=("fp32", "int8"), measure=clock, cache_file=cache_file, profiles=failed)
    assert "int8" not in clock.calls

    passed = {identity: {"int8": profiles.int8_record(0.66, 0.655, "labels")}}
    result = choose_cpu_setup(detector, [None], precisions=("fp32", "int8"), measure=clock, cache_file=cache_file,
                              profiles=passed)
    assert "int8" in clock.calls and result.choice == Candidate("int8", False)


def test_the_int8_verdict_passes_within_the_tolerance_and_is_kept_per_model(tmp_path):
    path = tmp_path / "profiles.json"
    assert profiles.record_profile("m", "int8", profiles.int8_record(0.660, 0.652, "labels"), path)["ok"] is True
    assert profiles.record_profile("n", "int8", profiles.int8_record(0.660, 0.645, "labels"), path)["ok"] is False
    profiles.record_profile("m", "accuracy", {"scales": [240, 480]}, path)
    loaded = profiles.load_profiles([path])
    assert set(loaded) == {"m", "n"} and set(loaded["m"]) == {"int8", "accuracy"}


def test_the_real_probe_measures_and_keeps_fp32_unless_faster(detector, cache_file, frame_rgb):
    result = choose_cpu_setup(detector, [frame_rgb[:240, :320]], precisions=("fp32", "bf16"), rounds=1,
                              cache_file=cache_file, profiles={})
    assert set(result.ms) == {"fp32", "fp32+channels_last", "bf16", "bf16+channels_last"}
    assert result.ms[result.choice.name] <= result.ms["fp32"]


def test_an_int8_verdict_holds_only_for_the_quantization_scheme_it_was_measured_with(detector, monkeypatch):
    """A verdict measured with 8-bit activations (a VNNI CPU) says nothing about a CPU that
    quantizes to 7 bits, nor does one from before the scheme was recorded."""
    import detector.quantize as quantize

    monkeypatch.setattr(type(detector), "int8_available", property(lambda self: True))
    identity = profiles.model_identity(detector)
    record = profiles.int8_record(0.66, 0.66, "labels", scheme="minmax-u8")
    monkeypatch.setattr(quantize, "scheme", lambda vnni=None: "minmax-u8")
    assert profiles.int8_verdict(detector, {identity: {"int8": record}})[0] is True
    monkeypatch.setattr(quantize, "scheme", lambda vnni=None: "minmax-u7")
    allowed, why = profiles.int8_verdict(detector, {identity: {"int8": record}})
    assert not allowed and "minmax-u8" in why and "minmax-u7" in why
    old = {k: v for k, v in record.items() if k != "scheme"}
    allowed, why = profiles.int8_verdict(detector, {identity: {"int8": old}})
    assert not allowed and "histogram-u7" in why
