"""Augmentation on real frames: boxes stay on the same pixels through flips, zooms and mosaics; the
crop rules (label / ignore / drop); determinism under a seed."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from detector.augment import (
    Annotated,
    AugmentConfig,
    Augmenter,
    color_jitter,
    hflip,
    mosaic,
    place,
    random_scale,
)
from tests.detector.conftest import read_frames
from tests.detector.test_train import PEOPLE

VAN = (650, 42, 724, 100)  # frame 0 of the sample clip: the white van, here an ignore region
# pure colours that do not occur in the sample clip, painted over the people to follow them through
PAINT = np.array([[255, 0, 255], [0, 255, 255], [0, 0, 255], [0, 255, 0], [128, 0, 255], [0, 128, 255]], np.uint8)


def _frame0() -> Annotated:
    return Annotated(read_frames(1)[0], np.array(PEOPLE, np.float32), np.ones(len(PEOPLE), np.int64),
                     np.array([VAN], np.float32))


def _mean_abs_diff(src: np.ndarray, src_box, dst: np.ndarray, dst_box) -> float:
    """Mean |difference| of the image under ``dst_box`` and the one under ``src_box`` resized to it."""
    x1, y1, x2, y2 = (int(round(v)) for v in dst_box)
    a1, b1, a2, b2 = (int(round(v)) for v in src_box)
    want = cv2.resize(src[b1:b2, a1:a2], (x2 - x1, y2 - y1), interpolation=cv2.INTER_AREA)
    return float(np.abs(dst[y1:y2, x1:x2].astype(np.float32) - want.astype(np.float32)).mean())


def test_flip_mirrors_pixels_and_boxes():
    a = _frame0()
    f = hflip(a)
    for before, after in zip(a.boxes.astype(int), f.boxes.astype(int), strict=True):
        x1, y1, x2, y2 = before
        u1, v1, u2, v2 = after
        np.testing.assert_array_equal(f.image[v1:v2, u1:u2], a.image[y1:y2, x1:x2][:, ::-1])
    np.testing.assert_allclose(f.ignore, [[768 - 724, 42, 768 - 650, 100]])
    np.testing.assert_array_equal(hflip(f).image, a.image)


@pytest.mark.parametrize("scale, offset", [(2.0, (-400.0, -600.0)), (3.0, (-720.0, -1000.0)), (0.5, (101.0, 57.0)),
                                           (0.3, (300.0, 200.0))])
def test_zoom_keeps_boxes_on_their_pixels(scale, offset):
    a = _frame0()
    out = place(a, scale, offset, (768, 576))
    woman = np.array(PEOPLE[2], np.float32)  # the woman in the foreground, in view at every offset above
    expected = woman * scale + np.array([*offset, *offset], np.float32)
    if scale < 1:  # shrinking uses whole-pixel sizes (so x and y scale by the ratios of those)
        sx, sy = round(768 * scale) / 768, round(576 * scale) / 576
        expected = woman * np.array([sx, sy, sx, sy], np.float32) + np.array([*offset, *offset], np.float32)
    match = np.abs(out.boxes - expected).max(axis=1) < 1e-3
    assert match.sum() == 1, (out.boxes, expected)
    box = out.boxes[match][0]
    err = _mean_abs_diff(a.image, woman, out.image, box)
    shifted = _mean_abs_diff(a.image, woman, out.image, box + np.array([8, 0, 8, 0]) * max(scale, 1))
    assert err < 12 and shifted > 1.5 * err, (err, shifted)


@pytest.mark.parametrize("scale", [2, 3])
def test_zoom_in_is_a_resize_in_pixel_edge_coordinates(scale):
    """An integer zoom at a whole-pixel offset equals cv2.resize (which maps pixel edges x → s·x) cut at
    that offset — half a pixel off would shift everything by (s − 1) / 2 px."""
    a = _frame0()
    out = place(a, float(scale), (-400.0, -500.0), (768, 576))
    big = cv2.resize(a.image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    diff = np.abs(out.image.astype(np.int16) - big[500:500 + 576, 400:400 + 768].astype(np.int16))
    # warpAffine interpolates at 1/32 px, resize finer: a few grey levels apart at most on sharp edges
    assert diff.max() <= 4 and diff.mean() < 0.3, (diff.max(), diff.mean())


def test_crop_rules_label_ignore_drop():
    """Shift the frame 340 px left on its own canvas: the crop edge x = 0 cuts the people at x < 340."""
    a = _frame0()
    tiny = np.array([[400, 300, 403, 340]], np.float32)  # 3 px wide: too narrow to learn
    scores = np.linspace(0.4, 0.9, len(a.labels) + 1).astype(np.float32)  # each label's own confidence
    a = Annotated(a.image, np.vstack([a.boxes, tiny]), np.append(a.labels, 1), a.ignore, scores)
    out = place(a, 1.0, (-340.0, 0.0), (768, 576))
    # by construction (x − 340): (640..666) → 300..326 whole; (461..499) → 121..159 whole;
    # the woman (326..386) → −14..46: 46/60 = 77 % visible → label, clipped to 0..46;
    # (311..351) → −29..11: 11/40 = 27 % → ignore 0..11; (218..245) and (137..168) → outside → dropped;
    # the tiny box → 60..63 → ignore; the van (ignore) 650..724 → 310..384 stays an ignore box
    np.testing.assert_allclose(out.boxes, [[300, 191, 326, 284], [121, 221, 159, 316], [0, 374, 46, 516]])
    np.testing.assert_allclose(out.ignore, [[310, 42, 384, 100], [0, 159, 11, 233], [60, 300, 63, 340]])
    assert out.labels.tolist() == [1, 1, 1]
    kept = [PEOPLE.index(b) for b in ((640, 191, 666, 284), (461, 221, 499, 316), (326, 374, 386, 516))]
    np.testing.assert_allclose(out.scores, scores[kept])  # the scores follow their boxes
    # and the pixels moved with them
    np.testing.assert_array_equal(out.image[:, :428], a.image[:, 340:])
    assert (out.image[:, 428:] == 114).all()


def test_keep_cut_bottom_keeps_a_person_seen_from_the_chest_up():
    """Zoom 4× onto the woman (326, 374, 386, 516 in frame 0): on a 768×288 canvas her box is 240 × 568 px.
    Shown from her top, the canvas bottom cuts her at 288/568 = 51 % visible: an ignore box by the 60 % rule,
    a label with keep_cut_bottom 0.3; shown from her middle (top cut too) she stays an ignore box."""
    a = Annotated(_frame0().image, np.array([[326, 374, 386, 516]], np.float32), np.array([1]), np.zeros((0, 4), np.float32))
    top = (-326 * 4 + 200.0, -374 * 4.0)
    plain = place(a, 4.0, top, (768, 288))
    kept = place(a, 4.0, top, (768, 288), keep_cut_bottom=0.3)
    assert len(plain.boxes) == 0 and len(plain.ignore) == 1
    np.testing.assert_allclose(kept.boxes, [[200, 0, 440, 288]])
    assert kept.labels.tolist() == [1] and len(kept.ignore) == 0
    assert len(place(a, 4.0, (top[0], top[1] - 100), (768, 288), keep_cut_bottom=0.3).boxes) == 0  # top cut
    assert len(place(a, 4.0, top, (768, 288), keep_cut_bottom=0.6).boxes) == 0  # 51 % < 60 %
    # zoom-ins (8–9×: she is twice the 576 px canvas, under 60 % visible) with the rule on show the kept-in-view box's
    # top half of the time, so some draws keep her as a label cut by the bottom edge; without it, none
    cfg = AugmentConfig(ops=("scale",), scale_range=(8.0, 9.0), keep_cut_bottom=0.3)
    rng = np.random.default_rng(0)
    cut = [random_scale(a, rng, cfg) for _ in range(20)]
    assert sum(len(o.boxes) for o in cut) >= 3
    assert all(o.boxes[0, 1] >= 0 and o.boxes[0, 3] == 576 for o in cut if len(o.boxes))
    rng = np.random.default_rng(0)
    plain_cut = [random_scale(a, rng, replace(cfg, keep_cut_bottom=0.0)) for _ in range(20)]
    assert sum(len(o.boxes) for o in plain_cut) == 0


def _painted(frames: list[np.ndarray]) -> list[Annotated]:
    out = []
    for image in frames:
        image = image.copy()
        for (x1, y1, x2, y2), colour in zip(PEOPLE, PAINT, strict=True):
            image[y1:y2, x1:x2] = colour
        out.append(Annotated(image, np.array(PEOPLE, np.float32), np.arange(1, 7), np.zeros((0, 4), np.float32)))
    return out


def _paint_mask(image: np.ndarray) -> np.ndarray:
    """Bool [H, W]: pixels within 40 of one of the paint colours."""
    d = np.abs(image[:, :, None, :].astype(np.int16) - PAINT[None, None].astype(np.int16)).max(-1)
    return (d <= 40).any(-1)


@pytest.mark.parametrize("seed", range(6))
def test_mosaic_and_zoom_keep_every_painted_object_boxed(seed):
    """Each person is painted a solid colour; after mosaic / zoom / flip every label box must be filled
    with its person's colour, and no painted pixel may lie outside all label and ignore boxes (a visible
    object learnt as background)."""
    items = _painted(read_frames(4))
    rng = np.random.default_rng(seed)
    pool = iter(items[1:])
    aug = Augmenter(AugmentConfig(ops=("mosaic", "scale", "flip"), mosaic_prob=0.5))
    out = aug(items[0], rng, more=lambda: next(pool))
    assert out.image.shape == (576, 768, 3)
    for (x1, y1, x2, y2), label in zip(out.boxes, out.labels, strict=True):
        assert 0 <= x1 < x2 <= 768 and 0 <= y1 < y2 <= 576
        inner = out.image[int(np.ceil(y1)) + 1:int(y2) - 1, int(np.ceil(x1)) + 1:int(x2) - 1]
        if inner.size:
            colour = PAINT[label - 1].astype(np.int16)
            share = (np.abs(inner.astype(np.int16) - colour).max(-1) <= 40).mean()
            assert share > 0.9, (seed, label, share)
    covered = np.zeros(out.image.shape[:2], bool)
    for x1, y1, x2, y2 in np.vstack([out.boxes, out.ignore]):
        covered[max(0, int(y1) - 2):int(np.ceil(y2)) + 2, max(0, int(x1) - 2):int(np.ceil(x2)) + 2] = True
    assert (_paint_mask(out.image) & ~covered).sum() <= 10


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_box_keeps_its_own_score_through_mosaic_zoom_and_flip(seed):
    items = [replace(a, scores=a.labels / 10) for a in _painted(read_frames(4))]  # score = label / 10
    pool = iter(items[1:])
    out = Augmenter(AugmentConfig(ops=("mosaic", "scale", "flip", "color"), mosaic_prob=0.5))(
        items[0], np.random.default_rng(seed), more=lambda: next(pool))
    assert len(out.scores) == len(out.labels) > 0
    np.testing.assert_allclose(out.scores, out.labels / 10, rtol=1e-6)
    assert Annotated(out.image, out.boxes, out.labels).scores.tolist() == [1.0] * len(out.labels)  # none given: 1
    with pytest.raises(ValueError, match="labels but"):
        Annotated(out.image, out.boxes, out.labels, scores=np.ones(len(out.labels) + 1))


def test_mosaic_fills_four_quadrants_from_four_images():
    items = _painted(read_frames(4))
    cfg = AugmentConfig()
    out = mosaic(items, np.random.default_rng(3), cfg)
    assert out.image.shape == items[0].image.shape
    # every labelled person is painted: the mosaic shows people from more than one source image
    assert len(out.boxes) >= 2 and _paint_mask(out.image).sum() > 0
    with pytest.raises(ValueError, match="4 images"):
        mosaic(items[:3], np.random.default_rng(0), cfg)


def test_scale_jitter_zooms_in_and_out_over_the_range(small_frame):
    people = np.array([[60, 110, 84, 160]], np.float32)  # a person in the 240×320 cut of frame 0
    a = Annotated(small_frame, people, np.ones(1, np.int64))
    cfg = AugmentConfig(scale_range=(0.3, 3.0), min_side=0.5, min_visible=0.01)
    rng = np.random.default_rng(0)
    heights = []
    for _ in range(60):
        out = random_scale(a, rng, cfg)
        assert out.image.shape == small_frame.shape
        if len(out.boxes):
            heights.append(float(out.boxes[0, 3] - out.boxes[0, 1]) / 50)
    assert len(heights) > 40  # zoom-ins keep a labelled box in view
    assert min(heights) < 0.5 and max(heights) > 1.5 and all(0.29 <= h <= 3.01 for h in heights)


def test_same_seed_same_result_other_seed_other_result():
    items = _painted(read_frames(4))
    aug = Augmenter(AugmentConfig(ops=("mosaic", "scale", "color", "flip"), mosaic_prob=1.0))

    def run(seed):
        pool = iter(items[1:])
        return aug(items[0], np.random.default_rng(seed), more=lambda: next(pool))

    a, b, c = run(7), run(7), run(8)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.ignore, b.ignore)
    assert not np.array_equal(a.image, c.image)


def test_color_jitter_changes_pixels_not_boxes():
    a = _frame0()
    out = color_jitter(a, np.random.default_rng(1), AugmentConfig(brightness=0.3, contrast=0, saturation=0, hue=0))
    np.testing.assert_array_equal(out.boxes, a.boxes)
    np.testing.assert_array_equal(out.ignore, a.ignore)
    ratio = out.image.astype(np.float32).mean() / a.image.astype(np.float32).mean()
    assert 0.7 <= ratio <= 1.3 and abs(ratio - 1) > 1e-3
    hue = color_jitter(a, np.random.default_rng(1), AugmentConfig(brightness=0, contrast=0, saturation=0, hue=0.1))
    assert not np.array_equal(hue.image, a.image)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="'zoom' is unknown"):
        AugmentConfig(ops=("zoom",))
    with pytest.raises(ValueError, match="scale range 3.0, 0.3"):
        AugmentConfig(scale_range=(3.0, 0.3))
    with pytest.raises(ValueError, match="5 boxes but 4 labels"):
        Annotated(np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4)), np.zeros(4))


def test_the_resize_to_the_training_size_is_folded_in():
    """With a resize factor the output is drawn at the training size directly: here a zoom of 1 at
    480/576 equals OpenCV's area resize of the frame, boxes scaled with it; mosaics use that canvas too."""
    a = _frame0()
    aug = Augmenter(AugmentConfig(ops=("scale",), scale_range=(1.0, 1.0)))
    out = aug(a, np.random.default_rng(0), resize=lambda h, w: 480 / h)
    np.testing.assert_array_equal(out.image, cv2.resize(a.image, (640, 480), interpolation=cv2.INTER_AREA))
    np.testing.assert_allclose(out.boxes, a.boxes * (480 / 576), atol=1e-3)
    items = _painted(read_frames(4))
    assert mosaic(items, np.random.default_rng(0), AugmentConfig(), resize=lambda h, w: 0.5).image.shape == (288, 384, 3)
