"""Errors the user caused (bad input, bad options): printed as one line, exit status 2."""


class UserError(Exception):
    """Bad input or options; ``str(error)`` is the one line shown to the user."""
