"""One stream's ingest: its source, the product's ``Pipeline`` with a ``RemoteDetector``, its outputs.

``StreamWorker`` is the body of each stream's Ray actor (wrapped with ``ray.remote`` in
``app.serve.cluster``, so that this module stays Ray-free). It opens the source and writes the
outputs on the node Ray places it on (one with the stream's ``--on`` resource). The frame policy is
the pipeline's: a file sends every frame (``batch_size`` in flight), a camera or URL only the newest.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from app.cli.console import recording_line
from app.errors import one_line
from app.io.reconnect import open_source
from app.pipeline.pipeline import Pipeline
from app.serve.remote import RemoteDetector
from app.serve.streams import StreamSpec
from app.stats import PipelineStats


@dataclass(frozen=True)
class StreamStatus:
    """A picklable snapshot of one stream for the status table and the final report.

    Attributes:
        name: the stream's name.
        state: "starting", "running", "done", "failed" or "stopped".
        node: host name and address of the node the stream runs on.
        stats: the pipeline's stats (frames, fps, latency, drops, bad frames, stage ms).
        retries: frames sent again after a replica died.
        batch: mean frames per replica batch that this stream's last 30 frames were part of.
        error: the one-line error of a failed stream.
        notes: remarks about the source (no duration, guessed timestamps ...).
        outputs: one line per written output (path, frames / rows), once finished.
    """

    name: str
    state: str
    node: str = ""
    stats: PipelineStats = field(default_factory=PipelineStats)
    retries: int = 0
    batch: float = 0.0
    error: str | None = None
    notes: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()


class StreamWorker:
    """Runs one stream against the deployment.

    Args:
        spec: the stream.
        submit, **detector_options: ``RemoteDetector``'s (``transport``, ``retryable``, ``retry_for_s``).

    The source is opened by ``app.io.reconnect.open_source``: a camera or URL that drops is reopened
    with backoff where the stream runs, unless the stream turns reconnection off.
    """

    def __init__(self, spec: StreamSpec, submit: Callable, **detector_options) -> None:
        self.spec = spec
        self.detector = RemoteDetector(submit, **detector_options)
        self.pipeline: Pipeline | None = None
        self.node = socket.gethostname()
        self._stopped = False

    def start(self) -> StreamStatus:
        """Check the outputs and open the source on this node, then start the pipeline. A bad
        source or output raises ``UserError`` (one line) and nothing is left open."""
        config = self.spec.config
        config.check_outputs()
        source = open_source(config)
        try:
            pipeline = Pipeline(config, self.detector, source)
            pipeline.start()
        except BaseException:
            source.close()
            raise
        self.pipeline = pipeline  # only a started one: status() reads it as running
        return self.status()

    def status(self) -> StreamStatus:
        p = self.pipeline
        if p is None:
            return StreamStatus(self.spec.name, "starting", self.node)
        error, sizes = p.error, list(self.detector.recent_batch_sizes)
        ended = "stopped" if self._stopped else "done"
        return StreamStatus(
            name=self.spec.name, state="failed" if error is not None else ended if p.finished else "running",
            node=self.node, stats=p.stats(), retries=self.detector.retries,
            batch=sum(sizes) / len(sizes) if sizes else 0.0, error=one_line(error) if error is not None else None,
            notes=tuple(p.source.notes), outputs=self._outputs() if p.finished else (),
        )

    def stop(self) -> StreamStatus:
        """Stop the stream, finalise the recording and the export; returns the final status."""
        if self.pipeline is not None and not self.pipeline.finished:
            self._stopped = True
            self.detector.close()
            self.pipeline.stop()
        return self.status()

    def _outputs(self) -> tuple[str, ...]:
        p, lines = self.pipeline, []
        if p.record_sink is not None:  # as run.py says it: a segmented recording by its files
            rec = p.record_sink.recorder
            written = recording_line(rec) if rec.frames_written else "none written (no frame arrived)"
            lines.append(f"recording {written}")
        if p.export_sink is not None:
            exp = p.export_sink.exporter
            lines.append(f"detections {exp.path.resolve()} ({exp.rows_written} rows from {exp.frames_written} frames)")
        return tuple(lines)

