"""Command line entry point (``run.py`` and the ``frcnn-video`` console script).

``frcnn-video [run options]`` runs the detector on a video, camera, image folder or stream;
``frcnn-video bench|train|eval|autolabel ...`` are the other jobs. Every error a user can cause ends
in one line on stderr and a non-zero exit — never a traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from app.cli.console import EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED, EXIT_STDOUT_CLOSED, EXIT_USER_ERROR
from app.cli.subcommands import SUBCOMMANDS


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        if argv and argv[0] in SUBCOMMANDS:
            module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
            return int(module.main(argv[1:]) or 0)
        from app.cli.run import main as run_main

        return int(run_main(argv) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of stdout left (| head): say nothing more there
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_STDOUT_CLOSED
    except Exception as exc:  # the last line of defence: one line, never a traceback
        return report_error(exc)


def report_error(exc: BaseException) -> int:
    """Print one line for ``exc`` and return the exit status."""
    from app.errors import UserError, first_line, one_line
    from detector.config import ConfigError
    from detector.detector import DeviceError
    from detector.weights import WeightsError

    if os.environ.get("FRCNN_DEBUG"):
        import traceback

        traceback.print_exception(exc)
    if isinstance(exc, (UserError, ConfigError, WeightsError, DeviceError)):
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(f"internal error: {one_line(exc)} (set FRCNN_DEBUG=1 for the traceback)", file=sys.stderr)
    return EXIT_INTERNAL_ERROR


def console_main() -> None:
    """``run.py`` and the ``frcnn-video`` script: ``main``, then flush and ``os._exit`` at once.

    When ``main`` returns every output is finalised and every thread joined; what is left is the
    interpreter's teardown, which with torch loaded (~350k objects) took 5–20 s on a loaded machine."""
    status = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing left to say
            stream.flush()
    os._exit(status)
