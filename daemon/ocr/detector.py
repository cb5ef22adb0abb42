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


class _Tiled:
    """A Tiler ticket: the detector's own ticket for a call without tiles, or the output of one with them."""
    def __init__(self, inner: Any = None, output: DetectorOutput | None = None):
        self.inner, self.output = inner, output


class NoTiles:
    """Every frame straight to the detector (ocr.tiles off)."""

    def submit(self, detector: Detector, frames: Sequence[np.ndarray]) -> Any:
        return detector.submit(frames)

    def collect(self, detector: Detector, ticket: Any) -> DetectorOutput:
        return detector.collect(ticket)


class Tiler:
    """Detects frames much larger than the input as the letterboxed frame plus overlapping input-size tiles
    (daemon.ocr.tiles), through the pipeline's detector in calls of its fixed batch; a tiled frame's probability
    map comes out as a tiles.TiledMaps. Frames that need no tiles go straight through, in flight as the detector
    allows: when a call needs tiles, the call still in flight is collected first, so the detector never holds
    more than one. The detector is passed on every call (the pipeline's, which a bench may replace)."""

    def __init__(self, batch: int, in_h: int, in_w: int, policy):
        self._batch, self._in = batch, (in_h, in_w)
        self.policy = policy      # tiles.TilePolicy
        self._pending: _Tiled | None = None

    def grid(self, frame: np.ndarray):
        from daemon.ocr.tiles import tile_grid

        return tile_grid(frame.shape[0], frame.shape[1], *self._in, self.policy.max_tiles,
                         max_whole_scale=self.policy.max_whole_scale, min_gain_above=self.policy.min_gain_above)

    def submit(self, detector: Detector, frames: Sequence[np.ndarray]) -> _Tiled:
        grids = [self.grid(f) for f in frames]
        if not any(grids):
            ticket = self._pending = _Tiled(inner=detector.submit(frames))
            return ticket
        if self._pending is not None:      # the detector's buffers are free before the tiles take them
            self.collect(detector, self._pending)
        inputs: list[np.ndarray] = []
        for frame, grid in zip(frames, grids):
            inputs.append(frame)
            if grid is not None:
                inputs.extend(np.ascontiguousarray(frame[y0:y1, x0:x1]) for y0, x0, y1, x1 in grid.rects)
        maps: list[np.ndarray] = []
        boxes = []
        for first in range(0, len(inputs), self._batch):
            chunk = inputs[first:first + self._batch]
            probs, lbs = detector.collect(detector.submit(chunk))
            # copies of the parts the frames cover: a GPU detector's output buffer is the next chunk's
            maps.extend(probs[i, 0, : lb.new_h, : lb.new_w].copy() for i, lb in enumerate(lbs))
            boxes.extend(lbs)
        return _Tiled(output=_assemble(frames, grids, maps, boxes))

    def collect(self, detector: Detector, ticket: _Tiled) -> DetectorOutput:
        if ticket.output is None:
            ticket.output = detector.collect(ticket.inner)
            ticket.inner = None
        if self._pending is ticket:
            self._pending = None
        return ticket.output


def _assemble(frames, grids, maps, boxes) -> DetectorOutput:
    """Per frame: its map (1 x H x W) and letterbox, or for a tiled frame a TiledMaps and the whole frame's."""
    from daemon.ocr.tiles import TiledMaps, contrast_mask, stitch

    out_maps: list = []
    out_boxes: list[Letterbox] = []
    at = 0
    for frame, grid in zip(frames, grids):
        whole, lb = maps[at], boxes[at]
        at += 1
        if grid is None:
            out_maps.append(whole[None])
        else:
            n = len(grid)
            stitched, stitched_box = stitch(grid, frame.shape[0], frame.shape[1], maps[at:at + n], boxes[at:at + n])
            at += n
            stitched *= contrast_mask(frame, *stitched.shape)
            out_maps.append(TiledMaps(whole, stitched, stitched_box, grid))
        out_boxes.append(lb)
    return out_maps, out_boxes  # type: ignore[return-value]
