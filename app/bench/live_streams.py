"""Local live streams for tests and benchmarks: MPEG-TS over HTTP or UDP on the loopback, sent in
real time, from a server that can be killed and restarted like a real one.

No FFmpeg command line is needed: the MPEG-TS is made once with PyAV (H.264, a keyframe every few
frames, SPS/PPS before each, no B-frames — what a camera sends), cut at frame boundaries, and sent
one frame's bytes at a time at the stream's frame rate.

``python -m app.bench.live_streams http --port P [--video CLIP] [--frames N] [--fps F]`` serves
``http://127.0.0.1:P/live.ts`` (every client gets the stream from its start, no length stated, as
a live HTTP stream; ``ready`` on stdout when listening); ``... udp --port P`` sends the stream to
``udp://127.0.0.1:P``; ``... rtsp --port P`` publishes it (RTP over UDP) to an RTSP server's source
port, ``rtsp://127.0.0.1:P/live`` — Debian's ``rtsp-server-perl`` relays it to its clients.
``LiveServer`` runs any of them as a child process (``start``, ``kill``, ``start`` again); for RTSP
it runs the relay too.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

UDP_PAYLOAD = 1316  # 7 TS packets: what FFmpeg's udp output sends per datagram


def synthetic_frames(n: int, size: tuple[int, int] = (160, 120)) -> list[np.ndarray]:
    """``n`` RGB frames [H, W, 3] of a bright square moving over grey (cheap, deterministic)."""
    w, h = size
    frames = []
    for i in range(n):
        img = np.full((h, w, 3), 40, np.uint8)
        y = (i * 3) % max(1, h - 20)
        img[y:y + 20, 10:40] = 250
        frames.append(img)
    return frames


def clip_frames(path: str | Path, n: int) -> list[np.ndarray]:
    """The first ``n`` frames of a video, played forwards then backwards as often as needed
    (so that a short clip makes a long stream without a jump). Only those are decoded and held."""
    import av

    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in itertools.islice(c.decode(video=0), n)]
    if not frames:
        raise ValueError(f"{path} has no frames")
    cycle = frames + frames[-2:0:-1] if len(frames) > 2 else frames
    return [cycle[i % len(cycle)] for i in range(n)]


def _encode(out, frames: Sequence[np.ndarray], fps: int, gop: int, paced: bool = False):
    """Encode ``frames`` as a camera sends H.264 (a keyframe every ``gop`` frames, no B-frames) and
    mux them into ``out``; yields each frame's index once its packets are muxed. ``paced``: frame i
    is encoded at start + i / fps."""
    import av

    h, w = frames[0].shape[:2]
    s = out.add_stream("libx264", rate=fps)
    s.width, s.height, s.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
    s.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(gop), "bf": "0"}
    for i, image in enumerate(_paced(frames, fps) if paced else frames):
        rgb = np.ascontiguousarray(image[: h - h % 2, : w - w % 2])
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = i, Fraction(1, fps)
        out.mux(s.encode(frame))
        yield i
    out.mux(s.encode())


def make_ts(frames: Sequence[np.ndarray], fps: int = 10, gop: int = 5) -> tuple[bytes, list[int]]:
    """An H.264 MPEG-TS of ``frames`` and the byte offset at which each frame's data ends."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mpegts") as c:
        offsets = [buf.tell() for _ in _encode(c, frames, fps, gop)]
    data = buf.getvalue()
    offsets[-1] = len(data)
    return data, offsets


def _paced(items, fps: float):
    """Yield each item at its time (item i at start + i / fps)."""
    start = time.monotonic()
    for i, item in enumerate(items):
        time.sleep(max(0.0, start + i / fps - time.monotonic()))
        yield item


def paced_chunks(data: bytes, offsets: Sequence[int], fps: float):
    """Yield each frame's bytes at its time (frame i at start + i / fps)."""
    return _paced((data[a:b] for a, b in itertools.pairwise((0, *offsets))), fps)


def _sent(n: int) -> None:
    """Tell the parent how far the stream has gone (``LiveServer.wait_sent``)."""
    print(f"sent {n}", flush=True)


def serve_http(port: int, data: bytes, offsets: Sequence[int], fps: float) -> None:
    """Serve ``GET /anything`` with the stream in real time, no Content-Length (a live stream)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(16)
    print("ready", flush=True)

    def client(conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: video/mp2t\r\nConnection: close\r\n\r\n")
            for i, chunk in enumerate(paced_chunks(data, offsets, fps), 1):
                conn.sendall(chunk)
                _sent(i)
        except OSError:
            pass  # the client went away
        finally:
            conn.close()

    while True:
        conn, _ = server.accept()
        threading.Thread(target=client, args=(conn,), daemon=True).start()


def send_udp(port: int, data: bytes, offsets: Sequence[int], fps: float) -> None:
    """Send the stream to udp://127.0.0.1:port in real time, one TS datagram of 7 packets at a time."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        print("ready", flush=True)
        for i, chunk in enumerate(paced_chunks(data, offsets, fps), 1):
            for k in range(0, len(chunk), UDP_PAYLOAD):
                sock.sendto(chunk[k:k + UDP_PAYLOAD], ("127.0.0.1", port))
            _sent(i)


