"""``ServeSession``: join or start a Ray cluster, deploy the detector, run one actor per stream.

Typical use (what ``run.py serve`` does)::

    with ServeSession(ServeConfig(replicas=2)) as session:
        session.deploy(DetectorConfig())
        session.start_streams(specs)
        while not session.wait(2.0):
            print("\\n".join(status_table(session.statuses(), session.replica_status())))

Leaving the ``with`` block stops every stream (finalising its outputs), removes the application and
disconnects; a local cluster is shut down with all its processes.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Sequence

from app.errors import UserError, first_line, user_errors
from app.serve.batching import Knobs
from app.serve.config import ServeConfig, check_reachable
from app.serve.ingest import StreamStatus, StreamWorker
from app.serve.streams import StreamSpec
from detector.config import DetectorConfig

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0  # opening a source (a URL's own timeout is 10 s) on a busy node


class ServeSession:
    """A connection to a Ray cluster (``config``) with the detector deployed on it and the streams it runs."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.handle = None
        self.board = None
        self.knobs: Knobs | None = None
        self.transport = "raw"
        self.replica_cpus = 0.0
        self.replica_gpus = 0.0
        self._actors: dict[str, object] = {}
        self._specs: dict[str, StreamSpec] = {}
        self._final: dict[str, StreamStatus] = {}
        self._deployed = False
        self._connected = False
        self._owns_cluster = config.address is None
        self.session_dir: str | None = None
        self._connect()

    # ------------------------------------------------------------------ cluster
    def _connect(self) -> None:
        import ray

        from app.serve.deployment import NAMESPACE

        # No usage statistics are sent (the machines this runs on may have no internet at all);
        # a user who wants them sets RAY_USAGE_STATS_ENABLED=1.
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # Ray's token authentication (on by default for local clusters) announces itself on every
        # start, and Serve logs each step at INFO: the user's screen is the status table.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        cfg = self.config
        kwargs = dict(namespace=NAMESPACE, log_to_driver=False, configure_logging=True, logging_level=logging.WARNING)
        if cfg.address is not None:
            check_reachable(cfg.address)
            _send_token_if_any()
            try:
                context = ray.init(address=cfg.address, **kwargs)
            except ConnectionError as exc:
                raise UserError(f"cannot join the Ray cluster at {cfg.address}: {first_line(exc)}") from None
        else:
            # address="local": always a new cluster, even when `ray start` runs one on this machine
            context = ray.init(address="local", num_cpus=cfg.num_cpus or os.cpu_count() or 1, object_store_memory=cfg.object_store_mb * 2**20,
                               include_dashboard=cfg.dashboard, **kwargs)
        self._connected = True
        # Every process of a local cluster names this folder on its command line (tests check that
        # none is left after close()).
        self.session_dir = getattr(context, "address_info", {}).get("session_dir")

    @property
    def nodes(self) -> list[dict]:
        import ray

        return [n for n in ray.nodes() if n.get("Alive")]

    # ------------------------------------------------------------------ deployment
    def deploy(self, detector_config: DetectorConfig) -> None:
        """Deploy ``config.replicas`` detector replicas; returns when every one is ready.

        A replica that cannot start (a weights file missing on its node, ``--device cuda`` without
        a GPU there) fails the deployment with one line."""
        import ray
        from ray import serve

        from app.serve.deployment import APP_NAME, BOARD_NAME, NAMESPACE, Board, build_app

        cfg = self.config
        resources = ray.cluster_resources()
        self.replica_gpus = cfg.replica_gpus if cfg.replica_gpus is not None else (1.0 if resources.get("GPU", 0) >= 1 else 0.0)
        if self.replica_gpus and resources.get("GPU", 0) < self.replica_gpus * cfg.replicas:
            raise UserError(f"{cfg.replicas} replica(s) × {self.replica_gpus:g} GPU need {self.replica_gpus * cfg.replicas:g} "
                            f"GPUs; the cluster has {resources.get('GPU', 0):g}")
        self.replica_cpus = cfg.replica_cpus if cfg.replica_cpus is not None else self._auto_cpus(resources)
        if resources.get("CPU", 0) < self.replica_cpus * cfg.replicas:
            raise UserError(f"{cfg.replicas} replica(s) × {self.replica_cpus:g} CPUs need {self.replica_cpus * cfg.replicas:g} "
                            f"CPUs; the cluster has {resources.get('CPU', 0):g} (lower --replica-cpus or --replicas)")
        self.transport = cfg.transport if cfg.transport != "auto" else ("raw" if len(self.nodes) <= 1 else "jpeg")
        self.knobs = Knobs(detector_config.proposals, detector_config.score_threshold)
        try:
            self.board = Board.options(name=BOARD_NAME, namespace=NAMESPACE, lifetime=None).remote(self.knobs)
        except ValueError:  # the name is taken: a driver that is still running owns it
            raise UserError("another run.py serve is running on this cluster (one at a time: they would share "
                            "the deployment)") from None
        ray.get(self.board.get.remote())
        # No HTTP proxy: frames reach the replicas through deployment handles only.
        serve.start(proxy_location="Disabled")
        logging.getLogger("ray.serve").setLevel(logging.WARNING)  # serve.start configures its own logger
        app = build_app(detector_config, replicas=cfg.replicas, cpus=self.replica_cpus, gpus=self.replica_gpus,
                        max_batch_size=cfg.max_batch_size, batch_wait_timeout_s=cfg.batch_wait_timeout_s)
        self._deployed = True
        try:
            self.handle = serve.run(app, name=APP_NAME, route_prefix=None)
        except Exception as exc:
            # Serve says only "failed to update"; the deployment's status holds the replica's
            # traceback, whose last line is the error (a weights file missing on a node, no GPU...).
            raise UserError(f"the detector deployment could not start: {_cause_line(_deployment_message(exc))}") from None

    def _auto_cpus(self, resources: dict[str, float]) -> float:
        if self.replica_gpus:
            return 1.0
        largest = max((n.get("Resources", {}).get("CPU", 0) for n in self.nodes), default=1)
        share = math.floor(resources.get("CPU", 1) / self.config.replicas) or 1
        return float(max(1, min(share, largest)))

    def set_knobs(self, *, proposals: int | None = None, score_threshold: float | None = None) -> Knobs:
        """Change proposals and/or the score threshold on every running replica (from its next
        batch) and for replicas started later. Raises ``ConfigError`` for a bad value."""
        import ray

        if self.knobs is None:
            raise RuntimeError("deploy() first")
        knobs = Knobs(self.knobs.proposals if proposals is None else proposals,
                      self.knobs.score_threshold if score_threshold is None else score_threshold)
        ray.get(self.board.set.remote(knobs), timeout=30)
        self.knobs = knobs
        self.handle.broadcast("set_knobs", knobs).results(timeout_s=30, return_exceptions=True)
        return knobs

    def replica_status(self) -> list[dict]:
        """Load and settings of every live replica (a replica busy starting is left out)."""
        if self.handle is None:
            return []
        try:
            rows = self.handle.broadcast("status").results(timeout_s=5, return_exceptions=True)
        except Exception as exc:  # a replica being replaced: report what answered next time
            log.debug("replica status: %s", exc)
            return []
        return sorted((r for r in rows if isinstance(r, dict)), key=lambda r: r["replica"])

    # ------------------------------------------------------------------ streams
    def start_streams(self, specs: Sequence[StreamSpec]) -> list[StreamStatus]:
        """Start one actor per stream, each opening its source and outputs on its node. A stream
        that cannot start stops them all and raises ``UserError`` naming it."""
        import ray

        if self.handle is None:
            raise RuntimeError("deploy() first")
        resources = ray.cluster_resources()
        for spec in specs:
            if spec.name in self._specs:
                raise UserError(f"a stream named {spec.name!r} already runs in this session")
            if spec.on is not None and spec.on not in resources:
                raise UserError(f"stream {spec.name!r}: no node has the resource {spec.on!r} "
                                f"(start that node with ray start --resources '{{\"{spec.on}\": 1}}')")
            if self._owns_cluster:  # one node, this one: refuse bad outputs before any work
                with user_errors(UserError, prefix=f"stream {spec.name!r}: "):
                    spec.config.check_outputs()
        actor_class = _stream_actor_class()
        started = {}
        for spec in specs:
            options = {"resources": {spec.on: 0.001}} if spec.on else {}
            actor = actor_class.options(**options).remote(
                spec, self.handle, transport=self.transport, retry_for_s=self.config.retry_for_s)
            self._actors[spec.name], self._specs[spec.name] = actor, spec
            started[spec.name] = actor.start.remote()
        statuses = []
        for name, ref in started.items():
            try:
                statuses.append(ray.get(ref, timeout=START_TIMEOUT_S))
            except Exception as exc:
                self.stop_streams()
                cause = _unwrap(exc)
                if isinstance(cause, UserError):
                    raise UserError(f"stream {name!r}: {first_line(cause)}") from None
                raise UserError(f"stream {name!r} could not start: {first_line(cause)}") from None
        return statuses

    def statuses(self) -> list[StreamStatus]:
        """Every stream's status, in start order (a stream whose actor died is "failed")."""
        import ray

        refs = {name: actor.status.remote() for name, actor in self._actors.items() if name not in self._final}
        out = []
        for name in self._specs:
            if name in self._final:
                out.append(self._final[name])
                continue
            try:
                status = ray.get(refs[name], timeout=30)
            except Exception as exc:
                status = StreamStatus(name, "failed", error=f"the stream's actor died: {first_line(_unwrap(exc))}")
            if status.state in ("done", "failed", "stopped"):
                self._final[name] = status
            out.append(status)
        return out

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s; True when every stream has ended."""
        deadline = time.monotonic() + timeout
        while True:
            if all(s.state in ("done", "failed", "stopped") for s in self.statuses()):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(0.25, left))

    def stop_streams(self) -> list[StreamStatus]:
        """Stop every stream that still runs (finalising its outputs); the final statuses."""
        import ray

        refs = {name: actor.stop.remote() for name, actor in self._actors.items() if name not in self._final}
        for name, ref in refs.items():
            try:
                self._final[name] = ray.get(ref, timeout=30)
            except Exception as exc:
                self._final[name] = StreamStatus(name, "failed", error=f"could not be stopped: {first_line(_unwrap(exc))}")
        return [self._final[name] for name in self._specs if name in self._final]

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        """Stop the streams, remove the application, disconnect (and stop a local cluster)."""
        if not self._connected:
            return
        import ray
        from ray import serve

        from app.serve.deployment import APP_NAME

        try:
            if self._actors:
                self.stop_streams()
                for actor in self._actors.values():
                    ray.kill(actor)
            if self._deployed:
                # The replicas drain and stop. Serve itself (its controller) is left to
                # ray.shutdown() below when the cluster is ours: serve.shutdown() kills the
                # controller under this driver's handle, whose pending calls Ray then reports as
                # failed tasks on the user's screen. On a joined cluster Serve belongs to others.
                serve.delete(APP_NAME)
            if self.board is not None:
                ray.kill(self.board)
        finally:
            self._connected = False
            ray.shutdown()

    def __enter__(self) -> ServeSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _send_token_if_any() -> None:
    """Attach this machine's Ray token when joining: ``ray start --head`` turns authentication on once
    a token exists (``~/.ray/auth_token``, written by any local ``ray.init`` since Ray 2.59), but
    ``ray.init(address=...)`` sends none unless ``RAY_AUTH_MODE=token`` (the join then retries
    "InvalidAuthToken" for a minute and fails). A head without authentication ignores a token; a
    value the user set is kept."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    default = os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.isfile(default):
        os.environ["RAY_AUTH_MODE"] = "token"


