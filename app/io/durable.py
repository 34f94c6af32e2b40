"""Small files that must be whole at every moment: written to a temporary file beside them, then
renamed over the old one (``os.replace`` is atomic on POSIX and Windows), so a process killed at any
instant leaves either the previous version or the new one — never half of one. For the counts
file, the segments index and the event log's summaries; rewrite them every ``EVERY_S`` and at the end.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

EVERY_S = 1.0  # how often a periodically rewritten file is brought up to date


def write_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) in one step; raises OSError (the old file is kept)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class Every:
    """``due()`` is True at most once every ``EVERY_S`` seconds (the first call included)."""

    def __init__(self) -> None:
        self._last: float | None = None

    def due(self) -> bool:
        now = time.monotonic()
        if self._last is not None and now - self._last < EVERY_S:
            return False
        self._last = now
        return True

