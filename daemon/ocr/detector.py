"""The detector protocol the pipeline drives: ``submit(frames) -> ticket``, then ``collect(ticket)``.

``overlaps`` says whether a second submit may come before the first is collected: true only for a GPU
detector with more than one buffer set (gpu.streams >= 2), whose submit returns while the GPU still
letterboxes and infers. Everything else, the CPU detector and a GPU detector with one buffer set, must
be collected before the next submit, and the work loop then runs one batch at a time.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np

from daemon.ocr.det_pre import Letterbox

DetectorOutput = tuple[np.ndarray, list[Letterbox]]    # N x 1 x H x W probability maps, each frame's letterbox


class Detector(Protocol):
    overlaps: bool

    def submit(self, frames: Sequence[np.ndarray]) -> Any:
        ...

    def collect(self, ticket: Any) -> DetectorOutput:
        ...


class EagerDetector:
    """Runs the model inside submit: the CPU way. ``run_frames`` is the model's own letterbox + run."""
    overlaps = False

    def __init__(self, model):
        self._model = model

    def submit(self, frames: Sequence[np.ndarray]) -> DetectorOutput:
        return self._model.run_frames(frames)

    def collect(self, ticket: DetectorOutput) -> DetectorOutput:
        return ticket
