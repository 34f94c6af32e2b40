"""Which CPU fast path is fastest here: a short measurement, done once per model, machine and
thread count, and remembered.

``--precision auto`` and ``--memory-format auto`` on a CPU cannot be decided from the CPU's name:
on one 2-core AMD EPYC bf16 autocast made the backbone 4–8× *slower* (no native bf16), on an Intel
Xeon with AMX it was faster; ``channels_last`` helped on both by different amounts. So the probe
times the candidates — whole ``detect`` calls on real frames, interleaved in rounds so that a noisy
neighbour hits every candidate alike — and keeps the fastest, but only when it beats fp32 /
contiguous by ``margin``: auto never picks something that measured slower than fp32.

int8 is a candidate only where its accuracy was checked (``detector.profiles.int8_verdict``): the
benchmark measures AP50 of fp32 and int8 on labelled frames and records a pass when int8 is within
0.01 of fp32.

The answer is cached as JSON under the user's cache folder (``cache_dir()``), keyed by the machine
(CPU model, cores, torch version, intra-op threads) and the model (name, weights file sha256, input
size, proposal count); ``refresh=True`` measures again.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from detector.machine import cpu_name
from detector.profiles import _read_json, _write_json, cache_dir, int8_verdict, model_identity

log = logging.getLogger(__name__)

PROBE_FILE = "probe.json"


@dataclass(frozen=True)
class Candidate:
    precision: str  # fp32 / bf16 / int8
    channels_last: bool

    @property
    def name(self) -> str:
        return f"{self.precision}{'+channels_last' if self.channels_last else ''}"


BASELINE = Candidate("fp32", False)


@dataclass
class ProbeResult:
    """What the probe chose and why.

    Attributes:
        choice: the fastest candidate (the reference, fp32 contiguous for auto, unless another one
            beat it by the margin).
        ms: median ms per ``detect`` call of each candidate measured.
        source: "measured" now, or "cache" (then ``measured_at`` says when).
        reason: one line for the user.
    """

    choice: Candidate
    ms: dict[str, float] = field(default_factory=dict)
    source: str = "measured"
    measured_at: str = ""
    reason: str = ""
    key: str = ""


Measure = Callable[[object, Candidate, Sequence[np.ndarray]], float]


def machine_key() -> str:
    return f"{cpu_name()} | {os.cpu_count()} cores | torch {torch.__version__} | {torch.get_num_threads()} threads"


# ----------------------------------------------------------------------------- the probe
def measure_detect(detector, candidate: Candidate, frames: Sequence[np.ndarray]) -> float:
    """ms of one ``detect`` call per frame under ``candidate`` (median over ``frames``)."""
    detector.set_precision(candidate.precision)
    detector.set_memory_format("channels_last" if candidate.channels_last else "contiguous")
    times = []
    for frame in frames:
        start = time.perf_counter()
        detector.detect(frame, timing=False)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def choose_cpu_setup(detector, frames: Sequence[np.ndarray], *, precisions: Sequence[str] = ("fp32", "bf16", "int8"),
                     memory_formats: Sequence[bool] = (False, True), rounds: int = 3, margin: float = 0.05,
                     measure: Measure = measure_detect, cache_file: Path | None = None, refresh: bool = False,
                     profiles: dict[str, dict] | None = None) -> ProbeResult:
    """Measure (or recall) the fastest CPU setup of ``detector`` and apply it.

    Args:
        frames: real uint8 RGB frames ``[H, W, 3]``; the first one warms every candidate up.
        precisions / memory_formats: what to try (channels_last True/False). The first precision
            (fp32 for auto) in the first memory format is the reference that the others must beat.
        rounds: each round times every candidate once per frame, in a shuffled order.
        margin: a candidate replaces the reference only when it is at least this much faster.
        measure: ``fn(detector, candidate, frames) -> ms`` (tests inject a fake clock here).
        cache_file: where answers are kept (default: ``cache_dir()/probe.json``).
        profiles: the model profiles holding the int8 verdicts (default: ``detector.profiles.load_profiles()``).
    """
    cache_file = cache_file or cache_dir() / PROBE_FILE
    reference = Candidate(precisions[0], bool(memory_formats[0]))
    candidates = [reference]
    notes = []
    for precision in precisions:
        if precision == "int8":
            allowed, why = int8_verdict(detector, profiles)
            if not allowed:
                notes.append(f"int8 not tried: {why}")
                continue
        # int8 quantizes its own input, so the float backbone's layout does not matter there.
        for cl in (False,) if precision == "int8" else memory_formats:
            c = Candidate(precision, bool(cl))
            if c not in candidates:
                candidates.append(c)
    # The proposal count is in the key: it sets the RoI head's share of a frame, and precisions
    # speed the backbone and the head by different factors.
    key = " || ".join((machine_key(), model_identity(detector), f"input {detector.input_size}",
                       f"proposals {detector.proposal_count}",
                       "candidates " + ",".join(c.name for c in candidates)))
    cached = {} if refresh else _read_json(cache_file).get(key)
    if cached:
        choice = Candidate(cached["precision"], bool(cached["channels_last"]))
        result = ProbeResult(choice, dict(cached["ms"]), "cache", cached.get("measured_at", ""), key=key)
    else:
        result = _measure(detector, candidates, frames, rounds, margin, measure, reference)
        result.key = key
        entries = _read_json(cache_file)
        entries[key] = {"precision": result.choice.precision, "channels_last": result.choice.channels_last,
                        "ms": result.ms, "measured_at": result.measured_at}
        _write_json(cache_file, entries)
    detector.set_precision(result.choice.precision)
    detector.set_memory_format("channels_last" if result.choice.channels_last else "contiguous")
    ms = ", ".join(f"{name} {v:.0f}" for name, v in sorted(result.ms.items(), key=lambda kv: kv[1]))
    when = "measured now" if result.source == "measured" else f"measured {result.measured_at}, cached"
    result.reason = f"auto → {result.choice.name} (ms per frame: {ms}; {when})" + "".join(f"; {n}" for n in notes)
    return result


def _measure(detector, candidates: list[Candidate], frames: Sequence[np.ndarray], rounds: int, margin: float,
             measure: Measure, reference: Candidate) -> ProbeResult:
    frames = list(frames)
    if not frames:
        raise ValueError("the probe needs at least one frame")
    samples: dict[Candidate, list[float]] = {c: [] for c in candidates}
    rng = np.random.default_rng(0)
    for c in candidates:  # warm-up: first calls pay for allocation, oneDNN primitive creation, int8 quantizing
        measure(detector, c, frames[:1])
    for _ in range(max(1, rounds)):
        for i in rng.permutation(len(candidates)):
            samples[candidates[i]].append(measure(detector, candidates[i], frames))
    ms = {c.name: float(np.median(v)) for c, v in samples.items()}
    best = min(candidates, key=lambda c: ms[c.name])
    choice = best if ms[best.name] <= ms[reference.name] * (1.0 - margin) else reference
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return ProbeResult(choice, ms, "measured", stamp)


__all__ = ["BASELINE", "Candidate", "ProbeResult", "choose_cpu_setup", "machine_key", "measure_detect"]
