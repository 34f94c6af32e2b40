"""Which CPU fast path is fastest here: a short measurement, done once per model, machine and
thread count, and remembered.

``--precision auto`` and ``--memory-format auto`` on a CPU cannot be decided from the CPU's name:
on one 2-core AMD EPYC bf16 autocast made the backbone 4–8× *slower* (no native bf16), on an Intel
Xeon with AMX it was faster; ``channels_last`` helped on both by different amounts. So the probe
times the candidates — whole ``detect`` calls on real frames, interleaved in rounds so that a noisy
neighbour hits every candidate alike — and keeps the fastest, but only when it beats fp32 /
contiguous by ``margin``: auto never picks something that measured slower than fp32.

int8 is a candidate only where its accuracy was checked (``int8_gate``): the benchmark measures
AP50 of fp32 and int8 on labelled frames and records a pass when int8 is within 0.01 of fp32.

The answer is cached as JSON under the user's cache folder (``cache_dir()``), keyed by the machine
(CPU model, cores, torch version, intra-op threads) and the model (name, weights file sha256, input
size); ``refresh=True`` measures again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

PROBE_FILE = "probe.json"
GATE_FILE = "int8_gate.json"
SHIPPED_GATE = Path(__file__).resolve().parent.parent / "assets" / GATE_FILE
INT8_AP50_TOLERANCE = 0.01


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


def cache_dir() -> Path:
    """``$FRCNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/frcnn-video``, else ``~/.cache/frcnn-video``."""
    if os.environ.get("FRCNN_CACHE_DIR"):
        return Path(os.environ["FRCNN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "frcnn-video"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key() -> str:
    return f"{cpu_name()} | {os.cpu_count()} cores | torch {torch.__version__} | {torch.get_num_threads()} threads"


_SHA_CACHE: dict[tuple[str, int, float], str] = {}


def weights_sha256(path: str | Path) -> str | None:
    """sha256 of a weights file (remembered per path, size and mtime); None when it is no file."""
    p = Path(path)
    if not p.is_file():
        return None
    stat = p.stat()
    key = (str(p.resolve()), stat.st_size, stat.st_mtime)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]


def model_identity(detector) -> str:
    """What makes two models the same for speed and accuracy: the builder, the weights (sha256 of
    the file, or their source name) and the architecture."""
    info = detector.info
    sha = weights_sha256(info.source) if info.source else None
    weights = f"sha256:{sha}" if sha else str(info.source)
    arch = json.dumps(info.arch, sort_keys=True, default=str) if info.arch else ""
    return f"{info.name} | {weights} | {arch}"


# ----------------------------------------------------------------------------- the int8 gate
def load_gate(paths: Sequence[Path] | None = None) -> dict[str, dict]:
    """The int8 accuracy verdicts by model identity: the one shipped in assets/, then the user's
    (written by the benchmark), later ones winning."""
    verdicts: dict[str, dict] = {}
    for path in paths if paths is not None else (SHIPPED_GATE, cache_dir() / GATE_FILE):
        try:
            verdicts.update(json.loads(Path(path).read_text()))
        except (OSError, ValueError):
            continue
    return verdicts


def int8_verdict(detector, gate: dict[str, dict] | None = None) -> tuple[bool, str]:
    """(allowed, why): int8 may be chosen by auto only for a model whose int8 AP50 was measured
    within ``INT8_AP50_TOLERANCE`` of its fp32 AP50 on labelled frames."""
    if not getattr(detector, "int8_available", False):
        return False, "int8 is not available here (needs a CPU, torch's x86 engine and calibration frames)"
    record = (gate if gate is not None else load_gate()).get(model_identity(detector))
    if record is None:
        return False, "int8's accuracy was never measured for this model (run `run.py bench --precision fp32,int8`)"
    verdict = (f"AP50 int8 {record['ap50_int8']:.3f} vs fp32 {record['ap50_fp32']:.3f} "
               f"on {record.get('labels', 'labelled frames')}")
    return bool(record.get("ok")), verdict


def record_gate(identity: str, ap50_fp32: float, ap50_int8: float, labels: str, path: Path | None = None) -> dict:
    """Write the int8 verdict of the model ``identity`` (``model_identity(detector)``) into a gate
    file (default: the user's) and return it. It passes when int8's AP50 is at most
    ``INT8_AP50_TOLERANCE`` below fp32's."""
    path = path or cache_dir() / GATE_FILE
    record = {"ap50_fp32": round(float(ap50_fp32), 4), "ap50_int8": round(float(ap50_int8), 4),
              "ok": bool(ap50_int8 >= ap50_fp32 - INT8_AP50_TOLERANCE), "labels": labels,
              "measured_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "machine": machine_key()}
    verdicts = load_gate([path])
    verdicts[identity] = record
    _write_json(path, verdicts)
    return record


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
                     gate: dict[str, dict] | None = None) -> ProbeResult:
    """Measure (or recall) the fastest CPU setup of ``detector`` and apply it.

    Args:
        frames: real uint8 RGB frames ``[H, W, 3]``; the first one warms every candidate up.
        precisions / memory_formats: what to try (channels_last True/False). The first precision
            (fp32 for auto) in the first memory format is the reference that the others must beat.
        rounds: each round times every candidate once per frame, in a shuffled order.
        margin: a candidate replaces the reference only when it is at least this much faster.
        measure: ``fn(detector, candidate, frames) -> ms`` (tests inject a fake clock here).
        cache_file: where answers are kept (default: ``cache_dir()/probe.json``); None answers are
            written there too.
    """
    cache_file = cache_file or cache_dir() / PROBE_FILE
    reference = Candidate(precisions[0], bool(memory_formats[0]))
    candidates = [reference]
    notes = []
    for precision in precisions:
        if precision == "int8":
            allowed, why = int8_verdict(detector, gate)
            if not allowed:
                notes.append(f"int8 not tried: {why}")
                continue
        # int8 quantizes its own input, so the float backbone's layout does not matter there.
        for cl in (False,) if precision == "int8" else memory_formats:
            c = Candidate(precision, bool(cl))
            if c not in candidates:
                candidates.append(c)
    key = " || ".join((machine_key(), model_identity(detector), f"input {detector.input_size}",
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


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict) -> None:
    """Write atomically (a temporary file renamed into place); a cache that cannot be written is
    only logged — the probe's answer still applies to this run."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        tmp.replace(path)
    except OSError as exc:
        log.warning("could not write %s: %s", path, exc)


__all__ = ["BASELINE", "Candidate", "ProbeResult", "cache_dir", "choose_cpu_setup", "int8_verdict", "load_gate",
           "machine_key", "measure_detect", "model_identity", "record_gate", "weights_sha256"]
