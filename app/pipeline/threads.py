"""The thread budget: how many threads torch, FFmpeg's decoder and libx264 get.

Left to themselves all three size their pools by the core count, which on a small machine puts
several runnable threads per core beside the detector. The budget gives torch every core (its
threads sleep between frames: ``OMP_WAIT_POLICY=PASSIVE``, set by ``app.cli.run``) and the decoder
one thread up to 4 cores (a 768×576 frame decodes in ~2.5 ms on one); libx264 keeps its own threads
(with one, the sink thread encodes each frame itself and the pipeline measured slower). The
measurements (``scripts/fast_path_bench.py --parts threads``) are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThreadBudget:
    """Threads for each party; 0 = the library's own choice.

    Attributes:
        torch: torch's intra-op threads (the detector).
        decode: FFmpeg's decoder threads (PyAV ``thread_count``).
        encode: libx264's threads.
    """

    torch: int
    decode: int
    encode: int


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
        return ThreadBudget(torch=min(4, cores), decode=0, encode=0)
    if cores <= 4:
        return ThreadBudget(torch=cores, decode=1, encode=0)
    return ThreadBudget(torch=cores - 1, decode=2, encode=max(2, cores // 4))


def apply_torch(budget: ThreadBudget) -> None:
    """Set torch's intra-op threads (a process-wide setting; call before the first ``detect``)."""
    import torch

    if budget.torch and torch.get_num_threads() != budget.torch:
        torch.set_num_threads(budget.torch)


def join_within(threads: Iterable[threading.Thread], timeout: float) -> None:
    """Join every thread but the calling one within ``timeout`` s in all (a pipeline's stop); those
    still running are daemons and are left to finish (logged)."""
    threads = list(threads)
    deadline = time.monotonic() + timeout
    for thread in threads:
        if thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    if alive:
        log.debug("still busy after stop (daemon, abandoned): %s", ", ".join(alive))
