"""Events: what happened, when, to whom — a line crossed, a zone entered or left, a watched class
appeared — written as JSON lines, cut into clips and sent as alerts.

A line or zone event is a ``CountEvent`` the counters (app/analytics/count.py) already recorded, the
same the counts file lists: after each frame the new ones are read, given the track's box and score,
and handed on. "Appear" events (``--alert-classes``) are decided here: a track of a watched class
seen in ``min_frames`` detected frames, once per track.

``EventSink`` runs on the pipeline's sink thread, after the drawing, in frame order, and never blocks
the detector: clip frames go to the clip writer's thread, alerts to bounded queues.

One record per event (``EventsConfig``/``--events OUT.jsonl``)::

    {"time_s": 2.6, "wall_time": "2026-12-01T10:00:02.600+00:00", "stream": "crossing", "frame": 26,
     "kind": "line", "event": "in", "line": "line 1", "class": "person", "track_id": 3, "score": 0.95,
     "box": [300.0, 20.0, 340.0, 110.0], "clip": "clips/crossing-0002.600s-line-1-in.mp4"}

``kind`` is "line" (``event`` "in"/"out", with ``line``), "zone" ("enter"/"exit", with ``zone``)
or "class" ("appear"). ``clip`` is null without ``--event-clips``.
"""

from __future__ import annotations

import argparse
import json
import math
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from itertools import takewhile
from pathlib import Path

from app.errors import UserError
from app.io import Closing
from app.io.paths import _writable, check_output_path

TRACKS_KEPT = 4096  # per stream: the track IDs whose box and appear state are kept (Recent)


