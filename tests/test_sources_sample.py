"""The bundled-sample source loops its images slowly (2 fps unless max_fps says otherwise)."""
import time

import numpy as np
import pytest
from PIL import Image

from daemon.config import CameraConfig
from daemon.sources.base import SourceError
from daemon.sources.sample import SAMPLES_DIR, SampleReader


def test_samples_loop_at_two_fps(tmp_path):
    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 100 * i, np.uint8)).save(tmp_path / f"{i}.png")
    r = SampleReader(CameraConfig(name="sample", kind="sample"), samples_dir=str(tmp_path))
    t0 = time.monotonic()
    frames = [r.read() for _ in range(5)]
    elapsed = time.monotonic() - t0
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 100, 0, 100, 0]
    assert 1.8 <= elapsed <= 3.5                    # 5 frames at 2 fps: the first at once, then every 0.5 s
    frames[0].image[:] = 7                          # a consumer scribbling on a frame does not change the sample
    assert int(r.read().image[0, 0, 0]) == 100


def test_no_samples_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="no readable sample images"):
        SampleReader(CameraConfig(name="sample", kind="sample"), samples_dir=str(tmp_path))


def test_bundled_samples_are_readable_when_present():
    import glob

    if not glob.glob(f"{SAMPLES_DIR}/*.png"):
        pytest.skip(f"no bundled samples yet in {SAMPLES_DIR}")
    r = SampleReader(CameraConfig(name="sample", kind="sample", max_fps=100.0))
    assert r.read().image.dtype == np.uint8


def test_a_frame_held_for_the_rate_is_read_when_due_not_read_and_then_held(tmp_path):
    """With max_fps, a reader that can wait (the samples, a folder) is read when its frame is due: the frame reaches
    the hub as fresh as its captured_at says, not a frame period older (which a read cycle waited for). Checked on
    the order of what the capture thread does, not on a clock: no wait for the rate between a read and its put."""
    import threading

    from daemon.sources.base import CaptureSource

    Image.fromarray(np.full((8, 8, 3), 50, np.uint8)).save(tmp_path / "0.png")
    events, captured = [], []

    class Stop(threading.Event):
        def wait(self, timeout=None):
            if timeout:
                events.append("wait")
            return super().wait(timeout)

    class Reader(SampleReader):
        def read(self):
            events.append("read")
            return super().read()

    class Sink:
        def put(self, frame, lossless, stop):
            events.append("put")
            captured.append(frame.captured_at)

    cam = CameraConfig(name="s", kind="sample", max_fps=5.0)      # a frame every 0.2 s
    source = CaptureSource(cam, lambda cfg: Reader(cfg, samples_dir=str(tmp_path)), Sink())
    source._stop = Stop()
    source.start()
    try:
        deadline = time.monotonic() + 10
        while len(captured) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        source.stop()
    assert len(captured) >= 4
    trail = "".join({"read": "r", "wait": "w", "put": "p"}[e] for e in events)
    assert "rwp" not in trail and trail.startswith("rp"), trail      # read, put at once; waits before reads
    assert min(b - a for a, b in zip(captured, captured[1:4])) >= 0.19   # still at most max_fps
