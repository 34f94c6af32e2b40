"""One line of an error, for the one-line messages every layer prints (the app re-exports it as
``app.errors.first_line``)."""

from __future__ import annotations


def first_line(exc: BaseException | str) -> str:
    """The first line of an error's text (what one line of output shows), or its type's name
    when it has no text."""
    text = str(exc).strip()
    if text:
        return text.splitlines()[0]
    return type(exc).__name__ if isinstance(exc, BaseException) else ""
