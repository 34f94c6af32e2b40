"""Model profiles: what the benchmark measured about a model's accuracy, kept for the run-time
choices that need it.

* ``int8``: AP50 of fp32 and int8 on labelled frames. ``--precision auto`` may pick int8 only
  for a model whose int8 AP50 is at most ``INT8_AP50_TOLERANCE`` below fp32's, measured with the
  quantization scheme this CPU uses (8-bit weights with VNNI, 7-bit without).
* ``accuracy``: AP50 over a grid of input sizes × proposal counts. The adaptive controller
  (``app.pipeline.adapt``) ranks its settings by it ("the most accurate setting that holds the target").

A profile belongs to one model identity: the builder, the weights file's sha256 and the
architecture, so a retrained or replaced checkpoint starts without one until it is measured again
(``run.py bench --precision fp32,int8 --scales ... --profile-file assets/model_profiles.json``).
Profiles are read from ``assets/model_profiles.json`` (shipped with the bundled model) and from
the user's cache folder (written by every benchmark run with labels); later ones win.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

PROFILE_FILE = "model_profiles.json"
SHIPPED_PROFILES = Path(__file__).resolve().parent.parent / "assets" / PROFILE_FILE
INT8_AP50_TOLERANCE = 0.01


def cache_dir() -> Path:
    """``$FRCNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/frcnn-video``, else ``~/.cache/frcnn-video``."""
    if os.environ.get("FRCNN_CACHE_DIR"):
        return Path(os.environ["FRCNN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "frcnn-video"


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
    source, arch = getattr(info, "source", ""), getattr(info, "arch", None)
    sha = weights_sha256(source) if source else None
    weights = f"sha256:{sha}" if sha else str(source)
    arch = json.dumps(arch, sort_keys=True, default=str) if arch else ""
    return f"{getattr(info, 'name', type(detector).__name__)} | {weights} | {arch}"


def load_profiles(paths: Sequence[Path] | None = None) -> dict[str, dict]:
    """Profiles by model identity: the shipped file, then the user's; entries of later files win."""
    profiles: dict[str, dict] = {}
    for path in paths if paths is not None else (SHIPPED_PROFILES, cache_dir() / PROFILE_FILE):
        for identity, profile in _read_json(Path(path)).items():
            if isinstance(profile, dict):
                profiles.setdefault(identity, {}).update(profile)
    return profiles


def profile_of(detector, profiles: dict[str, dict] | None = None) -> dict:
    return (profiles if profiles is not None else load_profiles()).get(model_identity(detector), {})


