"""A long line read in overlapping pieces -> its text. Pure functions.

Each piece reaches past its cuts (daemon.ocr.rec_pre.to_pieces), so the character at a cut is seen
whole by both neighbours. A piece keeps only the characters the network emitted between its own cuts;
at each seam a character both pieces kept (one each side of the cut) counts once, and one that each
piece placed on the other's side of the cut is kept once rather than lost.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence


class Emission(NamedTuple):
    """One character as the network emitted it. A NamedTuple, not a frozen dataclass: a frame makes one per
    character, and a frozen dataclass sets each field through object.__setattr__ (bench/RESULTS.md section 39)."""
    char: str
    pos: float      # line column (at the recognizer's height) where the network emitted it
    prob: float
    alt: str = ""           # the runner-up class at that step (daemon.ocr.ctc.ctc_candidates); "" = none
    alt_prob: float = 0.0


@dataclass(frozen=True)
class PieceReading:
    keep: tuple[float, float]          # line columns [start, end) between the piece's cuts
    space_before: bool                 # its left cut fell in a word gap
    emissions: tuple[Emission, ...]    # left to right


def join_line(readings: Sequence[PieceReading], tolerance: float) -> tuple[str, float]:
    """Pieces of one line, left to right -> (text, mean probability of its characters).

    tolerance: how far apart (columns) two readings of one character at a seam may be; less than the
    distance between two real neighbouring characters (a quarter of the line height is).
    """
    text, confidence, _ = join_line_chars(readings, tolerance)
    return text, confidence


def join_line_chars(readings: Sequence[PieceReading], tolerance: float) -> tuple[str, float, tuple[Emission, ...]]:
    """join_line, with the emission behind each character of the text, one per character, in order. A space
    put in for a word gap at a cut is an Emission(" ") midway in the gap with probability 1 and no runner-up (no
    network output stands behind it); the confidence is over the network's characters only, as join_line's."""
    kept: list[Emission] = []
    spaces_at: set[int] = set()          # indices in kept before which a word gap adds a space
    last = len(readings) - 1
    for k, r in enumerate(readings):
        lo = r.keep[0] if k > 0 else -math.inf
        hi = r.keep[1] if k < last else math.inf
        own = [e for e in r.emissions if lo <= e.pos < hi]
        if k > 0:
            own = _seam(kept[-1] if kept else None, readings[k - 1].emissions, r.emissions, lo, own, tolerance)
            if r.space_before:
                spaces_at.add(len(kept))
        kept.extend(own)
    if not kept:
        return "", 0.0, ()
    chars: list[Emission] = []
    for i, e in enumerate(kept):
        if i in spaces_at and i > 0 and kept[i - 1].char != " " and e.char != " ":
            chars.append(Emission(" ", (kept[i - 1].pos + e.pos) / 2, 1.0))
        chars.append(e)
    return "".join(e.char for e in chars), sum(e.prob for e in kept) / len(kept), tuple(chars)


def _seam(before: Emission | None, left: Sequence[Emission], right: Sequence[Emission], cut: float,
          own: list[Emission], tolerance: float) -> list[Emission]:
    """The right piece's kept characters, corrected for the one character at the cut."""
    if before is not None and own and own[0].char == before.char and own[0].pos - before.pos < tolerance:
        return own[1:]                      # read by both, once on each side of the cut
    left_over = [e for e in left if cut <= e.pos < cut + tolerance]
    right_over = [e for e in right if cut - tolerance <= e.pos < cut]
    if left_over and right_over:
        a, b = left_over[0], right_over[-1]
        if a.char == b.char and abs(a.pos - b.pos) < tolerance:
            # each piece put it on the other's side: keep the surer reading
            return [max(a, b, key=lambda e: e.prob)] + own
    return own
