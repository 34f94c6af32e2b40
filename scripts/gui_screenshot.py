"""Take the README's screenshot of the real window (docs/gui.png).

Runs the GUI exactly as ``run.py`` does, lets it play for a while, grabs the window, and saves a
palette-quantised PNG (small enough for the repository). Needs a display; on a headless machine:

    xvfb-run -a -s "-screen 0 1280x800x24" python scripts/gui_screenshot.py --out docs/gui.png
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as run.py does: idle OpenMP threads must not spin


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(ROOT / "assets" / "sample.mp4"))
    parser.add_argument("--model", default="default")
    parser.add_argument("--weights", default="default")
    parser.add_argument("--after", type=float, default=15.0, help="seconds of playback before the grab")
    parser.add_argument("--out", default=str(ROOT / "docs" / "gui.png"))
    parser.add_argument("--size", default="1180x700", help="window size WxH")
    args = parser.parse_args()

    from PIL import Image
    from PyQt6.QtCore import QBuffer, QIODevice
    from PyQt6.QtWidgets import QApplication

    from app.config import PipelineConfig
    from app.gui.launch import apply_theme
    from app.gui.main_window import MainWindow
    from app.pipeline.fastpath import build_detector
    from detector.config import DetectorConfig

    app = QApplication(sys.argv[:1])
    apply_theme(app)
    # the CPU fast path as run.py's window gets it (precision auto: the run's tuner, channels_last, threads)
    detector, _setup = build_detector(DetectorConfig(model=args.model, weights=args.weights))
    window = MainWindow(detector)
    width, height = (int(v) for v in args.size.split("x"))
    window.resize(width, height)
    window.show()
    window.open_source(PipelineConfig(source_kind="video", source=args.video))
    deadline = time.monotonic() + args.after
    while time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    window.grab().save(buffer, "PNG")
    frames = window.frames_displayed
    window.close()

    image = Image.open(io.BytesIO(bytes(buffer.data()))).convert("RGB")
    image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)
    print(f"{out}: {image.width}×{image.height}, {out.stat().st_size / 1024:.0f} KiB, after {frames} frames shown")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
