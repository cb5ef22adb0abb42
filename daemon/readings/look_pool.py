"""A frame's look beside its OCR: its codes and a voting lane's label outlines (``Lane.outline``, ``Lane.look``) are
found on a worker thread from the moment the frame is submitted to the detector, so zxing-cpp and OpenCV (which
release the GIL) run while the models and the OCR's post-processing of the same frame run on the work loop's thread;
the loop picks them up when it handles the frame's result. A voting lane's look comes in two parts: the outlines and
what the frame needs, on a thread of their own (``unread``: the loop asks before post-processing the frame), then
its codes.

Called by the work loop's thread only (``start``, ``unread``, ``result``, ``close``); the worker thread calls only
``Lane.outline`` and ``Lane.look``, which keep nothing but what the shared code reader learns (locked) and the count
of frames left out in a row. Bounded: the loop starts one detector batch per submit and, overlapping or not, has
taken the looks of every batch but the last one started when it starts the next; what is older (a batch whose OCR
failed, so that nothing took its look) is dropped then, frame images included. Never changes what is read: the look
is what ``Lane.look`` returns for the frame's image, found inline where it was not started (or was dropped).
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Mapping, Optional, Sequence

from daemon.readings.lane import FrameLook, Lane
from daemon.sources import Frame


class LookPool:
    def __init__(self, workers: int = 1):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="codes")
        # The outline parts on a thread of their own: the loop waits for a frame's outlines before its
        # post-processing, and they must not queue behind the last frame's code search.
        self._outlines = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codes-outlines")
        # id(frame) -> the frame, its lane, the outline part (None: a lane without one), the look, which start()
        self._pending: dict[int, tuple[Frame, Lane, Optional[Future], Future, int]] = {}
        self._starts = 0

    def start(self, frames: Sequence[Frame], lanes: Mapping[str, Lane]) -> None:
        """Starts the look at each frame whose camera reads codes or votes; drops what the start before the last one
        left (frames whose OCR failed)."""
        self._starts += 1
        for key in [k for k, started in self._pending.items() if started[4] < self._starts - 1]:
            _, _, first, look, _ = self._pending.pop(key)
            look.cancel()     # a read not begun yet is not made at all
            if first is not None:
                first.cancel()
        for frame in frames:
            lane = lanes.get(frame.camera)
            if lane is not None and lane.looks:
                first = self._outlines.submit(lane.outline, frame.image) if lane.settle is not None else None
                look = self._pool.submit(_look, lane, frame.image, first)
                self._pending[id(frame)] = (frame, lane, first, look, self._starts)

    def unread(self, lane: Lane, frame: Frame) -> bool:
        """Whether the frame is left unread (``Lane.unread``, ``text_settle``): waits for the outline part of its look
        only. False for a frame whose look was not started here: it is read, and its look is found inline. Once a
        frame."""
        started = self._pending.get(id(frame))
        if started is None or started[0] is not frame or started[1] is not lane or started[2] is None:
            return False
        try:
            outlines = started[2].result().outlines
        except Exception:   # read it: the look's failure is the frame's own, when its look is taken (result)
            return False
        return lane.unread(outlines)

    def result(self, lane: Lane, frame: Frame) -> FrameLook:
        """The frame's codes, the ms their reading took and its label outlines, as ``lane.look(frame.image)`` gives
        them."""
        started = self._pending.pop(id(frame), None)
        if started is None or started[0] is not frame or started[1] is not lane:
            return lane.look(frame.image)
        first, look = started[2], started[3]
        if (first is not None and first.done() and first.exception() is None and not first.result().searched
                and look.cancel()):   # no codes to wait for: not queued behind the code search of the frame before
            return lane.look(frame.image, first.result())
        return look.result()

    def close(self) -> None:
        self._pending.clear()
        self._outlines.shutdown(wait=True)
        self._pool.shutdown(wait=True)


def _look(lane: Lane, image, first: Optional[Future]) -> FrameLook:
    return lane.look(image, first.result() if first is not None else None)
