"""What the OCR pipeline returns: plain, typed values that the rest of the daemon serializes."""
from __future__ import annotations

from dataclasses import dataclass, field

Box = tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class TextLine:
    text: str
    confidence: float   # mean of the per-character max probabilities, 0..1
    box: Box            # clockwise from top-left, in the original frame's pixels

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
