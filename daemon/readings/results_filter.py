"""Which readings of a frame are published: minimum confidence, accept patterns and formats, per-camera
de-duplication; the frame's codes checked against its lines.

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

Formats (``accept_formats``, daemon/formats): a line in the shape of a named format (UPU S10, SSCC, GTIN,
ISO 6346) must pass its check digit; one look-alike substitution may correct it (published with ``format``
and ``corrected_from``, counted as ``check_digit_corrected``), else it is rejected (``check_digit``). A line in
no format's shape is left to the patterns; with formats or patterns set, a line matching neither is rejected.

Codes (daemon/codes/match.py): a line with the identifier of one of the frame's codes is ``confirmed_by`` it; a
near miss carries the code's value as ``code_value`` (counted ``code_mismatch``). The codes' texts are part of
the de-duplication key, so a frame that only gains a code is published again.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional, Sequence

from daemon.codes.match import match_codes
from daemon.config import CameraConfig
from daemon.formats import CHECK_DIGIT, Checked, check_line
from daemon.ocr.results import TextLine
from daemon.patterns import compile_pattern

# Reasons a line or a frame is not published; metrics and stats carry them by these names.
LOW_CONFIDENCE = "low_confidence"
NO_PATTERN_MATCH = "no_pattern_match"
DUPLICATE = "duplicate"
EMPTY = "empty"
CHECK_DIGIT_FAILED = CHECK_DIGIT               # "check_digit": a format's shape, its check digit wrong
CORRECTED = "check_digit_corrected"            # counted in Decision.noted, not a rejection


@dataclass(frozen=True)
class PublishedLine(TextLine):
    """A line with what the filter learnt about it; None fields are left out of the payload."""
    format: Optional[str] = None           # the accept_formats entry whose check digit it passes
    corrected_from: Optional[str] = None   # the text as read, before the one look-alike substitution
    confirmed_by: Optional[str] = None     # "code": a code in the frame carries the same identifier
    code_value: Optional[str] = None       # a code in the frame carries a near-identical, different identifier

    def to_json(self) -> dict:
        doc = super().to_json()
        for name in ("format", "corrected_from", "confirmed_by", "code_value"):
            if getattr(self, name) is not None:
                doc[name] = getattr(self, name)
        return doc


@dataclass(frozen=True)
class FilterRules:
    min_confidence: float = 0.5
    accept_patterns: tuple = ()   # compiled by daemon.patterns (RE2)
    accept_formats: tuple[str, ...] = ()
    dedup_window_s: float = 10.0
    publish_empty: bool = False
    # Only the same texts are a duplicate, not fewer of them: a consensus label is one label already, so one that
    # reads a part of the last one's texts (a parcel whose only readable line is the hub they share) is another
    dedup_same_only: bool = False

    @classmethod
    def from_camera(cls, cam: CameraConfig) -> "FilterRules":
        return cls(min_confidence=cam.min_confidence,
                   accept_patterns=tuple(compile_pattern(p) for p in cam.accept_patterns),
                   accept_formats=tuple(cam.accept_formats),
                   dedup_window_s=cam.dedup_window_s, publish_empty=cam.publish_empty)


@dataclass
class Decision:
    publish: bool
    lines: list[TextLine]                                     # the accepted lines, in reading order
    rejected: Counter = field(default_factory=Counter)        # reason -> lines (or 1 frame) rejected
    key: frozenset[str] = frozenset()                         # the text set, what commit records
    captured_at: float = 0.0
    codes: list = field(default_factory=list)                 # the frame's codes (daemon/codes/reader.Code)
    noted: Counter = field(default_factory=Counter)           # check_digit_corrected, code_confirmed, code_mismatch


def accept_lines(lines: Sequence[TextLine], rules: FilterRules) -> tuple[list[TextLine], Counter]:
    """Lines passing the confidence floor and, when formats or patterns are set, in a format with a good (or
    corrected) check digit or fully matching a pattern."""
    kept: list[TextLine] = []
    rejected: Counter = Counter()
    for line in lines:
        if line.confidence < rules.min_confidence:
            rejected[LOW_CONFIDENCE] += 1
            continue
        checked = check_line(line.text.strip(), rules.accept_formats) if rules.accept_formats else None
        if checked == CHECK_DIGIT:
            rejected[CHECK_DIGIT_FAILED] += 1
        elif isinstance(checked, Checked):
            kept.append(PublishedLine(checked.text if checked.corrected_from else line.text, line.confidence,
                                      line.box, format=checked.format,
                                      corrected_from=line.text if checked.corrected_from else None))
        elif (rules.accept_patterns or rules.accept_formats) and not any(
                p.fullmatch(line.text.strip()) for p in rules.accept_patterns):
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

    def decide(self, lines: Sequence[TextLine], captured_at: float, codes: Sequence = ()) -> Decision:
        """Whether this reading (its lines and the frame's codes) is published; records nothing (see commit)."""
        kept, rejected = accept_lines(lines, self.rules)
        noted: Counter = Counter()
        noted[CORRECTED] = sum(1 for line in kept if getattr(line, "corrected_from", None) is not None)
        if codes:
            kept = [line if isinstance(line, PublishedLine) else PublishedLine(line.text, line.confidence, line.box)
                    for line in kept]
            kept, matched = match_codes(kept, codes)
            noted.update(matched)
        noted = +noted   # zero counts out
        key = text_key(kept) | frozenset(f"code:{c.format}:{c.text}" for c in codes)

        def decision(publish: bool) -> Decision:
            return Decision(publish, kept, rejected, key, captured_at, list(codes), noted)

        if not key:
            if self.rules.publish_empty:
                return decision(True)
            rejected[EMPTY] += 1
            return decision(False)
        window = self.rules.dedup_window_s
        if window > 0:
            # Forget publications that left the window (a clock step backwards also clears them: safe side).
            self._published = {k: t for k, t in self._published.items() if 0 <= captured_at - t < window}
            if any(key == k if self.rules.dedup_same_only else key <= k for k in self._published):
                rejected[DUPLICATE] += 1
                return decision(False)
        return decision(True)

    def commit(self, decision: Decision) -> None:
        """The decided reading is durably stored: later readings of the same texts within the window are
        duplicates of it."""
        if decision.publish and decision.key and self.rules.dedup_window_s > 0:
            self._published[decision.key] = decision.captured_at

    def carry_from(self, before: "ResultFilter") -> None:
        """What the camera's filter before a reload published within the window: the same label is not published
        again because its camera's settings changed."""
        self._published.update(before._published)

    def apply(self, lines: Sequence[TextLine], captured_at: float, codes: Sequence = ()) -> Decision:
        """decide and commit in one (the reading counts as published at once)."""
        decision = self.decide(lines, captured_at, codes)
        self.commit(decision)
        return decision
