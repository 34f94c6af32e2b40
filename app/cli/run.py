"""The run command: ``python run.py --video clip.mp4 --record out.mp4 [--headless] ...``.

Parses the options into a ``PipelineConfig`` and a ``DetectorConfig``, checks the outputs before
any work, then opens the GUI (with a display) or runs headless with a progress bar and a summary.
Exit statuses: 0, 1, 2, 3, 4, 130 and 141, as the --help epilog below says (named in ``app.cli.console``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from app.cli.console import window_runner
from app.cli.multi_run import add_source_options, refuse_clashing_outputs, run_headless, run_many, source_list
from app.cli.subcommands import subcommand_help
from app.errors import UserErrorParser
from app.io.paths import stream_name


def build_parser() -> argparse.ArgumentParser:
    parser = UserErrorParser(
        prog="run.py",
        description="Detect objects with Faster R-CNN in a video file, camera, image folder or stream; "
        "show them in a window, record an annotated H.264 video and/or export the detections.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "frame policies:\n"
            "  files and image folders: every frame — frames in = frames out, none lost, order kept.\n"
            "  cameras and URLs: latest frame — when the detector is slower than the source, stale frames\n"
            "  are dropped (and counted) so that latency never builds up.\n\n"
            "exit status: 0 done; 1 done, but some frames could not be decoded (skipped and counted);\n"
            "  2 bad input or options (one line on stderr); 3 internal error (a bug: one line, and the\n"
            "  traceback with FRCNN_DEBUG=1); 4 done, but an output stopped early (disk full, file too\n"
            "  large: one line when it happened; what it wrote before is kept, the other outputs are\n"
            "  complete); 130 interrupted by Ctrl-C or SIGTERM (outputs finalised); 141 standard output\n"
            "  closed by its reader (run.py bench ... | head): the files were written, nothing more is said.\n\n"
            "after a crash: a recording (.mp4/.mov/.m4v fragmented, .mkv in clusters) plays to about a second\n"
            "  before the kill; .jsonl, .csv and .json exports hold every frame written (a .json stays a valid\n"
            "  array); the counts file and the segments index are rewritten whole every second.\n\n"
            "examples:\n"
            "  python run.py --video assets/sample.mp4 --record out.mp4 --headless --overwrite\n"
            "  python run.py --camera 0 --classes person,car --proposals 100\n"
            "  python run.py --images frames/ --export dets.csv --headless\n"
            "  python run.py --url rtsp://cam1/s --url rtsp://cam2/s --record out.mp4   (out-cam1-s.mp4, out-cam2-s.mp4)\n\n"
            + subcommand_help()
            + "\n  (python run.py JOB --help for each)"
        ),
    )
    add_source_options(parser)  # --video/--camera/--images/--url, repeatable; --sources, --reconnect

    out = parser.add_argument_group("outputs")
    out.add_argument("--record", metavar="OUT", help="write the annotated video (H.264) to OUT: .mp4, .mkv, .mov or .m4v "
                     "(several streams: one file each, OUT-<stream>.mp4). Crash-safe: a killed run leaves a file that "
                     "plays to about a second before the kill")
    out.add_argument("--segment", metavar="S", type=float, dest="segment_s",
                     help="with --record: cut the recording into files of S seconds (OUT-00001.mp4, OUT-00002.mp4, "
                          "...), each starting on a keyframe with the run's timestamps continuing, and list them with "
                          "their first/last stream and wall-clock times in OUT.segments.json")
    out.add_argument("--export", metavar="OUT", help="write one row per detection (frame, timestamp s, class, score, "
                     "x1, y1, x2, y2, track id) to OUT: .jsonl (one object a line), .json (one array) or .csv "
                     "(several streams: one file, with a 'stream' column first). Every frame's rows are written "
                     "as it is done: all three hold every frame after a kill, and the .json stays a valid array")
    out.add_argument("--overwrite", action="store_true", help="replace existing outputs (without it they are refused, untouched)")

    add_model_arguments(parser)

    track = parser.add_argument_group("tracking and counting")
    track.add_argument("--track", action="store_true",
                       help="give each object a persistent ID across frames (ByteTrack), drawn as #ID with a trail "
                            "and exported as track_id")
    track.add_argument("--no-trails", dest="trails", action="store_false", help="do not draw the tracks' recent paths")
    track.add_argument("--line", action="append", default=[], metavar="X1,Y1,X2,Y2",
                       help="count objects crossing this line, in/out per class (repeatable; turns on --track). "
                            "Coordinates all in 0..1 = fractions of the frame, else source pixels. 'in' = from the "
                            "right of X1,Y1→X2,Y2 to its left as seen on screen")
    track.add_argument("--zone", action="append", default=[], metavar="X1,Y1,X2,Y2,X3,Y3,...",
                       help="count objects inside this polygon now and its entries, per class (repeatable; turns "
                            "on --track). The counts, with the time of every crossing, go to EXPORT.counts.json "
                            "next to --export")

    from app.analytics.events import add_event_options

    add_event_options(parser)  # --events, --event-clips, --pre/--post, --alert-classes, --mqtt, --webhook, --heatmap

    run = parser.add_argument_group("run")
    run.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    run.add_argument("--target-fps", type=float, metavar="N",
                     help="hold N frames per second: the input size (240-800 px) and the proposal count (50-1000) "
                          "are lowered or raised, one at a time, to the most accurate setting that holds it; live "
                          "sources may also skip frames (files never lose one)")
    run.add_argument("--adapt-log", metavar="OUT.json",
                     help="with --target-fps: write the controller's moves and the fps of every 10 frames to OUT.json")
    run.add_argument("--headless", action="store_true",
                     help="no window: a progress bar (frames, fps, ETA) and a summary at the end "
                          "(frames read/processed/written/dropped, mean fps, per-stage ms)")
    return parser


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model options (--model ... --classes), shared by the run and serve commands."""
    model = parser.add_argument_group("model")
    model.add_argument("--model", default="default", metavar="NAME",
                       help="default (the bundled model), paper, or a torchvision COCO builder such as "
                            "fasterrcnn_mobilenet_v3_large_fpn (default: %(default)s)")
    model.add_argument("--weights", default="default", metavar="FILE",
                       help="a .pt/.pth checkpoint, or default | torchvision | random (untrained; for speed tests) "
                            "(default: %(default)s)")
    model.add_argument("--backbone", default="mobilenet_v2", metavar="NAME",
                       help="backbone of --model paper: mobilenet_v2, resnet18, resnet50 or yolov3_tiny (default: %(default)s)")
    model.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to run (default: %(default)s)")
    model.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16", "int8"),
                       help="compute precision; auto = fp16 on CUDA; on the CPU the fastest of fp32, bf16 and int8 "
                            "measured on this machine (once, then cached; int8 only for a model whose int8 accuracy "
                            "was checked). int8: CPU only (default: %(default)s)")
    model.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"),
                       help="channels_last layout for the backbone; auto = on for CUDA, measured on the CPU "
                            "(default: %(default)s)")
    model.add_argument("--reprobe", action="store_true",
                       help="measure the CPU fast path again instead of using the cached answer")
    model.add_argument("--proposals", type=int, default=300, metavar="N",
                       help="RPN proposals kept per frame: fewer is faster (default: %(default)s)")
    model.add_argument("--score-threshold", type=float, default=None, metavar="X",
                       help="drop detections scoring below X, 0..1 (default: the threshold the model carries — the "
                            "bundled model's is in assets/MODEL_CARD.md — else 0.5)")
    model.add_argument("--nms-threshold", type=float, default=None, metavar="IOU",
                       help="IoU above which the RoI head's per-class NMS keeps only the higher box, 0..1 (default: "
                            "the model's own — the bundled model's 0.3 may merge two people side by side; raise it to "
                            "keep both — else 0.5)")
    model.add_argument("--contained", type=float, default=None, metavar="SHARE",
                       help="drop a box with this share of its area inside a higher-scoring box of its class "
                            "(a head or torso inside the person's box; also people inside a group's box), 0..1; "
                            "default: off")
    model.add_argument("--classes", default="", metavar="A,B",
                       help="keep only these classes, comma-separated (e.g. person,car); default: all")


