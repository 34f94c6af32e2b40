"""Accuracy at each proposal count: COCO AP / AP50 of the detector's boxes on labelled frames of the
benchmark clip, computed by pycocotools through ``detector.evaluate`` (never our own AP).

A COCO JSON names images, not video frames; an image is tied to a frame of the clip by its
``frame_index`` (what ``autolabel`` writes), else by the last number in its ``file_name``
(``frame_000123.jpg``). ``frame_offset`` is subtracted first, for labels made on a longer video that
the clip was cut from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.errors import UserError
from detector.detections import Detections


@dataclass
class LabelledFrames:
    """The labelled subset of the benchmarked frames.

    Attributes:
        source: the COCO JSON it came from.
        dataset: a COCO dict holding only the images of benchmarked frames (and their annotations).
        image_of_frame: frame index in the clip → image id of ``dataset``.
    """

    source: str
    dataset: dict
    image_of_frame: dict[int, int]

    @property
    def images(self) -> int:
        return len(self.image_of_frame)

    @property
    def boxes(self) -> int:
        return sum(1 for a in self.dataset["annotations"] if not a.get("iscrowd", 0))

    def evaluate(self, detections: Mapping[int, Detections]) -> dict:
        """COCO metrics ({"AP", "AP50", ...}) of ``detections`` (frame index → Detections) on these frames.

        A labelled frame without detections counts as a frame where nothing was found."""
        from detector.evaluate import evaluate, load_coco

        predictions = {image: detections[frame] for frame, image in self.image_of_frame.items() if frame in detections}
        return evaluate(load_coco(self.dataset), predictions)


def load_labels(path: Path, frame_indices: Sequence[int], frame_size: tuple[int, int],
                frame_offset: int = 0) -> LabelledFrames:
    """Read a COCO JSON and keep the images that are frames in ``frame_indices``.

    ``frame_size``: (width, height) of the clip; labelled images of another size are refused,
    since their boxes would be in other pixels. Raises ``UserError`` on an unreadable file, an image
    that cannot be tied to a frame, or when none of the benchmarked frames is labelled.
    """
    if not path.is_file():
        raise UserError(f"annotations {path} do not exist" if not path.exists() else f"annotations {path} is not a file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"annotations {path} are not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        keys = ", ".join(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise UserError(f"annotations {path} are not a COCO dataset: need 'images', 'annotations' and 'categories' lists (found {keys})")
    wanted = set(frame_indices)
    image_of_frame: dict[int, int] = {}
    for image in data["images"]:
        frame = _frame_of(image, path) - frame_offset
        if frame not in wanted:
            continue
        size = (image.get("width"), image.get("height"))
        if None not in size and tuple(size) != tuple(frame_size):
            raise UserError(
                f"annotations {path}: image {image.get('id')} ({image.get('file_name')}) is {size[0]}×{size[1]}, "
                f"but the video's frames are {frame_size[0]}×{frame_size[1]}"
            )
        if frame in image_of_frame:
            raise UserError(f"annotations {path}: frame {frame} is labelled twice (images {image_of_frame[frame]} and {image['id']})")
        image_of_frame[frame] = image["id"]
    if not image_of_frame:
        shown = sorted(wanted)
        raise UserError(
            f"annotations {path} label none of the benchmarked frames {shown[0]}–{shown[-1]} "
            f"(frame_offset {frame_offset}); check --frames or the labels' frame_index"
        )
    ids = set(image_of_frame.values())
    subset = {
        "images": [im for im in data["images"] if im["id"] in ids],
        "annotations": [a for a in data["annotations"] if a.get("image_id") in ids],
        "categories": data["categories"],
    }
    return LabelledFrames(str(path), subset, image_of_frame)


_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def _frame_of(image: dict, path: Path) -> int:
    if isinstance(image.get("frame_index"), int):
        return image["frame_index"]
    match = _NUMBER.search(Path(str(image.get("file_name", ""))).stem)
    if match is None:
        raise UserError(
            f"annotations {path}: image {image.get('id')} ({image.get('file_name')!r}) has no frame_index and no "
            "frame number in its file name, so it cannot be tied to a frame of the video"
        )
    return int(match.group(1))
