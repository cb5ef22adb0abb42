"""Readings the outbox refused (a full or failing disk, or its own cap with full_policy refuse_new) until they are
stored after all or given up: only a given-up one is a loss, ocr_outbox_lost_total{reason="disk_full"|"io_errors"|
"refused_new"}.

Counting every refused put as a loss counted losses that never happened: a folder's file stays in the folder
and is read again once the disk has room, and a live camera's label, refused frame after frame while the disk is
full, is stored by the first frame after it takes writes again (the filter records a reading as published only
once it is stored, so the same texts come again). Here a refused reading of a live camera is one loss when its
texts were neither stored nor seen again for its camera's dedup window (the label left view unstored), or when
the daemon stops with it unstored. With no dedup window (or no texts) every frame is a reading of its own, and
each refusal is a loss at once. The recorder (daemon/readings/recorder.py) never hands a folder frame in.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Hashable, Optional

_COUNTED_BY_THE_OUTBOX = ("too_large",)   # a payload above max_bytes: OutboxCounters.refused_new at once


def loss_counter(reason: str) -> Optional[str]:
    """The OutboxCounters field a refused put (its PutResult reason) is lost under; None for a payload that can
    never fit, which the outbox counts itself."""
    if reason in _COUNTED_BY_THE_OUTBOX:
        return None
    if reason in ("disk_full", "refused_new"):   # a full disk, or the outbox's own cap with refuse_new
        return reason
    return "io_errors"


@dataclass
class _Unstored:
    counter: str          # OutboxCounters field it is lost under
    seen_at: float        # monotonic time of its last refusal
    window_s: float


class UnstoredReadings:
    """Which thread: the pipeline thread records refusals and stores; the metrics thread and the stop take what
    is due. Every method is thread-safe. Losses are added to counters() (the current outbox's OutboxCounters: a
    reload may open another) as they fall due."""

    def __init__(self, counters: Callable[[], object]):
        self._counters = counters
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, frozenset], _Unstored] = {}

    def refused(self, camera: str, key: frozenset, reason: str, window_s: float, now: float) -> None:
        """A live camera's reading (its filter's text key) that put() refused for reason."""
        if loss_counter(reason) is None:
            return
        if window_s <= 0 or not key:   # every frame publishes: this refusal is a reading lost
            self.lost(reason)
            return
        with self._lock:
            # The same texts, or fewer of them (a frame that misses a line), are the same reading again.
            same = next((k for k in self._pending if k[0] == camera and key <= k[1]), (camera, key))
            self._pending[same] = _Unstored(loss_counter(reason), now, window_s)

    def lost(self, reason: str) -> None:
        """A refused message nothing offers again (a review message, a reading of no window): lost now."""
        counter = loss_counter(reason)
        if counter is not None:
            self._counters().add(counter)

    def stored(self, camera: str, key: Hashable) -> None:
        """A reading of camera stored: refused readings of the same texts (or fewer) were not lost."""
        if not isinstance(key, frozenset):
            return
        with self._lock:
            for k in [k for k in self._pending if k[0] == camera and k[1] <= key]:
                del self._pending[k]

    def due(self, now: float) -> int:
        """Counts the readings unseen for their window as lost; returns how many."""
        with self._lock:
            gone = [k for k, u in self._pending.items() if now - u.seen_at >= u.window_s]
            lost = [self._pending.pop(k) for k in gone]
        for u in lost:
            self._counters().add(u.counter)
        return len(lost)

    def flush(self) -> int:
        """At stop: every reading still unstored is lost; returns how many."""
        return self.due(float("inf"))
