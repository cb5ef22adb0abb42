"""Whether a camera's code reader searches its frame turned as well (zxing-cpp's ``try_rotate``).

zxing-cpp finds a bar code or PDF417 only along the rows it scans and a DataMatrix only near upright unless it also
searches the frame turned, which doubles to triples what those formats cost per frame (bench/RESULTS.md section
33). A camera whose labels pass upright does not need that in every frame. ``TurnedSearch`` learns it from the
orientations of the codes the reader reads: the turned search runs in every frame until ``UPRIGHT_READS`` codes were
read upright, and again for ``forget_after_s`` after any code is read turned; otherwise in every ``WATCH_EVERY``-th
frame, which keeps watch: a label in view for that many frames is searched turned at least once, and the first
code read turned brings the search back to every frame. Pure: the caller passes the time and locks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

UPRIGHT_READS = 3     # codes read upright before the turned search is left to the watch frames
WATCH_EVERY = 3       # frames: one in this many is searched turned while the codes read are upright
# zxing-cpp reports a bar code's or PDF417's orientation as its scan direction (0 or 180 read along rows, +-90 in the
# turned search) and a DataMatrix's as its angle, which it reads without the turned search up to about 45 degrees.
ROW_FORMATS_UPRIGHT_DEG = 45.0
DATAMATRIX_UPRIGHT_DEG = 30.0


def read_upright(fmt: str, orientation_deg: float) -> bool:
    """Whether the search without turning finds a code of this format read at this orientation."""
    off = abs(orientation_deg) % 360.0
    off = min(off, 360.0 - off)                      # 0 .. 180 from upright
    if fmt == "DataMatrix":
        return off <= DATAMATRIX_UPRIGHT_DEG
    return off <= ROW_FORMATS_UPRIGHT_DEG or off >= 180.0 - ROW_FORMATS_UPRIGHT_DEG


@dataclass
class TurnedSearch:
    forget_after_s: float
    upright_reads: int = 0
    turned_read_at: float = -math.inf
    frames: int = 0

    def due(self, now: float) -> bool:
        """Whether this frame is searched turned as well; counts the frame."""
        self.frames += 1
        if self.upright_reads < UPRIGHT_READS or now - self.turned_read_at <= self.forget_after_s:
            return True
        return self.frames % WATCH_EVERY == 0

    def saw(self, fmt: str, orientation_deg: float, now: float) -> None:
        """A code of a format the turned search is for was read at this orientation."""
        if read_upright(fmt, orientation_deg):
            self.upright_reads += 1
        else:
            self.turned_read_at = now
