"""``train``: train or fine-tune a Faster R-CNN on COCO-format data (see ``detector.train``).

``--data a.json:1.0,b.json:0.5`` mixes several COCO JSONs by weight (their ``iscrowd=1`` boxes are
ignore regions); ``--augment mosaic,scale,color,flip`` augments on the fly (``detector.augment``).
A new ``paper`` model is described by --backbone / --anchor-sizes / ...; ``--init CHECKPOINT`` fine-tunes
one of our checkpoints instead (its architecture is kept; a different class list gets a new predictor).
Every epoch writes ``OUT/last.pt`` (our checkpoint format, fp32), ``OUT/resume.pt`` (model, optimizer
and epoch, for ``--resume``) and ``OUT/history.json``; the evaluation on --val is printed each epoch.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from app.errors import UserError, UserErrorParser, first_line, user_errors
from app.jobs.teachers import parse_numbers

BACKBONE_WEIGHT_KWARG = {"yolov3_tiny": "darknet_weights", "mobilenet_v2": "imagenet_weights", "nanodet": "tfjs_model"}


def build_parser() -> argparse.ArgumentParser:
    p = UserErrorParser(prog="run.py train", see=" (see run.py train --help)", description=__doc__.split("\n\n")[0],
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", "--train", dest="data", required=True, metavar="JSON[:WEIGHT],...",
                   help="COCO JSON(s) of the training images, comma-separated, each with an optional sampling "
                        "weight (default 1), e.g. a.json:1.0,b.json:0.5")
    p.add_argument("--val", action="append", default=[], metavar="NAME=JSON",
                   help="COCO JSON evaluated after every epoch (repeatable; NAME= is optional)")
    p.add_argument("--out", required=True, help="output folder (last.pt, resume.pt, history.json)")
    arch = p.add_argument_group("a new paper model (ignored with --init)")
    arch.add_argument("--backbone", default="yolov3_tiny", help="a backbone of detector.backbones")
    arch.add_argument("--backbone-weights", default=None,
                      help="initial backbone weights: yolov3-tiny.weights (Darknet), nanodet.json (TF.js) or a MobileNetV2 features state dict")
    arch.add_argument("--anchor-sizes", default="auto",
                      help="anchor sizes in pixels, one comma list of 3 per backbone level separated by ';' "
                           "(auto: 128,256,512 on one level; 16..512 px spread geometrically over several, "
                           "e.g. 16,32,64;128,256,512 on yolov3_tiny's two)")
    arch.add_argument("--reduce-channels", type=int, default=128, help="width of the 1×1 reduction")
    arch.add_argument("--neck", default=None, choices=("reduce", "head"),
                      help="nanodet only: 'reduce' (a 1×1 conv + ReLU per level) or 'head' (NanoDet's own head "
                           "towers and 80-class logit maps, initialised from --backbone-weights and trained)")
    arch.add_argument("--box-head", default="fc", choices=("fc", "prior"),
                      help="'fc': the paper's two fc layers, softmax and box regressor; 'prior': the same plus the "
                           "class prior of the backbone's logit maps (needs --neck head; classes in COCO order)")
    arch.add_argument("--representation-size", type=int, default=512, help="width of the two fc layers")
    arch.add_argument("--min-size", type=int, default=480, help="test-time short side (px)")
    arch.add_argument("--max-size", type=int, default=800, help="test-time long side limit (px)")
    p.add_argument("--init", default=None, help="fine-tune this checkpoint instead of building a new model")
    p.add_argument("--trunk-train-from", type=int, default=None, metavar="LAYER",
                   help="yolov3_tiny: train the trunk's Darknet layers from LAYER on with the neck (13: the YOLO "
                        "head's layers 13-21, which mix the two levels); default: the whole trunk frozen")
    p.add_argument("--roi-context", type=float, default=None, metavar="SCALE",
                   help="the box head also reads the region around each RoI (the RoI grown SCALE times, pooled 3×3); "
                        "with --init on a model without it, the new inputs start at zero (same detections at first)")
    p.add_argument("--roi-borders", action="store_true",
                   help="the box head also reads each RoI's distances to the picture's edges (a person cut by the "
                        "frame vs a part inside a person); with --init on a model without them, they start at zero")
    p.add_argument("--resume", action="store_true", help="continue from OUT/resume.pt")
    opt = p.add_argument_group("optimisation (paper: SGD lr 0.001, momentum 0.9, weight decay 0.0005)")
    opt.add_argument("--epochs", type=int, default=10)
    opt.add_argument("--iters-per-epoch", type=int, default=None, help="default: one pass over the data")
    opt.add_argument("--batch-size", type=int, default=2)
    opt.add_argument("--lr", type=float, default=0.001)
    opt.add_argument("--momentum", type=float, default=0.9)
    opt.add_argument("--weight-decay", type=float, default=5e-4)
    opt.add_argument("--warmup-iters", type=int, default=100)
    opt.add_argument("--box-lambda", type=float, default=10.0, help="the paper's λ of the RPN box loss")
    opt.add_argument("--scales", default="", help="training short sides for scale jitter, e.g. 448,544 (default: --min-size)")
    opt.add_argument("--no-hflip", action="store_true", help="no random horizontal flips (without --augment)")
    opt.add_argument("--no-cache", action="store_true", help="do not cache a frozen trunk's features")
    opt.add_argument("--trunk-precision", choices=("fp32", "bf16"), default="fp32",
                     help="run a frozen trunk in bf16 (about 2× faster on CPUs with AMX / AVX-512 BF16)")
    opt.add_argument("--augment", default="",
                     help="on-the-fly augmentations, comma-separated: mosaic,scale,color,flip (none by default; "
                          "with any, nothing is cached and flips come only from 'flip')")
    opt.add_argument("--scale-range", default="0.3,3", help="zoom factors of --augment scale: LO,HI")
    opt.add_argument("--mosaic-prob", type=float, default=0.5, help="share of 2×2 mosaics with --augment mosaic")
    opt.add_argument("--keep-cut-bottom", type=float, default=0.0, metavar="SHARE",
                     help="with --augment scale: a box cut by the crop's bottom edge, its top inside, stays a label "
                          "with this share visible (a person from the chest up, as a webcam frames one); 0 = off")
    opt.add_argument("--ignore-ioa", type=float, default=0.5,
                     help="anchors/RoIs whose area lies this much inside an ignore (iscrowd) box are never negatives")
    opt.add_argument("--no-ignore", action="store_true",
                     help="drop ignore boxes instead (torchvision's samplers: they may be sampled as background)")
    opt.add_argument("--part-negatives", type=float, default=0.0, metavar="SHARE",
                     help="share of the RoI head's negatives drawn from RoIs inside a labelled object "
                          "(a head or torso of a person), so parts are learnt as background; 0 = uniform")
    opt.add_argument("--hard-negatives", type=float, default=0.0, metavar="SHARE",
                     help="share of the RoI head's negatives drawn from those it scores surest as objects "
                          "(online hard-negative mining); 0 = uniform")
    opt.add_argument("--soft-labels", action="store_true",
                     help="the RoI head's classifier learns each label's class at the label's score (the teacher's "
                          "confidence), the rest as background, instead of 1")
    opt.add_argument("--drop-part-ignore", type=float, default=None, metavar="SHARE",
                     help="drop ignore regions with this share of their area inside a label of their class "
                          "(uncertain boxes on parts of a labelled object), so those parts can be negatives")
    opt.add_argument("--label-score", type=float, default=None, metavar="SCORE",
                     help="labels whose 'score' (an autolabeller's confidence) is below this become ignore regions")
    opt.add_argument("--drop-still", type=float, default=None, metavar="SHARE",
                     help="in video frames, drop the boxes of animals and balls found at one place in this share of "
                          "their clip's frames (a fixed camera's bag or stone the teacher named 'bird' or 'sheep')")
    opt.add_argument("--roi-fg-iou", type=float, default=None,
                     help="the RoI head's positive IoU (paper 0.5); RoIs between 0.5 and it are neither")
    opt.add_argument("--roi-batch", type=int, default=None, metavar="N",
                     help="RoIs the head samples per image (paper 128, a quarter of them positive at most)")
    opt.add_argument("--schedule", choices=("joint", "alternating"), default="joint",
                     help="joint training, or the paper's 4-step alternating training")
    opt.add_argument("--rpn-pre-nms-train", type=int, default=None, help="RPN boxes per level before NMS (paper 12000)")
    opt.add_argument("--rpn-post-nms-train", type=int, default=None, help="RPN proposals after NMS (paper 2000)")
    opt.add_argument("--time-limit", type=float, default=None,
                     help="stop (with the epoch's evaluation and checkpoint) once this many minutes have passed")
    opt.add_argument("--seed", type=int, default=0)
    opt.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p


def _data_sets(spec: str) -> list[tuple[Path, float]]:
    """``a.json:1.0,b.json`` → [(a.json, 1.0), (b.json, 1.0)]; each file must exist, each weight be > 0."""
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        path, weight = part, 1.0
        head, sep, tail = part.rpartition(":")
        if sep and not tail.lower().endswith(".json"):
            try:
                path, weight = head, float(tail)
            except ValueError:
                raise UserError(f"--data {part!r}: the weight {tail!r} is not a number (JSON:WEIGHT)") from None
        if not (weight > 0 and math.isfinite(weight)):
            raise UserError(f"--data {part!r}: the weight must be a number > 0")
        if not Path(path).is_file():
            raise UserError(f"COCO JSON {path} does not exist")
        out.append((Path(path), weight))
    if not out:
        raise UserError(f"--data {spec!r} names no COCO JSON")
    return out


def _val_sets(specs: Sequence[str]) -> list[tuple[str, Path]]:
    """``--val [NAME=]JSON`` → [(NAME or the file's stem, path)]; each file must exist, each name be
    unique (the history keeps each epoch's scores by name)."""
    out = []
    for name, _, text in (spec.rpartition("=") for spec in specs):
        if not (path := Path(text)).is_file():
            raise UserError(f"COCO JSON {path} does not exist")
        if (name := name or path.stem) in dict(out):
            raise UserError(f"--val: two sets are named {name!r}; name each one, e.g. --val NAME={path}")
        out.append((name, path))
    return out


def _build_model(args, class_names: tuple[str, ...]):
    """(model, arch dict for the checkpoint, model class names)."""
    import torch

    from detector.builders import build_paper
    from detector.weights import WeightsError, load_checkpoint, load_into

    if args.init:
        with user_errors(WeightsError):
            ckpt = load_checkpoint(args.init)
        if ckpt["model"] != "paper":
            raise UserError(f"--init {args.init} is a {ckpt['model']!r} checkpoint; train fine-tunes 'paper' checkpoints")
        arch, names, state = dict(ckpt["arch"]), tuple(ckpt["class_names"]), ckpt["state_dict"]
        add_context = args.roi_context is not None and arch.get("roi_context") is None
        add_borders = args.roi_borders and not arch.get("roi_borders", False)
        if args.roi_context is not None and not add_context and args.roi_context != arch["roi_context"]:
            raise UserError(f"--init {args.init} already pools its context at {arch['roi_context']}; "
                            f"--roi-context {args.roi_context} cannot change it")
        if add_context and arch.get("roi_borders", False):  # the new columns go last, after the borders'
            raise UserError(f"--init {args.init} reads RoI borders; --roi-context can only be added before them")
        if add_context:
            arch["roi_context"] = args.roi_context
        if add_borders:
            arch["roi_borders"] = True
        widen = add_context or add_borders
        _split_trunk(arch, args.trunk_train_from)
        with user_errors(ValueError):
            model = build_paper(num_classes=len(names), **arch)
        if widen:  # the first fc layer's new inputs (context, borders) start at zero
            from detector.context_roi import FIRST_FC, widen_first_fc

            state = widen_first_fc(state, model.roi_heads.box_head.fc6.in_features - state[FIRST_FC].shape[1])
        load_into(model, state, args.init)
        if names != class_names:
            from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

            width = model.roi_heads.box_predictor.cls_score.in_features
            model.roi_heads.box_predictor = FastRCNNPredictor(width, len(class_names))
            print(f"note: {args.init} has classes {list(names[1:])}; the data has {list(class_names[1:])}: new predictor",
                  file=sys.stderr)
        return model, arch, class_names
    levels = None if args.anchor_sizes.strip() == "auto" else [
        list(parse_numbers(level, "--anchor-sizes", int)) for level in args.anchor_sizes.split(";") if level.strip()]
    if any(size < 1 for level in levels or () for size in level):
        raise UserError(f"--anchor-sizes {args.anchor_sizes!r}: every size must be ≥ 1 px")
    arch = {"backbone": args.backbone, "anchor_sizes": levels,
            "representation_size": args.representation_size, "reduce_channels": args.reduce_channels,
            "min_size": args.min_size, "max_size": args.max_size, "box_head": args.box_head}
    if args.roi_context is not None:
        arch["roi_context"] = args.roi_context
    if args.roi_borders:
        arch["roi_borders"] = True
    if args.neck is not None:
        if args.backbone != "nanodet":
            raise UserError(f"--neck is an option of the nanodet backbone, not of {args.backbone!r}")
        arch["backbone_kwargs"] = {"neck": args.neck}
    _split_trunk(arch, args.trunk_train_from)
    if args.box_head == "prior":
        _check_prior_classes(class_names)
    backbone_kwargs = dict(arch.get("backbone_kwargs", {}))
    if args.backbone_weights:
        if args.backbone not in BACKBONE_WEIGHT_KWARG:
            raise UserError(f"--backbone-weights is supported for {', '.join(BACKBONE_WEIGHT_KWARG)}, not {args.backbone!r}")
        if not Path(args.backbone_weights).is_file():
            raise UserError(f"--backbone-weights {args.backbone_weights} does not exist")
        backbone_kwargs[BACKBONE_WEIGHT_KWARG[args.backbone]] = args.backbone_weights
    torch.manual_seed(args.seed)
    with user_errors(ValueError):
        # the backbone weights only initialise the model: the checkpoint's state dict carries them,
        # so the saved arch does not name the file
        model = build_paper(num_classes=len(class_names), **{**arch, "backbone_kwargs": backbone_kwargs})
    # the checkpoint names the sizes used, also when they were chosen automatically
    arch["anchor_sizes"] = [list(level) for level in model.rpn.anchor_generator.sizes]
    return model, arch, class_names


def _split_trunk(arch: dict, train_from: int | None) -> None:
    """``--trunk-train-from``: the yolov3_tiny trunk trains from that layer on (``arch``'s backbone kwargs)."""
    if train_from is not None:
        if arch["backbone"] != "yolov3_tiny":
            raise UserError(f"--trunk-train-from splits the yolov3_tiny trunk; "
                            f"the model's backbone is {arch['backbone']!r}")
        arch["backbone_kwargs"] = {**arch.get("backbone_kwargs", {}), "train_from": train_from}


def _check_prior_classes(class_names: Sequence[str]) -> None:
    """The 'prior' box head reads the classes in the order of the teacher's logit maps (COCO's 80)."""
    from detector.builders import COCO_CLASS_NAMES

    coco80 = tuple(n for n in COCO_CLASS_NAMES[1:] if n != "N/A")
    if tuple(class_names[1:]) != coco80:
        raise UserError(f"--box-head prior needs the data's classes to be COCO's 80 in order (autolabel --classes all); "
                        f"got {len(class_names) - 1}: {', '.join(class_names[1:6])}…")


def _check_numbers(args) -> None:
    """The numbers that torch would refuse only mid-run (a traceback) or that were ignored (--threads 0,
    --time-limit 0): one line before anything is loaded."""
    lowest = {"--threads": (args.threads, 1), "--iters-per-epoch": (args.iters_per_epoch, 1),
              "--warmup-iters": (args.warmup_iters, 0), "--rpn-pre-nms-train": (args.rpn_pre_nms_train, 1),
              "--rpn-post-nms-train": (args.rpn_post_nms_train, 1), "--momentum": (args.momentum, 0),
              "--weight-decay": (args.weight_decay, 0), "--box-lambda": (args.box_lambda, 0),
              "--reduce-channels": (args.reduce_channels, 1),
              "--representation-size": (args.representation_size, 1),
              "--min-size": (args.min_size, 32), "--max-size": (args.max_size, 32)}
    for flag, (value, lo) in lowest.items():
        if value is not None and not (value >= lo and math.isfinite(value)):
            raise UserError(f"{flag} {value} must be a number ≥ {lo}")
    if args.min_size > args.max_size:
        raise UserError(f"--min-size {args.min_size} is larger than --max-size {args.max_size}")
    if args.time_limit is not None and not args.time_limit > 0:
        raise UserError(f"--time-limit {args.time_limit} must be a number of minutes > 0")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    import torch

    from detector.evaluate import format_metrics
    from detector.train import TrainConfig, Trainer, config_dict
    from detector.train_data import CocoDetectionData, category_names
    from detector.weights import save_checkpoint

    _check_numbers(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    sets, val_sets = _data_sets(args.data), _val_sets(args.val)
    augment = tuple(a.strip() for a in args.augment.split(",") if a.strip() and a.strip() != "none")
    if args.label_score is not None and not 0.0 <= args.label_score <= 1.0:
        raise UserError(f"--label-score {args.label_score} must be a score in [0, 1]")
    for flag, share in (("--drop-part-ignore", args.drop_part_ignore), ("--drop-still", args.drop_still)):
        if share is not None and not 0.0 < share <= 1.0:
            raise UserError(f"{flag} {share} must be a share in (0, 1]")
    scale_range = parse_numbers(args.scale_range, "--scale-range")
    if len(scale_range) != 2 or not all(math.isfinite(v) for v in scale_range):
        raise UserError(f"--scale-range {args.scale_range!r} must be 2 comma-separated numbers")
    with user_errors(ValueError, FileNotFoundError, prefix="--data/--val: "):
        names = category_names([path for path, _ in sets])
        model, arch, class_names = _build_model(args, names)
        data = [(CocoDetectionData(path, class_names, part_ignore=args.drop_part_ignore, label_score=args.label_score,
                                   still_share=args.drop_still), weight)
                for path, weight in sets]
        val = [(name, CocoDetectionData(path, class_names)) for name, path in val_sets]
    with user_errors(ValueError):
        config = TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
            weight_decay=args.weight_decay, warmup_iters=args.warmup_iters, box_lambda=args.box_lambda,
            scales=parse_numbers(args.scales, "--scales", int), hflip=not args.no_hflip, cache_features=not args.no_cache,
            schedule=args.schedule, seed=args.seed, iters_per_epoch=args.iters_per_epoch,
            time_limit_s=args.time_limit * 60 if args.time_limit else None,
            rpn_pre_nms_train=args.rpn_pre_nms_train, rpn_post_nms_train=args.rpn_post_nms_train,
            augment=augment, scale_range=scale_range, mosaic_prob=args.mosaic_prob, keep_cut_bottom=args.keep_cut_bottom,
            ignore_ioa=None if args.no_ignore else args.ignore_ioa, trunk_precision=args.trunk_precision,
            part_negatives=args.part_negatives, hard_negatives=args.hard_negatives, soft_labels=args.soft_labels,
            roi_fg_iou=args.roi_fg_iou, roi_batch=args.roi_batch,
        )
    out = Path(args.out)
    with user_errors(OSError, prefix=f"--out {out} cannot be a folder: "):
        out.mkdir(parents=True, exist_ok=True)
    start_epoch, optimizer_state, history = 0, None, []
    if args.resume:
        resume = out / "resume.pt"
        if not resume.is_file():
            raise UserError(f"--resume: {resume} does not exist")
        try:
            state = torch.load(resume, map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
            start_epoch, optimizer_state = int(state["epoch"]), state["optimizer"]
        except Exception as exc:  # not a resume file, or one of another architecture (other options)
            raise UserError(f"--resume: {resume} does not resume this model ({first_line(exc)})") from None
        history = json.loads((out / "history.json").read_text()) if (out / "history.json").is_file() else []
        print(f"resuming after epoch {start_epoch}")
    trainer = Trainer(model, data, config, val=val)
    trainer.history = history
    described = ", ".join(f"{d.json_path} ({len(d)} images, weight {w:g}"
                          + (f", {d.dropped_still} still boxes dropped" if d.dropped_still else "") + ")" for d, w in data)
    mode = ("cached frozen-trunk features" if trainer.cached else
            f"augmented ({','.join(augment)})" if augment else "full forward")
    print(f"training on {described}; classes {list(class_names[1:])}; {mode}; schedule {config.schedule}; "
          f"ignore label {'off' if config.ignore_ioa is None else f'IoA ≥ {config.ignore_ioa:g}'}"
          + (f"; part negatives {config.part_negatives:g}" if config.part_negatives else "")
          + (f"; hard negatives {config.hard_negatives:g}" if config.hard_negatives else "")
          + ("; soft labels (the teacher's scores)" if config.soft_labels else "")
          + (f"; RoI positives IoU ≥ {config.roi_fg_iou:g}" if config.roi_fg_iou is not None else ""), flush=True)
    started = time.time()

    def on_epoch(tr: Trainer, record: dict) -> None:
        optimizer = record.pop("optimizer")
        for name, metrics in record.get("val", {}).items():
            print(f"epoch {record['epoch']} {name}: {format_metrics(metrics)}", flush=True)
        meta = {"train": config_dict(config), "train_data": {str(p): w for p, w in sets}, "history": tr.history,
                "init": args.init, "drop_part_ignore": args.drop_part_ignore, "label_score": args.label_score,
                "drop_still": args.drop_still}
        save_checkpoint(out / "last.pt", tr.model, model_name="paper", arch=arch, class_names=class_names,
                        meta=meta, half=False)
        torch.save({"model": tr.model.state_dict(), "optimizer": optimizer, "epoch": record["epoch"]}, out / "resume.pt")
        (out / "history.json").write_text(json.dumps(tr.history, indent=1))

    trainer.run(on_epoch, start_epoch=start_epoch, optimizer_state=optimizer_state)
    print(f"done in {time.time() - started:.0f} s: {out / 'last.pt'}")
    return 0
