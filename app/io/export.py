"""The export sink: one row per detection (frame, timestamp s, class, score, x1, y1, x2, y2, track id), as
JSON, JSON Lines or CSV. ``track_id`` is the tracker's identity of the object, -1 when tracking is off
(or the track is not confirmed yet). Rows of an image folder end with the image's ``file``.

Crash-safe: each frame's rows reach the OS in one write as soon as the frame is done, so a run killed
with SIGKILL leaves every frame written so far (a kill may cut a write of several pages: ``read_rows``
drops a last line without its newline). ``.jsonl`` and ``.csv`` only append; ``.json`` rewrites its
closing bracket after every frame, so the file is a valid array at any moment. A write that fails
(disk full, file too large) cuts the file back to its last whole frame (a ``.json`` gets its bracket
back), says why in ``failed`` (one line) and ignores later rows.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from app.frames import Result
from app.io import Closing

COLUMNS = ("frame", "timestamp_s", "class", "score", "x1", "y1", "x2", "y2", "track_id")


def result_rows(result: Result) -> list[dict]:
    """The rows of one result, in ``COLUMNS`` order; boxes in the frame's pixels."""
    frame, det = result.frame, result.detections
    t = round(frame.seconds, 6)
    return [{"frame": frame.index, "timestamp_s": t, **{k: row[k] for k in COLUMNS[2:]}} for row in det.to_rows()]


FORMATS = ("json", "jsonl", "csv")


class Exporter(Closing):
    """Writes rows to ``path`` (.json: a list of objects; .jsonl: one object a line; .csv: a header
    and one line per row).

    ``extra_columns`` come first in every row, their values given to ``write`` (many streams in
    one file: ``Exporter(path, extra_columns=("stream",))``, ``write(result, stream="cam1")``).
    ``file_column`` adds a last column ``file``: the image each row was found in (image folders,
    whose frame numbers alone would leave the reader to re-sort the folder).
    """

    def __init__(self, path: str | Path, *, extra_columns: Sequence[str] = (), file_column: bool = False) -> None:
        self.path = Path(path)
        self.format = self.path.suffix.lower().lstrip(".")
        if self.format not in FORMATS:
            raise ValueError(f"export {path}: expected a .json, .jsonl or .csv file, got {self.path.suffix!r}")
        self.columns = (*extra_columns, *COLUMNS, *(("file",) if file_column else ()))
        self.file_column = file_column
        self.rows_written = 0
        self.frames_written = 0
        self.failed: str | None = None  # one line: why the export stopped early (disk full, ...)
        # Unbuffered: one write() per frame hands the rows to the OS at once (a kill loses nothing).
        self._file = open(self.path, "wb", buffering=0)  # noqa: SIM115
        self._end = 0  # where the next rows go: the end of the last whole frame
        self._tail = b"\n]\n" if self.format == "json" else b""  # what closes the file after them
        head = {"csv": self._csv_text([dict(zip(self.columns, self.columns, strict=True))]), "json": "[", "jsonl": ""}[self.format]
        self._append(head.encode())

    def write(self, result: Result, **extra) -> None:
        if self.failed is not None:
            return
        file = {"file": result.frame.file} if self.file_column else {}
        rows = [{**extra, **row, **file} for row in result_rows(result)]
        if rows:
            if self.format == "csv":
                text = self._csv_text(rows)
            elif self.format == "jsonl":
                text = "".join(json.dumps(row) + "\n" for row in rows)
            else:
                text = ("\n" if self.rows_written == 0 else ",\n") + ",\n".join(json.dumps(row) for row in rows)
            if not self._append(text.encode()):
                return
            self.rows_written += len(rows)
        self.frames_written += 1

    def _csv_text(self, rows: list[dict]) -> str:
        out = io.StringIO(newline="")
        csv.DictWriter(out, fieldnames=self.columns).writerows(rows)
        return out.getvalue()

    def _append(self, data: bytes) -> bool:
        """Write ``data`` at the end of the last whole frame (a .json's closing bracket after it)."""
        try:
            self._file.seek(self._end)
            view = memoryview(data + self._tail)
            while view:  # a raw file may take part of it: write the rest
                view = view[self._file.write(view):]
        except OSError as exc:
            self._fail(exc)
            return False
        self._end += len(data)
        return True

    def _fail(self, exc: OSError) -> None:
        """Keep what was written: cut the half-written frame off, give a .json its bracket back."""
        self.failed = f"export {self.path} stopped after {self.frames_written} frames: {exc.strerror or exc}"
        try:
            if self._tail:  # overwrite in place (no new block needed on a full disk), then cut
                self._file.seek(self._end)
                self._file.write(self._tail)
            self._file.truncate(self._end + len(self._tail))
        except OSError:
            pass  # the disk refuses even that: the rows before are there all the same
        self.close()

    def _close(self) -> None:
        """Close the file (complete already: every write left it whole)."""
        self._file.close()


def read_rows(path: str | Path) -> list[dict]:
    """Rows back from a JSON, JSON Lines or CSV export (numbers as numbers). A JSON Lines or CSV
    file's last line without its newline (a write cut by a kill) is left out."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    text = path.read_text(encoding="utf-8")
    text = text[: text.rfind("\n") + 1]  # whole lines only
    if path.suffix.lower() == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    for row in rows:
        row["frame"] = int(row["frame"])
        row["track_id"] = int(row["track_id"]) if row.get("track_id") not in (None, "") else -1
        for key in ("timestamp_s", "score", "x1", "y1", "x2", "y2"):
            row[key] = float(row[key])
    return rows
