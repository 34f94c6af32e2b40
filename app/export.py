"""The export sink: one row per detection (frame, timestamp s, class, score, x1, y1, x2, y2, track id), as
JSON or CSV. ``track_id`` is the tracker's identity of the object, -1 when tracking is off (or the
track is not confirmed yet). Rows of an image folder also name their image (a last column ``file``).

Rows are written as they come and the file is completed by ``close()``, so a run stopped by
Ctrl-C still leaves a valid file with every frame processed so far.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from app.frames import Result

COLUMNS = ("frame", "timestamp_s", "class", "score", "x1", "y1", "x2", "y2", "track_id")


def result_rows(result: Result) -> list[dict]:
    """The rows of one result, in ``COLUMNS`` order; boxes in the frame's pixels."""
    frame, det = result.frame, result.detections
    t = round(frame.seconds, 6)
    return [
        {"frame": frame.index, "timestamp_s": t, "class": row["class"], "score": row["score"],
         "x1": row["x1"], "y1": row["y1"], "x2": row["x2"], "y2": row["y2"], "track_id": row["track_id"]}
        for row in det.to_rows()
    ]


class Exporter:
    """Writes rows to ``path`` (.json: a list of objects; .csv: a header and one line per row).

    ``extra_columns`` come first in every row, their values given to ``write`` (many streams in
    one file: ``Exporter(path, extra_columns=("stream",))``, ``write(result, stream="cam1")``).
    ``file_column`` adds a last column ``file``: the image each row was found in (image folders,
    whose frame numbers alone would leave the reader to re-sort the folder).
    """

    def __init__(self, path: str | Path, *, extra_columns: Sequence[str] = (), file_column: bool = False) -> None:
        self.path = Path(path)
        self.format = self.path.suffix.lower().lstrip(".")
        if self.format not in ("json", "csv"):
            raise ValueError(f"export {path}: expected a .json or .csv file, got {self.path.suffix!r}")
        self.columns = (*extra_columns, *COLUMNS, *(("file",) if file_column else ()))
        self.file_column = file_column
        self.rows_written = 0
        self.frames_written = 0
        self._file = open(self.path, "w", newline="" if self.format == "csv" else None, encoding="utf-8")  # noqa: SIM115
        if self.format == "csv":
            self._csv = csv.DictWriter(self._file, fieldnames=self.columns)
            self._csv.writeheader()
        else:
            self._file.write("[")
        self._closed = False

    def write(self, result: Result, **extra) -> None:
        for row in result_rows(result):
            if extra:
                row = {**extra, **row}
            if self.file_column:
                row["file"] = result.frame.file
            if self.format == "csv":
                self._csv.writerow(row)
            else:
                self._file.write(("\n" if self.rows_written == 0 else ",\n") + json.dumps(row))
            self.rows_written += 1
        self.frames_written += 1

    def close(self) -> None:
        """Complete and close the file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.format == "json":
                self._file.write("\n]\n")
        finally:
            self._file.close()

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_rows(path: str | Path) -> list[dict]:
    """Rows back from a JSON or CSV export (numbers as numbers)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["frame"] = int(row["frame"])
        row["track_id"] = int(row["track_id"]) if row.get("track_id") not in (None, "") else -1
        for key in ("timestamp_s", "score", "x1", "y1", "x2", "y2"):
            row[key] = float(row[key])
    return rows
