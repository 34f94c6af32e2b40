"""The threaded pipeline on real decoded frames: order and timestamps kept, errors reach the caller,
stop within a second, pause, live knobs, sinks added and removed while running, drop_stale."""

from __future__ import annotations

import threading
import time

import av
import numpy as np
import pytest

from app.config import PipelineConfig
from app.io.sources import FileSource, SourceError
from app.pipeline.pipeline import Pipeline
from app.pipeline.sinks import CallbackSink
from tests.app.fakes import FakeDetector
from tests.conftest import SAMPLE, decode_pts


def config(path, **kw) -> PipelineConfig:
    return PipelineConfig(source_kind="video", source=str(path), **kw)


def collect(pipeline: Pipeline) -> list:
    results = []
    pipeline.lanes[0].add_sink(CallbackSink(lambda r, img: results.append((r, img)), needs_image=True))
    return results


def pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("pipeline-") and t.is_alive()]


def test_every_frame_in_order_with_equal_timestamps(clip10, tiny_detector):
    p = Pipeline(config(clip10), tiny_detector)
    results = collect(p)
    stats = p.run()
    pts, tb = decode_pts(clip10)
    assert [r.frame.index for r, _ in results] == list(range(10))
    assert [r.frame.pts for r, _ in results] == pts
    assert all(r.frame.time_base == tb for r, _ in results)
    assert stats.frames_read == stats.frames_processed == stats.frames_written == 10
    assert stats.frames_dropped == 0 and stats.finished
    assert set(stats.mean_stage_ms) >= {"backbone", "rpn", "roi_heads", "total"} and stats.mean_stage_ms["backbone"] > 0
    assert stats.mean_fps and stats.mean_fps > 0 and stats.mean_latency_ms > 0
    annotated = results[0][1]
    assert annotated.shape == results[0][0].frame.image.shape and not np.array_equal(annotated, results[0][0].frame.image)
    assert not pipeline_threads()


def test_batches_keep_order(clip10):
    det = FakeDetector(delay_s=0.05)
    p = Pipeline(config(clip10, batch_size=4), det)
    results = collect(p)
    p.run()
    assert [r.frame.index for r, _ in results] == list(range(10))
    assert [r.detections.boxes[0, 0] for r, _ in results] == list(range(10))  # frame i got detections i
    assert max(det.calls) > 1 and sum(det.calls) == 10
    assert all(r.times.backbone == pytest.approx(10.0) for r, _ in results)  # per frame, not per batch


def test_worker_exception_reaches_the_caller(clip10):
    p = Pipeline(config(clip10), FakeDetector(fail_at=3))
    finished = []
    p.on_finish = finished.append
    t = time.monotonic()
    with pytest.raises(RuntimeError, match="boom at frame 3"):
        p.run()
    assert time.monotonic() - t < 5
    assert not pipeline_threads()
    assert len(finished) == 1 and isinstance(finished[0], RuntimeError)


def test_sink_exception_reaches_the_caller(clip10):
    p = Pipeline(config(clip10), FakeDetector())

    def broken(result, image):
        raise OSError("disk full")

    p.lanes[0].add_sink(CallbackSink(broken))
    with pytest.raises(OSError, match="disk full"):
        p.run()
    assert not pipeline_threads()


def test_stop_within_a_second_with_a_slow_detector():
    p = Pipeline(config(SAMPLE), FakeDetector(delay_s=0.3)).start()
    while p.stats().frames_written < 2:
        time.sleep(0.02)
    t = time.monotonic()
    p.stop()
    assert time.monotonic() - t < 1.0
    assert not pipeline_threads()
    stats = p.stats()
    assert stats.finished and stats.frames_written < 145


def test_stopped_before_it_started_is_finished_and_cannot_start(clip10):
    """stop() before start() (a window closed while a source opened): wait() returned never — the
    pipeline was not 'finished' — and a start() after it ran threads that no end could finish."""
    pipeline = Pipeline(PipelineConfig(source=str(clip10)), FakeDetector())
    pipeline.stop()
    assert pipeline.finished and pipeline.wait(timeout=5)
    with pytest.raises(RuntimeError, match="already started or stopped"):
        pipeline.start()


