"""Alerts (app/analytics/alerts.py) against real servers on loopback: Debian's mosquitto broker, started here
on a free port (skipped, with one line, where it is not installed — CI installs it), and a local
HTTP server. The events come from the real pipeline on the rendered crossing clip."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.app import crossing_clip as clip
from tests.app.analytics.test_events import read_events, run_events

MOSQUITTO = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return clip.write_clip(tmp_path_factory.mktemp("crossing") / "crossing.mp4")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """mosquitto on 127.0.0.1:``port``, started and killed by the test."""

    def __init__(self, folder: Path) -> None:
        if MOSQUITTO is None:
            pytest.skip("mosquitto is not installed (apt-get install mosquitto); the MQTT tests need a real broker")
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within 10 s")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None


class Subscriber:
    """A paho client that collects every message on ``topic`` and subscribes again after a
    reconnect; ``ready`` is set once subscribed."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[dict] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_disconnect = lambda *_: self.ready.clear()
        self.client.on_message = lambda c, u, m: self.messages.append(json.loads(m.payload))
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        assert self.ready.wait(10), "the test's subscriber could not subscribe"

    def wait_for(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture()
def broker(tmp_path):
    b = Broker(tmp_path)
    b.start()
    yield b
    b.kill()


def key(record: dict) -> tuple:
    return record["frame"], record["kind"], record["event"], record["track_id"]


def test_the_broker_receives_every_event(rendered, tmp_path, broker):
    sub = Subscriber(broker.port, "cams/events")
    try:
        pipeline, records = run_events(rendered, zone=True, events=str(tmp_path / "e.jsonl"),
                                       mqtt=f"127.0.0.1:{broker.port}/cams/events", alert_classes=("car",))
        sub.wait_for(len(records))
    finally:
        sub.close()
    assert len(records) >= 8
    assert sorted(map(key, sub.messages)) == sorted(map(key, records))
    assert sub.messages[0] == records[0]  # the same JSON object as the events file's line
    publisher = pipeline.events.publishers[0]
    assert (publisher.sent, publisher.retried, publisher.dropped) == (len(records), 0, 0)
    assert f"mqtt 127.0.0.1:{broker.port}/cams/events: sent {len(records)}, retried 0, dropped 0" in \
           pipeline.events.summary_lines()


class OutageDetector(clip.TruthDetector):
    """The true boxes; at frame ``kill_at`` it kills the broker, at ``restart_at`` — once the
    pipeline's sink thread has written the frames up to ``restart_at - 5`` while the broker was
    down (had a publish blocked it, they would not be) — it starts the broker again and waits for
    the test's subscriber to be back."""

    def __init__(self, broker: Broker, subscriber: Subscriber, kill_at: int, restart_at: int) -> None:
        super().__init__()
        self.broker, self.subscriber, self.kill_at, self.restart_at = broker, subscriber, kill_at, restart_at
        self.pipeline = None
        self.written_while_down = 0

    def detect(self, frames, **kwargs):
        if self.seen == self.kill_at:
            self.broker.kill()
        if self.seen == self.restart_at:
            deadline = time.monotonic() + 15
            while self.pipeline.stats().frames_written < self.restart_at - 5 and time.monotonic() < deadline:
                time.sleep(0.02)
            self.written_while_down = self.pipeline.stats().frames_written
            self.broker.start()
            assert self.subscriber.ready.wait(15)
        return super().detect(frames, **kwargs)


def test_a_broker_that_dies_and_comes_back(rendered, tmp_path, broker, monkeypatch):
    from app.analytics.count import Shape
    from app.analytics.events import EventsConfig
    from app.config import PipelineConfig
    from app.pipeline.pipeline import Pipeline

    sub = Subscriber(broker.port, "frcnn-video/events")
    kill_at, restart_at = 30, 50
    detector = OutageDetector(broker, sub, kill_at, restart_at)
    config = PipelineConfig(source_kind="video", source=str(rendered), lines=(Shape.parse("line", clip.LINE).coords,),
                            zones=(Shape.parse("zone", clip.ZONE).coords,),
                            events=EventsConfig(events=str(tmp_path / "e.jsonl"), mqtt=f"127.0.0.1:{broker.port}",
                                                alert_classes=("car",), counting=True))
    pipeline = Pipeline(config, detector)
    detector.pipeline = pipeline
    try:
        stats = pipeline.run()
        records = read_events(tmp_path / "e.jsonl")
        after = [r for r in records if r["frame"] > restart_at]
        sub.wait_for(len(records))
    finally:
        sub.close()
    assert stats.frames_written == clip.FRAMES  # the run went on
    assert detector.written_while_down >= restart_at - 5  # and the sinks kept up while the broker was down
    down = [r for r in records if kill_at <= r["frame"] < restart_at - 5]
    assert down and after  # the clip has events in the outage and after it
    received = set(map(key, sub.messages))
    assert all(key(r) in received for r in after)
    publisher = pipeline.events.publishers[0]
    # the first event of the outage failed or waited for a new connection; those queued behind it
    # may go through on that connection at their first try
    assert publisher.retried >= 1 and publisher.lost >= 1
    assert publisher.sent + publisher.dropped == len(records) and publisher.dropped == 0
    summary = publisher.summary()
    assert f"sent {len(records)}, retried {publisher.retried}, dropped 0" in summary and "connection lost" in summary


class Hook(BaseHTTPRequestHandler):
    """Answers 500 to the first POST, 200 to the others; keeps the bodies it accepted."""

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server = self.server
        server.calls += 1
        if server.calls == 1:
            self.send_response(500)
        else:
            server.accepted.append(json.loads(body))
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_webhook_that_fails_once_gets_every_event(rendered, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.calls, server.accepted = 0, []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        pipeline, records = run_events(rendered, events=str(tmp_path / "e.jsonl"), webhook=url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert server.accepted == records  # all of them, in order; the first after a retry
    assert server.calls == len(records) + 1
    publisher = pipeline.events.publishers[0]
    assert (publisher.sent, publisher.retried, publisher.dropped) == (len(records), 1, 0)
    assert "HTTP 500" in publisher.summary()


def test_a_webhook_nobody_answers_drops_its_events_at_the_end_without_holding_the_run(rendered, tmp_path, monkeypatch):
    import app.analytics.alerts

    monkeypatch.setattr(app.analytics.alerts, "DRAIN_S", 0.5)
    port = free_port()  # nothing listens there
    pipeline, records = run_events(rendered, events=str(tmp_path / "e.jsonl"), webhook=f"http://127.0.0.1:{port}/")
    publisher = pipeline.events.publishers[0]
    assert records and publisher.sent == 0 and publisher.dropped == len(records) and publisher.failures >= 1
