"""Small real data for the detector tests: frames of the bundled sample clip, decoded with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "sample.mp4"


def read_frames(n: int, path: Path = SAMPLE) -> list[np.ndarray]:
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == n:
                break
    return frames


@pytest.fixture(scope="session")
def sample_frames() -> list[np.ndarray]:
    """Two real RGB frames (576×768) of the sample clip."""
    return read_frames(2)


@pytest.fixture(scope="session")
def small_frame(sample_frames) -> np.ndarray:
    """A real frame cut down to 240×320 so that CPU tests stay fast."""
    return np.ascontiguousarray(sample_frames[0][::2, ::2][:240, :320])
