"""A rendered clip of objects on known paths crossing a known line and zone, and the counts those
paths imply (worked out here from the paths alone, not by the code under test).

``OBJECTS`` move along straight segments between key frames; each is drawn as a box (or, for the
real detector, as a person cut from the sample clip) whose bottom centre follows its path. The line
is vertical at x = 320 drawn top to bottom, so "in" is rightwards; the zone is a box in the lower
right. Every crossing stays on its new side for more than two frames, as the counters require.
Nothing overlaps: each object has its own lane.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from detector.detections import Detections

SIZE = (640, 360)
RATE = 10
FRAMES = 100
NAMES = ("__background__", "person", "car")
LINE = "0.5,0,0.5,1"  # fractions: x = 320 from the top edge to the bottom edge
LINE_X = 320.0
ZONE = "400,200,620,200,620,355,400,355"  # pixels
ZONE_BOX = (400.0, 200.0, 620.0, 355.0)


@dataclass(frozen=True)
class MovingObject:
    """A box of ``width`` × ``height`` px whose bottom centre moves through ``keys`` =
    ((frame, x, y_bottom), …), linearly between them; visible from the first key to the last."""

    name: str
    width: int
    height: int
    keys: tuple[tuple[int, float, float], ...]

    def anchor(self, frame: int) -> tuple[float, float] | None:
        """The bottom centre (x, y) at ``frame``; None when not visible."""
        keys = self.keys
        if frame < keys[0][0] or frame > keys[-1][0]:
            return None
        for (f0, x0, y0), (f1, x1, y1) in zip(keys, keys[1:], strict=False):
            if f0 <= frame <= f1:
                a = (frame - f0) / (f1 - f0)
                return x0 + a * (x1 - x0), y0 + a * (y1 - y0)
        return keys[0][1], keys[0][2]

    def box(self, frame: int) -> np.ndarray | None:
        p = self.anchor(frame)
        if p is None:
            return None
        x, y = p
        return np.array([x - self.width / 2, y - self.height, x + self.width / 2, y], np.float32)


# Sizes and speeds of people and cars seen from a street camera: a person 40 px wide walks 8-11 px
# a frame at 10 fps, so that even with every second frame dropped a box moves about half its width
# between two looks. Walkers slow down to turn round, as people do.
OBJECTS = (
    MovingObject("person", 40, 90, ((0, 60, 110), (50, 580, 110))),  # → across: in
    MovingObject("car", 80, 50, ((5, 590, 195), (60, 50, 195))),  # ← across: out
    MovingObject("person", 40, 90, ((0, 60, 265), (16, 200, 265), (20, 225, 265), (24, 200, 265), (40, 60, 265))),  # turns back: nothing
    MovingObject("person", 40, 90, ((0, 560, 350), (36, 200, 350), (42, 160, 350), (48, 200, 350), (78, 520, 350))),  # ← then →: out, in; zone twice
    MovingObject("car", 80, 50, ((40, 430, 240), (99, 600, 240))),  # stays right, inside the zone
)


def detections(frame: int) -> Detections:
    """The true boxes of ``frame``: what a perfect detector would report (score 0.95)."""
    boxes, classes = [], []
    for obj in OBJECTS:
        box = obj.box(frame)
        if box is not None:
            boxes.append(box)
            classes.append(NAMES.index(obj.name))
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), [0.95] * len(boxes), classes, NAMES)


def expected_counts(everyone_a_person: bool = False) -> dict:
    """What the paths imply: line crossings by direction and class; zone entries by class (a first
    sighting inside counts) and who is inside on the last frame. ``everyone_a_person``: for the
    clip of real people (``people_frame``), where the cars are people too."""
    crossed = {"in": {}, "out": {}}
    entries: dict[str, int] = {}
    inside_last: dict[str, int] = {}
    for obj in OBJECTS:
        if everyone_a_person:
            obj = MovingObject("person", obj.width, obj.height, obj.keys)
        frames = [f for f in range(FRAMES) if obj.anchor(f) is not None]
        sides = [obj.anchor(f)[0] > LINE_X for f in frames]
        for before, after in zip(sides, sides[1:], strict=False):
            if before != after:
                way = "in" if after else "out"  # rightwards across a top-to-bottom line is "in"
                crossed[way][obj.name] = crossed[way].get(obj.name, 0) + 1
        x1, y1, x2, y2 = ZONE_BOX
        inside = [x1 <= obj.anchor(f)[0] <= x2 and y1 <= obj.anchor(f)[1] <= y2 for f in frames]
        for k, now in enumerate(inside):
            if now and (k == 0 or not inside[k - 1]):
                entries[obj.name] = entries.get(obj.name, 0) + 1
        if frames[-1] == FRAMES - 1 and inside[-1]:
            inside_last[obj.name] = inside_last.get(obj.name, 0) + 1
    return {"in": crossed["in"], "out": crossed["out"], "entries": entries, "inside_last": inside_last}


def boxes_frame(frame: int, background: np.ndarray | None = None) -> np.ndarray:
    """Frame ``frame`` as RGB uint8 [360, 640, 3]: a grey ground with each object as a solid,
    outlined box in its own colour."""
    import cv2

    image = np.full((SIZE[1], SIZE[0], 3), 96, np.uint8) if background is None else background.copy()
    colors = ((220, 60, 60), (60, 160, 230), (240, 200, 40), (90, 200, 90), (200, 90, 220))
    for obj, color in zip(OBJECTS, colors, strict=True):
        box = obj.box(frame)
        if box is not None:
            x1, y1, x2, y2 = (int(round(float(v))) for v in box)
            cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), color, cv2.FILLED)
            cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), (20, 20, 20), 1)
    return image


class PeopleRenderer:
    """Frames of real people on a real street, for the real detector: the sample clip's empty street
    (the median of its frames, which the walkers leave), cut to 16:9 and scaled to 640×360, with
    the two hand-checked people of its frame 0 (tests/detector/darknet_files.py) walking every
    path — the cars' too — scaled to a person's 40×90 box.

    The street's one static thing that looks like a walker is painted out: the camera on a tripod
    standing in the zone, which the first v3 model took for a person (scores 0.31–0.91, in 98 of 100
    frames). Left in, it is a person inside the zone that no path accounts for."""

    PEOPLE = ((465, 223, 499, 314), (330, 372, 386, 517))  # x1, y1, x2, y2 in sample frame 0
    TRIPOD = (378, 212, 442, 346)  # x1, y1, x2, y2 in the 640×360 street: the camera and its legs

    def __init__(self, sample: Path) -> None:
        import cv2

        with av.open(str(sample)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        street = np.median(np.stack(frames[::4]), axis=0).astype(np.uint8)
        top = (street.shape[0] - street.shape[1] * SIZE[1] // SIZE[0]) // 2
        street = street[top: top + street.shape[1] * SIZE[1] // SIZE[0]]
        street = cv2.resize(street, SIZE, interpolation=cv2.INTER_AREA)
        x1, y1, x2, y2 = self.TRIPOD
        dark = np.zeros(street.shape[:2], np.uint8)  # the tripod's dark pixels, grown a little
        dark[y1:y2, x1:x2] = (street[y1:y2, x1:x2].max(axis=2) < 90).astype(np.uint8) * 255
        dark = cv2.dilate(dark, np.ones((5, 5), np.uint8))
        self.background = cv2.inpaint(street, dark, 5, cv2.INPAINT_TELEA)
        self.sprites = [cv2.resize(frames[0][y1:y2, x1:x2], (40, 90), interpolation=cv2.INTER_AREA)
                        for x1, y1, x2, y2 in self.PEOPLE]

    def __call__(self, frame: int) -> np.ndarray:
        image = self.background.copy()
        for k, obj in enumerate(OBJECTS):
            p = obj.anchor(frame)
            if p is None:
                continue
            sprite = self.sprites[k % len(self.sprites)]
            h, w = sprite.shape[:2]
            x1, y1 = int(round(p[0] - w / 2)), int(round(p[1] - h))
            xa, ya, xb, yb = max(0, x1), max(0, y1), min(SIZE[0], x1 + w), min(SIZE[1], y1 + h)
            image[ya:yb, xa:xb] = sprite[ya - y1: yb - y1, xa - x1: xb - x1]
        return image


def write_clip(path: Path, render=boxes_frame, frames: int = FRAMES) -> Path:
    """Render ``frames`` frames with ``render(frame)`` to an H.264 mp4 at 10 fps."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        stream.codec_context.time_base = Fraction(1, RATE)
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for i in range(frames):
            vf = av.VideoFrame.from_ndarray(render(i), format="rgb24")
            vf.pts = i
            out.mux(stream.encode(vf))
        out.mux(stream.encode())
    return path


class TruthDetector:
    """Stands in for ``Detector`` in a pipeline on the rendered clip: reports each frame's true
    boxes, found by the frame's index (the pipeline decodes the clip; nothing else is faked)."""

    def __init__(self) -> None:
        from detector.detector import StageTimes

        self.last_times = StageTimes()
        self.last_proposal_counts: list[int] = []
        self.seen = 0

    def detect(self, frames, **kwargs):
        out = []
        for image in frames:
            assert image.shape[:2] == (SIZE[1], SIZE[0])
            out.append(detections(self.seen))
            self.seen += 1
        return out
