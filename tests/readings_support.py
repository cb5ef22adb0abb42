"""What the readings tests feed a Lane instead of the models: a line where it is put, and an OCR result of lines."""
from __future__ import annotations

from dataclasses import dataclass, field

from daemon.ocr.results import TextLine


def line(text, x=10.0, y=20.0, confidence=0.98):
    return TextLine(text, confidence, ((x, y), (x + 200.0, y), (x + 200.0, y + 30.0), (x, y + 30.0)))


@dataclass
class Result:
    """The part of daemon.ocr.results.OcrResult a lane reads."""
    lines: list
    timing_ms: dict = field(default_factory=lambda: {"det": 1.0, "rec": 2.0})
