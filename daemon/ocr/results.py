"""What the OCR pipeline returns: plain, typed values that the rest of the daemon serializes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

Box = tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]]


class CharCandidate(NamedTuple):
    """One character of a recognized line as the recognizer emitted it: its probability, and the runner-up class
    at the same CTC step with its probability (what verification calls "confused" when it comes close).
    alt "" = none: a space the line joiner put in for a word gap, or a recognizer with no other class.
    contrast: its ink against its line's typical character (daemon.ocr.print_quality; 1.0 where not graded),
    what verification calls "faint" when it falls low; blot: how far its ink goes beyond its shape (1.0 the bound
    of a smudge; 0.0 where not graded), what verification calls "smudged". A NamedTuple, not a frozen dataclass: the pipeline makes one
    per character of every frame, and a frozen dataclass sets each field through object.__setattr__."""
    char: str
    p: float
    alt: str = ""
    alt_p: float = 0.0
    contrast: float = 1.0
    blot: float = 0.0


@dataclass(frozen=True)
class TextLine:
    text: str
    confidence: float   # mean of the per-character max probabilities, 0..1
    box: Box            # clockwise from top-left, in the original frame's pixels
    # One per character of text, in order, where the recognizer's outputs are known (the pipeline's lines); ()
    # where they are not (a voted or corrected line, a line made by hand). Internal: never serialized, and not
    # part of equality (two readings of the same text in the same place are the same line).
    chars: tuple[CharCandidate, ...] = field(default=(), compare=False, repr=False)

    def to_json(self) -> dict:
        return {
            "text": self.text,
            "confidence": round(float(self.confidence), 4),
            "box": [[round(float(x), 1), round(float(y), 1)] for x, y in self.box],
        }


@dataclass
class OcrResult:
    lines: list[TextLine]
    timing_ms: dict[str, float] = field(default_factory=dict)   # stage name -> milliseconds
