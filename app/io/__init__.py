"""In and out: sources (files, cameras, URLs, image folders) and their reconnection; recordings,
segments and exports; the outputs' path rules and atomic writes."""

from __future__ import annotations

from typing import TypeVar

_C = TypeVar("_C", bound="Closing")


class Closing:
    """``with x:`` calls ``x.close()`` on the way out (sources, recordings, exports)."""

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
