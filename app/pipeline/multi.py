"""Many streams in one process with one detector: the one ``Pipeline`` of app/pipeline/pipeline.py, with N lanes.

``MultiPipeline(streams, detector, ...)`` is ``Pipeline.of_streams`` whose ``stats()`` are the run's
(``MultiStats``: every stream's, their states and the totals) rather than the first stream's.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.pipeline.pipeline import Pipeline, Stream, counts_file
from app.stats import MultiStats

__all__ = ["MultiPipeline", "MultiStats", "Stream", "counts_file"]


class MultiPipeline(Pipeline):
    """Runs one detector over many streams, batching their frames (see ``Pipeline.of_streams``)."""

    def __init__(self, streams: Sequence[Stream], detector, **options) -> None:
        self._build(streams, detector, **options)  # options: see ``Pipeline._build``

    def stats(self) -> MultiStats:
        return self.run_stats()