@dataclass(frozen=True)
class EventsConfig:
    """What to do with events; validated on construction (``UserError`` naming the option).

    Attributes:
        events: a JSON-lines file, one object per event, flushed as each happens; or None.
        clips: a folder for one H.264 mp4 per event, or None; pre_s, post_s: its seconds before and after.
        alert_classes: class names whose appearance is an event, once a track is seen in ``min_frames``.
        mqtt, webhook: "HOST[:PORT][/TOPIC]" (QoS 1) and an http(s) URL to send each event to; or None.
        heatmap: a .png for the map of where tracked objects stood, or None.
        counting: whether lines or zones were given (they make events of their own).
    """

    events: str | None = None
    clips: str | None = None
    pre_s: float = 3.0
    post_s: float = 5.0
    alert_classes: tuple[str, ...] = ()
    min_frames: int = 3
    mqtt: str | None = None
    webhook: str | None = None
    heatmap: str | None = None
    counting: bool = False

    def __post_init__(self) -> None:
        for name, option in (("pre_s", "--pre"), ("post_s", "--post")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not 0 <= value <= 600:
                raise UserError(f"{option} {value!r}: expected seconds between 0 and 600")
        if self.pre_s + self.post_s <= 0:
            raise UserError("--pre 0 and --post 0 leave a clip no frame; give one of them more than 0 s")
        if isinstance(self.min_frames, bool) or not isinstance(self.min_frames, int) or not 1 <= self.min_frames <= 1000:
            raise UserError(f"--alert-min-frames {self.min_frames!r}: expected a whole number of frames, 1 to 1000")
        object.__setattr__(self, "alert_classes", tuple(str(c) for c in self.alert_classes))
        if self.events is not None and Path(self.events).suffix.lower() not in (".jsonl", ".ndjson"):
            # not .json: one object per line, appended as each event happens, is not one JSON document
            raise UserError(f"--events {self.events}: expected a .jsonl file (one JSON object per line)")
        if self.heatmap is not None and Path(self.heatmap).suffix.lower() != ".png":
            raise UserError(f"--heatmap {self.heatmap}: expected a .png file")
        from app.analytics.alerts import parse_mqtt, parse_webhook

        for value, parse in ((self.mqtt, parse_mqtt), (self.webhook, parse_webhook)):
            if value is not None:
                parse(value)
        if self.wants_events and not (self.counting or self.alert_classes):
            given = next(o for o, v in (("--events", self.events), ("--event-clips", self.clips), ("--mqtt", self.mqtt),
                                        ("--webhook", self.webhook)) if v)
            raise UserError(f"{given}: there is nothing to report — give a --line, a --zone or --alert-classes")

    @property
    def wants_events(self) -> bool:
        """Whether events go anywhere (a file, clips, MQTT, a webhook)."""
        return bool(self.events or self.clips or self.mqtt or self.webhook)

    @property
    def active(self) -> bool:
        return self.wants_events or bool(self.heatmap)

    @property
    def needs_tracking(self) -> bool:
        return self.active or bool(self.alert_classes)

    def check_outputs(self, overwrite: bool) -> None:
        """Refuse outputs that cannot or must not be written, before any work; touches nothing."""
        for path, what in ((self.events, "events"), (self.heatmap, "heat map")):
            if path is not None:
                check_output_path(path, what, overwrite=overwrite)
        if self.clips is not None:
            check_folder(self.clips, "--event-clips")

    def check_classes(self, class_names) -> None:
        """Refuse an alert class the model does not know (``class_names``: the model's names)."""
        known = [c for c in class_names if c and c != "__background__"]
        for c in self.alert_classes:
            if c not in known:
                raise UserError(f"--alert-classes: {c!r} is not a class of this model (it knows: {', '.join(known[:20])}"
                                f"{', …' if len(known) > 20 else ''})")


def check_folder(path: str, option: str) -> None:
    """A folder that exists and is writable, or whose parent is (it is then created at the start)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{option} {path} is a file, not a folder")
    folder = p if p.exists() else p.parent  # the parent of a bare name is "."
    if not folder.is_dir():
        raise UserError(f"{option} {path}: neither it nor its parent folder {folder} exists")
    if not _writable(folder):
        raise UserError(f"{option} {path}: the folder {folder} is not writable")


# ====================================================================== options
def add_event_options(parser: argparse.ArgumentParser) -> None:
    """The run command's event options."""
    group = parser.add_argument_group(
        "events and alerts (from --line, --zone and --alert-classes; they turn on --track)")
    group.add_argument("--events", metavar="OUT.jsonl",
                       help="write one JSON object per event (line crossed, zone entered/left, watched class "
                            "appeared): time in the stream and wall clock, stream, kind, line/zone, class, track "
                            "id, score, box, clip — flushed as it happens")
    group.add_argument("--event-clips", metavar="DIR",
                       help="write an annotated H.264 mp4 per event to DIR (created if missing): --pre seconds "
                            "before it, --post after; overlapping events share a clip")
    # no argparse default for these three: one given without the option it qualifies is refused
    group.add_argument("--pre", type=float, metavar="S",
                       help="seconds before an event in its clip (default: 3.0)")
    group.add_argument("--post", type=float, metavar="S",
                       help="seconds after an event in its clip (default: 5.0)")
    group.add_argument("--alert-classes", default="", metavar="A,B",
                       help="an object of these classes appearing is an event (e.g. person,car), once per track")
    group.add_argument("--alert-min-frames", type=int, metavar="N",
                       help="detected frames a track must be seen in before its appearance counts, so that one "
                            "flicker is not an event (default: 3)")
    group.add_argument("--mqtt", metavar="HOST[:PORT][/TOPIC]",
                       help="publish each event to this MQTT broker (QoS 1; port 1883, topic frcnn-video/events by "
                            "default); a broker that is down is retried with backoff, the run never waits on it")
    group.add_argument("--webhook", metavar="URL", help="POST each event as JSON to this http(s) URL (retried with backoff)")
    group.add_argument("--heatmap", metavar="OUT.png",
                       help="write where tracked objects stood (their boxes' bottom centres), over the first frame: "
                            "OUT.png for all classes and OUT-<class>.png for each")


def events_config_from_args(args: argparse.Namespace) -> EventsConfig | None:
    """The ``EventsConfig`` of the parsed options; None when none of them was used. ``--pre``/``--post``
    without ``--event-clips`` or ``--alert-min-frames`` without ``--alert-classes`` (they would change
    nothing) raise ``UserError``."""
    classes = tuple(c.strip() for c in (args.alert_classes or "").split(",") if c.strip())
    qualifiers = (("pre_s", "--pre", args.pre, "--event-clips", args.event_clips),
                  ("post_s", "--post", args.post, "--event-clips", args.event_clips),
                  ("min_frames", "--alert-min-frames", args.alert_min_frames, "--alert-classes", classes))
    config = EventsConfig(events=args.events, clips=args.event_clips, alert_classes=classes, mqtt=args.mqtt,
                          webhook=args.webhook, heatmap=args.heatmap, counting=bool(args.line or args.zone),
                          **{field: value for field, _, value, _, _ in qualifiers if value is not None})
    for _, option, value, needs, given in qualifiers:  # after the values' own checks
        if value is not None and not given:
            raise UserError(f"{option} needs {needs} (alone it changes nothing)")
    return config if config.active or classes else None


# ====================================================================== the sink
class EventLog:
    """The JSON-lines file, shared by every stream of a run (a lock keeps lines whole). A write that
    fails (disk full) stops this file only: ``failed`` says why in one line, later events are not
    written to it (they still go to the clips and alerts)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise UserError(f"events file {self.path} could not be created: {exc}") from None
        self._lock = threading.Lock()
        self.written = 0
        self.failed: str | None = None

    def write(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            if self._file.closed:
                return
            try:
                self._file.write(line)
                self._file.flush()
            except OSError as exc:
                reason = exc.strerror or exc
                self.failed = f"events file {self.path} stopped after {self.written} events: {reason}"
                self._close()
                return
            self.written += 1

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        try:
            self._file.close()
        except OSError as exc:  # the last line could not be flushed (disk full)
            self.failed = self.failed or f"events file {self.path}: closing failed: {exc.strerror or exc}"


class Recent(OrderedDict):
    """A dict of the last ``TRACKS_KEPT`` track IDs set: setting one makes it the newest, and the one
    set longest ago goes (a run of days sees millions of IDs; the tracker lets a lost one go in
    seconds, so a track still in view is always among the recent)."""

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        if len(self) > TRACKS_KEPT:
            self.popitem(last=False)


class EventSink(Closing):
    """Turns each result's new events into records and hands them to the log, the clip writer and
    the alert publishers.

    Args:
        config, stream: the events settings; the stream's name, put in every record.
        analytics: the stream's ``app.analytics.analytics.Analytics`` (its counters' event lists are read).
        log, clips: the shared ``EventLog`` and the stream's ``app.analytics.clips.ClipWriter``, or None.
        publishers: the alert publishers (``app.analytics.alerts.Publisher``), shared by the streams.
    """

    def __init__(self, config: EventsConfig, analytics, stream: str, *, log: EventLog | None = None,
                 publishers=(), clips=None) -> None:
        self.config, self.analytics, self.stream = config, analytics, stream
        self.log, self.publishers, self.clips = log, tuple(publishers), clips
        self.needs_image = clips is not None
        self._cursors: dict[object, int] = {}  # counter → how many of its events were taken
        self._tracks = Recent()  # track id → (box, score), last seen
        self._seen = Recent()  # track id of a watched class → detected frames seen
        self._appeared = Recent()  # track id → True, once its appear event is out
        self._watch = set(config.alert_classes)
        self._classes_checked = False
        self.counts: Counter[str] = Counter()  # "line in" → events so far
        self._listeners: list = []

    def add_listener(self, fn) -> None:
        """``fn(record)`` is called on the sink thread for every event (the window's list)."""
        self._listeners.append(fn)

    def write(self, result, annotated) -> None:
        frame = result.frame
        if self._watch and not self._classes_checked:  # the model's names are known from its first result
            self.config.check_classes(result.detections.class_names)
            self._classes_checked = True
        # no IDs, no events: the window's tracking switch may be turned off while events are on
        if result.detected and result.detections.track_ids is not None:
            self._update_tracks(result.detections)
            events = self._count_events(frame.index)
            if self._watch:
                events += self._appear_events(result.detections)
            for e in events:
                self._emit(e, result)
        if self.clips is not None:
            self.clips.add_frame(frame, annotated)

    def _update_tracks(self, det) -> None:
        for box, score, tid in zip(det.boxes, det.scores, det.track_ids, strict=True):
            if tid >= 0:
                self._tracks[int(tid)] = ([round(float(v), 1) for v in box], round(float(score), 4))

    def _count_events(self, frame_index: int) -> list[tuple]:
        out = []
        for kind, counter in [*(("line", c) for c in self.analytics.lines), *(("zone", c) for c in self.analytics.zones)]:
            taken = self._cursors.get(counter, 0)  # the worker may be frames ahead: later events wait
            new = list(takewhile(lambda e: e.frame <= frame_index, counter.events[taken:]))
            out += [(kind, counter.name, e.event, e.class_name, e.track_id) for e in new]
            self._cursors[counter] = taken + len(new)
        return out

    def _appear_events(self, det) -> list[tuple]:
        out = []
        for name, tid in zip(det.labels, det.track_ids.tolist(), strict=True):
            if tid < 0 or name not in self._watch:
                continue
            if tid in self._appeared:
                self._appeared[tid] = True  # seen again: kept among the recent
                continue
            self._seen[tid] = self._seen.get(tid, 0) + 1
            if self._seen[tid] >= self.config.min_frames:
                self._appeared[tid] = True
                self._seen.pop(tid, None)
                out.append(("class", None, "appear", name, tid))
        return out

    def _emit(self, event: tuple, result) -> None:
        kind, name, what, class_name, tid = event
        frame = result.frame
        box, score = self._tracks.get(tid, (None, None))
        wall = time.time() - max(0.0, time.monotonic() - frame.captured) if frame.captured else time.time()
        record = {"time_s": round(frame.seconds, 6),
                  "wall_time": datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds"),
                  "stream": self.stream, "frame": frame.index, "kind": kind, "event": what}
        if kind in ("line", "zone"):
            record[kind] = name
        record.update({"class": class_name, "track_id": tid, "score": score, "box": box, "clip": None})
        if self.clips is not None:
            record["clip"] = str(self.clips.on_event(frame.seconds, f"{name or class_name}-{what}"))
        self.counts[f"{kind} {what}"] += 1
        if self.log is not None:
            self.log.write(record)
        for p in self.publishers:
            p.put(record)
        for fn in self._listeners:
            fn(record)

    def _close(self) -> None:
        if self.clips is not None:
            self.clips.close()

    def summary(self) -> str:
        total = self.counts.total()
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        return f"events {self.stream}: {total}" + (f" ({parts})" if parts else "")


# ====================================================================== wiring
class Events(Closing):
    """Everything a run does with events: the log, the publishers, each stream's sink (and clip
    writer) and heat map. ``close()`` closes the shared parts once the streams' sinks are closed.
    """

    def __init__(self, config: EventsConfig, *, overwrite: bool = False) -> None:
        from app.analytics.alerts import MqttPublisher, WebhookPublisher

        self.config, self.overwrite = config, overwrite
        replace(config, heatmap=None).check_outputs(overwrite)  # the heat maps: those written (sinks_for)
        if config.clips:
            Path(config.clips).mkdir(exist_ok=True)
        self.log = EventLog(config.events) if config.events else None
        self.publishers = [publisher(target).start() for publisher, target in
                           ((MqttPublisher, config.mqtt), (WebhookPublisher, config.webhook)) if target]
        self.sinks: list[EventSink] = []
        self.heatmaps: list = []

    def sinks_for(self, stream: str, analytics, source, *, heatmap_path: str | None = None) -> list:
        """The sinks of one stream (``source``: its time base and rate, for the clips). Its heat map,
        ``heatmap_path`` (several streams) or the configured one, is checked first."""
        out: list = []
        path = heatmap_path or self.config.heatmap
        if path:
            check_output_path(path, "heat map", overwrite=self.overwrite)
        # --alert-classes alone: the sink checks the classes and counts the events for the summary
        if self.config.wants_events or self.config.alert_classes:
            clips = None
            if self.config.clips:
                from app.analytics.clips import ClipWriter

                clips = ClipWriter(self.config.clips, stream=stream, pre_s=self.config.pre_s, post_s=self.config.post_s,
                                   rate=source.rate, overwrite=self.overwrite)
            sink = EventSink(self.config, analytics, stream, log=self.log, publishers=self.publishers, clips=clips)
            self.sinks.append(sink)
            out.append(sink)
        if path:
            from app.analytics.heatmap import HeatmapSink

            heat = HeatmapSink(path, overwrite=self.overwrite)
            self.heatmaps.append(heat)
            out.append(heat)
        return out

    def _close(self) -> None:
        """Close the log and give the publishers a short, bounded time to deliver what is queued."""
        for part in (*self.sinks, *self.publishers):
            part.close()
        if self.log is not None:
            self.log.close()

    @property
    def failed(self) -> str | None:
        """Why the events file stopped early (one line, for the run's output failures), or None."""
        return self.log.failed if self.log is not None else None

    def summary_lines(self) -> list[str]:
        out = [s.summary() for s in self.sinks]
        if self.log is not None:
            stopped = f"; {self.log.failed}" if self.log.failed else ""
            out.append(f"events file: {self.log.path.resolve()} ({self.log.written} events{stopped})")
        out += [s.clips.summary() for s in self.sinks if s.clips is not None]
        return out + [x.summary() for x in (*self.publishers, *self.heatmaps)]


