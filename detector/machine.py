"""What this machine's CPU is, from /proc/cpuinfo (read once per process): its name, for the keys
the probe caches its answers under and the benchmark's reports, and its flags, for the choices that
depend on instructions (int8's activation width, bf16 in training)."""

from __future__ import annotations

import functools
import platform


@functools.lru_cache(maxsize=1)
def cpuinfo() -> str:
    """The text of /proc/cpuinfo; "" where there is none (other systems)."""
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def cpu_name() -> str:
    for line in cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags(text: str | None = None) -> set[str]:
    """The first processor's flags (of ``text``, default this machine's /proc/cpuinfo); empty where unknown."""
    for line in (cpuinfo() if text is None else text).splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[-1].split())
    return set()
