"""Cut the bundled sample clip (assets/sample.mp4) from OpenCV's vtest.avi: frames 650–794, H.264."""

from __future__ import annotations

import fractions
import sys
from pathlib import Path

import av

FIRST, LAST, FPS = 650, 794, 10


def main(src: str, dst: str = "assets/sample.mp4") -> None:
    with av.open(src) as inp, av.open(dst, "w") as out:
        stream = inp.streams.video[0]
        enc = out.add_stream("libx264", rate=FPS)
        enc.width, enc.height, enc.pix_fmt = stream.width, stream.height, "yuv420p"
        enc.options = {"crf": "26", "preset": "slow", "g": "20"}
        n = 0
        for i, frame in enumerate(inp.decode(stream)):
            if i < FIRST:
                continue
            if i > LAST:
                break
            vf = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
            vf.pts, vf.time_base = n, fractions.Fraction(1, FPS)
            n += 1
            out.mux(enc.encode(vf))
        out.mux(enc.encode())
    print(f"wrote {n} frames to {Path(dst).resolve()}")


if __name__ == "__main__":
    main(*sys.argv[1:])
