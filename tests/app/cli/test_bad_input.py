"""Every bad input of issue 3 gets one clear line and a non-zero exit — never a traceback, a hang
or lost data. Most cases run ``app.cli.cli.main`` in-process (the same code path as ``run.py``, minus
the interpreter start); a few run ``python run.py`` in a subprocess with a timeout."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from app.cli.cli import main as cli_main
from tests.app.io.test_sources import write_clip
from tests.conftest import ROOT, SAMPLE, decode_pts, write_audio_only


def run(capsys, *args) -> tuple[int, str, str]:
    rc = cli_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str, *needles: str) -> str:
    """The stderr of a refused run: exactly one line, 'error: ...', naming what was wrong."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture()
def fast(tiny_weights):
    """Options for a quick real run: the tiny checkpoint, no window."""
    return ["--weights", tiny_weights, "--headless"]


@pytest.mark.parametrize("args, needle", [
    (["bench", "--frames", "x"], "--frames: invalid int value: 'x' (see run.py bench --help)"),
    (["eval", "--bogus"], "(see run.py eval --help)"),
    (["train", "--data", "d.json"], "required: --out (see run.py train --help)"),
    (["autolabel", "--every", "x"], "--every: invalid int value"),
])
def test_a_bad_option_of_a_job_is_one_line(capsys, args, needle):
    rc, out, err = run(capsys, *args)
    assert rc == 2 and out == "" and "usage:" not in err
    one_error_line(err, needle)


def test_missing_file(capsys, tmp_path, fast):
    rc, _, err = run(capsys, "--video", tmp_path / "nope.mp4", *fast)
    assert rc == 2
    one_error_line(err, "nope.mp4", "does not exist")


def test_directory_as_video(capsys, tmp_path, fast):
    rc, _, err = run(capsys, "--video", tmp_path, *fast)
    assert rc == 2
    one_error_line(err, "is a directory", "--images")


def test_text_file_as_video(capsys, tmp_path, fast):
    path = tmp_path / "readme.mp4"
    path.write_text("this is not a video\n")
    rc, _, err = run(capsys, "--video", path, *fast)
    assert rc == 2
    one_error_line(err, "text file")


def test_zero_byte_file(capsys, tmp_path, fast):
    path = tmp_path / "zero.mp4"
    path.write_bytes(b"")
    rc, _, err = run(capsys, "--video", path, *fast)
    assert rc == 2
    one_error_line(err, "empty (0 bytes)")


def test_audio_only_file(capsys, tmp_path, fast):
    path = write_audio_only(tmp_path / "tone.m4a", "aac")
    rc, _, err = run(capsys, "--video", path, *fast)
    assert rc == 2
    one_error_line(err, "no video stream", "audio")


def test_mp4_truncated_before_its_index(capsys, tmp_path, fast):
    path = tmp_path / "cut.mp4"
    path.write_bytes(SAMPLE.read_bytes()[:300_000])
    rc, _, err = run(capsys, "--video", path, *fast)
    assert rc == 2
    one_error_line(err, "moov")


@pytest.mark.parametrize("n", [1, 2])
def test_corrupt_video_is_decoded_as_far_as_possible_and_said_so(capsys, tmp_path, fast, clip10, n):
    """One warning line in the same words for one stream or several (the second stream, intact, is not named)."""
    data = bytearray(clip10.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 20000, 7):  # damages whole packets, not just macroblocks
        data[i] ^= 0x5A
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(bytes(data))
    out = tmp_path / "out.mp4"
    rc, stdout, err = run(capsys, "--video", path, *(["--video", clip10] if n == 2 else []), "--record", out, *fast)
    assert "Traceback" not in err
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert rc == 1 and len(warning) == 1 and warning[0].count("could not be decoded and were skipped") == 1, err
    named = "stream corrupt" if n == 2 else str(path)
    assert f" frame(s) of {named} could not be decoded" in warning[0], warning
    bad = int(warning[0].split()[1])
    pts, _ = decode_pts(out if n == 1 else tmp_path / "out-corrupt.mp4")  # nothing decodable was lost
    assert bad >= 1 and len(pts) + bad >= 10 and len(pts) >= 5
    assert f"(the other {len(pts)} were processed)" in warning[0]


def test_video_without_duration_in_its_header_runs_and_says_so(capsys, tmp_path, fast):
    path = write_clip(tmp_path / "raw.h264", "libx264", "yuv420p", size=(64, 48), fmt="h264")
    out = tmp_path / "out.mp4"
    rc, _, err = run(capsys, "--video", path, "--record", out, *fast)
    assert rc == 0 and "Traceback" not in err
    assert any(line.startswith("note:") and "no duration" in line for line in err.splitlines())
    assert len(decode_pts(out)[0]) == 6


