"""Errors the user caused (bad input, bad options): printed as one line, exit status 2."""

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from detector.messages import first_line  # one helper for every layer, re-exported here


class UserError(Exception):
    """Bad input or options; ``str(error)`` is the one line shown to the user."""


@contextmanager
def user_errors(*errors: type[Exception], prefix: str = "") -> Iterator[None]:
    """``errors`` raised in the block become one ``UserError`` line: ``prefix``, then the error's
    first line (its type's name when it has no text)."""
    try:
        yield
    except errors as exc:
        raise UserError(f"{prefix}{first_line(exc)}") from None


def one_line(exc: BaseException) -> str:
    """An exception as one line for a status (the window's, an alert sink's): the user's own error as
    its first line, any other as ``Type: first line``."""
    from detector.config import ConfigError

    first = first_line(str(exc).strip())
    if isinstance(exc, (UserError, ConfigError)) and first:
        return first
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class UserErrorParser(argparse.ArgumentParser):
    """argparse that reports a bad option as one ``UserError`` line (ending with ``see``) instead of
    usage + exit."""

    def __init__(self, *args, see: str = " (see --help)", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.see = see

    def error(self, message: str):
        raise UserError(f"{message}{self.see}")
