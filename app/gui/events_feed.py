"""From a pipeline's events to the window: each event with a thumbnail, the heat map, and the state
of the alert outputs — all by queued signals (the pipeline's sink threads emit, the GUI thread shows).

``EventFeed.attach`` runs on the controller's thread before the pipeline starts, for one stream or
many. It adds to every stream, in this order, a ``_FrameTap`` sink (remembers the result being
delivered), then the stream's event sinks — the pipeline's own (``Pipeline.attach_events``) when the
config sends events somewhere (file, clips, MQTT, webhook), else a bare ``EventSink`` that only feeds
the window — and, on the first stream, a sink feeding a ``Heat`` (the window draws the heat map on a
single view). A stream hands each result to its sinks in order on one thread, so when an
``EventSink`` calls our listener, that stream's tap holds the event's own frame: the thumbnail is cut
from it, never from a later one.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from PyQt6.QtCore import QObject, pyqtSignal

from app.analytics.heatmap import Heat
from app.pipeline.render import annotate

THUMB_PX = 64  # a thumbnail's longer side
OUTPUTS_INTERVAL_S = 0.5  # the alert counters are sent at most this often (and once at the end)


@dataclass(frozen=True)
class WindowEvent:
    """One event for the window's list: ``record`` as written to the events file (app/analytics/events.py),
    ``thumb`` a small uint8 RGB crop [h ≤ 64, w ≤ 64, 3] of the event's box from the drawn frame
    (None when the record has no box)."""

    record: dict
    thumb: np.ndarray | None = field(default=None, compare=False)


@dataclass(frozen=True)
class OutputState:
    """One alert output: ``name`` (events file / clips / MQTT / webhook), ``target`` (its path or
    address; "" when off), and for MQTT and the webhook the publisher's counters."""

    name: str
    target: str = ""
    written: int | None = None
    sent: int | None = None
    retried: int | None = None
    dropped: int | None = None
    last_error: str | None = None

    def line(self) -> str:
        if not self.target:
            return f"{self.name}: off"
        text = f"{self.name}: {self.target}"
        if self.written is not None:
            text += f" · {self.written} written"
        if self.sent is not None:
            text += f" · sent {self.sent}, retried {self.retried}, dropped {self.dropped}"
        if self.last_error and self.retried is not None:
            text += f" (last error: {self.last_error})"
        return text


def for_next_source(events):
    """The events settings for a restart or another source: without the events file and the heat
    map (their files are this run's; writing them again would refuse or overwrite them); the clips
    folder (new clips take new names), MQTT, the webhook and the watched classes stay."""
    if events is None or (events.events is None and events.heatmap is None):
        return events
    return replace(events, events=None, heatmap=None)


class _FrameTap:
    """A sink that keeps the result being delivered (the sink thread reads it back in the listener)."""

    needs_image = False

    def __init__(self) -> None:
        self.result = None
        self.annotated = None

    def write(self, result, annotated) -> None:
        self.result, self.annotated = result, annotated

    def close(self) -> None:
        self.result = self.annotated = None


class _HeatSink:
    """Feeds the window's ``Heat`` with every detected, tracked result; sends the outputs' state."""

    needs_image = False

    def __init__(self, feed: EventFeed, heat: Heat | None) -> None:
        self.feed, self.heat = feed, heat
        self._sent_at = 0.0

    def write(self, result, annotated) -> None:
        if self.heat is not None and result.detected:
            self.heat.add(result.frame.image, result.detections)
        now = time.monotonic()
        if now - self._sent_at >= OUTPUTS_INTERVAL_S:
            self._sent_at = now
            self.feed.send_outputs()

    def close(self) -> None:
        pass


