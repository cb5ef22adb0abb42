"""The hand-off from the capture threads to the one inference thread: a slot of one frame per camera.

Live cameras overwrite their slot (latest frame wins: OCR of a stale frame is worth nothing), and every
overwritten frame is counted as dropped. Folder frames are lossless: the capture thread waits until the
inference thread took the previous one. ``take`` gathers the frames of all cameras that are ready, up to
the detector's fixed batch, waiting at most ``batch_wait_s`` for more once the first one is there.
"""
from __future__ import annotations

import threading
import time
from typing import Optional

from daemon.sources.base import Frame, FrameSink


class FrameHub(FrameSink):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._slots: dict[str, Frame] = {}
        self._order: list[str] = []          # cameras in the order their current frames arrived
        self.dropped: dict[str, int] = {}    # camera -> frames overwritten before inference took them
        self._closed = False

    def put(self, frame: Frame, lossless: bool, stop: threading.Event) -> None:
        with self._cond:
            if lossless:
                while frame.camera in self._slots and not stop.is_set() and not self._closed:
                    self._cond.wait(0.2)
                if stop.is_set() or self._closed:
                    return
            if frame.camera in self._slots:
                self.dropped[frame.camera] = self.dropped.get(frame.camera, 0) + 1
                self._order.remove(frame.camera)
            self._slots[frame.camera] = frame
            self._order.append(frame.camera)
            self._cond.notify_all()

    def take(self, max_frames: int, first_wait_s: float, batch_wait_s: float, first: frozenset = frozenset()
             ) -> list[Frame]:
        """Up to max_frames frames, oldest arrival first, but the cameras in first before the others (a read cycle
        in progress: its window runs while another camera's frame is in the models); [] when none came within
        first_wait_s."""
        with self._cond:
            deadline = time.monotonic() + first_wait_s
            while not self._slots:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return []
                self._cond.wait(left)
            if len(self._slots) < max_frames and batch_wait_s > 0:
                # Other cameras may be a few milliseconds behind: one detector call for all of them.
                batch_deadline = time.monotonic() + batch_wait_s
                while len(self._slots) < max_frames:
                    left = batch_deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            order = [n for n in self._order if n in first] + [n for n in self._order if n not in first]
            names = order[:max_frames]
            self._order = order[len(names):]
            frames = [self._slots.pop(n) for n in names]
            self._cond.notify_all()   # wakes lossless producers waiting for their slot
            return frames

    def discard(self, camera: str) -> Optional[Frame]:
        """Removes a camera's pending frame (its source was stopped or reconfigured)."""
        with self._cond:
            frame = self._slots.pop(camera, None)
            if frame is not None:
                self._order.remove(camera)
            self._cond.notify_all()
            return frame

    def captured_at(self, camera: str) -> Optional[float]:
        """When the frame waiting in the camera's slot was captured; None: no frame waits."""
        with self._cond:
            frame = self._slots.get(camera)
            return None if frame is None else frame.captured_at

    def pending(self) -> int:
        with self._cond:
            return len(self._slots)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
