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
    the hub as fresh as its captured_at says, not a frame period older (which a read cycle waited for)."""
    from daemon.sources.base import CaptureSource

    Image.fromarray(np.full((8, 8, 3), 50, np.uint8)).save(tmp_path / "0.png")
    arrived = []

    class Sink:
        def put(self, frame, lossless, stop):
            arrived.append((time.time(), frame.captured_at))

    cam = CameraConfig(name="s", kind="sample", max_fps=2.0)      # a frame every 0.5 s
    source = CaptureSource(cam, lambda cfg: SampleReader(cfg, samples_dir=str(tmp_path)), Sink())
    source.start()
    try:
        deadline = time.monotonic() + 10
        while len(arrived) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        source.stop()
    assert len(arrived) >= 4
    held = [put_at - captured_at for put_at, captured_at in arrived[1:4]]
    assert max(held) < 0.25, held                     # read then held for the rate: about 0.5 s each
    spacing = [b[1] - a[1] for a, b in zip(arrived[:4], arrived[1:4])]
    assert min(spacing) >= 0.45, spacing              # still at most max_fps
