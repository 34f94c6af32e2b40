"""Errors the user caused (bad input, bad options): printed as one line, exit status 2."""

from detector.messages import first_line  # noqa: F401 — one helper for every layer, re-exported here


class UserError(Exception):
    """Bad input or options; ``str(error)`` is the one line shown to the user."""


