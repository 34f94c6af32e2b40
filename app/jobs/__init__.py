"""The other jobs of the command line: train, eval, autolabel and the teachers they share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.errors import UserError


@contextmanager
def user_errors(*errors: type[Exception], prefix: str = "") -> Iterator[None]:
    """``errors`` raised in the block become one ``UserError`` line: ``prefix``, then the error's text."""
    try:
        yield
    except errors as exc:
        raise UserError(f"{prefix}{exc}") from None
