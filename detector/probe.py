"""Which CPU fast path is fastest here — measured on the run's own frames while it runs, once per
model, machine, thread count and input size, and remembered.

``--precision auto`` and ``--memory-format auto`` on a CPU cannot be decided from the CPU's name
alone: bf16 autocast made the backbone 4–24× *slower* on CPUs without native bf16 and faster on
ones with it (AVX512-BF16, AMX); ``channels_last`` helped on every x86 CPU measured, by different
amounts; int8 pays where its accuracy gate passed. So a run starts at once with the safe choice
(fp32, ``channels_last`` on x86) and a ``CpuTuner`` rides on the detector's own calls: a few calls
run under each candidate, interleaved round by round so that a noisy neighbour hits every
candidate alike, and their stage times are the measurement — no frame is spent on probing. When
every candidate has its samples the tuner applies the fastest (only when it beats the fp32
reference by ``margin``: auto never keeps something that measured slower than fp32; and int8 or bf16
only when it beats the fastest fp32 layout by the margin too: at a tie, the exact answer) and says so
once (``announcement``).

What is not tried, because it cannot win: bf16 on a CPU without bf16 instructions; int8 without a
passing accuracy verdict for this CPU's quantization scheme (``detector.profiles.int8_verdict``).
A candidate measuring 1.5× the best so far is dropped after its first sample.

The answer is cached as JSON under the user's cache folder (``cache_dir()``), keyed by the machine
(CPU model, cores, torch version, intra-op threads), the model (name, weights file sha256,
architecture), the input size and the candidates — **not** the proposal count: each candidate's
cost is kept as a fixed part (preprocess, backbone, RPN) and a RoI-head part per proposal, so the
choice for any proposal count is computed from it, and a new count costs nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from detector.machine import cpu_flags, cpu_name
from detector.messages import first_line
from detector.profiles import _read_json, _write_json, cache_dir, int8_verdict, model_identity
from detector.quantize import scheme

log = logging.getLogger(__name__)

PROBE_FILE = "probe.json"
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
_ONEDNN_NO_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


@dataclass(frozen=True)
class Candidate:
    precision: str  # fp32 / bf16 / int8
    channels_last: bool

    @property
    def name(self) -> str:
        return f"{self.precision}{'+channels_last' if self.channels_last else ''}"

    @classmethod
    def parse(cls, name: str) -> Candidate:
        precision, _, layout = name.partition("+")
        return cls(precision, layout == "channels_last")


BASELINE = Candidate("fp32", False)


@dataclass(frozen=True)
class Cost:
    """What one frame costs under a candidate: ``fixed`` ms (preprocess, backbone, RPN) plus
    ``per_proposal`` ms for each proposal the RoI head classifies."""

    fixed: float
    per_proposal: float

    def at(self, proposals: int) -> float:
        return self.fixed + self.per_proposal * proposals


@dataclass
class ProbeResult:
    """What the tuner chose and why.

    Attributes:
        choice: the fastest candidate at ``proposals`` (the fp32 reference unless another beat it by the margin).
        ms: predicted ms per frame of each candidate measured, at ``proposals``.
        source: "measured" on this run's frames, or "cache" (then ``measured_at`` says when).
        reason: one line for the user.
    """

    choice: Candidate
    ms: dict[str, float] = field(default_factory=dict)
    source: str = "measured"
    measured_at: str = ""
    reason: str = ""
    key: str = ""
    proposals: int = 0


# instruction-set caps a user (or a test of another CPU) may set: the same CPU then runs other kernels
ISA_CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")


def machine_key() -> str:
    caps = "".join(f" | {name}={os.environ[name]}" for name in ISA_CAPS if os.environ.get(name))
    return f"{cpu_name()} | {os.cpu_count()} cores | torch {torch.__version__} | {torch.get_num_threads()} threads{caps}"


def native_bf16(flags: set[str] | None = None) -> bool:
    """Whether the CPU has bf16 instructions (AVX512-BF16 or AMX-BF16), and — for this machine —
    oneDNN is not capped below them (``ONEDNN_MAX_CPU_ISA``); without them bf16 autocast emulates
    in fp32 and is several times slower, so it is not worth a single timed frame."""
    if flags is None and os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in _ONEDNN_NO_BF16:
        return False
    return bool((cpu_flags() if flags is None else flags) & set(BF16_FLAGS))


def safe_start(device_type: str = "cpu") -> Candidate:
    """What a CPU run starts with before anything is measured: fp32, channels_last on x86 (faster
    on every x86 CPU measured, Intel and AMD: 1.1–1.6×), contiguous elsewhere."""
    import platform

    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
    return Candidate("fp32", device_type == "cpu" and x86)


def candidates_for(detector, precisions: Sequence[str], memory_formats: Sequence[bool], *,
                   profiles: dict[str, dict] | None = None, flags: set[str] | None = None
                   ) -> tuple[list[Candidate], list[str]]:
    """The candidates worth timing on this CPU, the reference first, and one note per one left out."""
    candidates: list[Candidate] = []
    notes: list[str] = []
    for i, precision in enumerate(precisions):
        if precision == "bf16" and i and not native_bf16(flags):
            notes.append("bf16 not tried: this CPU has no bf16 instructions (avx512_bf16/amx_bf16)")
            continue
        if precision == "int8" and i:
            allowed, why = int8_verdict(detector, profiles)
            if not allowed:
                notes.append(f"int8 not tried: {why}")
                continue
        # int8 quantizes its own input, so the float backbone's layout does not matter there.
        for cl in (False,) if precision == "int8" else memory_formats:
            c = Candidate(precision, bool(cl))
            if c not in candidates:
                candidates.append(c)
    return candidates, notes


def cache_key(detector, candidates: Sequence[Candidate]) -> str:
    """What an answer holds for: the machine (ISA caps included), the model, the input size, the
    candidates — and for int8 its scheme and the layers it keeps in float (they change its speed)."""
    parts = [machine_key(), model_identity(detector), f"input {detector.input_size}",
             "candidates " + ",".join(c.name for c in candidates)]
    if any(c.precision == "int8" for c in candidates):
        floats = ",".join(getattr(detector, "int8_float_layers", ())) or "none"
        parts.append(f"int8 {scheme()} float {floats}")
    return " || ".join(parts)


def choose(costs: dict[Candidate, Cost], reference: Candidate, proposals: int, margin: float) -> Candidate:
    """The cheapest candidate at ``proposals``, each step only by ``margin``: an exact one (fp32, either
    layout) replaces ``reference`` when it beats it by the margin, and a lossy one (bf16, int8) replaces
    that when it beats it by the margin too — at a tie, the exact answer."""
    def at(c: Candidate) -> float:
        return costs[c].at(proposals)

    choice = reference if reference in costs else min(costs, key=at)
    for group in ([c for c in costs if c.precision == "fp32"], [c for c in costs if c.precision != "fp32"]):
        best = min(group, key=at, default=None)
        if best is not None and at(best) <= at(choice) * (1.0 - margin):
            choice = best
    return choice


class CpuTuner:
    """Measures the candidates on the detector's own calls and keeps the fastest.

    The detector calls ``before(detector)`` at the start of each ``detect`` (under its run lock; it
    returns the candidate that call runs under, or None when nothing is measured) and
    ``after(candidate, times, proposals, n)`` at its end. Nothing here waits: int8's quantization
    (seconds) runs on a thread of its own, and the candidates are timed once it is ready.

    Args:
        detector: a ``detector.detector.Detector`` on the CPU.
        candidates: what to time, the reference (fp32 contiguous for auto) first.
        start: the setup used until the choice is made (``safe_start()``).
        notes: lines about candidates left out, appended to the reason.
        cache_file: where answers are kept (default ``cache_dir()/probe.json``); refresh: ignore it.
        samples: timed calls per candidate (after one warm-up call each).
        margin: a candidate replaces the reference only when at least this much faster (a lossy one,
            int8 or bf16, the fastest fp32 layout too).
        max_calls: calls after which the tuner decides on what it has.
        allowed: ``fn(candidate, proposals)`` — whether a candidate may run at a proposal count
            (int8's accuracy verdict is kept per count); default: every candidate at every count.
    """

    def __init__(self, detector, candidates: Sequence[Candidate], *, start: Candidate | None = None,
                 notes: Sequence[str] = (), cache_file: Path | None = None, refresh: bool = False,
                 samples: int = 3, margin: float = 0.05, max_calls: int = 60,
                 allowed: Callable[[Candidate, int], bool] | None = None) -> None:
        if not candidates:
            raise ValueError("the tuner needs at least one candidate")
        self.candidates = list(candidates)
        self.reference = self.candidates[0]
        self.start = start or self.reference
        self.notes = list(notes)
        self.cache_file = cache_file or cache_dir() / PROBE_FILE
        self.samples, self.margin, self.max_calls = samples, margin, max_calls
        self.allowed = allowed or (lambda candidate, proposals: True)
        self.key = cache_key(detector, self.candidates)
        self._detector = detector
        self.result: ProbeResult | None = None
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._costs: dict[Candidate, Cost] = {}
        self._measured_at = ""
        self._announced: Candidate | None = None  # the choice the last announcement named
        self._calls = 0
        self._input_size = detector.input_size
        self._int8_ready = threading.Event()
        self._samples: dict[Candidate, list[tuple[float, float, float]]] = {}  # (fixed ms, roi ms, proposals)
        self._queue: list[Candidate] = []
        self._round = 0
        self._queue_round = 0  # the round of the calls now queued (0: warm-up, not timed)
        cached = None if refresh else _read_json(self.cache_file).get(self.key)
        if cached:
            try:
                self._costs = {Candidate.parse(n): Cost(float(v["fixed"]), float(v["per_proposal"]))
                               for n, v in cached["costs"].items()}
                self._measured_at = str(cached.get("measured_at", ""))
            except (KeyError, TypeError, ValueError, AttributeError):
                self._costs = {}  # an entry of an older format: measure again
        self._int8_started = False
        self._pending: Candidate | None = None  # a cached int8 choice waiting for its quantized model
        if self._costs:
            self._decide(detector.proposal_count, source="cache")
            self._apply(detector, self.result.choice)
        else:
            self._apply(detector, self.start)

    # ----------------------------------------------------------------- the detector's hooks
    def before(self, detector) -> Candidate | None:
        """Set the knobs for this call (under the detector's run lock); the candidate measured, or None."""
        if self.done.is_set():
            if self.result is not None and detector.proposal_count != self.result.proposals:
                self._decide(detector.proposal_count, source=self.result.source)  # from the costs: no measurement
                self._apply(detector, self.result.choice)
            elif self._pending is not None and self._int8_ready.is_set():
                if detector._int8 is None:  # quantizing failed (the reason is in notes): choose again without it
                    self._pending = None
                    self._costs = {c: v for c, v in self._costs.items() if c.precision != "int8"}
                    self._decide(detector.proposal_count, source=self.result.source)
                self._apply(detector, self._pending or self.result.choice)
            return None
        if detector.input_size != self._input_size:  # the controller moved: what was timed no longer compares
            self._input_size = detector.input_size
            self._samples.clear()
            self._queue.clear()
            self._round = self._queue_round = 0
        if not self._int8_ready.is_set():
            return None  # quantizing on its own thread: timing now would charge its CPU to the others
        self._calls += 1
        if not self._queue:
            self._next_round()
        if not self._queue or self._calls > self.max_calls:
            self._finish(detector)
            return None
        candidate = self._queue.pop(0)
        self._apply(detector, candidate)
        return candidate

    def after(self, candidate: Candidate | None, times, proposals: Sequence[int], n: int) -> None:
        """Record one call's stage times (``times``: ``StageTimes`` of the whole batch of ``n`` frames)."""
        if not self._int8_started and (not self.done.is_set() or self._pending is not None):
            self._int8_started = True  # after the first call: the first frame never waits for quantizing
            self._prepare_int8()
        if candidate is None or self.done.is_set() or self._queue_round == 0 or n <= 0:  # round 0 warms up
            return
        fixed = (times.preprocess + times.backbone + times.rpn) / n
        kept = float(np.mean(proposals)) if len(proposals) else 0.0
        self._samples.setdefault(candidate, []).append((fixed, times.roi_heads / n, kept))

    # ----------------------------------------------------------------- what the user sees
    def announcement(self) -> str | None:
        """The line saying what was chosen, once per choice (None before it, and after it was taken;
        a new proposal count that changes the choice is said again). A cached int8 choice is said when
        it runs, once its model is quantized: before that the detector still runs the safe start, and a
        window showing the precision when it reads this line would show that one."""
        with self._lock:
            if self.result is None or self._announced == self.result.choice or self._pending == self.result.choice:
                return None
            self._announced = self.result.choice
            return self.result.reason

    def status(self) -> str:
        """One line for a summary: the choice, or that it was still measuring (or still quantizing)."""
        if self.result is not None and self._pending == self.result.choice:
            ran = Candidate(self._detector.precision, self._detector.channels_last).name
            return f"{self.result.reason}; the run ended before int8 was built: it ran {ran}"
        if self.result is not None:
            return self.result.reason
        return (f"auto → {self.start.name} (still measuring {', '.join(c.name for c in self.candidates)} "
                f"when the run ended; nothing cached)")

    def measure_now(self, detector, frames: Sequence[np.ndarray]) -> ProbeResult:
        """Run ``detect`` over ``frames`` (cycled) until the choice is made — for benchmarks and
        tests that want the answer before they start timing."""
        i = 0
        while not self.done.is_set():
            if self._int8_started:
                self._int8_ready.wait()
            detector.detect(frames[i % len(frames)], timing=False)
            i += 1
        assert self.result is not None
        return self.result

    # ----------------------------------------------------------------- inside
    def _prepare_int8(self) -> None:
        """Quantize on a thread of its own, after the first call: the first frame never waits, and
        the calls meanwhile wait only while torch.fx traces (the run lock; ~0.5 s on 2 cores)."""
        detector = self._detector
        if not any(c.precision == "int8" for c in self.candidates):
            self._int8_ready.set()
            return

        def work() -> None:
            try:
                detector.prepare_int8()
            except Exception as exc:  # noqa: BLE001 — any failure leaves int8 out, with the reason
                self.candidates = [c for c in self.candidates if c.precision != "int8"]
                self.notes.append(f"int8 not tried: {first_line(exc)}")
            finally:
                self._int8_ready.set()

        threading.Thread(target=work, name="int8-quantize", daemon=True).start()

    def _next_round(self) -> None:
        """Queue the next round: round 0 warms every candidate up (oneDNN primitives, first
        allocations), then ``samples`` timed rounds; a candidate 1.5× the best so far leaves."""
        if self._round > self.samples:
            return
        alive = self.candidates
        medians = {c: float(np.median([s[0] + s[1] for s in self._samples[c]])) for c in alive if self._samples.get(c)}
        if medians:
            best = min(medians.values())
            alive = [c for c in alive if c == self.reference or medians.get(c, 0.0) <= 1.5 * best]
            self.candidates = alive
        order = np.random.default_rng(self._round).permutation(len(alive))
        self._queue = [alive[i] for i in order]
        self._queue_round = self._round
        self._round += 1

    def _finish(self, detector) -> None:
        costs = {}
        for c, rows in self._samples.items():
            if c not in self.candidates or not rows:
                continue
            fixed = float(np.median([r[0] for r in rows]))
            per = float(np.median([r[1] / r[2] if r[2] else 0.0 for r in rows]))
            costs[c] = Cost(fixed, per)
        if not costs:
            costs = {self.start: Cost(0.0, 0.0)}
        self._costs = costs
        self._measured_at = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._decide(detector.proposal_count, source="measured")
        entries = _read_json(self.cache_file)
        entries[self.key] = {"costs": {c.name: {"fixed": round(v.fixed, 3), "per_proposal": round(v.per_proposal, 5)}
                                       for c, v in costs.items()},
                             "measured_at": self._measured_at}
        _write_json(self.cache_file, entries)
        self._apply(detector, self.result.choice)

    def _decide(self, proposals: int, source: str) -> None:
        reference = self.reference if self.reference in self._costs else next(iter(self._costs))
        costs = {c: v for c, v in self._costs.items() if c == reference or self.allowed(c, proposals)}
        choice = choose(costs, reference, proposals, self.margin)
        ms = {c.name: costs[c].at(proposals) for c in costs}
        listed = ", ".join(f"{n} {v:.0f}" for n, v in sorted(ms.items(), key=lambda kv: kv[1]))
        when = "measured on this run's frames" if source == "measured" else f"measured {self._measured_at}, cached"
        left_out = [c.name for c in self._costs if c not in costs]
        reason = (f"auto → {choice.name} (ms per frame at {proposals} proposals: {listed}; {when})"
                  + (f"; {', '.join(left_out)} not used at {proposals} proposals (its accuracy verdict)" if left_out else "")
                  + "".join(f"; {n}" for n in self.notes))
        with self._lock:
            self.result = ProbeResult(choice, ms, source, self._measured_at, reason, self.key, proposals)
        self.done.set()

    def _apply(self, detector, candidate: Candidate) -> None:
        """Run ``candidate`` from the next call on; int8 waits (``safe_start`` meanwhile) until quantized."""
        if candidate.precision == "int8" and not self._int8_ready.is_set() and detector._int8 is None:
            self._pending = candidate
            candidate = self.start if self.start.precision != "int8" else BASELINE
        elif candidate == self._pending or candidate.precision != "int8":
            self._pending = None
        detector.set_cpu_setup(candidate.precision, candidate.channels_last)


def tune_cpu(detector, *, precisions: Sequence[str] = ("fp32", "bf16", "int8"),
             memory_formats: Sequence[bool] = (False, True), refresh: bool = False,
             cache_file: Path | None = None, profiles: dict[str, dict] | None = None,
             flags: set[str] | None = None, **kwargs) -> CpuTuner:
    """Attach a ``CpuTuner`` for ``precisions`` × ``memory_formats`` to ``detector`` and return it.
    The run starts at once: with the cached choice, else with ``safe_start()`` (when it is a candidate)."""
    candidates, notes = candidates_for(detector, precisions, memory_formats, profiles=profiles, flags=flags)
    start = safe_start(detector.device.type)

    def allowed(candidate: Candidate, proposals: int) -> bool:  # int8's verdict holds per proposal count
        return candidate.precision != "int8" or int8_verdict(detector, profiles, proposals)[0]

    tuner = CpuTuner(detector, candidates, start=start if start in candidates else candidates[0], notes=notes,
                     cache_file=cache_file, refresh=refresh, allowed=allowed, **kwargs)
    detector.tuner = tuner
    return tuner


__all__ = ["BASELINE", "Candidate", "Cost", "CpuTuner", "ProbeResult", "candidates_for", "choose", "machine_key",
           "native_bf16", "safe_start", "tune_cpu"]
