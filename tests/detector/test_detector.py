import numpy as np
import pytest
import torch

from detector import ConfigError, Detector, DetectorConfig, DeviceError
from detector.builders import COCO_CLASS_NAMES, build_torchvision

CPU = dict(device="cpu", weights="random", score_threshold=0.0)


@pytest.fixture(scope="module")
def paper_detector():
    """A small real paper model (ResNet-18 C4, random weights) on 128-px inputs."""
    return Detector(DetectorConfig(model="paper", backbone="resnet18", min_size=128, max_size=192, **CPU))


def reference(model, frames):
    images = [torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in frames]
    with torch.inference_mode():
        return model(images)


@pytest.mark.parametrize("name", ["fasterrcnn_mobilenet_v3_large_320_fpn", "paper"])
def test_staged_forward_equals_the_torchvision_models_own_forward(name, sample_frames, small_frame):
    torch.manual_seed(0)
    if name == "paper":
        det = Detector(DetectorConfig(model="paper", backbone="resnet18", min_size=160, max_size=240, **CPU))
    else:
        det = Detector(DetectorConfig(model=name, **CPU), model=build_torchvision(name), class_names=COCO_CLASS_NAMES)
    frames = [small_frame, np.ascontiguousarray(sample_frames[1][100:300, 200:500])]  # two sizes in one batch
    ours = det.detect(frames)
    theirs = reference(det.model, frames)
    assert sum(len(d) for d in ours) > 0, "the comparison would be empty"
    for d, t in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(d.boxes, t["boxes"].numpy())
        np.testing.assert_array_equal(d.scores, t["scores"].numpy())
        np.testing.assert_array_equal(d.class_ids, t["labels"].numpy())


def test_boxes_are_in_frame_pixels(paper_detector, small_frame):
    det = paper_detector.detect([small_frame])[0]
    h, w = small_frame.shape[:2]
    assert len(det) > 0
    assert det.boxes[:, [0, 2]].max() <= w and det.boxes[:, [1, 3]].max() <= h and det.boxes.min() >= 0


def test_proposals_never_exceed_the_count_and_follow_runtime_changes(paper_detector, small_frame):
    seen = {}
    for n in (5, 40, 300):
        paper_detector.set_proposal_count(n)
        assert paper_detector.proposal_count == n
        paper_detector.detect([small_frame, small_frame])
        seen[n] = paper_detector.last_proposal_counts
        assert all(0 < c <= n for c in seen[n])
    assert seen[5] == [5, 5] and seen[40] == [40, 40]
    assert seen[300][0] > 40  # raising the count really gives more proposals (after NMS at 0.7)


def test_runtime_knobs_are_validated(paper_detector):
    for bad in (0, -1, 1.5):
        with pytest.raises(ConfigError, match=f"proposal count {bad}"):
            paper_detector.set_proposal_count(bad)
    with pytest.raises(ConfigError, match="score threshold 2"):
        paper_detector.set_score_threshold(2)
    with pytest.raises(ConfigError, match="unknown class name.*unicorn.*this model knows: person, bicycle"):
        paper_detector.set_classes(["unicorn"])


def test_score_threshold_and_class_filter_apply_on_the_next_call(paper_detector, small_frame):
    paper_detector.set_proposal_count(100)
    all_dets = paper_detector.detect([small_frame])[0]
    assert len(set(all_dets.labels)) > 1
    keep = all_dets.labels[0]
    paper_detector.set_classes([keep])
    only = paper_detector.detect([small_frame])[0]
    assert set(only.labels) == {keep}
    paper_detector.set_classes(None)
    median = float(np.median(all_dets.scores))
    paper_detector.set_score_threshold(median)
    try:
        high = paper_detector.detect([small_frame])[0]
    finally:
        paper_detector.set_score_threshold(0.0)
    assert 0 < len(high) < len(all_dets) and high.scores.min() >= median


def test_bgr_input_is_flipped_to_rgb(paper_detector, small_frame):
    rgb = paper_detector.detect([small_frame])[0]
    bgr = paper_detector.detect([np.ascontiguousarray(small_frame[..., ::-1])], bgr=True)[0]
    np.testing.assert_array_equal(rgb.boxes, bgr.boxes)


def test_stage_timings_are_reported(paper_detector, small_frame):
    paper_detector.detect([small_frame])
    times = paper_detector.last_times.as_dict()
    assert set(times) == {"preprocess", "backbone", "rpn", "roi_heads", "postprocess", "total"}
    assert all(v > 0 for v in times.values())
    assert times["total"] == pytest.approx(sum(v for k, v in times.items() if k != "total"))


def test_bad_frames_are_refused_with_what_arrived(paper_detector):
    with pytest.raises(ValueError, match=r"frame 0 must be a uint8 array \[H, W, 3\]; got float32 \(4, 4, 3\)"):
        paper_detector.detect([np.zeros((4, 4, 3), np.float32)])
    with pytest.raises(ValueError, match=r"frame 1 .* got uint8 \(4, 4\)"):
        paper_detector.detect([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)])
    # one grey or 4-channel frame alone: named as it arrived, not as its first row (it said "got uint8 (5,)")
    with pytest.raises(ValueError, match=r"frame 0 .* got uint8 \(4, 5\)$"):
        paper_detector.detect(np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match=r"frame 0 .* got uint8 \(4, 5, 4\)$"):
        paper_detector.detect(np.zeros((4, 5, 4), np.uint8))


def test_fp16_on_cpu_falls_back_with_a_clear_message(small_frame):
    det = Detector(DetectorConfig(model="paper", backbone="resnet18", min_size=128, max_size=192, precision="fp16", **CPU))
    assert det.precision == "fp32"
    assert any("fp16 is not supported on the CPU" in n for n in det.notes)
    assert len(det.detect([small_frame])[0]) > 0