def test_unknown_camera_index(capsys, fast):
    rc, _, err = run(capsys, "--camera", "57", *fast)
    assert rc == 2
    one_error_line(err, "camera 57")


def test_camera_that_is_not_an_index(capsys, fast):
    rc, _, err = run(capsys, "--camera", "front", *fast)
    assert rc == 2
    one_error_line(err, "'front'", "index")


def test_unreachable_url(capsys, fast):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, _, err = run(capsys, "--url", f"rtsp://127.0.0.1:{port}/cam", *fast)
    assert rc == 2
    one_error_line(err, "cannot open stream", f"127.0.0.1:{port}")


def test_output_folder_missing(capsys, tmp_path, clip10, fast):
    rc, _, err = run(capsys, "--video", clip10, "--record", tmp_path / "no" / "such" / "out.mp4", *fast)
    assert rc == 2
    one_error_line(err, "folder", "does not exist")
    assert not (tmp_path / "no").exists()


def test_output_folder_not_writable(capsys, tmp_path, clip10, fast):
    if os.geteuid() == 0:
        folder = Path("/sys")  # root may write anywhere a permission bit allows; not here
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
    rc, _, err = run(capsys, "--video", clip10, "--export", folder / "dets.json", *fast)
    assert rc == 2
    one_error_line(err, "not writable")


@pytest.mark.parametrize("option, name", [("--record", "out.mp4"), ("--export", "dets.csv")])
def test_existing_output_without_overwrite_is_refused_untouched(capsys, tmp_path, clip10, fast, option, name):
    path = tmp_path / name
    path.write_bytes(b"precious")
    os.utime(path, (1_000_000, 1_000_000))
    rc, _, err = run(capsys, "--video", clip10, option, path, *fast)
    assert rc == 2
    one_error_line(err, "already exists", "--overwrite")
    assert path.read_bytes() == b"precious" and path.stat().st_mtime == 1_000_000
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing else was written either


SOURCES = {"a": "a.mp4", "b": "in-a.mp4", "c": "rec-00001.mp4"}


