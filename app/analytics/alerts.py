"""Alerts: each event sent to an MQTT broker (``--mqtt``) or POSTed to a web hook (``--webhook``).

A ``Publisher`` owns one thread and a bounded queue. ``put`` never waits: a full queue drops (and
counts) its oldest event, so a broker that is down costs memory up to the bound and nothing else.
The thread sends one event at a time, in order; a failed send (broker down, HTTP error, timeout) is
tried again after a backoff of 0.2, 0.4, 0.8 … up to 5 s for as long as the run lasts. ``close()``
lets the queue drain for up to ``DRAIN_S``, then counts what is left as dropped. The summary gives
the events sent, retried (needed more than one try) and dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import re
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from app.errors import UserError, one_line

log = logging.getLogger(__name__)

DEFAULT_PORT = 1883
DEFAULT_TOPIC = "frcnn-video/events"
CAPACITY = 1000  # events waiting to be sent; beyond it the oldest are dropped
BACKOFF_S = (0.2, 5.0)  # first and longest wait between tries
DRAIN_S = 5.0  # at the end of the run, how long queued events may still take
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)$")


def parse_mqtt(text: str) -> tuple[str, int, str]:
    """(host, port, topic) of "HOST[:PORT][/TOPIC]"; ``UserError`` naming the bad part."""
    where, _, topic = str(text).strip().removeprefix("mqtt://").partition("/")
    host, port = where, str(DEFAULT_PORT)
    if where.startswith("["):  # [ipv6]:port
        end = where.find("]")
        host, rest = where[: end + 1], where[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise UserError(f"--mqtt {text!r}: expected HOST[:PORT][/TOPIC]")
            port = rest[1:]
    elif ":" in where:
        host, port = where.rsplit(":", 1)
    if not host or not _HOST.match(host):
        raise UserError(f"--mqtt {text!r}: {host!r} is not a host name or address (expected HOST[:PORT][/TOPIC])")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UserError(f"--mqtt {text!r}: port {port!r} must be a number from 1 to 65535")
    topic = topic or DEFAULT_TOPIC
    if any(c in topic for c in "+#\0") or topic.startswith("/") or topic.endswith("/"):
        raise UserError(f"--mqtt {text!r}: topic {topic!r} may not hold + or # or start or end with /")
    return host.strip("[]"), int(port), topic


def parse_webhook(text: str) -> str:
    """The URL of ``--webhook``: http or https with a host; ``UserError`` otherwise."""
    parts = urlsplit(str(text).strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"--webhook {text!r}: expected an http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 (validates it)
    except ValueError:
        raise UserError(f"--webhook {text!r}: the port is not a number from 0 to 65535") from None
    return str(text).strip()


class Publisher:
    """Sends events from a bounded queue on its own thread, retrying with backoff.

    Subclasses give ``target`` (for messages) and ``_send(payload: bytes)``, which raises on any
    failure, and may give ``_reset()`` to drop a broken connection.
    """

    target = "?"

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=CAPACITY)
        self._closing = threading.Event()
        self._halt = threading.Event()
        self._wake = threading.Event()  # cuts a backoff short: set by close() and by the halt
        self._deadline = float("inf")
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"alerts-{type(self).__name__}", daemon=True)
        self.sent = self.retried = self.dropped = self.failures = 0
        self._redelivered = False  # set by a send that went through only after a reconnect
        self.last_error: str | None = None

    def start(self) -> Publisher:
        self._thread.start()
        return self

    def put(self, record: dict) -> None:
        """Queue one event (never waits; a full queue loses its oldest event)."""
        payload = json.dumps(record, separators=(",", ":")).encode()
        with self._lock:  # the only producer: once there is room, it stays
            if self._queue.full():
                with contextlib.suppress(queue.Empty):  # the sender may have taken it meanwhile
                    self._queue.get_nowait()
                    self.dropped += 1
            self._queue.put_nowait(payload)

    def _run(self) -> None:
        item, tries = None, 0
        try:
            while not self._halt.is_set():
                if item is None:
                    if self._closing.is_set() and (self._queue.empty() or time.monotonic() >= self._deadline):
                        break
                    try:
                        item = self._queue.get(timeout=0.1)
                    except queue.Empty:
                        continue
                    tries = 0
                try:
                    self._send(item)
                except Exception as exc:  # down, gone, refused, timed out, HTTP 5xx: try again later
                    tries += 1
                    self.failures += 1
                    self.last_error = one_line(exc)
                    if tries == 1:
                        log.info("%s: %s; retrying", self.target, self.last_error)
                    self._safe_reset()
                    left = self._deadline - time.monotonic()  # inf until close()
                    if left <= 0:
                        break
                    self._wake.wait(min(BACKOFF_S[1], BACKOFF_S[0] * 2 ** (tries - 1), left))
                    self._wake.clear()
                    continue
                self.sent += 1
                self.retried += tries > 0 or self._redelivered
                self._redelivered = False
                item = None
        finally:
            self.dropped += (item is not None) + self._queue.qsize()
            self._safe_reset()

    def _safe_reset(self) -> None:
        try:
            self._reset()
        except Exception as exc:  # a connection that fails to close is closed all the same
            log.debug("%s: reset: %s", self.target, exc)

    def close(self) -> None:
        """Let the queue drain for up to ``DRAIN_S``, then stop; what is left counts as dropped."""
        if self._thread.ident is None:  # never started
            self.dropped += self._queue.qsize()
            return
        self._deadline = time.monotonic() + DRAIN_S
        self._closing.set()
        self._wake.set()  # a send waiting out a backoff tries once more now
        self._thread.join(DRAIN_S + 6.0)  # + one send's own timeouts
        if self._thread.is_alive():
            self._halt.set()
            self._wake.set()
            self._thread.join(2.0)

    def summary(self) -> str:
        text = f"{self.target}: sent {self.sent}, retried {self.retried}, dropped {self.dropped}"
        if getattr(self, "lost", 0):
            text += f"; connection lost {self.lost} time(s)"
        if self.failures:
            text += f" ({self.failures} failed tr{'y' if self.failures == 1 else 'ies'}; last: {self.last_error})"
        return text

    # for subclasses
    def _send(self, payload: bytes) -> None:
        raise NotImplementedError

    def _reset(self) -> None:
        pass


class MqttPublisher(Publisher):
    """Publishes each event to ``HOST[:PORT][/TOPIC]`` with QoS 1 (paho-mqtt); a send counts once
    the broker has acknowledged it (PUBACK). An event counts as retried when a try failed, when it
    had to wait for a new connection after the broker went away, or when paho sent it again after
    reconnecting on its own."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self.host, self.port, self.topic = parse_mqtt(address)
        self.timeout_s = 2.0  # for the connection, and for each PUBACK
        self.target = f"mqtt {self.host}:{self.port}/{self.topic}"
        self._client = None
        self.lost = 0  # connections that dropped (the broker went away)
        self._up = threading.Event()  # connected: set by on_connect, cleared by on_disconnect
        self._connected_once = False

    def _connect(self):
        import paho.mqtt.client as mqtt

        client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        client.connect_timeout = self.timeout_s
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_disconnect = self._on_disconnect
        client.on_connect = self._on_connect
        self._client = client
        client.connect(self.host, self.port, keepalive=15)
        client.loop_start()
        deadline = time.monotonic() + self.timeout_s
        while not self._up.is_set():
            if time.monotonic() > deadline or self._halt.is_set():
                raise ConnectionError(f"no CONNACK from {self.host}:{self.port} within {self.timeout_s:g} s")
            time.sleep(0.02)
        return client

    def _send(self, payload: bytes) -> None:
        import paho.mqtt.client as mqtt

        client = self._client
        if client is None or not self._up.is_set():  # paho's is_connected() lags behind a lost socket
            if self._connected_once:  # this event waits for a new connection: it counts as retried
                self._redelivered = True
            self._reset()
            client = self._connect()
            self._connected_once = True
        lost = self.lost
        info = client.publish(self.topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish failed: {mqtt.error_string(info.rc)}")
        info.wait_for_publish(timeout=self.timeout_s)
        if not info.is_published():
            raise TimeoutError(f"no PUBACK within {self.timeout_s:g} s")
        if self.lost != lost:  # paho's loop reconnected and sent it again: a retry all the same
            self._redelivered = True
            self.last_error = "the broker went away; paho reconnected and sent it again"

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if client is self._client and not reason_code.is_failure:
            self._up.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if client is self._client:  # not the one _reset() is closing
            self._up.clear()
            self.lost += 1

    def _reset(self) -> None:
        client, self._client = self._client, None
        self._up.clear()
        if client is not None:
            client.loop_stop()
            client.disconnect()


class WebhookPublisher(Publisher):
    """POSTs each event as ``application/json`` to a URL; any 2xx answer is a success."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = parse_webhook(url)
        self.timeout_s = 5.0  # for each POST
        self.target = f"webhook {self.url}"

    def _send(self, payload: bytes) -> None:
        request = urllib.request.Request(self.url, data=payload, method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "frcnn-video"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:  # noqa: S310 (http(s) only)
                answer.read()
        except urllib.error.HTTPError as exc:
            raise ConnectionError(f"HTTP {exc.code} {exc.reason}") from None
