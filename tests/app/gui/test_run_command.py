"""The run command opens the window and Ctrl-C closes it cleanly: a real process, a real signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_ctrl_c_closes_the_window_and_finalises_the_recording(clip10, tmp_path):
    """... and writes the controller's log (--adapt-log) of the run the window played."""
    out, adapt = tmp_path / "gui-record.mp4", tmp_path / "adapt.json"
    # A "display" for run.py's check, drawn offscreen by Qt: the GUI path runs without an X server.
    env = {**os.environ, "DISPLAY": ":99", "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.Popen(
        [sys.executable, "run.py", "--video", str(clip10), "--record", str(out), "--model", "paper",
         "--weights", "random", "--device", "cpu", "--target-fps", "30", "--adapt-log", str(adapt)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out.exists() and out.stat().st_size > 0):  # the recorder opens with its first frame
            assert proc.poll() is None, f"the GUI ended early:\n{proc.stdout.read()}"
            assert time.monotonic() < deadline, "no frame was recorded within 120 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        status = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = proc.stdout.read()
    assert status == 130, log
    assert "Traceback" not in log, log
    with av.open(str(out)) as container:
        recorded = sum(1 for _ in container.decode(video=0))
    assert recorded >= 1
    record = json.loads(adapt.read_text())
    assert record["target_fps"] == 30 and record["frames"] >= recorded, record
    assert f"adaptive log: {adapt.resolve()}" in log


def test_a_window_system_that_cannot_load_is_one_line_not_an_abort(monkeypatch):
    from app.gui.launch import platform_problem

    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert platform_problem() is None
    monkeypatch.setenv("QT_QPA_PLATFORM", "no-such-platform")  # Qt would abort the process here
    problem = platform_problem()
    assert problem is not None and "no-such-platform" in problem and "\n" not in problem
