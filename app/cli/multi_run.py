"""The run command's sources — one or many — and its headless run (``run_headless``, 1 or N streams).

``--video``, ``--camera``, ``--images`` and ``--url`` may each be repeated, in any order, and
``--sources FILE`` adds one source per line; with one source the run is app/cli/run.py's, with several
it is the same pipeline with one lane per stream (``Pipeline.of_streams``): one detector, one batch per
step, per-stream recordings (``--record out.mp4`` → ``out-<stream>.mp4``) and one export with a
``stream`` column. Live sources reconnect (``--reconnect``, ``--stall-timeout``; app/io/reconnect.py).
``--max-frames`` applies to each stream.

Bad input is one line and exit status 2, before the model is loaded: the same source twice, more
than ``MAX_STREAMS`` streams, a camera or file that does not exist (named), an output that exists.
A live stream that exists but cannot be reached at the start does not stop the others: it is
tried again in the background (or, with ``--reconnect off``, left out and reported at the end).
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from app.cli.console import (
    EXIT_BAD_FRAMES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_OUTPUT_FAILED,
    build_detector_for,
    note,
    run_to_end,
    sigterm_as_interrupt,
    window_runner,
)
from app.cli.progress import Progress
from app.config import MAX_STREAMS, RECONNECT_FOREVER, check_output_path, counts_file
from app.errors import UserError, first_line
from app.io.paths import per_stream_path, refuse_clashes, unique_names
from app.stats import bad_frames_warning

SOURCE_OPTIONS = ("video", "camera", "images", "url")


# ====================================================================== options
class _AddSource(argparse.Action):
    """Appends (kind, value) to ``namespace.sources`` in the order given; ``namespace.<kind>``
    keeps the last value, as a plain option would."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        namespace.sources = [*(getattr(namespace, "sources", None) or []), (self.dest, values)]


def reconnect_value(text: str) -> int:
    """``--reconnect``: a number of attempts per drop, ``forever`` (-1) or ``off`` (0)."""
    word = text.strip().lower()
    if word == "forever":
        return RECONNECT_FOREVER
    if word in ("off", "no", "never"):
        return 0
    if word.isdigit():
        return int(word)
    raise argparse.ArgumentTypeError(f"expected a number of attempts, forever or off; got {text!r}")


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """The source options of the run command (each may be repeated: one stream per use)."""
    group = parser.add_argument_group(
        f"sources (one or more, up to {MAX_STREAMS}: repeat an option for more streams; several streams share "
        "one detector, batched)")
    group.add_argument("--video", metavar="PATH", action=_AddSource, help="a video file (any container/codec FFmpeg decodes)")
    group.add_argument("--camera", metavar="N", action=_AddSource, help="a camera index (0 = /dev/video0) or a device path")
    group.add_argument("--images", metavar="DIR", action=_AddSource,
                       help="a folder of images, or a quoted glob such as 'frames/*.jpg'")
    group.add_argument("--url", metavar="URL", action=_AddSource,
                       help="a stream: rtsp://, rtmp://, http(s)://, udp:// (10 s to open)")
    group.add_argument("--sources", metavar="FILE", dest="sources_file",
                       help="a text file with one source per line: 'video PATH', 'camera N', 'images DIR', 'url URL' "
                            "(or just the path, URL or camera index); lines starting with # are comments")
    group.add_argument("--reconnect", metavar="N|forever|off", type=reconnect_value, default="forever",
                       help="reopen a camera or URL that errors, ends or stalls, with backoff 1, 2, 4 … ≤ 30 s: "
                            "N attempts per drop, forever, or off; files are never reopened (default: forever)")
    group.add_argument("--stall-timeout", metavar="S", type=float, default=5.0,
                       help="a camera or URL that delivers no frame for S seconds has dropped (default: %(default)s)")
    parser.set_defaults(sources=[])


def source_list(args: argparse.Namespace) -> list[tuple[str, str]]:
    """Every source given, in order: the options, then the lines of ``--sources``."""
    sources = list(getattr(args, "sources", None) or [])
    if getattr(args, "sources_file", None):
        sources += read_sources_file(args.sources_file)
    if not sources:
        raise UserError("no source given: pass --video, --camera, --images, --url or --sources (see --help)")
    return sources


