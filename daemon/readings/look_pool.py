"""A frame's look beside its OCR: its codes (``Lane.look``) are read on a worker thread from the moment the frame is
submitted to the detector, so zxing-cpp (which releases the GIL) runs while the models and the OCR's post-processing
of the same frame run on the work loop's thread; the loop picks them up when it handles the frame's result.

A voting lane's look starts with the frame's label outlines and what the frame needs (``Lane.outline``: whether its
codes are searched for, and, asked by the loop before post-processing, whether it is read at all: ``unread``). They
are found on the loop's thread when the frame is submitted: they take under a millisecond, and the code search
depends on them. On a thread of their own they saved that millisecond but contended for the GIL and for two cores
with the loop and the code search, and the loop waited for them (bench/RESULTS.md section 54).

Called by the work loop's thread only (``start``, ``unread``, ``result``, ``close``); the worker thread calls only
``Lane.look``, which keeps nothing but what the shared code reader learns (locked). Bounded: the loop starts one
detector batch per submit and, overlapping or not, has taken the looks of every batch but the last one started when
it starts the next; what is older (a batch whose OCR failed, so that nothing took its look) is dropped then, frame
images included. Never changes what is read: the look is what ``Lane.look`` returns for the frame's image, found
inline where it was not started (or was dropped).
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Mapping, Optional, Sequence

from daemon.readings.lane import FrameLook, Lane
from daemon.sources import Frame


class LookPool:
    def __init__(self, workers: int = 1):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="codes")
        # id(frame) -> the frame, its lane, its outlines part (None: not a lane with one, or it failed), its code
        # search (None: none to make) and which start() began it
        self._pending: dict[int, tuple[Frame, Lane, Optional[FrameLook], Optional[Future], int]] = {}
        self._starts = 0

    def start(self, frames: Sequence[Frame], lanes: Mapping[str, Lane]) -> None:
        """Starts the look at each frame whose camera reads codes or votes; drops what the start before the last one
        left (frames whose OCR failed)."""
        self._starts += 1
        for key in [k for k, started in self._pending.items() if started[4] < self._starts - 1]:
            look = self._pending.pop(key)[3]
            if look is not None:
                look.cancel()     # a read not begun yet is not made at all
        for frame in frames:
            lane = lanes.get(frame.camera)
            if lane is not None and lane.looks:
                first = _outline(lane, frame) if lane.settle is not None else None
                unsearched = first is not None and not first.searched
                look = None if unsearched else self._pool.submit(lane.look, frame.image, first)
                self._pending[id(frame)] = (frame, lane, first, look, self._starts)

    def unread(self, lane: Lane, frame: Frame) -> bool:
        """Whether the frame is left unread (``Lane.unread``, ``text_settle``), from its outlines alone. False for a
        frame whose outlines were not found here: it is read, and its look is found inline. Once a frame."""
        started = self._pending.get(id(frame))
        if started is None or started[0] is not frame or started[1] is not lane or started[2] is None:
            return False
        return lane.unread(started[2].outlines)

    def result(self, lane: Lane, frame: Frame) -> FrameLook:
        """The frame's codes, the ms their reading took and its label outlines, as ``lane.look(frame.image)`` gives
        them."""
        started = self._pending.pop(id(frame), None)
        if started is None or started[0] is not frame or started[1] is not lane:
            return lane.look(frame.image)
        first, look = started[2], started[3]
        if look is None:     # its code search was left out: nothing to wait for
            return lane.look(frame.image, first)
        return look.result()

    def close(self) -> None:
        self._pending.clear()
        self._pool.shutdown(wait=True)


def _outline(lane: Lane, frame: Frame) -> Optional[FrameLook]:
    """The outlines part of the frame's look; None where finding them failed: the frame is read, and the look finds
    them again on the pool's thread, where a failure is the frame's own (raised when its look is taken)."""
    try:
        return lane.outline(frame.image)
    except Exception:
        return None
