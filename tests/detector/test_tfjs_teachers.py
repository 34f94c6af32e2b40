"""The NanoDet and CenterNet teachers and the ``nanodet`` backbone: each teacher against TF.js's own
detections on one real frame (the fixture of scripts/make_tfjs_fixture.py), the NanoDet modules
against the graph, the backbone contract, and a checkpoint that rebuilds without the TF.js file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detector.backbones import build_backbone
from detector.detections import Detections
from detector.nanodet import NANODET_MEAN_RGB, NanoDet, decode
from detector.teacher import TeacherError
from detector.tfjs_teachers import COCO80, CenterNetTeacher, NanoDetTeacher, _to_frame, letterbox
from tests.detector.tfjs_files import needs_tfjs, reference, tfjs_dir
from tests.matching import assert_same_detections


@needs_tfjs
@pytest.mark.parametrize("name", ["nanodet", "centernet"])
def test_each_teacher_adapter_reproduces_its_reference_output_on_one_frame(name, sample_frames):
    """Same detections as TF.js running the graph, decoded in JS with TF.js's NMS (score 0.25, IoU 0.6)."""
    ref = reference()[f"{name}/detections"]
    cls = NanoDetTeacher if name == "nanodet" else CenterNetTeacher
    det = cls.from_directory(tfjs_dir(), score_threshold=0.25, nms_threshold=0.6).detect_one(sample_frames[0])
    assert det.class_names == ("__background__", *COCO80)
    assert len(ref) >= 10 and "person" in det.labels  # the sample frame shows a dozen people
    expected = Detections(ref[:, :4].astype(np.float32), ref[:, 4].astype(np.float32),
                          ref[:, 5].astype(np.int64) + 1, det.class_names)
    # matched by class and IoU (boxes within ~0.05 px of 100-px objects), never by row order: two
    # boxes of near-equal score may come out of NMS in either order
    m = assert_same_detections(det, expected, iou=0.99, score_atol=1e-4, floor=0.25, what=f"{name} vs TF.js")
    assert len(m.pairs) == len(ref) == len(det)


