"""PipelineConfig's validation: a bad value or a clash is one UserError line naming the option."""

from __future__ import annotations

import pytest

from app.analytics.events import EventsConfig
from app.config import PipelineConfig
from app.errors import UserError


@pytest.mark.parametrize(("changes", "message"), [
    (dict(export="out.json", target_fps=10.0, adapt_log="out.json"),
     "--adapt-log out.json is the --export file"),
    (dict(export="d.csv", lines=((0.5, 0, 0.5, 1),), target_fps=10.0, adapt_log="d.counts.json"),
     "--adapt-log d.counts.json is the counts file"),
    (dict(export="out.jsonl", events=EventsConfig(events="out.jsonl", alert_classes=("person",))),
     "--events out.jsonl is the --export file"),
    (dict(record="clip.mp4", overwrite=True), "--record clip.mp4 is the source --video clip.mp4; write it to another file"),
    (dict(record="./clip.mp4", export="d.csv"), "--record ./clip.mp4 is the source --video clip.mp4"),
])
def test_two_outputs_in_one_file_are_refused(changes, message):
    """Each output was checked alone, so --export run.json --adapt-log run.json passed and the log,
    written at the end, replaced the detections (nothing is touched: the paths need not exist)."""
    with pytest.raises(UserError, match=message):
        PipelineConfig(source="clip.mp4", **changes)


def test_segments_named_after_the_video_are_their_own_files():
    """--segment writes clip-00001.mp4 ... and clip.segments.json, never clip.mp4 itself."""
    assert PipelineConfig(source="clip.mp4", record="clip.mp4", segment_s=60.0).record == "clip.mp4"


def test_distinct_outputs_are_accepted(tmp_path):
    config = PipelineConfig(source="clip.mp4", export=str(tmp_path / "d.csv"), lines=((0.5, 0, 0.5, 1),),
                            target_fps=10.0, adapt_log=str(tmp_path / "log.json"),
                            events=EventsConfig(events=str(tmp_path / "e.jsonl"), alert_classes=("person",)))
    assert config.counts_file == str(tmp_path / "d.counts.json")


@pytest.mark.parametrize(("field", "words"), [("stall_timeout_s", "stall timeout (--stall-timeout)"),
                                              ("open_timeout_s", "open timeout"), ("image_fps", "image fps"),
                                              ("fps_window_s", "fps window")])
def test_a_bad_number_is_named_in_words_not_by_its_field(field, words):
    """'error: stall_timeout_s 0.0 must be ...' answered --stall-timeout 0: a name the user never typed."""
    with pytest.raises(UserError) as caught:
        PipelineConfig(source_kind="url", source="rtsp://cam/1", **{field: 0.0})
    assert str(caught.value).startswith(f"{words} 0.0 ") and "_" not in str(caught.value)
