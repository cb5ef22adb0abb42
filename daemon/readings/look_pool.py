"""A frame's look beside its OCR: its codes and a voting lane's label outlines (``Lane.look``) are found on a
worker thread from the moment the frame is submitted to the detector, so zxing-cpp and OpenCV (which release the
GIL) run while the models and the OCR's post-processing of the same frame run on the work loop's thread; the loop
picks them up when it handles the frame's result.

Called by the work loop's thread only (``start``, ``result``, ``close``); the worker thread calls only
``Lane.look``, which keeps nothing but what the shared code reader learns (locked) and codes_settle's count of
frames left unsearched. Bounded: the loop starts one detector batch per submit and, overlapping or not, has taken
the looks of every batch but the last one started when it starts the next; what is older (a batch whose OCR
failed, so that nothing took its look) is dropped then, frame images included. Never changes what is read: the
look is what ``Lane.look`` returns for the frame's image, found inline where it was not started (or was dropped).
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Mapping, Sequence

from daemon.readings.lane import FrameLook, Lane
from daemon.sources import Frame


class LookPool:
    def __init__(self, workers: int = 1):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="codes")
        # id(frame) -> the frame, its lane, the look, and which start() it came from
        self._pending: dict[int, tuple[Frame, Lane, Future, int]] = {}
        self._starts = 0

    def start(self, frames: Sequence[Frame], lanes: Mapping[str, Lane]) -> None:
        """Starts the look at each frame whose camera reads codes or votes; drops what the start before the last one
        left (frames whose OCR failed)."""
        self._starts += 1
        for key in [k for k, started in self._pending.items() if started[3] < self._starts - 1]:
            self._pending.pop(key)[2].cancel()     # a read not begun yet is not made at all
        for frame in frames:
            lane = lanes.get(frame.camera)
            if lane is not None and lane.looks:
                self._pending[id(frame)] = (frame, lane, self._pool.submit(lane.look, frame.image), self._starts)

    def result(self, lane: Lane, frame: Frame) -> FrameLook:
        """The frame's codes, the ms their reading took and its label outlines, as ``lane.look(frame.image)`` gives
        them."""
        started = self._pending.pop(id(frame), None)
        if started is None or started[0] is not frame or started[1] is not lane:
            return lane.look(frame.image)
        return started[2].result()

    def close(self) -> None:
        self._pending.clear()
        self._pool.shutdown(wait=True)