def read_sources_text(path: str) -> str:
    """The text of a sources file (run.py's --sources, serve's --sources), or a one-line ``UserError``."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"sources file {path} does not exist" if not p.exists() else f"sources file {path} is not a file")
    try:
        return p.read_text(encoding="utf-8-sig")  # a byte order mark (Notepad) is not part of line 1
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"sources file {path} cannot be read as text: {exc}") from None


def read_sources_file(path: str) -> list[tuple[str, str]]:
    """(kind, value) per line of a sources file; the kind may be left out and is then guessed."""
    out = []
    for number, raw in enumerate(read_sources_text(path).splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        head, _, rest = line.partition(" ")
        if head in SOURCE_OPTIONS and rest.strip():
            out.append((head, rest.strip()))
        elif " " in line and "://" not in head and not Path(line).exists():
            raise UserError(f"sources file {path}, line {number}: {line!r} — expected 'KIND VALUE' with KIND one of "
                            f"{', '.join(SOURCE_OPTIONS)}, or a path, URL or camera index")
        else:
            out.append((guess_kind(line), line))
    if not out:
        raise UserError(f"sources file {path} lists no source")
    return out


def guess_kind(value: str) -> str:
    if "://" in value:
        return "url"
    if value.isdigit() or value.startswith("/dev/video"):
        return "camera"
    if Path(value).is_dir() or any(ch in value for ch in "*?["):
        return "images"
    return "video"


# ====================================================================== streams
def source_key(kind: str, value: str) -> tuple[str, str]:
    """What makes two sources the same: a file's real path, a camera's device, a URL's text."""
    if kind in ("video", "images") and not any(ch in value for ch in "*?["):
        return kind, str(Path(value).resolve())
    if kind == "camera":
        m = re.fullmatch(r"(?:/dev/video)?(\d+)", value)
        return kind, m.group(1) if m else str(Path(value).resolve())
    return kind, value.strip()


def check_sources(sources: Sequence[tuple[str, str]]) -> None:
    """One line for too many streams or a source given twice."""
    if len(sources) > MAX_STREAMS:
        raise UserError(f"{len(sources)} sources given; at most {MAX_STREAMS} streams run in one process")
    seen: dict[tuple[str, str], int] = {}
    for i, (kind, value) in enumerate(sources, 1):
        key = source_key(kind, value)
        if key in seen:
            raise UserError(f"the same source is given twice: --{kind} {value} (streams {seen[key]} and {i})")
        seen[key] = i


def refuse_clashing_outputs(sources: Sequence[tuple[str, str]], configs, *others: tuple[str, str | None]):
    """One line for an output of ``configs`` (PipelineConfig) or ``others`` ((option, path); None: not
    asked for) that is one of the video files read — with --overwrite it would be truncated while it
    is read (or, an earlier run's segment, removed) — or that another output names too: one would
    overwrite the other (--export d.json --adapt-log d.json)."""
    from app.io.segments import existing_outputs

    outputs = []
    for c in configs:
        segments = existing_outputs(c.record) if c.record and c.segment_s else []
        outputs += [("--record", c.record), *(("--record segment", str(p)) for p in segments),
                    ("--export", c.export), ("counts", c.counts_file), ("--adapt-log", c.adapt_log),
                    ("--events", c.events and c.events.events), ("--heatmap", c.events and c.events.heatmap)]
    videos = {Path(v).resolve(): f"the source --video {v}" for kind, v in sources if kind == "video"}
    refuse_clashes([*outputs, *others], videos)


def stream_configs(base, sources: Sequence[tuple[str, str]]):
    """(name, PipelineConfig) per stream: the run's ``base`` config — every option of the command
    (tracking, lines, zones, target fps, ...) — with the stream's source and its own recording; the
    export (one file, a ``stream`` column) and each stream's counts file are the run's (app/pipeline/pipeline.py)."""
    check_sources(sources)
    return [(name, base.with_(source_kind=kind, source=str(value), export=None, adapt_log=None, events=None,
                              record=per_stream_path(base.record, name) if base.record else None))
            for name, (kind, value) in zip(unique_names(sources), sources, strict=True)]


def open_streams(configs, notes: list[str]):
    """The ``Stream`` of every config, sources opened. A source that does not exist raises at once
    (the others are closed). A live one that cannot be reached now starts down and is retried
    (reconnect on), or is left out with a note in ``notes`` (reconnect off). Returns (streams,
    left_out: {name: error})."""
    from app.io.reconnect import open_reconnecting
    from app.io.sources import SourceUnavailable, open_plain_source
    from app.pipeline.pipeline import Stream

    streams, left_out = [], {}
    try:
        for name, config in configs:
            if config.live and config.reconnect:
                source = open_reconnecting(config, unreachable_ok=True)
                notes.extend(f"{name}: {event.line()}" for event in source.take_events())  # said once, here
            else:
                try:
                    source = open_plain_source(config)
                except SourceUnavailable as exc:
                    left_out[name] = exc
                    notes.append(f"{name} is left out: {exc}")
                    continue
            streams.append(Stream(name, config, source))
        if all(getattr(s.source, "down", False) for s in streams):
            reasons = [str(e) for e in left_out.values()] + [s.source.last_event.reason for s in streams]
            raise UserError(f"none of the {len(configs)} streams could be opened: {reasons[0]}")
    except BaseException:  # nothing is left open
        for stream in streams:
            stream.source.close()
        raise
    return streams, left_out