def _stream_actor_class():
    """``StreamWorker`` as a Ray actor. Built on first use so that this module imports without Ray."""
    import ray
    from ray.exceptions import ActorUnavailableError, RayActorError

    class StreamActor(StreamWorker):
        def __init__(self, spec: StreamSpec, handle, *, transport: str, retry_for_s: float) -> None:
            super().__init__(spec, handle.remote, transport=transport, retry_for_s=retry_for_s,
                             retryable=(RayActorError, ActorUnavailableError))
            self.node = f"{socket.gethostname()} ({ray.util.get_node_ip_address()})"

    # num_cpus=0: a stream decodes, draws and encodes, but must never wait for a CPU the replicas
    # hold; max_concurrency=2: status() answers while stop() finalises a recording. No runtime_env:
    # a stream does no OpenMP work, and one would cost each actor a dedicated worker start.
    return ray.remote(num_cpus=0, max_concurrency=2)(StreamActor)


def _unwrap(exc: BaseException) -> BaseException:
    """The exception raised inside an actor, rather than Ray's wrapper (whose text holds a traceback)."""
    return getattr(exc, "cause", None) or exc


def _deployment_message(exc: BaseException) -> str:
    from ray import serve

    from app.serve.deployment import APP_NAME, DEPLOYMENT_NAME

    try:
        app = serve.status().applications[APP_NAME]
        return app.deployments[DEPLOYMENT_NAME].message or app.message or str(exc)
    except Exception:  # no status to read: Serve's own words
        return str(exc)


def _cause_line(text: str) -> str:
    """The last "SomeError: message" line of a traceback (the replica's own error), without the
    module path of the exception's class."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    for line in reversed(lines):
        head, _, message = line.partition(": ")
        if head.endswith(("Error", "Exception")) and " " not in head and message:
            return message
    return lines[-1] if lines else "no reason given"
