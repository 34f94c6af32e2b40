"""Errors the user caused (bad input, bad options): printed as one line, exit status 2."""

import argparse

from detector.messages import first_line  # noqa: F401 — one helper for every layer, re-exported here


class UserError(Exception):
    """Bad input or options; ``str(error)`` is the one line shown to the user."""


class UserErrorParser(argparse.ArgumentParser):
    """argparse that reports a bad option as one ``UserError`` line (ending with ``see``) instead of
    usage + exit."""

    def __init__(self, *args, see: str = " (see --help)", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.see = see

    def error(self, message: str):
        raise UserError(f"{message}{self.see}")
