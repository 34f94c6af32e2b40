"""Where outputs may go: a path checked before any work (its folder exists and is writable, it is not
a directory, an existing file only with --overwrite); and the one rule that names a stream — in
file names, the export's ``stream`` column, events, summaries — for run.py, the window and serve."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from app.errors import UserError


def per_stream_path(path: str, name: str) -> str:
    """An output of one stream of several: ``out.mp4`` → ``out-<name>.mp4`` beside it."""
    p = Path(path)
    return str(p.with_name(f"{p.stem}-{name}{p.suffix}"))


def ffmpeg_file(path: str | Path) -> str:
    """A local file's name as FFmpeg must be given it: after ``file:``, or a relative name such as
    ``2024-01-01T10:00.mp4`` reads as the protocol "2024-01-01T10" ("Protocol not found")."""
    return f"file:{path}"


def refuse_clashes(outputs: Sequence[tuple[str, str | None]], named: dict[Path, str] | None = None) -> None:
    """One ``UserError`` line for an output ((option, path); None: not asked for) whose file is already
    ``named`` (resolved path → what it is: a video being read, or an output before it) — one would
    replace the other (--export d.json --adapt-log d.json; --record in.mp4 over --video in.mp4)."""
    named = dict(named or {})
    for option, path in outputs:
        if path is not None:
            if (key := Path(path).resolve()) in named:
                raise UserError(f"{option} {path} is {named[key]}; write it to another file")
            named[key] = f"the {option} file"


def check_output_path(path: str, what: str, *, overwrite: bool) -> None:
    """Check that ``path`` can be written: its folder exists and is writable, and it is not an
    existing file (unless ``overwrite``) or a directory. Touches nothing."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{what} output {path} is a directory; give a file name")
    if not p.parent.is_dir():
        raise UserError(f"{what} output {path}: the folder {p.parent} does not exist")
    if not _writable(p.parent):
        raise UserError(f"{what} output {path}: the folder {p.parent} is not writable")
    if p.exists() and not overwrite:
        raise UserError(f"{what} output {path} already exists; pass --overwrite to replace it (it was left untouched)")
    if p.exists() and not os.access(p, os.W_OK):
        raise UserError(f"{what} output {path} exists and is not writable")


def _writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder``. ``os.access`` alone says yes to root on
    read-only places (/sys, read-only mounts), so an anonymous temporary file is tried too; it
    vanishes on close and leaves nothing behind."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def stream_name(kind: str, value: str) -> str:
    """A short name for file names and the export: the file's stem, camera0, the URL's host-port-path."""
    if kind == "camera":
        m = re.fullmatch(r"(?:/dev/video)?(\d+)", value)
        raw = f"camera{m.group(1)}" if m else Path(value).name
    elif kind == "url":
        # no "user:password@" and no query (a token): the name goes into files, exports and alerts
        raw = re.sub(r"^[a-z0-9+.-]+://([^/?#]*@)?", "", value, flags=re.I).split("?", 1)[0].rstrip("/")
        raw = raw.rsplit(".", 1)[0] if "/" in raw and "." in raw.rsplit("/", 1)[-1] else raw
    elif kind == "images":
        raw = Path(value.split("*", 1)[0]).name or "images"
    else:
        raw = Path(value).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-.") or kind


def first_free(base: str, taken: Callable[[str], bool]) -> str:
    """``base``, else ``base-2``, ``base-3``… — the first name ``taken`` says is free."""
    name, n = base, 2
    while taken(name):
        name, n = f"{base}-{n}", n + 1
    return name


def unique_names(sources: Sequence[tuple[str, str]]) -> list[str]:
    names: list[str] = []
    for kind, value in sources:
        names.append(first_free(stream_name(kind, value), names.__contains__))
    return names