@pytest.mark.parametrize("args, source", [
    (["--video", "{a}", "--record", "{a}"], "a.mp4"),  # one stream: truncated while it is read
    (["--video", "{a}", "--video", "{b}", "--record", "{dir}/in.mp4"], "in-a.mp4"),  # a's recording is b
    (["--video", "{c}", "--record", "{dir}/rec.mp4", "--segment", "1"], "rec-00001.mp4"),  # an old segment
])
def test_an_output_that_is_a_source_is_refused_with_overwrite(capsys, tmp_path, clip10, fast, args, source):
    files = {key: tmp_path / name for key, name in SOURCES.items()}
    for path in files.values():
        shutil.copy(clip10, path)
    before = {path: path.read_bytes() for path in files.values()}
    rc, _, err = run(capsys, *(x.format(dir=tmp_path, **files) for x in args), "--overwrite", *fast)
    assert rc == 2
    one_error_line(err, f"is the source --video {tmp_path / source}")
    assert {path: path.read_bytes() for path in files.values()} == before


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("args, needle", [
    (["--export", "d.json", "--adapt-log", "d.json", "--target-fps", "5"], "--adapt-log d.json is the"),
    (["--export", "e.jsonl", "--events", "e.jsonl", "--alert-classes", "person"], "--events e.jsonl is the"),
])
def test_two_outputs_naming_a_file_are_refused(capsys, monkeypatch, tmp_path, clip10, fast, n, args, needle):
    monkeypatch.chdir(tmp_path)
    shutil.copy(clip10, tmp_path / "b.mp4")
    rc, _, err = run(capsys, "--video", clip10, *(["--video", "b.mp4"] if n == 2 else []), *args, *fast)
    assert rc == 2
    one_error_line(err, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.mp4"]  # nothing was written


@pytest.mark.parametrize("option, name", [("--record", "out.txt"), ("--record", "out"), ("--export", "dets.xml")])
def test_output_extension(capsys, tmp_path, clip10, fast, option, name):
    rc, _, err = run(capsys, "--video", clip10, option, tmp_path / name, *fast)
    assert rc == 2
    one_error_line(err, "extension", "use .")
    assert not (tmp_path / name).exists()


def test_unknown_class_names_list_the_valid_ones(capsys, clip10, fast):
    rc, _, err = run(capsys, "--video", clip10, "--classes", "person,unicorn", *fast)
    assert rc == 2
    line = one_error_line(err, "unicorn")
    assert "person" in line.split("unicorn", 1)[1] and "car" in line  # the valid names follow


@pytest.mark.parametrize("value", ["0", "-5"])
def test_proposal_count_not_positive(capsys, clip10, fast, value):
    rc, _, err = run(capsys, "--video", clip10, "--proposals", value, *fast)
    assert rc == 2
    one_error_line(err, "proposals", value, "≥ 1")


def test_proposal_count_not_a_number(capsys, clip10, fast):
    rc, _, err = run(capsys, "--video", clip10, "--proposals", "many", *fast)
    assert rc == 2
    one_error_line(err, "--proposals", "'many'")


@pytest.mark.parametrize("option", ["--score-threshold", "--nms-threshold", "--contained"])
def test_a_threshold_outside_0_1(capsys, clip10, fast, option):
    rc, _, err = run(capsys, "--video", clip10, option, "1.5", *fast)
    assert rc == 2
    one_error_line(err, f"{option} 1.5", "between 0 and 1")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu(capsys, clip10, fast):
    rc, _, err = run(capsys, "--video", clip10, "--device", "cuda", *fast)
    assert rc == 2
    one_error_line(err, "cuda", "no CUDA GPU", "--device cpu")


@pytest.mark.parametrize("content", [b"not a model at all", b"PK\x03\x04 broken zip"])
def test_weights_file_that_is_not_a_model(capsys, tmp_path, clip10, content):
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    rc, _, err = run(capsys, "--video", clip10, "--weights", path, "--headless")
    assert rc == 2
    one_error_line(err, str(path))


def test_no_source(capsys):
    rc, _, err = run(capsys, "--record", "out.mp4")
    assert rc == 2
    one_error_line(err, "--video")


def test_missing_file_in_a_real_process(tmp_path):
    """The whole door, interpreter included: one line, status 2, quickly."""
    proc = subprocess.run([sys.executable, "run.py", "--video", str(tmp_path / "gone.mp4"), "--headless"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    one_error_line(proc.stderr, "gone.mp4", "does not exist")


def test_source_failing_mid_run_keeps_what_was_recorded(capsys, monkeypatch, tmp_path, clip10, fast):
    from app.io.sources import FileSource, SourceError

    original = FileSource.frames

    def breaks_after_four(self):
        for frame in original(self):
            if frame.index == 4:
                raise SourceError(f"reading {self.name} failed after 4 frames: Connection reset by peer")
            yield frame

    monkeypatch.setattr(FileSource, "frames", breaks_after_four)
    out = tmp_path / "partial.mp4"
    rc, stdout, err = run(capsys, "--video", clip10, "--record", out, *fast)
    assert rc == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"error: reading {clip10} failed after 4 frames: Connection reset by peer"
    assert str(out) in stdout
    assert len(decode_pts(out)[0]) == 4  # the frames before the failure are recorded, the file is finalised


@pytest.mark.parametrize("error, said", [(RuntimeError(), "RuntimeError"),
                                         (RuntimeError("cuda lost\nat frame 5"), "RuntimeError: cuda lost")])
def test_an_internal_error_is_one_line_that_names_its_type_once(capsys, monkeypatch, error, said):
    import app.cli.run

    def fails(argv):
        raise error

    monkeypatch.setattr(app.cli.run, "main", fails)
    rc, _, err = run(capsys, "--video", "x.mp4")
    assert rc == 3 and err.splitlines() == [f"internal error: {said} (set FRCNN_DEBUG=1 for the traceback)"]


def test_a_video_cut_short_says_so(capsys, tmp_path, fast):
    """A file cut off (a copy that stopped, a disk that filled) whose header states its frame count:
    the run ended after the frames that were there with exit 0 and no word, the progress bar stuck at
    a few per cent; the frames its header promised and that never came are now named in a note."""
    import av
    import numpy as np

    whole = tmp_path / "whole.avi"
    noise = np.random.default_rng(0)
    with av.open(str(whole), "w") as c:  # noise: every frame's packet is large, half the bytes = a few frames
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for _ in range(30):
            for packet in s.encode(av.VideoFrame.from_ndarray(noise.integers(0, 255, (48, 64, 3), np.uint8))):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    rc, out, err = run(capsys, "--video", cut, "--export", tmp_path / "d.csv", *fast)
    read = int(re.search(r"frames: (\d+) read", err).group(1))
    assert 0 < read < 30
    said = [line for line in err.splitlines() if "frames its header states" in line]
    assert rc == 0 and said == [f"note: {cut} ended after {read} of the 30 frames its header states "
                                "(the file may be cut off)"], err
    rc, out, err = run(capsys, "--video", whole, "--export", tmp_path / "w.csv", *fast)
    assert rc == 0 and "frames its header states" not in err