def build_configs(args: argparse.Namespace):
    """(PipelineConfig, DetectorConfig) from parsed options; raises UserError / ConfigError."""
    from app.analytics.count import Shape
    from app.analytics.events import events_config_from_args
    from app.config import PipelineConfig

    kind, source = source_list(args)[0]
    events = events_config_from_args(args)
    pipeline = PipelineConfig(
        source_kind=kind,
        source=str(source),
        **{name: getattr(args, name) for name in (
            "record", "export", "segment_s", "overwrite", "max_frames", "headless", "trails", "reconnect",
            "target_fps", "adapt_log")},
        track=args.track or bool(events and events.needs_tracking),
        lines=tuple(Shape.parse("line", text).coords for text in args.line),
        zones=tuple(Shape.parse("zone", text).coords for text in args.zone),
        stall_timeout_s=args.stall_timeout,
        events=events,
    )
    return pipeline, detector_config_from_args(args)


# a DetectorConfig field a bad value names, and the option the user typed
_OPTION_OF = {"score_threshold": "--score-threshold", "nms_threshold": "--nms-threshold",
              "contained_threshold": "--contained", "proposals": "--proposals"}


def detector_config_from_args(args: argparse.Namespace):
    """The ``DetectorConfig`` of the model options; raises ConfigError naming the option (``--contained``,
    not the config's ``contained_threshold``)."""
    from detector.config import ConfigError, DetectorConfig

    try:
        return DetectorConfig(
            **{name: getattr(args, name) for name in ("model", "weights", "backbone", "device", "precision",
                                                       "proposals", "score_threshold", "nms_threshold")},
            memory_format={"auto": "auto", "on": "channels_last", "off": "contiguous"}[args.channels_last],
            contained_threshold=args.contained,
            classes=tuple(c.strip() for c in args.classes.split(",") if c.strip()),
        )
    except ConfigError as exc:
        field, _, rest = str(exc).partition(" ")
        raise ConfigError(f"{_OPTION_OF.get(field, field)} {rest}") from None


def main(argv: Sequence[str] | None = None) -> int:
    # Idle OpenMP threads sleep instead of spinning. On a CPU shared with other work (2 cores and
    # a decoder, an encoder and the GUI beside the detector) spinning threads starve the ones with
    # work: measured 10-30× slower detect() calls (docs/pipeline.md). Must be set before torch
    # loads; a value the user set is kept.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    pipeline_config, detector_config = build_configs(args)
    if len(sources := source_list(args)) > 1:  # many streams, one detector: app/cli/multi_run.py
        return run_many(args, sources, pipeline_config, detector_config)
    refuse_clashing_outputs(sources, [pipeline_config])
    pipeline_config.check_outputs()  # before any work: refuse, and touch nothing

    if run_gui := window_runner(pipeline_config.headless):
        return int(run_gui(pipeline_config, detector_config, reprobe=args.reprobe) or 0)
    name = stream_name(pipeline_config.source_kind, pipeline_config.source)
    return run_headless([(name, pipeline_config.with_(headless=True))], detector_config, reprobe=args.reprobe)

