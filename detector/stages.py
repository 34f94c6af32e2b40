"""The detector's stages and their timing record — without torch, so that code which only carries
results (a stream's process in ``serve``, sinks, stats) need not load it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

STAGES = ("preprocess", "backbone", "rpn", "roi_heads", "postprocess")


@dataclass
class StageTimes:
    """Milliseconds spent in each stage of one ``detect`` call (for the whole batch)."""

    preprocess: float = 0.0
    backbone: float = 0.0
    rpn: float = 0.0
    roi_heads: float = 0.0
    postprocess: float = 0.0

    @property
    def total(self) -> float:
        return self.preprocess + self.backbone + self.rpn + self.roi_heads + self.postprocess

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "total": self.total}
