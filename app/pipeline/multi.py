"""Many streams in one process with one detector: the one ``Pipeline`` of app/pipeline/pipeline.py, with N lanes.

``MultiPipeline(streams, detector, ...)`` is ``Pipeline.of_streams`` whose ``stats()`` are the run's
(``MultiStats``: every stream's, their states and the totals) rather than the first stream's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from app.frames import Result
from app.pipeline.pipeline import Pipeline, Stream, counts_file
from app.pipeline.render import DEFAULT_STYLE, Style
from app.stats import MultiStats

__all__ = ["MultiPipeline", "MultiStats", "Stream", "counts_file"]


class MultiPipeline(Pipeline):
    """Runs one detector over many streams, batching their frames (see ``Pipeline.of_streams``)."""

    def __init__(self, streams: Sequence[Stream], detector, *, export: str | None = None, overwrite: bool = False,
                 batch_size: int = 0, on_result: Callable[[str, Result, np.ndarray | None], None] | None = None,
                 on_finish: Callable[[BaseException | None], None] | None = None, style: Style = DEFAULT_STYLE,
                 events=None) -> None:
        self._build(streams, detector, export=export, overwrite=overwrite, batch_size=batch_size or len(streams),
                    on_result=on_result, on_finish=on_finish, style=style, events=events)

    def stats(self) -> MultiStats:
        return self.run_stats()
