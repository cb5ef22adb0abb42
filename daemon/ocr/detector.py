"""The detector protocol the pipeline drives: ``submit(frames) -> ticket``, then ``collect(ticket)``.

``overlaps`` says whether a second submit may come before the first is collected: true for a GPU
detector with more than one buffer set (gpu.streams >= 2), whose submit returns while the GPU still
letterboxes and infers, and for the CPU detector on its own thread (two frames in flight on a multi-core
CPU: the detector of frame N+1 runs while frame N is recognized). The others, the eager CPU detector and
a GPU detector with one buffer set, must be collected before the next submit, and the work loop then
runs one batch at a time.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
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


class ThreadedDetector:
    """Runs the model on one worker thread: submit returns at once, collect waits for that batch.

    ONNX Runtime releases the GIL inside a run, so the detector's work and the recognizer's overlap on
    separate cores. One worker keeps batches in order and at most one running at a time."""
    overlaps = True

    def __init__(self, model):
        self._model = model
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detector")

    def submit(self, frames: Sequence[np.ndarray]) -> Future:
        return self._worker.submit(self._model.run_frames, list(frames))

    def collect(self, ticket: Future) -> DetectorOutput:
        return ticket.result()        # an exception raised in the worker is raised here

    def close(self) -> None:
        self._worker.shutdown(wait=True)
