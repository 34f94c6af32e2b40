"""Errors the user caused (bad input, bad options): printed as one line, exit status 2."""


class UserError(Exception):
    """Bad input or options; ``str(error)`` is the one line shown to the user."""


def first_line(exc: BaseException | str) -> str:
    """The first line of an error's text (what one line of output shows), or its type's name
    when it has no text."""
    text = str(exc).strip()
    if text:
        return text.splitlines()[0]
    return type(exc).__name__ if isinstance(exc, BaseException) else ""
