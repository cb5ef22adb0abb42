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
