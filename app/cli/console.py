"""What a command-line run says and how it stops — shared by the run command (one stream or many)
and serve: the exit statuses, ``note:`` lines, output failures said once, the recording's line,
and SIGTERM taking the Ctrl-C path."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

EXIT_OK = 0
EXIT_BAD_FRAMES = 1
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3
EXIT_OUTPUT_FAILED = 4
EXIT_INTERRUPTED = 130
EXIT_STDOUT_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader left


def window_runner(headless: bool):
    """``app.gui.launch.run_gui`` when a window may open; None (headless), saying why unless asked for."""
    if not headless and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        note("no display (DISPLAY and WAYLAND_DISPLAY are unset): running headless")
    elif not headless:
        try:
            from app.gui.launch import run_gui
        except ImportError as exc:
            note(f"the GUI cannot be loaded ({exc}); running headless")
        else:
            return run_gui
    return None


def recording_line(rec) -> str:
    """What a recording holds, for the end of a run: its file (or its segments) and frames."""
    extra = f", padded by {rec.padded[0]} column(s) and {rec.padded[1]} row(s) to an even size" if any(rec.padded) else ""
    if rec.frames_resized:
        extra += f", {rec.frames_resized} frame(s) of another size scaled to {rec.size[0]}×{rec.size[1]}"
    files = getattr(rec, "files", None)
    if files is None:
        return f"{Path(rec.path).resolve()} ({rec.frames_written} frames{extra})"
    where = f"{files[0].resolve()} … {files[-1].name}" if len(files) > 1 else (str(files[0].resolve()) if files else "no file")
    return f"{where} ({rec.frames_written} frames in {len(files)} segment(s){extra}; index {Path(rec.index_path).resolve()})"


def sigterm_as_interrupt():
    """SIGTERM takes the Ctrl-C path, so a killed run still finalises its recording."""
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def note(*lines: str) -> None:
    """Each line on stderr as ``note: line``."""
    for line in lines:
        print(f"note: {line}", file=sys.stderr)


def run_to_end(pipeline, progress, setup) -> tuple[object, bool, list[str]]:
    """The headless run of ``pipeline`` (one stream or many), for the run command.

    Starts it and redraws ``progress`` until the end, saying each source's reconnection events, each
    output failure (once) and what ``--precision auto`` switched to (``setup``). Ctrl-C or SIGTERM
    stops it within about a second with every output finalised (a second one is ignored meanwhile);
    an error says what was kept (the summary) and is re-raised. At the end: ``print_summary``, and
    whether it was interrupted. Returns (the final ``MultiStats``, interrupted, the output failures).
    """
    failures: list[str] = []

    def report_failures() -> None:  # each once, when first seen: "error: export k.json stopped after …"
        for line in pipeline.output_failures():
            if line not in failures:
                failures.append(line)
                progress.message(f"error: {line}; the other outputs go on")

    interrupted = False
    pipeline.start()
    try:
        while not pipeline.wait(0.2):
            _source_events(pipeline, progress)
            report_failures()
            if line := setup.take_announcement():  # --precision auto measured and switched: said once
                progress.message(f"note: {line}")
            progress.update(pipeline.run_stats())
    except KeyboardInterrupt:
        interrupted = True
        # a second Ctrl-C or SIGTERM (sigterm_as_interrupt) must not cut the finalising short
        handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    except Exception:  # say what was kept, then re-raise: the CLI prints the one error line
        pipeline.stop()
        progress.close()
        if pipeline.run_stats().frames_written:
            print_summary(pipeline, pipeline.run_stats())
        raise
    finally:
        pipeline.stop()
    if interrupted:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    _source_events(pipeline, progress)
    stats = pipeline.run_stats()
    progress.update(stats, final=True)
    print_summary(pipeline, stats, setup)
    report_failures()  # one that happened while the outputs were finalised
    if interrupted:
        print("interrupted: threads stopped, outputs finalised", file=sys.stderr)
    return stats, interrupted, failures


def print_summary(pipeline, stats, setup=None) -> None:
    """The end of a run, one stream or many, in one format: on stderr each stream's line (frames,
    fps, dropped; led by its name when there are several), the total, the detector, what the precision
    setup chose, tracking and counting, events and each reconnecting source's record; on stdout the
    outputs written (each stream's recording and counts file, the export)."""
    print("\n".join([stats.summary(), *(f"note: {line}" for line in (setup.summary_lines() if setup else ())),
                     *pipeline.analytics_lines(), *(pipeline.events.summary_lines() if pipeline.events is not None else ()),
                     *(f"reconnection: {lane.source.summary()}"  # a live source that reconnects: drops, time down
                       for lane in pipeline.lanes if hasattr(lane.source, "summary"))]), file=sys.stderr)
    for lane in pipeline.lanes:
        lead = f"{lane.tag}: " if lane.tag else ""
        if lane.record_sink is not None:
            rec = lane.record_sink.recorder
            print(f"{lead}recording: {recording_line(rec) if rec.frames_written else 'none written (no frame arrived)'}")
        if lane.counts_sink is not None and lane.counts_sink.path.exists():
            print(f"{lead}counts: {lane.counts_sink.path.resolve()}")
    if pipeline.export_sink is not None:
        exp = pipeline.export_sink.exporter
        several = f" of {len(pipeline.lanes)} streams, column 'stream'" if len(pipeline.lanes) > 1 else ""
        print(f"detections: {Path(exp.path).resolve()} ({exp.rows_written} rows from {exp.frames_written} frames{several})")


def _source_events(pipeline, progress) -> None:
    """One line per change of a reconnecting source's state (lost, retrying, reconnected), led by
    its stream's name when there are several."""
    for lane in pipeline.lanes:
        take = getattr(lane.source, "take_events", None)
        for event in take() if take else ():
            progress.message(f"{lane.tag}: {event.line()}" if lane.tag else event.line())


def build_detector_for(streams, detector_config, *, reprobe: bool = False):
    """The detector and its setup (``app.pipeline.fastpath.build_detector``) for ``streams`` (``(config,
    source)`` pairs, sources opened): a line or zone outside a video's frame is refused first, before
    the model loads; on any failure the sources are closed. The detector's notes are said here."""
    try:
        from app.analytics.analytics import check_shapes

        for config, source in streams:
            check_shapes(config, source)
        from app.pipeline.fastpath import build_detector  # threads, int8 calibration, the CPU probe

        detector, setup = build_detector(detector_config, reprobe=reprobe)
    except BaseException:
        for _, source in streams:
            source.close()
        raise
    logged = getattr(detector.info, "warning", None)  # detector.factory has logged that one already
    note(*(line for line in detector.notes if line != logged))
    return detector, setup
