"""The streams of a ``serve`` run: the sources file, one stream per line.

Each line is written as the ``run`` command's source and output options, so a line that works as
``python run.py LINE`` works here::

    # name        source                          outputs (written where the stream runs)
    --name lobby  --camera 0                      --record lobby.mp4 --segment 600   # 10-minute files
    --name door   --url rtsp://door.local/stream  --export door.csv
    --name clip   --video assets/sample.mp4       --export clip.json --max-frames 100
    --name replay --video assets/sample.mp4 --live                  # a file played as a camera

Blank lines and ``#`` comments are ignored. Relative paths are made absolute against the directory
``run.py serve`` runs in: a stream on another node needs its files at the same absolute paths there.
``--on NAME`` pins the stream to the nodes started with ``ray start --resources '{"NAME": 1}'`` (the
one a camera is plugged into). Model options (``--proposals`` ...) go to ``run.py serve`` itself:
every stream shares the one deployment.

Nothing here imports Ray: a bad sources file is reported before any cluster is started.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from app.cli.multi_run import SOURCE_OPTIONS, read_sources_text
from app.config import LIVE_KINDS, PipelineConfig
from app.errors import UserError, UserErrorParser, user_errors
from app.io.paths import first_free, stream_name

# Frames a file stream keeps in flight to the deployment: enough for the replicas' batches to fill
# from several streams, few enough that one stream cannot take every slot of a batch.
DEFAULT_IN_FLIGHT = 4
_MODEL_OPTIONS = ("--model", "--weights", "--backbone", "--device", "--precision", "--proposals",
                  "--score-threshold", "--classes")


@dataclass(frozen=True)
class StreamSpec:
    """One stream: its name, its pipeline settings and where it may run.

    Attributes:
        name: shown in the status table; unique in a run.
        config: the source, outputs and frame policy (``batch_size`` = frames in flight).
        on: a Ray custom resource that the node running this stream must have; None = any node.
        named: the line gave ``--name`` (in any spelling argparse takes), so a clash is refused.
    """

    name: str
    config: PipelineConfig
    on: str | None = None
    named: bool = False


def _line_parser() -> argparse.ArgumentParser:
    p = UserErrorParser(prog="stream", add_help=False, see="")
    src = p.add_mutually_exclusive_group(required=True)
    for kind in SOURCE_OPTIONS:
        src.add_argument(f"--{kind}")
    for option in ("--name", "--record", "--export", "--on"):
        p.add_argument(option)
    p.add_argument("--segment", type=float, dest="segment_s")
    p.add_argument("--max-frames", type=int)
    p.add_argument("--live", action="store_true")
    return p


def parse_stream(line: str, *, overwrite: bool = False, in_flight: int = DEFAULT_IN_FLIGHT,
                 where: str = "stream") -> StreamSpec:
    """One stream from ``line`` (run-command options). Raises ``UserError`` naming ``where``."""
    try:
        words = _words(line)
    except ValueError as exc:
        raise UserError(f"{where}: {exc} in {line.strip()!r}") from None
    model = [w.split("=")[0] for w in words if w.split("=")[0] in _MODEL_OPTIONS]
    if model:
        raise UserError(f"{where}: {model[0]} is a setting of the shared deployment, not of one stream; "
                        f"give it to run.py serve itself")
    try:
        args = _line_parser().parse_args(words)
    except UserError as exc:
        raise UserError(f"{where}: {exc} (a line holds run.py's source and output options, e.g. "
                        f"--video clip.mp4 --export clip.csv)") from None
    if args.name is not None and not args.name.strip():
        raise UserError(f"{where}: --name is empty; give the stream a name or leave --name out")
    kind = next(k for k in SOURCE_OPTIONS if getattr(args, k) is not None)
    name = args.name or stream_name(kind, str(getattr(args, kind)))  # the run command's rule (app/io/paths.py)
    # absolute here: the actor that opens and writes them may run elsewhere (module docstring)
    source = _absolute(getattr(args, kind)) if kind in ("video", "images") else str(getattr(args, kind))
    live_kind = kind in LIVE_KINDS
    if args.live and live_kind:
        raise UserError(f"{where}: --live is for files and image folders; a {kind} is live already")
    if args.on is not None and not re.fullmatch(r"[A-Za-z0-9_.:/-]+", args.on):
        raise UserError(f"{where}: --on {args.on!r} must be a Ray resource name (letters, digits, _ . : / -)")
    with user_errors(UserError, prefix=f"{where}: "):
        config = PipelineConfig(
            source_kind=kind, source=source, record=_absolute(args.record), export=_absolute(args.export), overwrite=overwrite,
            segment_s=args.segment_s, max_frames=args.max_frames, headless=True,
            # --live: a file played as a camera would deliver it (its own timestamps), latest frame only.
            policy="drop_stale" if args.live else "auto",
            realtime=True if args.live else None,
            batch_size=1 if (live_kind or args.live) else in_flight,
        )
    return StreamSpec(name, config, args.on, named=args.name is not None)


def _words(line: str) -> list[str]:
    """``line``'s words as a shell splits them: ``#`` starts a comment only at the start of a word
    (``shlex.split(comments=True)`` also cuts ``take#2.mp4``). Raises ``ValueError`` (open quote)."""
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split, lexer.commenters = True, ""
    words = []
    while not line[lexer.instream.tell():].lstrip().startswith("#"):  # what is left starts a comment
        if (word := lexer.get_token()) is None:
            break
        words.append(word)
    return words


def _absolute(path: str | None) -> str | None:
    return path and os.path.abspath(os.path.expanduser(path))  # "" stays "" (PipelineConfig refuses it)


def parse_streams(lines: Iterable[tuple[str, str]], *, overwrite: bool = False,
                  in_flight: int = DEFAULT_IN_FLIGHT) -> list[StreamSpec]:
    """Streams from ``(where, line)`` pairs; blank and comment lines are skipped. Names must be
    unique (a repeated default name gets ``-2``, ``-3`` ...) and no two streams may write one file."""
    specs: list[StreamSpec] = []
    for where, line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        spec = parse_stream(line, overwrite=overwrite, in_flight=in_flight, where=where)
        names = {s.name for s in specs}
        if spec.name in names:
            if spec.named:
                raise UserError(f"{where}: a stream named {spec.name!r} is already listed; names must be unique")
            spec = replace(spec, name=first_free(spec.name, names.__contains__))
        specs.append(spec)
    _check_outputs_unique(specs)
    if not specs:
        raise UserError("no streams: give --sources FILE (one stream per line) or --stream '--video clip.mp4'")
    return specs


def collect_streams(sources: str | None, streams: Sequence[str], *, overwrite: bool = False,
                    in_flight: int = DEFAULT_IN_FLIGHT) -> list[StreamSpec]:
    """The streams of ``--sources FILE`` followed by those of every ``--stream LINE``."""
    lines: list[tuple[str, str]] = []
    if sources is not None:
        lines += [(f"{sources}:{i}", line) for i, line in enumerate(read_sources_text(sources).splitlines(), 1)]
    lines += [(f"--stream {i}", line) for i, line in enumerate(streams, 1)]
    return parse_streams(lines, overwrite=overwrite, in_flight=in_flight)


def _check_outputs_unique(specs: Sequence[StreamSpec]) -> None:
    """No two streams write one file, and none writes a stream's video (--overwrite would replace it)."""
    videos = {Path(s.config.source).resolve(): s.name for s in specs if s.config.source_kind == "video"}
    seen: dict[Path, str] = {}
    for spec in specs:
        for path in (spec.config.record, spec.config.export):
            if path is None:
                continue
            key = Path(path).expanduser().resolve()
            if key in videos:
                raise UserError(f"stream {spec.name!r} would write {path}, "
                                f"the video of stream {videos[key]!r}")
            if key in seen:
                raise UserError(f"streams {seen[key]!r} and {spec.name!r} both write {path}; give each its own file")
            seen[key] = spec.name