class EventFeed(QObject):
    """The window's view of a pipeline's events.

    Signals (emitted on the pipeline's threads; connect queued):
        event_ready(WindowEvent): an event happened.
        heat_changed(object): the ``app.analytics.heatmap.Heat`` of the pipeline just attached (thread-safe).
        outputs_changed(object): a list of ``OutputState`` — which outputs are on, and their counters.
    """

    event_ready = pyqtSignal(object)
    heat_changed = pyqtSignal(object)
    outputs_changed = pyqtSignal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._events = None  # app.analytics.events.Events of the current pipeline, when it sends events anywhere
        self._config = None

    def attach(self, pipeline, events_config) -> None:
        """Add the event sinks, with the window's listener, to every stream of ``pipeline`` (not started yet).

        ``events_config``: the run's ``app.analytics.events.EventsConfig``, or None (the window still lists
        the crossings and zone entries of its lines and zones). Call ``send_outputs`` once the pipeline
        has stopped, for the outputs' last counters.
        """
        from app.analytics.events import EventsConfig, EventSink

        taps = {lane.name: lane.add_sink(_FrameTap()) for lane in pipeline.lanes}
        events, heat = None, None
        if events_config is not None and events_config.active:
            sinks = pipeline.attach_events(events_config)  # file, clips, alerts, heat maps; closed at the end
            events = pipeline.events
            heat = events.heatmaps[0].heat if events.heatmaps else None
        else:
            sinks = {lane.name: [] for lane in pipeline.lanes}
        base = events_config if events_config is not None else EventsConfig()
        bare = EventsConfig(counting=True, alert_classes=base.alert_classes, min_frames=base.min_frames)
        for lane in pipeline.lanes:
            if not any(isinstance(sink, EventSink) for sink in sinks[lane.name]):  # a sink for the window's list alone
                if bare.alert_classes:
                    lane.analytics.set_tracking(True)
                sinks[lane.name].append(lane.add_sink(EventSink(bare, lane.analytics, lane.name)))
            for sink in sinks[lane.name]:
                if isinstance(sink, EventSink):
                    sink.add_listener(lambda record, tap=taps[lane.name]: self._on_event(record, tap, pipeline.style))
        own = Heat() if heat is None else None  # else the heat map file's, which its own sink fills
        pipeline.lanes[0].add_sink(_HeatSink(self, own))
        with self._lock:
            self._events, self._config = events, events_config
        self.heat_changed.emit(heat or own)
        self.send_outputs()

    def _on_event(self, record: dict, tap: _FrameTap, style) -> None:
        """On the sink thread, inside the EventSink's write: ``tap`` holds this event's frame."""
        thumb = None
        if tap.result is not None and record.get("box"):
            with contextlib.suppress(Exception):  # a thumbnail is decoration: the event is listed without one
                thumb = thumbnail(tap.result, tap.annotated, record["box"], style)
        self.event_ready.emit(WindowEvent(dict(record), thumb))

    def output_states(self) -> list[OutputState]:
        """Which outputs are on, with their counters now (any thread)."""
        with self._lock:
            events, config = self._events, self._config

        def target(key: str) -> str:  # the output's path or address in the run's settings; "" when off
            return str(getattr(config, key, None) or "")

        log = getattr(events, "log", None)
        clips = [s.clips for s in events.sinks if s.clips is not None] if events is not None else []
        states = [OutputState("events file", target("events"), written=log.written if log is not None else None),
                  OutputState("clips", target("clips"), written=sum(len(c.paths) for c in clips) if clips else None)]
        publishers = {type(p).__name__: p for p in events.publishers} if events is not None else {}
        for name, kind, key in (("MQTT", "MqttPublisher", "mqtt"), ("webhook", "WebhookPublisher", "webhook")):
            p = publishers.get(kind)
            counters = {} if p is None else {"sent": p.sent, "retried": p.retried, "dropped": p.dropped,
                                             "last_error": p.last_error}
            states.append(OutputState(name, target(key), **counters))
        return states

    def send_outputs(self) -> None:
        self.outputs_changed.emit(self.output_states())


def thumbnail(result, annotated: np.ndarray | None, box, style) -> np.ndarray:
    """The event's ``box`` (x1, y1, x2, y2 in frame pixels) cut from the drawn frame, with a margin
    of a quarter of its size, scaled so that its longer side is ``THUMB_PX``: uint8 RGB, a copy.

    ``annotated`` is the frame the pipeline drew for its sinks when one of them wanted it (event
    clips); without it the frame is drawn here — only on frames with an event."""
    if annotated is None:
        annotated = annotate(result.frame.image, result.detections, None, style, result.overlay)
    h, w = annotated.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = (x2 - x1) / 4 + 2, (y2 - y1) / 4 + 2
    xa, ya = max(0, int(x1 - mx)), max(0, int(y1 - my))
    xb, yb = min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my)))
    if xb <= xa or yb <= ya:
        raise ValueError(f"box {box} lies outside the {w}×{h} frame")
    crop = annotated[ya:yb, xa:xb]
    scale = THUMB_PX / max(crop.shape[:2])
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    return np.ascontiguousarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
