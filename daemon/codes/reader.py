"""Read 1D and 2D codes in one frame with zxing-cpp (the frame as the source hands it over: ROI applied).

``CodeReader(formats).read(image)`` returns ``Code`` values in the frame's pixels; a GS1 code also carries its
Application Identifiers (daemon/codes/gs1.py) and, when a check digit inside it fails, ``gs1_error``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence

import numpy as np

from daemon.codes.gs1 import parse_gs1
from daemon.ocr.results import Box


@dataclass(frozen=True)
class Code:
    format: str                          # zxing-cpp's name: Code128, QRCode, DataMatrix, ...
    text: str                            # as the code carries it; GS1: the human-readable "(00)..." form
    box: Box                             # clockwise from top-left, in the frame's pixels
    gs1: Optional[dict] = None           # AI -> value, for GS1 codes
    gs1_error: Optional[str] = None      # a failed check digit inside the GS1 data

    def to_json(self) -> dict:
        doc: dict = {"format": self.format, "text": self.text,
                     "box": [[round(float(x), 1), round(float(y), 1)] for x, y in self.box]}
        if self.gs1 is not None:
            doc["gs1"] = dict(self.gs1)
        if self.gs1_error:
            doc["gs1_error"] = self.gs1_error
        return doc


class CodeReader:
    """One per camera: the zxing-cpp format set is built once."""

    def __init__(self, formats: Sequence[str]):
        import zxingcpp
        self._zx = zxingcpp
        self._formats = zxingcpp.barcode_formats_from_str(",".join(formats)) if formats else None

    def read(self, image: np.ndarray) -> list[Code]:
        if self._formats is None:
            return []
        zx = self._zx
        codes = []
        for bc in zx.read_barcodes(image, formats=self._formats):
            p = bc.position
            box = tuple((float(pt.x), float(pt.y)) for pt in (p.top_left, p.top_right, p.bottom_right, p.bottom_left))
            gs1 = err = None
            if bc.content_type == zx.ContentType.GS1:
                gs1, err = parse_gs1(bc.bytes.decode("latin-1"))
            codes.append(Code(bc.format.name, bc.text, box, gs1, err))
        return codes


@lru_cache(maxsize=16)
def reader_for(formats: tuple[str, ...]) -> CodeReader:
    """One reader per format set, shared by the cameras that ask for it (a reader holds no per-frame state)."""
    return CodeReader(formats)
