"""The detector as a Ray Serve deployment, with dynamic batching, and the knobs board.

Each replica builds one ``detector.Detector`` from the CLI's ``DetectorConfig`` and answers one
frame per request; ``@serve.batch`` gathers the frames of any stream that arrive within
``batch_wait_timeout_s`` (≤ ``max_batch_size``) into one ``app.serve.batching.detect_batch`` call,
run in a thread so that the replica keeps accepting the next batch's frames.

**Live knobs.** ``set_knobs`` (proposals, score threshold) is broadcast to every replica and applies
from the next batch, nothing reloaded. The values also live in a named actor, the **board**, read by
a replica when it starts: one that Ray restarts comes back with the values of the moment.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import warnings

import ray
from ray import serve

from app.serve.batching import FramePayload, FrameReply, Knobs, ReplicaLoad, detect_batch
from detector.config import DetectorConfig

log = logging.getLogger(__name__)

APP_NAME = "frcnn"
DEPLOYMENT_NAME = "detector"
BOARD_NAME = "frcnn-knobs"
NAMESPACE = "frcnn-serve"


@ray.remote(num_cpus=0)
class Board:
    """The deployment's current knobs, read by every replica when it starts."""

    def __init__(self, knobs: Knobs) -> None:
        self.knobs = knobs

    def get(self) -> Knobs:
        return self.knobs

    def set(self, knobs: Knobs) -> None:
        self.knobs = knobs


class DetectorReplica:
    """One replica: a ``Detector`` behind a batched ``__call__(FramePayload) -> FrameReply`` (or the
    frame's own exception, returned: ``RemoteDetector`` raises it).

    Args:
        config: the detector (model, weights, device, precision, proposals, threshold, classes).
        max_batch_size, batch_wait_timeout_s: the batching (see ``serve.batch``).
        threads: torch's intra-op threads (the replica's CPUs; Ray would otherwise set 1 for
            fractional CPUs).
    """

    def __init__(self, config: DetectorConfig, *, max_batch_size: int = 8, batch_wait_timeout_s: float = 0.02,
                 threads: int | None = None) -> None:
        from app.pipeline.fastpath import build_detector
        from app.pipeline.threads import ThreadBudget, plan

        # Frames from the object store are read-only views; the detector only reads them (it
        # converts to float first), so torch's "not writable" warning says nothing here.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        # the CPU fast path as run.py has it: --precision/--channels-last auto are measured once per
        # model, machine and thread count (cached) and the fastest that keeps the accuracy is used
        budget = ThreadBudget(torch=int(threads), decode=0, encode=0) if threads else plan()
        self.detector, setup = build_detector(config, budget=budget)
        for line in setup.notes:  # what auto chose and why, in the replica's log
            log.info("replica: %s", line)
        self.replica = _replica_id()
        self.load = ReplicaLoad()
        self.detect_frames.set_max_batch_size(max_batch_size)
        self.detect_frames.set_batch_wait_timeout_s(batch_wait_timeout_s)
        try:
            knobs = ray.get(ray.get_actor(BOARD_NAME, namespace=NAMESPACE).get.remote(), timeout=10)
            knobs.apply(self.detector)
        except ValueError:  # no board (the deployment was started without one): keep config's knobs
            pass

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def detect_frames(self, payloads: list[FramePayload]) -> list[FrameReply | Exception]:
        start = time.monotonic()
        replies = await asyncio.to_thread(detect_batch, self.detector, payloads, replica=self.replica)
        self.load.add(start, time.monotonic(), len(payloads))
        return replies

    async def __call__(self, payload: FramePayload) -> FrameReply | Exception:
        return await self.detect_frames(payload)

    def set_knobs(self, knobs: Knobs) -> None:
        """Apply ``knobs`` from the next batch on."""
        knobs.apply(self.detector)

    def status(self) -> dict:
        """This replica's load and settings, for the status table."""
        return {"replica": self.replica, "pid": os.getpid(), "node": ray.util.get_node_ip_address(),
                "device": str(self.detector.device), "precision": self.detector.precision,
                "proposals": self.detector.proposal_count,
                "score_threshold": self.detector.score_threshold, **self.load.snapshot()}


def _replica_id() -> str:
    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # outside Serve (tests that build the class directly)
        return f"local-{os.getpid()}"


def build_app(config: DetectorConfig, *, replicas: int = 1, cpus: float = 1.0, gpus: float = 0.0,
              max_batch_size: int = 8, batch_wait_timeout_s: float = 0.02):
    """The Serve application: ``replicas`` × ``DetectorReplica``, each holding ``cpus`` CPUs and
    ``gpus`` GPUs. Health checks every 2 s, so that a dead replica is replaced within seconds."""
    deployment = serve.deployment(
        DetectorReplica,
        name=DEPLOYMENT_NAME,
        num_replicas=replicas,
        # A replica must be able to hold a whole batch plus the next one while it computes.
        max_ongoing_requests=max(2 * max_batch_size, 4),
        health_check_period_s=2.0,
        health_check_timeout_s=30.0,
        graceful_shutdown_timeout_s=5.0,
        ray_actor_options={
            "num_cpus": cpus,
            "num_gpus": gpus,
            # As run.py: idle OpenMP threads sleep rather than spin, which on a CPU shared with
            # decoders and encoders made detect() calls many times slower (docs/pipeline.md).
            "runtime_env": {"env_vars": {"OMP_WAIT_POLICY": "PASSIVE"}},
        },
    )
    threads = max(1, int(cpus)) if not gpus else None
    return deployment.bind(config, max_batch_size=max_batch_size, batch_wait_timeout_s=batch_wait_timeout_s,
                           threads=threads)