def test_pause_and_resume(clip10):
    p = Pipeline(config(clip10), FakeDetector(delay_s=0.02)).start()
    p.pause()
    time.sleep(0.3)
    frozen = p.stats().frames_processed
    time.sleep(0.3)
    assert p.paused and p.stats().frames_processed == frozen and frozen < 10
    p.resume()
    p.wait(10)
    p.stop()
    assert p.stats().frames_written == 10


def test_a_batch_size_above_the_queue_size_fills_its_batches(clip10):
    """--batch-size 12 with the default queue of 8: the frames queue held 12, but a lane let at most
    8 results wait, so no batch had more than 8 frames — the option was cut in silence."""
    det = FakeDetector()
    p = Pipeline(config(SAMPLE, batch_size=12, max_frames=20), det)
    assert p.lanes[0].config.queue_size == 8
    p.pause()  # the reader fills the queue meanwhile: 12 frames are waiting when it resumes
    p.start()
    deadline = time.monotonic() + 30
    while p.lanes[0].read < 13 and time.monotonic() < deadline:
        time.sleep(0.02)
    p.resume()
    p.wait(30)
    p.stop()
    assert p.stats().frames_written == 20 and sum(det.calls) == 20
    assert det.calls[0] == 12, det.calls


def test_live_knobs_take_effect_on_the_next_frame(clip10, tiny_detector):
    p = Pipeline(config(clip10), tiny_detector)
    results = collect(p)
    try:
        p.detector.set_proposal_count(7)
        p.detector.set_score_threshold(0.0)
        p.run()
    finally:
        tiny_detector.set_proposal_count(300)
    assert all(r.proposals <= 7 for r, _ in results) and max(r.proposals for r, _ in results) == 7
    with pytest.raises(ValueError, match="unknown class"):
        p.detector.set_classes(["unicorn"])


def test_record_started_and_stopped_while_running(tmp_path):
    out = tmp_path / "mid.mp4"
    p = Pipeline(config(SAMPLE, max_frames=40), FakeDetector(delay_s=0.05)).start()  # ~2 s in all
    while p.stats().frames_written < 5:
        time.sleep(0.01)
    p.start_recording(out)
    first = p.stats().frames_written
    while p.stats().frames_written < first + 10:
        time.sleep(0.01)
    assert p.stop_recording() == [out]
    last = p.stats().frames_written
    p.wait(20)
    p.stop()
    pts, _ = decode_pts(out)
    assert first >= 5 and last < 40  # it really was started and stopped mid-run
    assert 10 <= len(pts) <= last - first + 2  # what was delivered while recording (± the frame in flight)
    assert pts[0] == 0  # the recording's clock starts at 0
    assert all(b - a == 1024 for a, b in zip(pts, pts[1:], strict=False))  # consecutive source frames, 0.1 s apart


def test_drop_stale_keeps_latency_flat(clip10):
    """A file paced like a camera (10 fps) and a detector at ~3 fps: frames are dropped, counted,
    and the detector always gets a fresh one."""
    cfg = config(SAMPLE, policy="drop_stale", realtime=True, max_frames=25)
    p = Pipeline(cfg, FakeDetector(delay_s=0.3))
    results = collect(p)
    stats = p.run()
    assert stats.frames_dropped > 5
    assert stats.frames_read == stats.frames_processed + stats.frames_dropped
    assert [r.frame.index for r, _ in results] == sorted(r.frame.index for r, _ in results)
    # At most one frame waits: latency ≤ one detect call waiting in the slot + its own detect call.
    # (every_frame would reach ~25 × 0.3 s here.)
    latencies = [r.done - r.frame.captured for r, _ in results]
    assert max(latencies) < 2 * 0.3 + 0.25, latencies


def test_a_slow_sink_does_not_make_a_live_stream_late():
    """A live stream (paced at 10 fps) whose sink takes 0.2 s a frame: the detector must not run ahead
    and queue results for it — up to ``queue_size`` of them waited, each shown ~8 × 0.2 s late."""
    p = Pipeline(config(SAMPLE, policy="drop_stale", realtime=True, max_frames=25), FakeDetector())
    waiting = []

    def slow(result, annotated):
        waiting.append(p.lanes[0]._results.qsize())  # results the detector made while this one was written
        time.sleep(0.2)

    p.lanes[0].add_sink(CallbackSink(slow, needs_image=False))
    stats = p.run()
    assert stats.frames_written >= 3 and stats.frames_dropped > 0
    assert max(waiting) <= 1, waiting