def record_profile(identity: str, key: str, value: dict, path: Path | None = None) -> dict:
    """Set ``profiles[identity][key] = value`` (stamped with the date) in a profile file (default:
    the user's) and return the value written."""
    path = path or cache_dir() / PROFILE_FILE
    value = {**value, "measured_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    profiles = _read_json(path)
    profiles.setdefault(identity, {})[key] = value
    _write_json(path, profiles)
    return value


def _passes(ap50_fp32: float, ap50_int8: float) -> bool:
    return bool(round(ap50_int8, 4) >= round(ap50_fp32, 4) - INT8_AP50_TOLERANCE)


def int8_record(ap50_fp32: float, ap50_int8: float, labels: str, scheme: str | None = None,
                by_proposals: dict[int, tuple[float, float]] | None = None, float_layers: Sequence[str] = ()) -> dict:
    """The int8 verdict: it passes when int8's AP50 is at most ``INT8_AP50_TOLERANCE`` below fp32's
    (a better int8 is no reason to refuse it). ``scheme``: how int8 was quantized (default: as this
    machine quantizes, ``detector.quantize.scheme()``); a verdict holds only for the same scheme.
    ``by_proposals``: {proposal count: (AP50 fp32, AP50 int8)} — then each count has its own
    verdict ("ok_at") and ``ok`` (the worst count, given as ``ap50_fp32``/``ap50_int8``) says
    whether every count passed. ``float_layers``: the backbone's layers int8 left in float."""
    if scheme is None:
        from detector.quantize import scheme as this_scheme

        scheme = this_scheme()
    record = {"ap50_fp32": round(float(ap50_fp32), 4), "ap50_int8": round(float(ap50_int8), 4),
              "ok": _passes(ap50_fp32, ap50_int8), "tolerance": INT8_AP50_TOLERANCE,
              "labels": labels, "scheme": scheme, "machine": _machine(scheme)}
    if float_layers:
        record["float_layers"] = list(float_layers)
    if by_proposals:
        record["by_proposals"] = {str(n): [round(float(f), 4), round(float(i), 4)]
                                  for n, (f, i) in sorted(by_proposals.items())}
        record["ok_at"] = {str(n): _passes(f, i) for n, (f, i) in sorted(by_proposals.items())}
    return record


def _machine(scheme: str) -> str:
    """Where a verdict was measured: the CPU, its core count, torch's version, and a forced scheme."""
    import torch

    from detector.machine import cpu_flags, cpu_name
    from detector.quantize import SCHEME_ENV

    flags = cpu_flags()  # what decides int8's kernels: a CPU's name ("AMD EPYC") often does not say
    isa = ("AMX" if "amx_int8" in flags else "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX-VNNI"
           if "avx_vnni" in flags else "AVX2, no VNNI" if "avx2" in flags else "")
    forced = f", {scheme} forced with {SCHEME_ENV}" if os.environ.get(SCHEME_ENV) else ""
    return f"{os.cpu_count()}-core {cpu_name()}{f' ({isa})' if isa else ''}, torch {torch.__version__.split('+')[0]}{forced}"


def int8_passes_at(record: dict, proposals: int | None) -> tuple[bool, str]:
    """Whether ``record`` lets int8 run at ``proposals``: where the verdict was measured per
    proposal count, the measured counts on either side of it must both pass (beyond the measured
    range, the nearest one); otherwise the one verdict. Returns (passes, which figures decided)."""
    at = {int(n): ok for n, ok in (record.get("ok_at") or {}).items()}
    if not at or proposals is None:
        return bool(record.get("ok")), (f"AP50 int8 {record['ap50_int8']:.3f} vs fp32 {record['ap50_fp32']:.3f} "
                                        f"on {record.get('labels', 'labelled frames')}")
    counts = sorted(at)
    below = [n for n in counts if n <= proposals]
    above = [n for n in counts if n >= proposals]
    near = sorted({*(below[-1:] or counts[:1]), *(above[:1] or counts[-1:])})
    ap = record["by_proposals"]
    figures = ", ".join(f"{n} proposals: int8 {ap[str(n)][1]:.3f} vs fp32 {ap[str(n)][0]:.3f}" for n in near)
    return all(at[n] for n in near), f"AP50 {figures} on {record.get('labels', 'labelled frames')}"


def int8_key(scheme: str) -> str:
    """The profile key of the int8 verdict measured with ``scheme`` ("int8:minmax-u8"): a model
    keeps one verdict per scheme, so one profile serves VNNI CPUs (8-bit) and AVX2-only ones (7-bit weights)."""
    return f"int8:{scheme}"


def int8_record_for(detector, profiles: dict[str, dict] | None = None) -> dict | None:
    """The int8 verdict of ``detector``'s model for this CPU's scheme (None when never measured)."""
    from detector.quantize import scheme

    return _scheme_record(profile_of(detector, profiles), scheme())


def _scheme_record(profile: dict, here: str) -> dict | None:
    record = profile.get(int8_key(here))
    legacy = profile.get("int8")  # one verdict, before they were kept per scheme
    if record is None and legacy is not None and legacy.get("scheme") == here:
        record = legacy
    return record


def int8_verdict(detector, profiles: dict[str, dict] | None = None, proposals: int | None = None) -> tuple[bool, str]:
    """(allowed, why): whether ``--precision auto`` may pick int8 for ``detector``'s model on this
    CPU, at ``proposals`` (default: the detector's proposal count). A verdict measured with layers
    left in float holds for int8 with those layers in float (the detector's default)."""
    if not getattr(detector, "int8_available", False):
        return False, "int8 is not available here (needs a CPU, torch's x86 engine and calibration frames)"
    from detector.quantize import scheme

    here = scheme()
    profile = profile_of(detector, profiles)
    legacy = profile.get("int8")
    record = _scheme_record(profile, here)
    if record is not None and tuple(record.get("float_layers", ())) != tuple(getattr(detector, "int8_float_layers", ())):
        return False, (f"int8's accuracy was measured with {', '.join(record.get('float_layers', ())) or 'no layer'} in "
                       f"float, this run keeps {', '.join(detector.int8_float_layers) or 'none'} in float")
    if record is None:
        measured = sorted(k.partition(":")[2] for k in profile if k.startswith("int8:"))
        if legacy is not None:  # records without a scheme predate the min/max scheme (histogram, 7 bits)
            measured.append(legacy.get("scheme", "histogram-u7"))
        if measured:
            return False, (f"int8's accuracy was measured with the scheme {', '.join(measured)}, this CPU "
                           f"quantizes with {here} (run `run.py eval --precision fp32,int8` here)")
        return False, "int8's accuracy was never measured for this model (run `run.py eval --precision fp32,int8`)"
    if proposals is None:
        proposals = getattr(detector, "proposal_count", None)
    return int8_passes_at(record, proposals)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict) -> None:
    """Write atomically (a temporary file renamed into place); a file that cannot be written is
    only logged — what was measured still applies to this run."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        tmp.replace(path)
    except OSError as exc:
        log.warning("could not write %s: %s", path, exc)
