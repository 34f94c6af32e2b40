"""Sources: real PyAV decoding of several containers and codecs, exact timestamps, bad files,
image folders, cameras and URLs that cannot be opened, and the drop_stale slot."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from app.config import PipelineConfig
from app.frames import Frame
from app.io.reconnect import open_source
from app.io.sources import (
    CameraSource,
    FileSource,
    ImageFolderSource,
    LatestFrame,
    SourceError,
    UrlSource,
)
from tests.conftest import MEDIA, SAMPLE, decode_pts, write_audio_only


def write_clip(path: Path, codec: str, pix_fmt: str, size=(64, 48), pts=None, time_base=Fraction(1, 25), fmt=None):
    """A few synthetic frames (a moving bright square) encoded with ``codec``."""
    w, h = size
    pts = pts if pts is not None else list(range(6))
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        s.time_base = time_base
        s.codec_context.time_base = time_base
        for i, p in enumerate(pts):
            img = np.full((h, w, 3), 40, np.uint8)
            img[(i * 5) % (h - 8):(i * 5) % (h - 8) + 8, 4:12] = 250
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = p
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def put(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def read_all(source) -> list[Frame]:
    with source:
        return list(source.frames())


def test_file_frames_and_timestamps_match_pyav(clip10):
    frames = read_all(FileSource(str(clip10)))
    pts, tb = decode_pts(clip10)
    assert [f.index for f in frames] == list(range(10))
    assert [f.pts for f in frames] == [p - pts[0] for p in pts]
    assert all(f.time_base == tb for f in frames)
    assert frames[3].timestamp == Fraction(3, 10)  # exact, not 0.30000000000000004
    assert frames[0].image.shape == (576, 768, 3) and frames[0].image.dtype == np.uint8


@pytest.mark.parametrize(
    "name, codec, pix_fmt, size",
    [
        ("a.avi", "mpeg4", "yuv420p", (64, 48)),  # MPEG-4 part 2 in AVI
        ("a.mkv", "libx264", "yuv444p", (65, 49)),  # 4:4:4 chroma, odd size
        ("a.webm", "libvpx", "yuv420p", (64, 48)),  # VP8
        ("b.webm", "libvpx-vp9", "yuv420p", (64, 48)),  # VP9
        ("a.mpg", "mpeg2video", "yuv420p", (64, 48)),  # MPEG-2 program stream
    ],
)
def test_containers_and_codecs(tmp_path, name, codec, pix_fmt, size):
    path = write_clip(tmp_path / name, codec, pix_fmt, size)
    frames = read_all(FileSource(str(path)))
    assert len(frames) == 6
    assert frames[0].image.shape == (size[1], size[0], 3)
    assert [f.index for f in frames] == list(range(6))
    assert all(b.pts > a.pts for a, b in zip(frames, frames[1:], strict=False))
    # The square moves down by 5 rows a frame: decoding really gives these pictures, in order.
    rows = [int(np.argmax(f.image[:, 8, 0] > 150)) for f in frames]
    assert rows == [(i * 5) % (size[1] - 8) for i in range(6)]


def test_variable_frame_rate_keeps_each_timestamp(tmp_path):
    pts = [0, 40, 80, 200, 210, 500]  # ms: irregular gaps
    path = write_clip(tmp_path / "vfr.mkv", "libx264", "yuv420p", pts=pts, time_base=Fraction(1, 1000))
    frames = read_all(FileSource(str(path)))
    assert [f.timestamp for f in frames] == [Fraction(p, 1000) for p in pts]


def test_real_mpeg4_avi():
    path = MEDIA / "vtest.avi"
    if not path.exists():
        pytest.skip("shared media not present")
    source = FileSource(str(path))
    with source:
        frames = []
        for frame in source.frames():
            frames.append(frame)
            if len(frames) == 3:
                break
    assert source.stream.codec_context.name in ("msmpeg4v3", "msmpeg4", "mpeg4") and source.total_frames == 795
    assert [f.seconds for f in frames] == pytest.approx([0.0, 0.1, 0.2])


def test_corrupt_file_counts_bad_frames_and_keeps_going(tmp_path):
    data = bytearray(SAMPLE.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 20000, 7):
        data[i] ^= 0x5A
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(bytes(data))
    source = FileSource(str(path))
    frames = read_all(source)
    assert source.bad_frames > 0
    assert 100 < len(frames) < 145
    assert len(frames) + source.bad_frames <= 150


def test_a_file_given_up_on_says_so(tmp_path, monkeypatch):
    import errno

    import av

    import app.io.sources as sources

    data = bytearray(SAMPLE.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 20000, 7):
        data[i] ^= 0x5A
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(bytes(data))
    monkeypatch.setattr(sources, "MAX_BAD_IN_A_ROW", 0)  # the first bad packet is one too many
    source = FileSource(str(path))
    frames = read_all(source)
    assert source.bad_frames == 1 and 30 < len(frames) < 100
    assert source.notes[-1] == f"{path}: gave up after 0 bad packets in a row (decode errors)"

    class Broken:  # the real container, but every chunk fails to demux
        def __init__(self, container):
            self.container = container

        def __getattr__(self, name):
            return getattr(self.container, name)

        def demux(self, *streams):
            raise av.error.InvalidDataError(errno.EINVAL, "bad chunk")
            yield

    source = FileSource(str(SAMPLE))
    source.container = Broken(source.container)
    with pytest.raises(SourceError, match="no frame of .* could be decoded \\(1 bad packets\\)"):
        read_all(source)
    assert source.notes[-1] == f"{SAMPLE}: gave up after 0 bad packets in a row (demux errors)"


def test_mp4_cut_before_its_index_is_named(tmp_path):
    path = tmp_path / "cut.mp4"
    path.write_bytes(SAMPLE.read_bytes()[: SAMPLE.stat().st_size // 2])
    with pytest.raises(SourceError, match="moov"):
        FileSource(str(path))


def test_truncated_stream_decodes_what_is_there(tmp_path):
    full = write_clip(tmp_path / "full.ts", "mpeg2video", "yuv420p", size=(320, 240), pts=list(range(60)))
    cut = tmp_path / "cut.ts"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    frames = read_all(FileSource(str(cut)))
    assert 10 < len(frames) < 60


def test_no_duration_in_header_is_read_to_the_end(tmp_path):
    path = write_clip(tmp_path / "raw.h264", "libx264", "yuv420p", fmt="h264")
    source = FileSource(str(path))
    assert source.total_frames is None
    assert any("no duration" in n for n in source.notes)
    frames = read_all(source)
    assert len(frames) == 6
    assert all(b.pts > a.pts for a, b in zip(frames, frames[1:], strict=False))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.mp4", "does not exist"),
        (lambda d: d, "is a directory"),
        (lambda d: put(d / "empty.mp4", b""), "empty"),
        (lambda d: put(d / "notes.mp4", b"hello, not a video\n"), "text file"),
        (lambda d: put(d / "noise.mp4", bytes(range(256)) * 40), "not a video"),
    ],
)
def test_unusable_files_say_why(tmp_path, make, message):
    with pytest.raises(SourceError, match=message):
        FileSource(str(make(tmp_path)))


def test_audio_only_file(tmp_path):
    path = write_audio_only(tmp_path / "tone.wav", "pcm_s16le")
    with pytest.raises(SourceError, match="no video stream.*audio"):
        FileSource(str(path))


def test_image_folder_and_glob(tmp_path, frame_rgb):
    import cv2

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), frame_rgb[::4, ::4, ::-1])
    (tmp_path / "f3.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "readme.txt").write_text("ignored")
    source = ImageFolderSource(str(tmp_path), fps=4)
    frames = read_all(source)
    assert len(frames) == 3 and source.bad_frames == 1
    assert [f.timestamp for f in frames] == [Fraction(0), Fraction(1, 4), Fraction(1, 2)]
    assert np.array_equal(frames[0].image, frame_rgb[::4, ::4])  # PNG is lossless, RGB order kept
    assert len(read_all(ImageFolderSource(str(tmp_path / "*.png")))) == 3
    with pytest.raises(SourceError, match="no images"):
        ImageFolderSource(str(tmp_path / "*.gif"))


def test_unknown_camera_index():
    with pytest.raises(SourceError, match="camera 57"):
        CameraSource("57", timeout_s=1)


def test_unreachable_url_fails_fast():
    with socket.socket() as s:  # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = time.monotonic()
    with pytest.raises(SourceError, match="cannot open stream"):
        UrlSource(f"http://127.0.0.1:{port}/live.mp4", timeout_s=2)
    assert time.monotonic() - t < 5


def test_silent_url_times_out():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # accepts the connection, never answers
    try:
        t = time.monotonic()
        with pytest.raises(SourceError, match="within 1 s"):
            UrlSource(f"http://127.0.0.1:{server.getsockname()[1]}/x.mp4", timeout_s=1)
        assert time.monotonic() - t < 6
    finally:
        server.close()


def test_open_source_dispatches(clip10):
    assert isinstance(open_source(PipelineConfig(source_kind="video", source=str(clip10))), FileSource)


def test_latest_frame_never_holds_more_than_the_newest():
    slot = LatestFrame()
    produced, taken, sizes = 200, [], []
    image = np.zeros((2, 2, 3), np.uint8)

    def produce():
        for i in range(produced):
            slot.put(Frame(i, i, Fraction(1, 100), image, time.monotonic()))
            sizes.append(len(slot))
            time.sleep(0.001)
        slot.close()

    thread = threading.Thread(target=produce)
    thread.start()
    while True:
        frame = slot.get(0.5)
        if frame is None:
            if slot.closed:
                break
            continue
        taken.append(frame.index)
        time.sleep(0.02)  # a consumer 20× slower than the source
    thread.join(2)
    assert max(sizes) == 1
    assert taken == sorted(taken) and len(set(taken)) == len(taken)
    assert len(taken) < produced / 3  # most frames were stale ...
    assert slot.dropped == produced - len(taken)  # ... and each one was counted
    assert taken[-1] == produced - 1  # the newest frame is the one that is kept


def test_url_source_reads_a_real_http_stream(tmp_path):
    """An MPEG-TS over HTTP, as live streams are sent (SimpleHTTPRequestHandler cannot seek, so
    not an MP4 with its index at the end)."""
    import functools
    import http.server

    clip = write_clip(tmp_path / "live.ts", "libx264", "yuv420p", pts=[i * 3600 for i in range(12)],
                      time_base=Fraction(1, 90000))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        source = UrlSource(f"http://127.0.0.1:{server.server_address[1]}/{clip.name}", timeout_s=5)
        assert source.live
        frames = read_all(source)
        # An MP4 whose index is at the end needs seeking, which this server cannot do: a read
        # error, reported as such rather than as hundreds of "bad frames".
        shutil.copy(SAMPLE, tmp_path / "needs_seek.mp4")
        seeking = UrlSource(f"http://127.0.0.1:{server.server_address[1]}/needs_seek.mp4", timeout_s=5)
        with pytest.raises(SourceError, match="reading .*needs_seek.mp4 failed after 0 frames"):
            read_all(seeking)
    finally:
        server.shutdown()
        server.server_close()
    pts, tb = decode_pts(clip)
    assert [f.timestamp for f in frames] == [(p - pts[0]) * tb for p in pts]
    assert [f.seconds for f in frames] == pytest.approx([i * 0.04 for i in range(12)])


class FakeCapture:
    """cv2.VideoCapture stand-in: ``ok`` frames, then failures."""

    def __init__(self, ok: int) -> None:
        self.ok, self.reads, self.released = ok, 0, False

    def read(self):
        self.reads += 1
        if self.reads <= self.ok:
            time.sleep(0.01)
            return True, np.full((6, 8, 3), self.reads, np.uint8)
        return False, None

    def release(self):
        self.released = True


def fake_camera(ok: int, timeout_s: float) -> CameraSource:
    import cv2

    camera = CameraSource.__new__(CameraSource)
    Source_init(camera)
    camera._cv2, camera.name, camera._timeout, camera.capture = cv2, "camera 0", timeout_s, FakeCapture(ok)
    return camera


def Source_init(obj) -> None:  # noqa: N802 — the base initialiser, without opening a device
    from app.io.sources import Source

    Source.__init__(obj)


def test_camera_frames_carry_the_capture_clock():
    camera = fake_camera(ok=5, timeout_s=0.3)
    frames = []
    with pytest.raises(SourceError, match="no frame for 0.3 s"):
        for frame in camera.frames():
            frames.append(frame)
    camera.close()
    assert len(frames) == 5 and camera.capture.released
    assert frames[0].pts == 0 and all(b.pts > a.pts for a, b in zip(frames, frames[1:], strict=False))
    assert frames[1].image[0, 0, 0] == 2  # BGR → RGB of the second picture
    gaps = [float(b.timestamp - a.timestamp) for a, b in zip(frames, frames[1:], strict=False)]
    assert all(0.005 < g < 0.2 for g in gaps)  # real capture intervals (~10 ms), not a fixed rate
    assert camera.bad_frames > 0


def test_a_clock_that_restarts_keeps_the_frame_rate(tmp_path):
    """Two MPEG-TS files joined (``cat a.ts b.ts``): the second one's clock starts again at 0. Its
    frames come one nominal frame after the last and keep their own steps — not crammed into a few
    ticks of 1/90000 s each, which a recording would play in a flash."""
    one = write_clip(tmp_path / "a.ts", "mpeg2video", "yuv420p", fmt="mpegts").read_bytes()
    frames = read_all(FileSource(str(put(tmp_path / "joined.ts", one + one))))
    assert len(frames) == 12
    steps = [b.timestamp - a.timestamp for a, b in zip(frames, frames[1:], strict=False)]
    assert steps == [Fraction(1, 25)] * 11


def test_a_folder_of_unreadable_images_is_an_error(tmp_path):
    """Every image broken: one line saying so, as for a video none of whose frames decodes — not a
    run that ends after no frame as if the folder had been read."""
    for i in range(2):
        (tmp_path / f"f{i}.jpg").write_bytes(b"not a jpeg")
    source = ImageFolderSource(str(tmp_path))
    with pytest.raises(SourceError, match="none of the 2 images .* could be read"):
        read_all(source)
    assert source.bad_frames == 2


def test_a_folder_of_many_unreadable_images_names_a_few_then_counts(tmp_path, frame_rgb):
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), frame_rgb[::4, ::4, ::-1])
    for i in range(50):
        (tmp_path / f"b{i:02d}.jpg").write_bytes(b"not a jpeg")
    source = ImageFolderSource(str(tmp_path))
    assert len(read_all(source)) == 1 and source.bad_frames == 50
    assert [n.split("/")[-1] for n in source.notes[:3]] == [f"b0{i}.jpg could not be read as an image; skipped"
                                                             for i in range(3)]
    assert source.notes[3:] == [f"47 more images in {source.name} could not be read; skipped"]


def test_a_file_name_with_a_colon_is_a_file_not_a_protocol(tmp_path, monkeypatch):
    """A clip named by its time, given relative: "2024-01-01T10:00:00.mkv" is not the protocol
    "2024-01-01T10" (FFmpeg said "Protocol not found" for a file that exists)."""
    write_clip(tmp_path / "2024-01-01T10:00:00.mkv", "libx264", "yuv420p")
    monkeypatch.chdir(tmp_path)
    assert len(read_all(FileSource("2024-01-01T10:00:00.mkv"))) == 6


def test_a_huge_unreadable_file_is_one_line_without_reading_it_all(tmp_path):
    """Saying why FFmpeg refused a file looks at its first bytes only: a 3 GB file (sparse, so it
    costs no disk) under a 2 GB memory limit gives the one line, not a MemoryError."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.write(bytes(range(1, 200)))  # binary, not text: FFmpeg's own reason is given
        f.truncate(3 * 2**30)
    code = ("import resource, sys\n"
            "from app.io.sources import FileSource, SourceError\n"
            "resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))\n"
            "try:\n    FileSource(sys.argv[1])\nexcept SourceError as exc:\n    print('error:', exc)\n")
    done = subprocess.run([sys.executable, "-c", code, str(big)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.startswith(f"error: {big} is not a video FFmpeg can read")


def test_a_misspelt_url_scheme_is_an_error_not_a_stream_to_retry():
    """"rstp://" (for rtsp): FFmpeg has no such protocol. That is bad input, said at once — not a
    stream that cannot be reached now, which several streams would retry for ever."""
    from app.io.reconnect import open_reconnecting
    from app.io.sources import SourceUnavailable

    config = PipelineConfig(source_kind="url", source="rstp://127.0.0.1/live", open_timeout_s=2)
    with pytest.raises(SourceError, match="no protocol 'rstp'") as caught:
        open_reconnecting(config, unreachable_ok=True)
    assert not isinstance(caught.value, SourceUnavailable)
