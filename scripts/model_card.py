"""MODEL_CARD.md of the default model, written from its checkpoint's meta (see make_model.py)."""

from __future__ import annotations

from pathlib import Path


def write(path: Path, shipped: Path, ckpt: dict) -> None:
    path.write_text("(card pending)\n")
