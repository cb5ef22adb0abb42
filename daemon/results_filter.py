"""Which readings of a frame are published: minimum confidence, accept patterns, per-camera de-duplication.

Pure: no clock, no I/O; the caller passes the frame's capture time. One ``ResultFilter`` per camera.

De-duplication: a parcel label stays in view for many frames, and each would yield the same texts. A frame
is published when its set of accepted texts is new; it is suppressed (reason ``duplicate``) when the same
set, or a subset of it (OCR flicker: one line missed on one frame), was published within ``dedup_window_s``
before it. So a label in view is published once per window, a label that gains a line is published again,
and a window of 0 publishes every frame.

A reading counts as published only once it is durable: ``decide`` says whether to publish and changes
nothing, ``commit`` records the decision after the outbox stored it. A reading the outbox refused (a full
outbox, an oversized payload) is not recorded, so the folder image retried later is not dropped as its own
duplicate. ``apply`` is both at once, for callers without an outbox.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from daemon.config import CameraConfig
from daemon.ocr.results import TextLine

# Reasons a line or a frame is not published; metrics and stats carry them by these names.
LOW_CONFIDENCE = "low_confidence"
NO_PATTERN_MATCH = "no_pattern_match"
DUPLICATE = "duplicate"
EMPTY = "empty"


@dataclass(frozen=True)
class FilterRules:
    min_confidence: float = 0.5
    accept_patterns: tuple[re.Pattern, ...] = ()
    dedup_window_s: float = 10.0
    publish_empty: bool = False

    @classmethod
    def from_camera(cls, cam: CameraConfig) -> "FilterRules":
        return cls(min_confidence=cam.min_confidence,
                   accept_patterns=tuple(re.compile(p) for p in cam.accept_patterns),
                   dedup_window_s=cam.dedup_window_s, publish_empty=cam.publish_empty)


@dataclass
class Decision:
    publish: bool
    lines: list[TextLine]                                     # the accepted lines, in reading order
    rejected: Counter = field(default_factory=Counter)        # reason -> lines (or 1 frame) rejected
    key: frozenset[str] = frozenset()                         # the text set, what commit records
    captured_at: float = 0.0


def accept_lines(lines: Sequence[TextLine], rules: FilterRules) -> tuple[list[TextLine], Counter]:
    """Lines passing the confidence floor and, when patterns are set, fully matching one of them."""
    kept: list[TextLine] = []
    rejected: Counter = Counter()
    for line in lines:
        if line.confidence < rules.min_confidence:
            rejected[LOW_CONFIDENCE] += 1
        elif rules.accept_patterns and not any(p.fullmatch(line.text.strip()) for p in rules.accept_patterns):
            rejected[NO_PATTERN_MATCH] += 1
        else:
            kept.append(line)
    return kept, rejected


def text_key(lines: Sequence[TextLine]) -> frozenset[str]:
    """What makes two readings the same: the set of texts, whitespace-trimmed (boxes move as a parcel moves)."""
    return frozenset(t for t in (line.text.strip() for line in lines) if t)


class ResultFilter:
    """Per-camera state: the text sets published within the window and when."""

    def __init__(self, rules: FilterRules):
        self.rules = rules
        self._published: dict[frozenset[str], float] = {}   # text set -> captured_at of its last publication

    def decide(self, lines: Sequence[TextLine], captured_at: float) -> Decision:
        """Whether this reading is published; records nothing (see commit)."""
        kept, rejected = accept_lines(lines, self.rules)
        key = text_key(kept)
        if not key:
            if self.rules.publish_empty:
                return Decision(True, kept, rejected, key, captured_at)
            rejected[EMPTY] += 1
            return Decision(False, kept, rejected, key, captured_at)
        window = self.rules.dedup_window_s
        if window > 0:
            # Forget publications that left the window (a clock step backwards also clears them: safe side).
            self._published = {k: t for k, t in self._published.items() if 0 <= captured_at - t < window}
            if any(key <= k for k in self._published):
                rejected[DUPLICATE] += 1
                return Decision(False, kept, rejected, key, captured_at)
        return Decision(True, kept, rejected, key, captured_at)

    def commit(self, decision: Decision) -> None:
        """The decided reading is durably stored: later readings of the same texts within the window are
        duplicates of it."""
        if decision.publish and decision.key and self.rules.dedup_window_s > 0:
            self._published[decision.key] = decision.captured_at

    def apply(self, lines: Sequence[TextLine], captured_at: float) -> Decision:
        """decide and commit in one (the reading counts as published at once)."""
        decision = self.decide(lines, captured_at)
        self.commit(decision)
        return decision
