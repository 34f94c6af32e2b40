"""``serve``: many streams on a Ray cluster — the detector as a batched Ray Serve deployment.

    python run.py serve --sources streams.txt                 # a one-node cluster in this process
    python run.py serve --sources streams.txt --address HEAD:6379 --replicas 4

Each stream's Ray actor (``app.serve.ingest``) reads it, sends its frames to the batched detector
deployment (``app.serve.deployment``) and writes its outputs on its own node; a table shows progress,
and ``proposals N`` / ``threshold X`` typed on a terminal change the running deployment (docs/serve.md).
Ray is optional (``pip install -e '.[serve]'``) and imported only when a run starts.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import fields

from app.cli.console import EXIT_INTERRUPTED, EXIT_OK, sigterm_as_interrupt
from app.errors import UserError, UserErrorParser, one_line, user_errors
from app.stats import bad_frames_warning

EXIT_STREAM_PROBLEM = 1  # a stream failed, or frames could not be decoded
INSTALL_HINT = ("run.py serve needs Ray Serve, which is not installed: pip install -e '.[serve]' "
                "(or pip install 'ray[serve]')")


def build_parser() -> argparse.ArgumentParser:
    from app.cli.run import add_model_arguments

    p = UserErrorParser(prog="run.py serve", description=__doc__.split("\n\n")[0], see=" (see run.py serve --help)",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="sources file: one stream per line, as run.py's source and output options, e.g.\n"
                               "  --name lobby --camera 0 --record lobby.mp4\n"
                               "  --name clip  --video assets/sample.mp4 --export clip.json\n"
                               "  --name replay --video assets/sample.mp4 --live      # a file played as a camera\n"
                               "  (--on RESOURCE pins a stream to the nodes started with that Ray resource)\n\n"
                               "exit status: 0 every stream ended; 1 a stream failed or had undecodable frames;\n"
                               "  2 bad input, options or an unreachable --address (one line); 130 interrupted.\n"
                               "Docs: docs/serve.md (a 2-node cluster), docs/benchmarks.md (streams per machine).")
    streams = p.add_argument_group("streams")
    streams.add_argument("--sources", metavar="FILE", help="the streams, one per line (see below)")
    streams.add_argument("--stream", action="append", default=[], metavar="LINE",
                         help="one more stream, written as a line of the sources file (repeatable)")
    streams.add_argument("--overwrite", action="store_true", help="replace existing recordings and exports")
    streams.add_argument("--transport", default="auto", choices=("auto", "raw", "jpeg"),
                         help="frames travel as raw shared-memory objects or JPEG; auto = raw on one node, "
                              "jpeg across several (default: %(default)s)")
    streams.add_argument("--in-flight", type=int, default=4, metavar="N",
                         help="frames a file stream keeps in flight (live streams: 1) (default: %(default)s)")
    streams.add_argument("--retry-for-s", type=float, default=120.0, metavar="S",
                         help="resend a frame for this long while no replica answers (default: %(default)s)")

    cluster = p.add_argument_group("cluster")
    cluster.add_argument("--address", metavar="ADDR",
                         help="join a running cluster: HOST:PORT of `ray start --head`, auto, or ray://HOST:PORT; "
                              "default: start a one-node cluster in this process")
    cluster.add_argument("--num-cpus", type=int, metavar="N", help="CPUs of the local cluster (default: all)")
    cluster.add_argument("--object-store-mb", type=int, default=256, metavar="MB",
                         help="shared-memory object store of the local cluster (default: %(default)s)")
    cluster.add_argument("--dashboard", action="store_true", help="start Ray's dashboard with the local cluster")

    dep = p.add_argument_group("deployment")
    dep.add_argument("--replicas", type=int, default=1, metavar="N", help="detector replicas (default: %(default)s)")
    dep.add_argument("--replica-cpus", type=float, metavar="X",
                     help="CPUs per replica = its torch threads (default: the CPUs shared out, 1 with GPUs)")
    dep.add_argument("--replica-gpus", type=float, metavar="X", help="GPUs per replica (default: 1 when the cluster has GPUs)")
    dep.add_argument("--max-batch-size", type=int, default=8, metavar="N", help="frames per replica batch (default: %(default)s)")
    dep.add_argument("--batch-wait-s", type=float, default=0.02, metavar="S", dest="batch_wait_timeout_s",
                     help="how long a replica waits for a batch to fill (default: %(default)s)")
    add_model_arguments(p)

    run = p.add_argument_group("run")
    run.add_argument("--duration", type=float, metavar="S", help="stop every stream after S seconds (live sources run until stopped)")
    run.add_argument("--status-every-s", type=float, default=2.0, metavar="S", help="status table refresh (default: %(default)s)")
    return p


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.serve") is not None


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as run.py: replicas and streams inherit it
    args = build_parser().parse_args(argv)
    from app.cli.run import detector_config_from_args
    from app.serve.config import ServeConfig
    from app.serve.streams import collect_streams

    # every ServeConfig field is the option of its name (dest)
    config = ServeConfig(**{f.name: getattr(args, f.name) for f in fields(ServeConfig)})
    if args.duration is not None and not args.duration > 0:
        raise UserError(f"--duration {args.duration!r} must be > 0 seconds")
    if args.reprobe:  # a model option of run.py's that the replicas have no way to take
        raise UserError("--reprobe is not for serve: each replica uses the cached measurement of the "
                        "CPU fast path, made once when there is none")
    detector_config = detector_config_from_args(args)
    if detector_config.weights_path is not None:  # the replicas may run in another directory or node
        detector_config = detector_config.with_(weights=os.path.abspath(detector_config.weights_path))
    specs = collect_streams(args.sources, args.stream, overwrite=args.overwrite, in_flight=config.in_flight)
    if not ray_available():
        raise UserError(INSTALL_HINT)
    if config.address is None:
        _check_local_sources(specs)
        _check_local_model(detector_config)
    return serve_streams(config, detector_config, specs, duration_s=args.duration)


def serve_streams(config, detector_config, specs, *, duration_s: float | None = None, out=sys.stderr) -> int:
    """Deploy, run ``specs`` to their end (or ``duration_s``, or Ctrl-C), print the table; the exit status."""
    from app.serve.cluster import ServeSession
    from app.serve.status import RateTracker, status_table

    interrupted = False
    printer = TablePrinter(out, config.status_every_s)
    rates = RateTracker()
    with ServeSession(config) as session:
        previous = sigterm_as_interrupt()  # after ray.init, which installs its own SIGTERM handler
        try:
            _say(out, _cluster_line(session))
            session.deploy(detector_config)
            _say(out, f"deployment: {config.replicas} replica(s) × {session.replica_cpus:g} CPU / {session.replica_gpus:g} GPU, "
                      f"batches of ≤ {config.max_batch_size} frames within {config.batch_wait_timeout_s * 1e3:.0f} ms; "
                      f"frames travel as {session.transport}")
            started = session.start_streams(specs)
            for status in started:
                for line in status.notes:
                    _say(out, f"note: {status.name}: {line}")
            _start_knob_reader(session, out)  # a daemon blocked on stdin: it ends with the process
            deadline = None if duration_s is None else time.monotonic() + duration_s
            try:
                while not session.wait(config.status_every_s):
                    statuses = session.statuses()
                    printer.show(status_table(statuses, session.replica_status(), rates.update(statuses)))
                    if deadline is not None and time.monotonic() >= deadline:
                        break
            except KeyboardInterrupt:
                interrupted = True
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the finalising short
            replicas = session.replica_status()
            final = session.stop_streams()
            printer.show(status_table(final, replicas), final=True)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    for status in final:
        for line in status.outputs:
            print(f"{status.name}: {line}", file=sys.stdout)
    if interrupted:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _say(out, "interrupted: streams stopped, outputs finalised")
        return EXIT_INTERRUPTED
    failed = [s for s in final if s.state == "failed" or s.error]
    for s in failed:
        _say(out, f"error: stream {s.name}: {s.error or 'failed'}")
    warning = bad_frames_warning({f"stream {s.name}": s.stats for s in final if s not in failed})
    if warning:
        _say(out, warning)
    return EXIT_STREAM_PROBLEM if failed or warning else EXIT_OK


def _check_local_sources(specs) -> None:
    """On a local cluster the streams run on this machine: a missing or unreadable file or folder is
    refused now, before a cluster is started (cameras and URLs are opened by their actor)."""
    from app.io.reconnect import open_source  # as the stream's actor opens it (app/serve/ingest.py)

    for spec in specs:
        if spec.config.source_kind in ("video", "images"):
            with user_errors(UserError, prefix=f"stream {spec.name!r}: "):
                open_source(spec.config).close()


def _check_local_model(detector_config) -> None:
    """On a local cluster the replicas run here: a weights file that is not one, or --device cuda
    without a GPU, is refused now — a replica that fails to start is retried by Serve for a minute."""
    from detector.detector import resolve_device
    from detector.weights import read_weights_file

    if detector_config.device != "auto":
        resolve_device(detector_config.device)
    if detector_config.weights_path is not None:
        read_weights_file(detector_config.weights_path)


class TablePrinter:
    """Redraws the table in place on a terminal; elsewhere prints it every ``max(10, every_s)`` s."""

    def __init__(self, stream, every_s: float) -> None:
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.every_s = every_s if self.tty else max(10.0, every_s)
        self._lines = 0
        self._last = time.monotonic()

    def show(self, lines: list[str], final: bool = False) -> None:
        now = time.monotonic()
        if not final and not self.tty and now - self._last < self.every_s:
            return
        self._last = now
        if self.tty and self._lines:
            self.stream.write(f"\x1b[{self._lines}F\x1b[J")  # up to the table's first line, clear below
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self._lines = len(lines) if self.tty and not final else 0


def _cluster_line(session) -> str:
    import ray

    nodes, res = session.nodes, ray.cluster_resources()
    where = f"joined {session.config.address}" if session.config.address else "local one-node cluster"
    return (f"cluster: {where}: {len(nodes)} node(s), {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs; "
            f"Ray logs in /tmp/ray/session_latest/logs (on every node)")


def _start_knob_reader(session, out) -> threading.Thread | None:
    """On a terminal, ``proposals N`` / ``threshold X`` typed while the streams run change the
    running deployment (every replica, from its next batch)."""
    if not sys.stdin or not sys.stdin.isatty():
        return None

    def loop() -> None:
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            try:
                if words[0] in ("proposals", "p") and len(words) == 2:
                    knobs = session.set_knobs(proposals=int(words[1]))
                elif words[0] in ("threshold", "t") and len(words) == 2:
                    knobs = session.set_knobs(score_threshold=float(words[1]))
                else:
                    _say(out, "commands: proposals N | threshold X   (Ctrl-C stops every stream)")
                    continue
                threshold = "the model's own" if knobs.score_threshold is None else f"{knobs.score_threshold:g}"
                _say(out, f"deployment: proposals {knobs.proposals}, score threshold {threshold}")
            except (ValueError, UserError) as exc:
                _say(out, f"error: {exc}")
            except Exception as exc:  # a Ray timeout, a dead board actor: said, and the next command is read
                _say(out, f"error: the knobs could not be set: {one_line(exc)}")

    thread = threading.Thread(target=loop, name="serve-knobs", daemon=True)
    thread.start()
    return thread


def _say(out, line: str) -> None:
    print(line, file=out, flush=True)