@needs_tfjs
def test_nanodet_modules_equal_the_graph_on_a_real_frame(sample_frames):
    """The ``nanodet`` backbone's trunk = the graph's PAN maps; the whole network = the graph's outputs."""
    from detector.nanodet import decode_graph_outputs
    from detector.tfjs import GraphModel

    graph = GraphModel.load(tfjs_dir() / "nanodet.json")
    teacher = NanoDetTeacher(tfjs_dir() / "nanodet.json")
    x, *_ = teacher.preprocess(sample_frames[0], 416)
    pan = ["PartitionedCall/onnx_tf_prefix_Add_107", "PartitionedCall/onnx_tf_prefix_Add_128",
           "PartitionedCall/onnx_tf_prefix_Add_149"]
    out = graph.run({"input_1": x.flip(1)}, [*pan, *graph.outputs])
    body = build_backbone("nanodet", reduce_channels=64, tfjs_model=str(tfjs_dir() / "nanodet.json"))
    maps = body.trunk_features(x)
    for name, ours in zip(pan, maps, strict=True):
        torch.testing.assert_close(ours, out[name], atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        boxes, scores = decode([o[0] for o in teacher.net(x)], (416, 416))
    ref_boxes, ref_scores = decode_graph_outputs({k: out[k] for k in graph.outputs})
    torch.testing.assert_close(scores, ref_scores, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(boxes, ref_boxes, atol=1e-2, rtol=1e-4)


def test_nanodet_backbone_contract():
    body = build_backbone("nanodet", reduce_channels=64)
    x = torch.rand(1, 3, 128, 160)
    maps = body.trunk_features(x)
    assert [tuple(m.shape) for m in maps] == [(1, 128, 16, 20), (1, 128, 8, 10), (1, 128, 4, 5)]
    assert not any(m.requires_grad for m in maps)
    out = body(x)
    assert list(out) == ["0", "1", "2"] and all(v.shape[1] == 64 for v in out.values())
    assert body.strides == (8, 16, 32) and body.out_channels == 64 and body.frozen_trunk
    assert not any(p.requires_grad for p in body.trunk.parameters())
    assert all(p.requires_grad for p in body.reduce.parameters())
    body.train()
    assert not body.trunk.training and body.reduce.training
    # RGB in [0, 1], normalised with upstream's BGR mean/std put in RGB order
    assert body.image_mean == pytest.approx([m / 255 for m in NANODET_MEAN_RGB]) and body.image_mean[0] > body.image_mean[2]


@needs_tfjs
def test_a_nanodet_checkpoint_rebuilds_without_the_tfjs_file(tmp_path, sample_frames):
    from detector.builders import build_paper
    from detector.config import DetectorConfig
    from detector.detector import Detector
    from detector.weights import save_checkpoint

    arch = {"backbone": "nanodet", "anchor_sizes": [[16, 32, 64], [64, 128, 256], [128, 256, 512]],
            "reduce_channels": 32, "representation_size": 64, "min_size": 240, "max_size": 320}
    torch.manual_seed(0)
    model = build_paper(num_classes=3, **arch, backbone_kwargs={"tfjs_model": str(tfjs_dir() / "nanodet.json")})
    path = save_checkpoint(tmp_path / "n.pt", model, model_name="paper", arch=arch,
                           class_names=("__background__", "person", "car"), half=False)
    detector = Detector(DetectorConfig(weights=str(path), device="cpu", precision="fp32", score_threshold=0.0))
    loaded = detector.model.backbone.trunk
    for (name, a), b in zip(model.backbone.trunk.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(model.backbone.trunk_features(x)[2], detector.model.backbone.trunk_features(x)[2])
    (det,) = detector.detect([sample_frames[0]], timing=False)
    # a random head at threshold 0 keeps its top detections: boxes inside the frame, known classes
    h, w = sample_frames[0].shape[:2]
    assert len(det) > 0 and set(det.labels) <= {"person", "car"}
    assert det.boxes.min() >= 0 and det.boxes[:, [0, 2]].max() <= w and det.boxes[:, [1, 3]].max() <= h


def test_letterbox_maps_boxes_back_to_the_frame():
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[60:120, 100:180] = 255
    image, scale, dx, dy = letterbox(frame, 416)
    assert image.shape == (416, 416, 3) and scale == pytest.approx(1.3) and (dx, dy) == (0, 52)
    ys, xs = np.nonzero(image[..., 0] > 127)
    box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
    back = _to_frame(box, scale, dx, dy, frame.shape)[0].tolist()
    assert back == pytest.approx([100, 60, 180, 120], abs=1.0)


def test_decode_puts_boxes_around_cell_centres():
    """One level of logits: bins peaked at 2 → each side 2 × stride from the cell centre."""
    outputs = []
    for stride in (8, 16, 32):
        h = w = 64 // stride
        out = torch.full((124, h, w), -20.0)
        out[80:].view(4, 11, h, w)[:, 2] = 20.0  # every side's distribution peaked at bin 2
        outputs.append(out)
    boxes, scores = decode(outputs, (64, 64))
    assert boxes.shape == (64 + 16 + 4, 4) and scores.shape == (84, 80)
    # stride 8, row 1 col 1: centre (12, 12) → (-4, -4, 28, 28), clipped; row 2 col 3: centre (28, 20)
    assert boxes[1 * 8 + 1].tolist() == pytest.approx([0.0, 0.0, 28.0, 28.0], abs=1e-3)
    assert boxes[2 * 8 + 3].tolist() == pytest.approx([12.0, 4.0, 44.0, 36.0], abs=1e-3)
    assert scores.max() < 1e-6


def test_missing_files_and_bad_sizes_are_named(tmp_path):
    with pytest.raises(TeacherError, match="nanodet.json is missing.*make teacher"):
        NanoDetTeacher.from_directory(tmp_path)
    with pytest.raises(TeacherError, match="centernet.json is missing"):
        CenterNetTeacher.from_directory(tmp_path)
    with pytest.raises(ValueError, match="multiples of 32"):
        NanoDetTeacher(tmp_path / "nanodet.json", sizes=(400,))
    assert len(NanoDet().head.outputs) == 3
