"""The thread budget: how many threads torch, FFmpeg's decoder and libx264 get.

Left to themselves all three size their pools by the core count: torch takes every core for its
intra-op threads, FFmpeg's frame threads take cores + 1, libx264 1.5 × cores plus lookahead threads.
On a small machine that is several runnable threads per core, and the detector — nearly the whole
cost of a frame — is preempted by a decoder and an encoder that need a few ms a frame each.

The budget gives torch every core (its threads sleep between frames: ``OMP_WAIT_POLICY=PASSIVE``,
set by ``app.run``), and the decoder and the encoder a small fixed number of threads: one each up to
4 cores. A 768×576 H.264 frame decodes in 2–4 ms and encodes (x264 veryfast) in 5–10 ms on one
thread, so one thread each keeps up with any detector rate this project reaches on a CPU, while
the pipeline's other two threads overlap them with ``detect``. Measured in ``docs/benchmarks.md``
(the thread rows of ``scripts/fast_path_bench.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ThreadBudget:
    """Threads for each party; 0 = the library's own choice.

    Attributes:
        cores: the cores this process may use.
        torch: torch's intra-op threads (the detector).
        decode: FFmpeg's decoder threads (PyAV ``thread_count``).
        encode: libx264's threads.
    """

    cores: int
    torch: int
    decode: int
    encode: int

    def describe(self) -> str:
        def n(v: int) -> str:
            return str(v) if v else "auto"

        return f"{self.cores} cores: torch {n(self.torch)}, decode {n(self.decode)}, encode {n(self.encode)} thread(s)"


def available_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def plan(cores: int | None = None, *, gpu: bool = False) -> ThreadBudget:
    """The budget for ``cores`` (default: those available). On a GPU the detector needs few CPU
    threads, so the decoder and encoder get more."""
    cores = cores or available_cores()
    if gpu:
        return ThreadBudget(cores, torch=min(4, cores), decode=0, encode=0)
    if cores <= 4:
        return ThreadBudget(cores, torch=cores, decode=1, encode=1)
    return ThreadBudget(cores, torch=cores - 1, decode=2, encode=max(2, cores // 4))


def apply_torch(budget: ThreadBudget) -> None:
    """Set torch's intra-op threads (a process-wide setting; call before the first ``detect``)."""
    import torch

    if budget.torch and torch.get_num_threads() != budget.torch:
        torch.set_num_threads(budget.torch)