def test_source_error_reaches_the_caller(clip10):
    class Failing(FileSource):
        def frames(self):
            for frame in super().frames():
                if frame.index == 4:
                    raise SourceError(f"{self.name}: the stream ended abruptly")
                yield frame

    p = Pipeline(config(clip10), FakeDetector(), Failing(str(clip10)))
    results = collect(p)
    with pytest.raises(SourceError, match="ended abruptly"):
        p.run()
    # The frames read before the failure are still detected and delivered, then the error is raised.
    assert [r.frame.index for r, _ in results] == [0, 1, 2, 3] and not pipeline_threads()


def test_video_frames_equal_pyav_decoding(clip10):
    """The frames the detector sees are PyAV's own RGB conversion of each picture."""
    with av.open(str(clip10)) as c:
        expected = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    seen = []

    class Keep(FakeDetector):
        def detect(self, frames, **kw):
            seen.extend(frames)
            return super().detect(frames, **kw)

    Pipeline(config(clip10), Keep()).run()
    assert len(seen) == 10 and all(np.array_equal(a, b) for a, b in zip(seen, expected, strict=True))


def test_realtime_pacing_follows_timestamps_but_skips_a_jump(tmp_path):
    from fractions import Fraction

    from tests.app.io.test_sources import write_clip

    pts = [0, 200, 400, 60_000, 60_200]  # ms: a one-minute jump after the third frame
    clip = write_clip(tmp_path / "jump.mkv", "libx264", "yuv420p", pts=pts, time_base=Fraction(1, 1000))
    p = Pipeline(config(clip, realtime=True), FakeDetector())
    results = collect(p)
    t = time.monotonic()
    p.run()
    took = time.monotonic() - t
    assert [r.frame.pts for r, _ in results] == pts
    assert 0.55 < took < 3.0  # ~0.6 s of paced frames, the jump not waited for
    assert PipelineConfig(source_kind="url", source="rtsp://cam/1").effective_realtime
    assert not config(clip).effective_realtime


@pytest.mark.parametrize("existing", ["rec.mp4", "events.jsonl"])
def test_a_refused_output_leaves_no_other_output_behind(tmp_path, clip10, existing):
    """The outputs were opened one by one as they were checked: a recording or events file that
    exists was refused after the counts sink (written when closed) or the export (created) was open."""
    from app.analytics.events import EventsConfig
    from app.errors import UserError

    (tmp_path / existing).write_bytes(b"keep")
    cfg = config(clip10, export=str(tmp_path / "dets.csv"), record=str(tmp_path / "rec.mp4"),
                 lines=((0.5, 0, 0.5, 1),),
                 events=EventsConfig(events=str(tmp_path / "events.jsonl"), counting=True))
    p = Pipeline(cfg, FakeDetector())
    with pytest.raises(UserError, match="exists"):
        p.start()
    p.stop()
    assert sorted(f.name for f in tmp_path.iterdir()) == [existing]
    assert (tmp_path / existing).read_bytes() == b"keep"


def test_recording_cannot_start_after_the_end(tmp_path, clip10):
    p = Pipeline(config(clip10), FakeDetector())
    p.run()
    with pytest.raises(RuntimeError, match="finished"):
        p.start_recording(tmp_path / "late.mp4")
    assert p.record_sink is None and p.stop_recording() == []
    assert not (tmp_path / "late.mp4").exists()


@pytest.mark.gpu
def test_cuda_batches_waiting_frames_and_keeps_order(clip10):
    import torch

    from detector import Detector, DetectorConfig
    from tests.conftest import TINY

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    detector = Detector(DetectorConfig(**{**TINY, "device": "cuda"}))
    p = Pipeline(config(clip10), detector)
    assert p.batch_size == 4  # auto: batches on CUDA for every_frame sources
    results = collect(p)
    p.run()
    pts, _ = decode_pts(clip10)
    assert [r.frame.pts for r, _ in results] == pts
    assert max(r.batch_size for r, _ in results) > 1
