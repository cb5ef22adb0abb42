"""A Reading: one candidate message of a camera, as a lane decided it and before the recorder stores it.

A first-mode camera makes one Reading per OCR'd frame; a consensus camera one per finished label (its voted lines,
every code seen on it, the context of its best frame). Whether it is published is the filter's ``decision``; the
recorder stores the ones to publish and reports the others (counters, the page's rejects).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from daemon.readings.results_filter import Decision
from daemon.sources import NO_ACK, Frame, FrameAck


@dataclass(frozen=True)
class FrameContext:
    """What a stored reading needs of its frame: capture time, stage timings, the codes' ms, the source, and the
    image itself for the evidence store (a reference; a consensus label keeps its first and best frames')."""
    captured_at: float
    timing_ms: dict
    codes_ms: Optional[float]
    source: dict
    image: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, frame: Frame, result, codes_ms: Optional[float]) -> "FrameContext":
        return cls(frame.captured_at, dict(result.timing_ms), codes_ms, frame.source, frame.image)


@dataclass
class Reading:
    camera: str
    decision: Decision               # the filter's: publish or not, the accepted lines and codes, why not
    context: FrameContext            # the frame whose timings, source and image go with the reading
    captured_at: float               # the reading's time: its frame's, or a label's first frame's
    all_lines: Sequence = ()         # what was read before the filter (the page shows what was not kept)
    # each accepted line's box in context.image (or None), then a cycle's checked lines the filter refused
    evidence_boxes: list = field(default_factory=list)
    frames: Optional[int] = None     # consensus: how many frames the label was voted from
    ack: FrameAck = NO_ACK           # the frame's acknowledgement (folder images); labels have none
    seq: Optional[int] = None        # a seq reserved by an earlier pass over the same file
    cycle: Optional[dict] = None     # a read cycle's result: status, trigger_id, trigger_source, recipe, verification
    triggered_mono: Optional[float] = None   # a read cycle's: when its trigger arrived (time.monotonic)

    @property
    def publish(self) -> bool:
        return self.decision.publish

    @property
    def lines(self) -> list:
        return self.decision.lines