def publish_rtsp(port: int, frames: Sequence[np.ndarray], fps: int, gop: int = 5) -> None:
    """Encode ``frames`` in real time and publish them to rtsp://127.0.0.1:port/live (ANNOUNCE /
    RECORD, RTP over UDP: the interleaved TCP mode is one that rtsp-server-perl does not parse)."""
    import av

    with av.open(f"rtsp://127.0.0.1:{port}/live", "w", format="rtsp", options={"rtsp_transport": "udp"}) as out:
        for i in _encode(out, frames, fps, gop, paced=True):
            if i == 0:
                print("ready", flush=True)
            _sent(i + 1)


RTSP_RELAY = "rtsp-server-perl"  # Debian's package of the same name (RTSP::Server)


def rtsp_relay_available() -> bool:
    return shutil.which(RTSP_RELAY) is not None


def wait_listening(port: int, timeout_s: float) -> bool:
    """Whether something accepts TCP connections on the loopback ``port`` within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A live stream served by a child process, which ``kill()`` ends as a crash would (SIGKILL).

    Args:
        protocol: "http" (a server on ``port``), "udp" (a sender to ``port``) or "rtsp" (a relay on ``port``).
        frames, fps, size: the synthetic stream; or ``video`` = a clip whose frames are sent.
    """

    def __init__(self, protocol: str = "http", *, port: int | None = None, frames: int = 600, fps: int = 10,
                 size: tuple[int, int] = (160, 120), video: str | Path | None = None) -> None:
        if protocol not in ("http", "udp", "rtsp"):
            raise ValueError(f"protocol {protocol!r}: expected http, udp or rtsp")
        self.protocol = protocol
        self.port = port or free_port(socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM)
        self.source_port = free_port() if protocol == "rtsp" else None  # where the relay takes the publisher
        target = self.source_port if protocol == "rtsp" else self.port
        self.args = ["--port", str(target), "--frames", str(frames), "--fps", str(fps), "--size", f"{size[0]}x{size[1]}"]
        if video is not None:
            self.args += ["--video", str(video)]
        self.process: subprocess.Popen | None = None
        self.relay: subprocess.Popen | None = None
        self.sent = 0  # frames sent on the current connection (HTTP) or since the start (UDP)
        self._cond = threading.Condition()

    @property
    def url(self) -> str:
        return {"http": f"http://127.0.0.1:{self.port}/live.ts", "udp": f"udp://127.0.0.1:{self.port}",
                "rtsp": f"rtsp://127.0.0.1:{self.port}/live"}[self.protocol]

    def start(self, timeout_s: float = 30.0) -> LiveServer:
        root = Path(__file__).resolve().parents[2]
        if self.protocol == "rtsp":
            if not rtsp_relay_available():
                raise RuntimeError(f"{RTSP_RELAY} is not installed (apt-get install {RTSP_RELAY})")
            self.relay = subprocess.Popen([RTSP_RELAY, "--clientport", str(self.port), "--serverport", str(self.source_port)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if not (wait_listening(self.source_port, timeout_s) and wait_listening(self.port, timeout_s)):
                self.kill()
                raise RuntimeError(f"{RTSP_RELAY} did not listen on ports {self.port}, {self.source_port} within {timeout_s:g} s")
        env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        process = subprocess.Popen([sys.executable, "-m", "app.bench.live_streams", self.protocol, *self.args],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=root, env=env, text=True)
        self.process, self.sent = process, 0
        ready = threading.Event()

        def listen() -> None:  # "ready", then "sent N" per frame
            for line in process.stdout:
                if line.startswith("ready"):
                    ready.set()
                elif line.startswith("sent "):
                    with self._cond:
                        self.sent = int(line.split()[1])
                        self._cond.notify_all()
            process.stdout.close()

        threading.Thread(target=listen, name="live-server-stdout", daemon=True).start()
        if not ready.wait(timeout_s):
            self.kill()
            raise RuntimeError(f"the {self.protocol} stream server on port {self.port} did not start within {timeout_s:g} s")
        return self

    def wait_sent(self, n: int, timeout_s: float = 30.0) -> bool:
        """Wait until ``n`` frames have been sent; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.sent >= n, timeout_s)

    def kill(self) -> None:
        """End the server as a crash would (SIGKILL): its connections drop without a goodbye."""
        for process in (self.process, self.relay):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(5)
        self.process = self.relay = None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.bench.live_streams", description=__doc__.split("\n\n")[0])
    p.add_argument("protocol", choices=("http", "udp", "rtsp"))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--frames", type=int, default=600)
    p.add_argument("--fps", type=int, default=10)
    p.add_argument("--size", default="160x120", help="WxH of the synthetic frames")
    p.add_argument("--video", default=None, help="send this clip's frames instead of synthetic ones")
    args = p.parse_args(argv)
    if args.video:
        frames = clip_frames(args.video, args.frames)
    else:
        w, h = (int(v) for v in args.size.split("x"))
        frames = synthetic_frames(args.frames, (w, h))
    if args.protocol == "rtsp":
        publish_rtsp(args.port, frames, args.fps)
    else:
        (serve_http if args.protocol == "http" else send_udp)(args.port, *make_ts(frames, args.fps), args.fps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