def test_bf16_runs_on_cpu_under_autocast(small_frame):
    cfg = DetectorConfig(model="paper", backbone="resnet18", min_size=128, max_size=192, **CPU)
    fp32 = Detector(cfg)
    bf16 = Detector(cfg.with_(precision="bf16"), model=fp32.model, class_names=fp32.class_names)
    assert bf16.precision == "bf16" and not bf16.notes
    seen = {}
    hook = bf16.model.roi_heads.box_head.register_forward_hook(lambda m, i, o: seen.update(head=o.dtype))
    hook2 = bf16.model.roi_heads.box_predictor.register_forward_hook(lambda m, i, o: seen.update(pred=o[1].dtype))
    try:
        det = bf16.detect([small_frame])[0]
    finally:
        hook.remove(), hook2.remove()
    assert seen == {"head": torch.bfloat16, "pred": torch.float32}  # fc layers in bf16, box decoding in fp32
    assert len(det) > 0 and det.boxes.dtype == np.float32
    assert next(bf16.model.parameters()).dtype == torch.float32  # autocast, the weights stay fp32
    assert det.boxes[:, 2].max() <= small_frame.shape[1]


def test_precision_changes_at_run_time_without_reloading(paper_detector, small_frame):
    weights = paper_detector.model.roi_heads.box_head.fc6.weight
    try:
        assert paper_detector.set_precision("bf16") is None and paper_detector.precision == "bf16"
        assert len(paper_detector.detect([small_frame])[0]) > 0
        assert "fp16 is not supported on the CPU" in paper_detector.set_precision("fp16")
        assert paper_detector.precision == "fp32"
        with pytest.raises(ConfigError, match="precision 'fp8' is unknown"):
            paper_detector.set_precision("fp8")
    finally:
        paper_detector.set_precision("fp32")
    assert paper_detector.model.roi_heads.box_head.fc6.weight is weights


def test_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceError, match="no CUDA GPU; use --device cpu"):
        Detector(DetectorConfig(model="paper", device="cuda", weights="random"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_on_gpu_matches_fp32(precision, sample_frames):
    from torchvision.ops import box_iou

    torch.manual_seed(0)
    name = "fasterrcnn_mobilenet_v3_large_fpn"
    model = build_torchvision(name)
    cfg = DetectorConfig(model=name, device="cuda", weights="random", score_threshold=0.05)
    ref = Detector(cfg.with_(precision="fp32"), model=model, class_names=COCO_CLASS_NAMES).detect(sample_frames[:1])[0]
    half = Detector(cfg.with_(precision=precision), model=model, class_names=COCO_CLASS_NAMES).detect(sample_frames[:1])[0]
    assert len(ref) > 0 and len(half) > 0
    top = ref[np.argsort(-ref.scores)[:20]]
    iou = box_iou(torch.from_numpy(top.boxes), torch.from_numpy(half.boxes)).max(dim=1).values
    assert float((iou >= 0.9).float().mean()) >= 0.9
    matched = box_iou(torch.from_numpy(top.boxes), torch.from_numpy(half.boxes)).argmax(dim=1).numpy()
    np.testing.assert_allclose(half.scores[matched], top.scores, atol=0.05)


def test_default_pre_nms_matches_torchvision_at_equal_settings():
    model = build_torchvision("fasterrcnn_mobilenet_v3_large_fpn")
    own = dict(model.rpn._pre_nms_top_n), dict(model.rpn._post_nms_top_n)
    det = Detector(DetectorConfig(model="fasterrcnn_mobilenet_v3_large_fpn", proposals=own[1]["testing"], **CPU),
                   model=model, class_names=COCO_CLASS_NAMES)
    assert (det.pre_nms_count, det.proposal_count) == (own[0]["testing"], own[1]["testing"]) == (1000, 1000)
    det.set_proposal_count(100)
    assert det.pre_nms_count == 1000  # fewer kept after NMS, NMS still sees torchvision's 1000
    det.set_proposal_count(3000)
    assert det.pre_nms_count == 3000
    det.set_proposal_count(100, pre_nms=400)
    assert det.pre_nms_count == 400


def test_knobs_do_not_wait_for_a_running_detect(paper_detector, small_frame):
    import threading
    import time

    entered, release = threading.Event(), threading.Event()

    def slow_backbone(module, inputs, output):
        entered.set()
        release.wait(10)

    paper_detector.set_proposal_count(30)
    hook = paper_detector.model.backbone.register_forward_hook(slow_backbone)
    worker = threading.Thread(target=paper_detector.detect, args=([small_frame],))
    try:
        worker.start()
        assert entered.wait(10)
        t = time.monotonic()
        paper_detector.set_proposal_count(7)  # while detect() is inside the backbone
        assert time.monotonic() - t < 1.0 and paper_detector.proposal_count == 7
    finally:
        release.set()
        worker.join(10)
        hook.remove()
    assert paper_detector.last_proposal_counts == [30]  # the running call kept its values
    paper_detector.detect([small_frame])
    assert paper_detector.last_proposal_counts == [7]  # the next one took the new count


def test_detect_timed_gives_this_calls_times_and_proposals(paper_detector):
    """The typed call the pipeline, serve and the bench use: its own times and counts, not shared state."""
    frames = [np.zeros((96, 128, 3), np.uint8), np.full((64, 80, 3), 200, np.uint8)]
    timed = paper_detector.detect_timed(frames)
    assert len(timed.detections) == len(timed.proposals) == 2
    assert timed.times.total > 0 and timed.times == paper_detector.last_times
    assert timed.proposals == paper_detector.last_proposal_counts
    assert paper_detector.detect_timed([]).detections == []
