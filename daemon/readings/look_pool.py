"""A frame's look beside its OCR: its codes (``Lane.look``) are read on a worker thread from the moment the frame is
submitted to the detector, so zxing-cpp (which releases the GIL) runs while the models and the OCR's post-processing
of the same frame run on the work loop's thread; the loop picks them up when it handles the frame's result.

A voting lane's look starts with the frame's label outlines and what the frame needs (``Lane.outline``: whether its
codes are searched for, and, asked by the loop before post-processing, whether it is read at all: ``unread``). The
code search depends on them. By default they are found on the loop's thread at submit: on a thread of their own
(``outline_thread``, OUTLINE_THREAD for every pool) they spare the loop that work, but contend for the GIL with it and
the code search, and the loop waits for them. On two cores that costs more than it saves
(bench/RESULTS.md section 54); on 4 to 16 cores of the GPU machine's Xeon it measured within the rounds' scatter in
frames/s and worse in the loop's p95 (section 57), so no core count turns it on until a Jetson says otherwise.

Called by the work loop's thread only (``start``, ``unread``, ``result``, ``close``); the worker threads call only
``Lane.outline`` and ``Lane.look``, which keep nothing but what the shared code reader learns (locked) and the
count of frames left out in a row. Bounded: the loop starts one detector batch per submit and, overlapping or not,
has taken the looks of every batch but the last one started when it starts the next; what is older (a batch whose
OCR failed, so that nothing took its look) is dropped then, frame images included. Never changes what is read: the
look is what ``Lane.look`` returns for the frame's image, found inline where it was not started (or was dropped).
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Mapping, Optional, Sequence

from daemon.readings.lane import FrameLook, Lane
from daemon.sources import Frame


# The outlines' own thread for a pool that does not say (module doc): off; bench/cpu_ceiling.py --outline-thread on
# turns it on to measure it.
OUTLINE_THREAD = False


class LookPool:
    def __init__(self, workers: int = 1, outline_thread: Optional[bool] = None):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="codes")
        if outline_thread is None:
            outline_thread = OUTLINE_THREAD
        # Not queued behind the last frame's code search: the loop waits for a frame's outlines (unread).
        self._outlines = ThreadPoolExecutor(1, thread_name_prefix="codes-outlines") if outline_thread else None
        # id(frame) -> the frame, its lane, its outlines part (a FrameLook, or a Future of one where they have their
        # own thread; None: not a lane with one, or it failed), its code search (None: none to make) and which
        # start() began it
        self._pending: dict[int, tuple[Frame, Lane, Any, Optional[Future], int]] = {}
        self._starts = 0

    def start(self, frames: Sequence[Frame], lanes: Mapping[str, Lane]) -> None:
        """Starts the look at each frame whose camera reads codes or votes; drops what the start before the last one
        left (frames whose OCR failed)."""
        self._starts += 1
        for key in [k for k, started in self._pending.items() if started[4] < self._starts - 1]:
            _, _, first, look, _ = self._pending.pop(key)
            for part in (look, first):
                if isinstance(part, Future):
                    part.cancel()     # a read not begun yet is not made at all
        for frame in frames:
            lane = lanes.get(frame.camera)
            if lane is not None and lane.looks:
                if lane.settle is not None and self._outlines is not None:
                    first = self._outlines.submit(_outline, lane, frame)
                    look = self._pool.submit(_look_after, lane, frame.image, first)
                else:
                    first = _outline(lane, frame) if lane.settle is not None else None
                    unsearched = first is not None and not first.searched
                    look = None if unsearched else self._pool.submit(lane.look, frame.image, first)
                self._pending[id(frame)] = (frame, lane, first, look, self._starts)

    def unread(self, lane: Lane, frame: Frame) -> bool:
        """Whether the frame is left unread (``Lane.unread``, ``text_settle``), from its outlines alone. False for a
        frame whose outlines were not found here: it is read, and its look is found inline. Once a frame."""
        started = self._pending.get(id(frame))
        first = _found(started[2]) if started is not None else None
        if first is None or started[0] is not frame or started[1] is not lane:
            return False
        return lane.unread(first.outlines)

    def result(self, lane: Lane, frame: Frame) -> FrameLook:
        """The frame's codes, the ms their reading took and its label outlines, as ``lane.look(frame.image)`` gives
        them."""
        started = self._pending.pop(id(frame), None)
        if started is None or started[0] is not frame or started[1] is not lane:
            return lane.look(frame.image)
        first, look = _found(started[2]), started[3]
        if look is None:     # its code search was left out: nothing to wait for
            return lane.look(frame.image, first)
        if isinstance(started[2], Future) and first is not None and not first.searched and look.cancel():
            return lane.look(frame.image, first)   # not queued behind the frame before's code search
        return look.result()

    def close(self) -> None:
        self._pending.clear()
        if self._outlines is not None:
            self._outlines.shutdown(wait=True)
        self._pool.shutdown(wait=True)


def _found(first) -> Optional[FrameLook]:
    """The outlines part, waited for where it has its own thread."""
    return first.result() if isinstance(first, Future) else first


def _look_after(lane: Lane, image, first: Future) -> FrameLook:
    """The code search once the outlines are found (it depends on them), on the pool's thread."""
    return lane.look(image, first.result())


def _outline(lane: Lane, frame: Frame) -> Optional[FrameLook]:
    """The outlines part of the frame's look; None where finding them failed: the frame is read, and the look finds
    them again on the pool's thread, where a failure is the frame's own (raised when its look is taken)."""
    try:
        return lane.outline(frame.image)
    except Exception:
        return None
