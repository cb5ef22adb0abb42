"""The bundled sample images (daemon/samples/*.png), looped slowly: the daemon runs with no camera attached."""
from __future__ import annotations

import glob
import os
import time
from typing import Optional

import numpy as np

from daemon.config import CameraConfig
from daemon.sources.base import Frame, Reader, SourceError

SAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "samples")
SAMPLE_FPS = 2.0   # slow enough to read the log, fast enough to see results; max_fps overrides it


class SampleReader(Reader):
    wait_for_rate = True

    def __init__(self, cfg: CameraConfig, samples_dir: str = SAMPLES_DIR):
        from daemon.imageio import ImageError, read_image

        self.cfg = cfg
        paths = sorted(glob.glob(os.path.join(samples_dir, "*.png")))
        self._images: list[np.ndarray] = []
        for p in paths:
            try:
                self._images.append(read_image(p))
            except ImageError:
                continue
        if not self._images:
            raise SourceError(f"no readable sample images in {samples_dir}")
        self._i = 0
        self._period_s = 0.0 if cfg.max_fps > 0 else 1.0 / SAMPLE_FPS
        self._next_due = 0.0

    def read(self) -> Optional[Frame]:
        if self._period_s:
            now = time.monotonic()
            if now < self._next_due and not self.pause(self._next_due - now):
                return None   # stopped
            self._next_due = max(self._next_due, time.monotonic()) + self._period_s
        image = self._images[self._i % len(self._images)]
        self._i += 1
        # A copy: the pipeline and the ROI may hold the frame while the next one is handed out.
        return Frame(camera=self.cfg.name, image=image.copy(), captured_at=time.time())
