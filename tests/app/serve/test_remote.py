"""RemoteDetector and StreamWorker without Ray: a stand-in deployment that batches like
``@serve.batch`` (frames of several callers in one ``detect_batch``), the product's pipeline on top,
frames resent after a replica "dies", and a stream's outputs written by its worker."""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time

import numpy as np
import pytest

from app.io.export import read_rows
from app.io.sources import FileSource
from app.serve.batching import detect_batch
from app.serve.ingest import StreamWorker
from app.serve.remote import DeploymentError, RemoteDetector
from app.serve.streams import parse_stream
from tests.matching import assert_same_detections, detections_from_rows


class Died(Exception):
    """Stands in for Ray's RayActorError."""


class FakeDeployment:
    """Collects requests for ``wait_s`` (up to ``max_batch``) and answers them with one
    ``detect_batch`` call — what the replica's ``@serve.batch`` method does. ``fail_next`` requests
    fail with ``Died`` as if their replica had been killed."""

    def __init__(self, detector, *, max_batch: int = 8, wait_s: float = 0.02) -> None:
        self.detector, self.max_batch, self.wait_s = detector, max_batch, wait_s
        self.requests: queue.Queue = queue.Queue()
        self.batches: list[int] = []
        self.fail_next = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def submit(self, payload) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        if self.fail_next:
            self.fail_next -= 1
            future.set_exception(Died("replica killed"))
        else:
            self.requests.put((payload, future))
        return Response(future)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                batch = [self.requests.get(timeout=0.05)]
            except queue.Empty:
                continue
            deadline = time.monotonic() + self.wait_s
            while len(batch) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                try:
                    batch.append(self.requests.get(timeout=left))
                except queue.Empty:
                    break
            self.batches.append(len(batch))
            for (_, future), reply in zip(batch, detect_batch(self.detector, [p for p, _ in batch], replica="fake"), strict=True):
                future.set_result(reply)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)


class Response:
    def __init__(self, future) -> None:
        self.future = future

    def result(self, timeout_s=None):
        return self.future.result(timeout=timeout_s)


@pytest.fixture()
def deployment(tiny_detector):
    d = FakeDeployment(tiny_detector)
    yield d
    d.close()


def frames_of(path, n=None) -> list[np.ndarray]:
    with FileSource(str(path)) as source:
        return [f.image for f in source.frames()][:n]


def same(a, b) -> bool:
    try:
        assert_same_detections(a, b, iou=0.999, score_atol=1e-5, capped=True)
    except AssertionError:
        return False
    return True


def test_remote_detector_answers_like_the_detector(deployment, tiny_detector, clip10):
    frames = frames_of(clip10, 4)
    remote = RemoteDetector(deployment.submit)
    timed = remote.detect_timed(frames)  # what the pipeline calls (detector.stages.detect_timed)
    assert deployment.batches and max(deployment.batches) > 1  # the frames shared batches
    for frame, det in zip(frames, timed.detections, strict=True):
        assert same(det, tiny_detector.detect([frame])[0])
    assert timed.times.total > 0 and len(timed.proposals) == 4


def test_a_frame_whose_replica_died_is_sent_again(deployment, tiny_detector, clip10):
    frame = frames_of(clip10, 1)[0]
    deployment.fail_next = 2
    remote = RemoteDetector(deployment.submit, retryable=(Died,), retry_for_s=30)
    det = remote.detect([frame])[0]
    assert remote.retries == 2 and same(det, tiny_detector.detect([frame])[0])


def test_no_replica_for_too_long_fails_with_one_line(deployment, clip10):
    deployment.fail_next = 10**6
    remote = RemoteDetector(deployment.submit, retryable=(Died,), retry_for_s=0.5)
    with pytest.raises(DeploymentError, match=r"no detector replica answered for 0.5 s \(last error: Died\)"):
        remote.detect(frames_of(clip10, 1))


def test_other_errors_are_not_retried(deployment, clip10):
    deployment.fail_next = 1
    with pytest.raises(Died):
        RemoteDetector(deployment.submit, retryable=()).detect(frames_of(clip10, 1))


