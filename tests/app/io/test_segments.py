"""In-process checks of the crash-safe writers: the segmented recorder, the fragmented default after a
clean stop (duration, seeking, timestamps), and the counts file kept whole while the run goes on."""

from __future__ import annotations

import json
from fractions import Fraction

import av
import numpy as np
import pytest

from app.analytics.analytics import CountsSink
from app.errors import UserError
from app.io.record import Recorder
from app.io.segments import SegmentedRecorder, check_outputs, existing_outputs, index_path, segment_path
from tests.conftest import decode_pts


def frames(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (48, 64, 3), np.uint8)
    return [np.roll(base, i, axis=1) for i in range(n)]


@pytest.mark.parametrize(("ext", "fragmented"), [(".mp4", True), (".mov", True), (".m4v", True), (".mkv", False)])
def test_mp4_family_is_fragmented_by_default(tmp_path, ext, fragmented):
    assert Recorder(tmp_path / f"r{ext}", time_base=Fraction(1, 10)).fragmented is fragmented


def test_a_cleanly_stopped_fragmented_mp4_times_and_seeks_as_a_normal_one(tmp_path):
    out = tmp_path / "clean.mp4"
    with Recorder(out, time_base=Fraction(1, 30000), rate=Fraction(30000, 1001)) as rec:
        for i, image in enumerate(frames(90)):
            rec.write(image, i * 1001)
    pts, tb = decode_pts(out)
    assert [p * tb for p in pts] == [Fraction(i * 1001, 30000) for i in range(90)]
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        assert c.duration == pytest.approx(90 * 1001 / 30000 * 1e6, rel=0.01)
        assert stream.average_rate == Fraction(30000, 1001)
        c.seek(2_000_000)  # 2 s: lands on a keyframe at or before it, then decodes forward to it
        first = next(c.decode(stream))
        assert first.pts * stream.time_base <= 2
        later = [f.pts * stream.time_base for f in c.decode(stream)]
        assert any(abs(t - Fraction(60 * 1001, 30000)) < Fraction(1, 1000) for t in later)


def test_segments_on_a_fixed_grid_with_continuing_timestamps(tmp_path):
    out = tmp_path / "s.mkv"
    with SegmentedRecorder(out, time_base=Fraction(1, 10), segment_s=1.5) as rec:
        for i, image in enumerate(frames(40)):
            rec.write(image, 100 + i)  # the stream starts at 10 s: the grid starts there
    assert [f.name for f in rec.files] == ["s-00001.mkv", "s-00002.mkv", "s-00003.mkv"]
    counts = [len(decode_pts(f)[0]) for f in rec.files]
    assert counts == [15, 15, 10] and rec.frames_written == 40
    firsts = [decode_pts(f)[0][0] * decode_pts(f)[1] for f in rec.files]
    assert firsts == [10, Fraction(115, 10), 13]
    index = json.loads(index_path(out).read_text())
    assert [(s["first_s"], s["last_s"]) for s in index["segments"]] == [(10.0, 11.4), (11.5, 12.9), (13.0, 13.9)]


def test_overwrite_replaces_an_earlier_set_and_leaves_no_stale_segment(tmp_path):
    out = tmp_path / "o.mp4"
    with SegmentedRecorder(out, time_base=Fraction(1, 10), segment_s=1) as rec:
        for i, image in enumerate(frames(45)):
            rec.write(image, i)
    assert len(existing_outputs(out)) == 5 + 1  # 5 segments and the index
    with pytest.raises(UserError, match="o-00001.mp4 and 5 more"):
        check_outputs(out, overwrite=False)
    check_outputs(out, overwrite=True)
    with SegmentedRecorder(out, time_base=Fraction(1, 10), segment_s=1, overwrite=True) as rec:
        for i, image in enumerate(frames(15)):
            rec.write(image, i)
    assert existing_outputs(out) == [segment_path(out, 1), segment_path(out, 2), index_path(out)]
    assert sum(s["frames"] for s in json.loads(index_path(out).read_text())["segments"]) == 15



def test_an_earlier_set_is_found_whatever_the_name_holds(tmp_path):
    """A name with glob's special characters ("cam[1]"): its segments are still found, so that they
    are refused without --overwrite (not silently replaced) and removed with it."""
    out = tmp_path / "cam[1] x.mp4"
    with SegmentedRecorder(out, time_base=Fraction(1, 10), segment_s=1) as rec:
        for i, image in enumerate(frames(25)):
            rec.write(image, i)
    index_path(out).unlink()  # only the segments are left
    assert existing_outputs(out) == [segment_path(out, n) for n in (1, 2, 3)]
    with pytest.raises(UserError, match=r"cam\[1\] x-00001.mp4 and 2 more"):
        check_outputs(out, overwrite=False)


def test_a_segment_past_99999_is_found_too(tmp_path):
    """A run of days cut into 1 s segments numbers them past 99999 (six digits): those are an earlier
    run's outputs too, refused without --overwrite."""
    out = tmp_path / "long.mp4"
    segment_path(out, 100000).write_bytes(b"segment")
    assert existing_outputs(out) == [tmp_path / "long-100000.mp4"]

def test_the_index_is_whole_while_a_segment_is_open(tmp_path):
    """What a kill leaves: read before close, the index parses and marks the open segment incomplete."""
    out = tmp_path / "open.mp4"
    rec = SegmentedRecorder(out, time_base=Fraction(1, 10), segment_s=1)
    for i, image in enumerate(frames(12)):
        rec.write(image, i)
    index = json.loads(index_path(out).read_text())
    assert [s["complete"] for s in index["segments"]] == [True, False]
    rec.close()
    assert [s["complete"] for s in json.loads(index_path(out).read_text())["segments"]] == [True, True]


class _Analytics:
    def __init__(self) -> None:
        self.n = 0

    def report(self) -> dict:
        return {"crossings": self.n}


def test_counts_file_is_written_while_running_and_replaced_whole(tmp_path):
    path = tmp_path / "c.counts.json"
    analytics = _Analytics()
    sink = CountsSink(path, analytics)
    sink.write(None, None)  # the first write is due at once
    assert json.loads(path.read_text()) == {"crossings": 0}
    analytics.n = 3
    sink.write(None, None)  # within the second: not rewritten yet
    assert json.loads(path.read_text()) == {"crossings": 0}
    sink.close()
    assert json.loads(path.read_text()) == {"crossings": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["c.counts.json"]  # no temporary file left behind