# ====================================================================== the run
def run_many(args: argparse.Namespace, sources: Sequence[tuple[str, str]], base, detector_config) -> int:
    """The run command with several sources (``base``: the command's ``PipelineConfig``): checks,
    then the window or the headless run. An option that cannot work per stream is refused in one line."""
    configs = stream_configs(base, sources)
    heatmap = base.events.heatmap if base.events else None  # h.png → h-<stream>.png
    run_outputs = [("--export", args.export), ("--adapt-log", base.adapt_log),
                   ("--events", base.events.events if base.events else None)]
    for name, config in configs:
        if args.export and config.counting:
            run_outputs.append(("counts", counts_file(args.export, name)))
        if heatmap:
            run_outputs.append(("--heatmap", per_stream_path(heatmap, name)))
    refuse_clashing_outputs(sources, [c for _, c in configs], *run_outputs)
    # the run's own files: one adaptive log (the controller is the run's), each stream's counts and heat map
    what = {"--adapt-log": "adaptive log", "counts": "counts", "--heatmap": "heat map"}
    for option, path in run_outputs:
        if option in what and path is not None:
            check_output_path(path, what[option], overwrite=args.overwrite)
    for _, config in configs:
        config.check_outputs()
    if args.export:  # the single run's rules: a .json, .jsonl or .csv that may be written
        configs[0][1].with_(export=args.export, lines=(), zones=()).check_outputs()
    if base.events is not None:  # one events file (its heat maps are the streams', above)
        replace(base.events, heatmap=None).check_outputs(args.overwrite)
    if run_gui := window_runner(args.headless):
        notes: list[str] = []
        streams, left_out = open_streams(configs, notes)
        note(*notes)
        run = base.with_(export=args.export, overwrite=args.overwrite)
        return int(run_gui(run, detector_config, reprobe=args.reprobe, streams=streams) or 0)
    return run_headless(configs, detector_config, export=args.export, overwrite=args.overwrite, events=base.events,
                        adapt_log=base.adapt_log, reprobe=args.reprobe)


def run_headless(configs, detector_config, *, export: str | None = None, overwrite: bool = False, events=None,
                 adapt_log: str | None = None, reprobe: bool = False) -> int:
    """The headless run of one stream or many (``configs``: (name, PipelineConfig) pairs; one stream's
    config carries its own export, events and adapt log; several take the run's): to the end with a progress bar on stderr;
    Ctrl-C or SIGTERM stop within about a second, finalise every output and return 130."""
    from app.pipeline.pipeline import Pipeline, Stream

    previous = sigterm_as_interrupt()
    pipeline = None
    several = len(configs) > 1  # one stream: the one-lane Pipeline, its notes and warning without a name
    try:
        notes: list[str] = []
        if several:
            streams, left_out = open_streams(configs, notes)
        else:
            from app.io.reconnect import open_source

            (name, config), = configs
            config.check_outputs()
            streams, left_out = [Stream(name, config, open_source(config))], {}
        note(*notes, *_source_notes(streams, several))
        detector, setup = build_detector_for([(s.config, s.source) for s in streams], detector_config, reprobe=reprobe)
        if several:  # each stream's encoder threads from the budget, as one stream's
            streams = [Stream(s.name, setup.with_threads(s.config), s.source) for s in streams]
            pipeline = Pipeline.of_streams(streams, detector, export=export, overwrite=overwrite, events=events)
        else:
            pipeline = Pipeline(setup.with_threads(config), detector, streams[0].source)
        said = {stream.name: len(stream.source.notes) for stream in streams}
        stats, interrupted, failures = run_to_end(pipeline, Progress(sys.stderr), setup)
        note(*_source_notes(streams, several, said))  # learnt while decoding (timestamps guessed, ...)
        if adapt_log := adapt_log or streams[0].config.adapt_log:
            from app.pipeline.adapt import write_log

            try:
                print(f"adaptive log: {write_log(adapt_log, stats)}")
            except OSError as exc:  # disk full, ...: an output failure, the others are complete
                why = exc.strerror or first_line(exc)
                failures.append(f"adaptive log {adapt_log} could not be written: {why}")
                print(f"error: {failures[-1]}", file=sys.stderr)
        if interrupted:
            return EXIT_INTERRUPTED
        if failed := {**left_out, **pipeline.errors()}:
            raise UserError("; ".join(f"stream {name}: {first_line(exc)}" for name, exc in failed.items()))
        if failures:
            return EXIT_OUTPUT_FAILED
        warning = bad_frames_warning({f"stream {name}" if several else streams[0].source.name: s
                                      for name, s in stats.streams.items()})
        if warning:
            print(warning, file=sys.stderr)
        return EXIT_BAD_FRAMES if warning else EXIT_OK
    finally:
        if pipeline is not None:
            pipeline.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _source_notes(streams, several: bool, said: dict[str, int] | None = None) -> list[str]:
    """Each stream's source notes after the ``said[name]`` first, led by its name when there are several."""
    return [f"{stream.name}: {line}" if several else line
            for stream in streams for line in stream.source.notes[(said or {}).get(stream.name, 0):]]