def test_two_stream_workers_share_the_deployment_and_write_their_exports(deployment, tiny_detector, clip10, tmp_path):
    """Two file streams through one batching deployment: every frame of each detected, in order,
    each stream's export equal to the in-process detector on its own frames."""
    specs = [parse_stream(f"--name s{i} --video {clip10} --export {tmp_path / f's{i}.json'}", in_flight=4) for i in (1, 2)]
    workers = [StreamWorker(spec, deployment.submit) for spec in specs]
    for w in workers:
        assert w.start().state == "running"
    assert all(w.pipeline.wait(120) for w in workers)
    expected = [tiny_detector.detect([f])[0] for f in frames_of(clip10)]
    for w, spec in zip(workers, specs, strict=True):
        status = w.status()
        assert status.state == "done" and status.error is None
        assert status.stats.frames_written == 10 and status.stats.frames_dropped == 0
        rows = read_rows(spec.config.export)
        assert sorted({r["frame"] for r in rows}) == list(range(10))
        for i, det in enumerate(expected):
            mine = detections_from_rows([r for r in rows if r["frame"] == i], det.class_names)
            assert len(mine) == len(det)
            # the export rounds boxes to 0.01 px and scores to 1e-5; rows may swap on near-equal scores
            assert_same_detections(mine, det, iou=0.999, score_atol=2e-5, capped=True, what=f"frame {i}")
        assert any("detections" in line and "from 10 frames" in line for line in status.outputs)
    assert max(deployment.batches) > 4  # frames of both streams met in one batch (4 in flight each)


def test_a_stream_that_cannot_open_reports_one_line(deployment, tmp_path):
    from app.errors import UserError

    spec = parse_stream(f"--video {tmp_path / 'missing.mp4'}")
    with pytest.raises(UserError, match="does not exist"):
        StreamWorker(spec, deployment.submit).start()


def test_a_stream_whose_pipeline_fails_to_start_is_not_said_to_run(deployment, clip10, monkeypatch):
    from app.pipeline.pipeline import Pipeline

    def refuse(self):
        raise RuntimeError("no thread could be started")

    monkeypatch.setattr(Pipeline, "start", refuse)
    worker = StreamWorker(parse_stream(f"--video {clip10}"), deployment.submit)
    with pytest.raises(RuntimeError, match="no thread"):
        worker.start()
    assert worker.status().state == "starting" and worker.pipeline is None
    assert worker.stop().state == "starting"  # nothing to stop, and no wait on a pipeline that never ran


def test_stop_finalises_and_says_stopped(tiny_detector, clip10, tmp_path):
    slow = FakeDeployment(tiny_detector, max_batch=1)
    try:
        spec = parse_stream(f"--video {clip10} --export {tmp_path / 'x.csv'}", in_flight=1)
        worker = StreamWorker(spec, slow.submit)
        worker.start()
        status = worker.stop()
        assert status.state in ("stopped", "done") and (tmp_path / "x.csv").read_text().startswith("frame,")
    finally:
        slow.close()


def test_an_error_in_a_reply_is_raised_for_its_frame_only(tiny_detector, clip10):
    """``detect_batch`` puts a failed frame's error in its slot: the remote detector raises it for that
    frame's stream (not retried: the replica is alive), other frames are answered."""
    frames = frames_of(clip10, 2)

    def submit(payload):
        future: concurrent.futures.Future = concurrent.futures.Future()
        bad = payload.image is frames[1] or np.array_equal(payload.image, frames[1])
        future.set_result(ValueError("a 10-byte JPEG payload could not be decoded") if bad else
                          detect_batch(tiny_detector, [payload])[0])
        return Response(future)

    remote = RemoteDetector(submit, retryable=(ValueError,))
    assert same(remote.detect([frames[0]])[0], tiny_detector.detect([frames[0]])[0])
    with pytest.raises(ValueError, match="could not be decoded"):
        remote.detect([frames[0], frames[1]])
    assert remote.retries == 0


def test_a_segmented_recording_is_reported_by_its_files(deployment, clip10, tmp_path):
    """--segment writes r-000.mp4 ...: the stream's output line names those files and the index, as
    run.py's does (it named r.mp4, which does not exist)."""
    spec = parse_stream(f"--video {clip10} --record {tmp_path / 'r.mp4'} --segment 0.2")
    worker = StreamWorker(spec, deployment.submit)
    worker.start()
    assert worker.pipeline.wait(120)
    (line,) = worker.status().outputs
    files = sorted(p for p in tmp_path.iterdir() if p.suffix == ".mp4")
    assert len(files) > 1 and not (tmp_path / "r.mp4").exists()
    segments = f"(10 frames in {len(files)} segment(s)"
    assert line.startswith(f"recording {files[0]} … {files[-1].name} {segments}"), line


def test_a_stream_that_fails_on_a_bug_names_the_error_type(clip10, tmp_path):
    """A stream's one-line error was the exception's bare text: a KeyError('frame') read "'frame'"."""
    def submit(payload):
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_exception(KeyError("frame"))
        return Response(future)

    worker = StreamWorker(parse_stream(f"--video {clip10}"), submit)
    worker.start()
    with pytest.raises(KeyError):
        worker.pipeline.wait(60)
    status = worker.status()
    assert status.state == "failed" and status.error == "KeyError: 'frame'", status.error
