"""In and out: sources (files, cameras, URLs, image folders) and their reconnection; recordings,
segments and exports; the outputs' path rules and atomic writes."""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import TypeVar

_C = TypeVar("_C", bound="Closing")


class Closing:
    """``with x:`` calls ``x.close()`` on the way out (sources, recordings, exports, sinks).

    ``close()`` runs the subclass's ``_close()`` once, however often it is called; a source, which
    may be closed from another thread while it reads, gives its own ``close()`` instead."""

    _closed = False

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def _close(self) -> None:
        raise NotImplementedError


def put_until_stopped(q: queue.Queue, item, stop: threading.Event, poll_s: float) -> bool:
    """Put ``item`` into the bounded ``q``, waiting for room in steps of ``poll_s`` so that ``stop`` is
    noticed; False when it was set first (the item is not queued)."""
    while not stop.is_set():
        with contextlib.suppress(queue.Full):
            q.put(item, timeout=poll_s)
            return True
    return False
