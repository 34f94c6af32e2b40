"""The settings of a ``serve`` run (Ray-free): one frozen object, validated once, and the address check."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from app.errors import UserError
from app.serve.batching import TRANSPORTS

DEFAULT_RAY_PORT = 6379  # `ray start --head`'s default GCS port
ADDRESS_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ServeConfig:
    """How the cluster, the deployment and the streams run: each field is the ``run.py serve``
    option of its name (its --help says more); a bad value raises ``UserError``.

    Attributes:
        address: a cluster to join (``HOST:PORT``, ``auto`` = the one ``ray start`` runs here, or
            ``ray://HOST:PORT``); None = a one-node cluster in this process, stopped when it ends.
        replica_cpus: CPUs (torch threads) per replica; None = the cluster's CPUs shared out (at
            most one node's), or 1 with GPUs.
        replica_gpus: GPUs per replica; None = 1 when the cluster has GPUs, else 0.
        transport: "raw" (shared-memory objects), "jpeg", or "auto" (raw on one node, else jpeg).
        num_cpus, object_store_mb, dashboard: a local cluster's CPUs (None = all), object store
            (where frames in flight live) and Ray dashboard (http://127.0.0.1:8265).
    """

    address: str | None = None
    replicas: int = 1
    replica_cpus: float | None = None
    replica_gpus: float | None = None
    max_batch_size: int = 8
    batch_wait_timeout_s: float = 0.02
    transport: str = "auto"
    in_flight: int = 4
    num_cpus: int | None = None
    object_store_mb: int = 256
    dashboard: bool = False
    retry_for_s: float = 120.0
    status_every_s: float = 2.0

    def __post_init__(self) -> None:
        _check_range(self.replicas, "--replicas", 1, 256)
        _check_range(self.max_batch_size, "--max-batch-size", 1, 256)
        _check_range(self.in_flight, "--in-flight", 1, 64)
        _check_range(self.object_store_mb, "--object-store-mb", 64, 1_000_000)
        if self.num_cpus is not None:
            _check_range(self.num_cpus, "--num-cpus", 1, 4096)
        _check_range(self.batch_wait_timeout_s, "--batch-wait-s", 0.0, 10.0)
        _check_range(self.retry_for_s, "--retry-for-s", 0.0, 86_400.0)
        _check_range(self.status_every_s, "--status-every-s", 0.1, 3600.0)
        if self.replica_cpus is not None:
            _check_range(self.replica_cpus, "--replica-cpus", 0.0, 4096.0)
        if self.replica_gpus is not None:
            _check_range(self.replica_gpus, "--replica-gpus", 0.0, 64.0)
        if self.transport not in ("auto", *TRANSPORTS):
            raise UserError(f"--transport {self.transport!r} is unknown; expected auto, {', '.join(TRANSPORTS)}")
        if self.address is not None:
            parse_address(self.address)
            local_only = {"--num-cpus": self.num_cpus is not None, "--dashboard": self.dashboard,
                          "--object-store-mb": self.object_store_mb != ServeConfig.object_store_mb}
            given = [flag for flag, set_ in local_only.items() if set_]
            if given:
                raise UserError(f"{given[0]} is for the local cluster; the one at --address {self.address} "
                                f"has its own (set by its `ray start`)")


def parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) to check before joining ``address``; None for ``auto``. Raises ``UserError``."""
    text = address.strip()
    if text == "auto":
        return None
    rest = text.removeprefix("ray://")
    default_port = 10001 if text.startswith("ray://") else DEFAULT_RAY_PORT  # Ray Client's port
    bad = UserError(f"--address {address!r} is not HOST:PORT, auto or ray://HOST:PORT")
    if not rest or "/" in rest or " " in rest:
        raise bad
    if rest.startswith("["):  # [IPv6]:PORT
        host, bracket, port = rest[1:].partition("]")
        if not bracket or port[:1] not in ("", ":"):
            raise bad
        port = port[1:] if port else str(default_port)
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    elif ":" not in rest:
        host, port = rest, str(default_port)
    else:
        raise UserError(f"--address {address!r}: write an IPv6 address as [ADDRESS]:PORT")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise bad
    return host, int(port)


def check_reachable(address: str, timeout_s: float = ADDRESS_TIMEOUT_S) -> None:
    """Fail with one line when nothing listens at ``address`` — before Ray, whose own connect
    waits and retries for a minute or more."""
    target = parse_address(address)
    if target is None:
        return
    host, port = target
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except socket.gaierror:
        raise UserError(f"cannot join the Ray cluster at {address}: unknown host {host!r}") from None
    except TimeoutError:
        raise UserError(f"cannot join the Ray cluster at {address}: no answer within {timeout_s:g} s "
                        f"(is `ray start --head` running there, and the port open?)") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UserError(f"cannot join the Ray cluster at {address}: {reason.lower()} "
                        f"(start one with `ray start --head --port {port}`)") from None


def _check_range(value, option: str, lo: float, hi: float) -> None:
    """Int bounds ask for an integer, float bounds for any number."""
    integer = isinstance(lo, int)
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not lo <= value <= hi:
        what = f"an integer between {lo} and {hi}" if integer else f"a number between {lo:g} and {hi:g}"
        raise UserError(f"{option} {value!r} must be {what}")
