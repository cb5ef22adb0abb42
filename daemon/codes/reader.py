"""Read 1D and 2D codes in one frame with zxing-cpp (the frame as the source hands it over: ROI applied).

``CodeReader(formats).read(image)`` returns ``Code`` values in the frame's pixels; a GS1 code also carries its
Application Identifiers (daemon/codes/gs1.py) and, when a check digit inside it fails, ``gs1_error``.

How a frame is searched (docs/codes-and-formats.md; the measurement that chose it: bench/RESULTS.md section 33):

- **A list of formats** (``cameras[].codes: [Code128, QRCode]``, say): one zxing-cpp call with its full search
  (turned, light-on-dark and downscaled retries), as the daemon always read codes.
- **The default, every format**: two zxing-cpp passes over the frame's grey copy, each with the options its
  formats need. Bar codes, PDF417 and DataMatrix turned as well as upright (zxing-cpp finds a bar code only
  along the rows it scans, its DataMatrix detector only up to about 45 degrees from upright), without the
  light-on-dark retry (zxing-cpp reads no light-on-dark bar code here, and on a frame without a code the retry
  searches the frame a second time). QR, Micro QR, rMQR, Aztec and MaxiCode without the turned search (their
  detectors find them at any angle) and with the light-on-dark retry, as QR codes were read before.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence

import cv2
import numpy as np

from daemon.codes import ANY_ANGLE_FORMATS, CODE_FORMATS
from daemon.codes.gs1 import parse_gs1
from daemon.ocr.results import Box

# zxing-cpp 3.1 reports some formats under another name than the one it is asked for (DataBar -> DataBarOmni);
# a Code carries the name a config uses.
_READ_AS = {"DataBarOmni": "DataBar", "DataBarStk": "DataBar", "DataBarStkOmni": "DataBar",
            "DataBarExp": "DataBarExpanded", "DataBarExpStk": "DataBarExpanded", "DataBarLtd": "DataBarLimited",
            "ITF14": "ITF", "Code39Std": "Code39", "Code39Ext": "Code39", "CompactPDF417": "PDF417",
            "AztecCode": "Aztec", "QRCodeModel2": "QRCode", "QRCodeModel1": "QRCode"}


@dataclass(frozen=True)
class Code:
    format: str                          # as cameras[].codes names it: Code128, QRCode, DataBar, ...
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


def config_name(zxing_format_name: str) -> str:
    """The ``cameras[].codes`` name of the format zxing-cpp reports a code as (DataBarOmni -> DataBar)."""
    return _READ_AS.get(zxing_format_name, zxing_format_name)


class CodeReader:
    """Reads the codes of one frame at a time. Holds no state between frames: cameras that list the same formats
    share one reader, and calls from several threads are safe (zxing-cpp releases the GIL)."""

    def __init__(self, formats: Sequence[str]):
        import zxingcpp
        self._zx = zxingcpp
        self.formats = tuple(dict.fromkeys(formats))
        self._passes: list[tuple[object, dict]] = []
        if set(self.formats) != set(CODE_FORMATS):
            if self.formats:
                self._passes.append((zxingcpp.barcode_formats_from_str(",".join(self.formats)), {}))
            return
        turning = [f for f in self.formats if f not in ANY_ANGLE_FORMATS]
        any_angle = [f for f in self.formats if f in ANY_ANGLE_FORMATS]
        self._passes.append((zxingcpp.barcode_formats_from_str(",".join(turning)),
                             {"try_rotate": True, "try_invert": False}))
        self._passes.append((zxingcpp.barcode_formats_from_str(",".join(any_angle)),
                             {"try_rotate": False, "try_invert": True}))

    def read(self, image: np.ndarray) -> list[Code]:
        if not self._passes:
            return []
        if len(self._passes) > 1 and image.ndim == 3:    # converted once, not once per pass
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        zx = self._zx
        codes = []
        for formats, options in self._passes:
            for bc in zx.read_barcodes(image, formats=formats, **options):
                p = bc.position
                box = tuple((float(pt.x), float(pt.y))
                            for pt in (p.top_left, p.top_right, p.bottom_right, p.bottom_left))
                gs1 = err = None
                if bc.content_type == zx.ContentType.GS1:
                    gs1, err = parse_gs1(bc.bytes.decode("latin-1"))
                codes.append(Code(config_name(bc.format.name), bc.text, box, gs1, err))
        return codes


@lru_cache(maxsize=16)
def reader_for(formats: tuple[str, ...]) -> CodeReader:
    """One reader per format set, shared by the cameras that ask for it (a reader holds no per-frame state)."""
    return CodeReader(formats)
