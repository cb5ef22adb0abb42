"""Read 1D and 2D codes in one frame with zxing-cpp (the frame as the source hands it over: ROI applied).

``CodeReader(formats).read(image)`` returns ``Code`` values in the frame's pixels; a GS1 code also carries its
Application Identifiers (daemon/codes/gs1.py) and, when a check digit inside it fails, ``gs1_error``.

How a frame is searched (docs/codes-and-formats.md; the measurement that chose it: bench/RESULTS.md section 33):

- **A list of formats** (``cameras[].codes: [Code128, QRCode]``, say): one zxing-cpp call with its full search
  (turned, light-on-dark and downscaled retries), as the daemon always read codes.
- **The default, every format**: each detector zxing-cpp runs costs time on every frame, so a frame is searched
  in full only for the *resident* formats: Code 128 and QR (the default before every format was) and the
  formats this reader has read in the last FORGET_AFTER_S seconds. The other formats are searched a slice
  (SEARCH_SLICES) per zxing-cpp call, in turn, as often as a CPU budget allows: SEARCH_SHARE of one core,
  averaged; a reader starts with SEARCH_BURST_MS saved, and a frame gets every slice while credit lasts (all in
  one search while much is saved), so a camera's first frames and ``once``'s first images are searched for every
  format. A code found
  there makes its format resident.
- Every search runs with the options its formats need, over the frame's grey copy: bar codes, PDF417 and
  DataMatrix turned as well as upright (zxing-cpp finds a bar code only along the rows it scans, its DataMatrix
  detector only up to about 45 degrees from upright), without the light-on-dark retry (it reads no light-on-dark
  bar code here, and on a frame without a code it searches the frame again); QR, Micro QR, rMQR, Aztec and
  MaxiCode without the turned search (found at any angle) and with the light-on-dark retry, as QR codes were
  read before.
- **The turned search learned per camera** (daemon/codes/turns.py): once the codes a camera reads come upright, its
  resident formats are searched turned only in every few frames, which keep watch; a code read turned brings the
  turned search back to every frame.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import cv2
import numpy as np

from daemon.codes import ALWAYS_READ_FORMATS, ANY_ANGLE_FORMATS, CODE_FORMATS
from daemon.codes.gs1 import parse_gs1
from daemon.codes.turns import TurnedSearch
from daemon.ocr.results import Box

SEARCH_SHARE = 0.02          # of one core, averaged: searching for the formats not resident
SEARCH_BURST_MS = 1000.0     # saved up at start: a camera's first frames are searched for every format
FORGET_AFTER_S = 600.0       # a format not read for this long stops being resident (a line changed its labels)
SEARCH_SLICES = (            # the formats not resident are searched one slice per zxing-cpp call, in turn
    ("Code128", "Code39", "Code93", "Codabar", "ITF", "EAN13", "EAN8", "UPCA", "UPCE", "DataBar", "DataBarExpanded",
     "DataBarLimited"),
    ("DataMatrix",),
    ("PDF417",),
    ("QRCode", "MicroQRCode", "RMQRCode", "Aztec", "MaxiCode"),
)

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
    """Reads the codes of one frame at a time; each camera has its own (daemon/readings/lane.py), so what the
    default list learns is that camera's. Calls from several threads are safe (zxing-cpp releases the GIL; what the default's reader has learned is
    updated under a lock). ``clock`` (seconds) is for tests and the benchmark's simulated cameras."""

    def __init__(self, formats: Sequence[str], clock: Callable[[], float] = time.monotonic, learn: bool = True):
        """learn False: every format searched in every image, in one zxing-cpp call (`once`: unrelated images,
        nothing worth learning from one to the next)."""
        import zxingcpp
        self._zx = zxingcpp
        self.formats = tuple(dict.fromkeys(formats))
        self.learns = learn and bool(self.formats) and set(self.formats) == set(CODE_FORMATS)
        self._clock = clock
        self._lock = threading.Lock()
        self._last_read: dict[str, float] = {}          # learned format -> clock time of its last code
        self._credit_ms = SEARCH_BURST_MS
        self._credit_at = clock()
        self._next_slice = 0
        self._sets: dict[tuple[str, ...], object] = {}
        self._turns = TurnedSearch(FORGET_AFTER_S)      # whether the resident formats are searched turned

    def resident(self) -> tuple[str, ...]:
        """The formats searched in every frame now: all of a list; the default's Code 128, QR and what it read."""
        if not self.learns:
            return self.formats
        now = self._clock()
        with self._lock:
            recent = {f for f, t in self._last_read.items() if now - t <= FORGET_AFTER_S}
        return tuple(f for f in self.formats if f in ALWAYS_READ_FORMATS or f in recent)

    @property
    def search_credit_ms(self) -> float:
        """The CPU ms the default's reader may spend now searching for formats not resident (may be negative)."""
        with self._lock:
            return self._credit_ms

    def read(self, image: np.ndarray) -> list[Code]:
        if not self.formats:
            return []
        if not self.learns:
            return [code for code, _ in self._decode(image, self._format_set(self.formats), {})]
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        resident = self.resident()
        if self._refill() >= SEARCH_BURST_MS / 4:   # credit to spare: every format at once, in two zxing-cpp calls
            t0 = time.perf_counter()
            found = self._search(gray, self.formats)
            self._spend(t0)
            rest: tuple[str, ...] = ()
        else:
            with self._lock:
                turned = self._turns.due(self._clock())
            found = self._search(gray, resident, turned)
            rest = tuple(f for f in self.formats if f not in resident)
        for _ in SEARCH_SLICES if rest else ():     # each slice at most once a frame, while the budget lasts
            with self._lock:
                if self._credit_ms <= 0:
                    break
                index = self._next_slice
                self._next_slice = (index + 1) % len(SEARCH_SLICES)
            wanted = tuple(f for f in SEARCH_SLICES[index] if f not in resident)
            if wanted:
                t0 = time.perf_counter()
                found += self._search(gray, wanted)
                self._spend(t0)
        if found:
            now = self._clock()
            with self._lock:
                for c, orientation in found:
                    if c.format not in ALWAYS_READ_FORMATS:
                        self._last_read[c.format] = now
                    if c.format not in ANY_ANGLE_FORMATS:
                        self._turns.saw(c.format, orientation, now)
        return [c for c, _ in found]

    def _refill(self) -> float:
        now = self._clock()
        with self._lock:
            self._credit_ms = min(SEARCH_BURST_MS, self._credit_ms + (now - self._credit_at) * 1000.0 * SEARCH_SHARE)
            self._credit_at = now
            return self._credit_ms

    def _spend(self, t0: float) -> None:
        with self._lock:
            self._credit_ms -= (time.perf_counter() - t0) * 1000.0

    def _search(self, gray: np.ndarray, formats: Sequence[str], turned: bool = True) -> list[tuple[Code, float]]:
        """The formats' codes and the orientations they were read at; turned False: the formats that need it are not
        searched turned."""
        turning = tuple(f for f in formats if f not in ANY_ANGLE_FORMATS)
        any_angle = tuple(f for f in formats if f in ANY_ANGLE_FORMATS)
        found = []
        if turning:
            found += self._decode(gray, self._format_set(turning), {"try_rotate": turned, "try_invert": False})
        if any_angle:
            found += self._decode(gray, self._format_set(any_angle), {"try_rotate": False, "try_invert": True})
        return found

    def _format_set(self, formats: tuple[str, ...]):
        wanted = self._sets.get(formats)
        if wanted is None:
            wanted = self._sets[formats] = self._zx.barcode_formats_from_str(",".join(formats))
        return wanted

    def _decode(self, image: np.ndarray, formats, options: dict) -> list[tuple[Code, float]]:
        zx = self._zx
        found = []
        for bc in zx.read_barcodes(image, formats=formats, **options):
            p = bc.position
            box = tuple((float(pt.x), float(pt.y)) for pt in (p.top_left, p.top_right, p.bottom_right, p.bottom_left))
            gs1 = err = None
            if bc.content_type == zx.ContentType.GS1:
                gs1, err = parse_gs1(bc.bytes.decode("latin-1"))
            found.append((Code(config_name(bc.format.name), bc.text, box, gs1, err), float(bc.orientation)))
        return found
