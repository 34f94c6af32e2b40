"""The shipped default model: a safe fp16 checkpoint ≤ 30 MB that finds the people of the sample clip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.ops import box_iou

from detector.config import DetectorConfig
from detector.detector import Detector
from tests.detector.darknet_files import PEOPLE_FRAME0

MODEL = Path(__file__).resolve().parents[2] / "assets" / "default_model.pt"


def test_checkpoint_is_safe_small_and_fp16():
    assert MODEL.is_file(), f"{MODEL} is missing: make model builds it"
    assert MODEL.stat().st_size <= 30 * 1024 * 1024
    obj = torch.load(MODEL, map_location="cpu", weights_only=True)
    assert obj["format"] == "frcnn-video/1" and obj["model"] == "paper"
    assert obj["arch"]["backbone"] == "yolov3_tiny" and "backbone_kwargs" not in obj["arch"]
    assert "person" in obj["class_names"] and obj["class_names"][0] == "__background__"
    floats = [v for v in obj["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    # the frozen trunk travels inside the checkpoint: no Darknet file at run time
    assert any(k.startswith("backbone.trunk.") for k in obj["state_dict"])


@pytest.fixture(scope="module")
def detector() -> Detector:
    torch.set_num_threads(2)
    return Detector(DetectorConfig(device="cpu", precision="fp32", proposals=100, score_threshold=0.5))


def test_default_model_is_trained(detector):
    assert detector.info.trained and detector.info.warning is None
    assert detector.info.source.endswith("default_model.pt")


def test_default_model_finds_the_people_of_a_known_frame(detector, sample_frames):
    det = detector.detect([sample_frames[0]])[0].filter(0.5, ["person"])
    assert len(det) >= 1
    iou = box_iou(torch.tensor(PEOPLE_FRAME0), torch.from_numpy(det.boxes)).max(dim=1).values
    assert (iou >= 0.5).all(), f"best IoU with the hand-checked people of frame 0: {iou.tolist()}"
