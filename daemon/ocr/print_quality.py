"""How well each character of a line is printed: its ink contrast, and any blot, against the line's other
characters. Pure.

A recognizer reads a character printed at a fifth of its ink (a dry inkjet nozzle, a worn ribbon) as surely as a
good one, so verification cannot see that print failing from the recognizer's outputs; an inspection station must
(bench/RESULTS.md, "Verification quality"). The recognizer does say where it emitted each character: that column
of the line crop is where the character's strokes are, and their contrast against the background, next to the
line's typical character, is the grade.

A smudge is the other way round: ink where the character has none (a smear, a blot over it), which the recognizer
also reads through. ``char_blots`` cuts the line's characters out of its ink and grades each by how far its ink
goes beyond its shape: a blot thicker than the line's strokes, or ink that another copy of the same character in
the same line does not have (same font, blur and tilt: a reference without teaching). The bounds are bench/
ocv_quality.py's good solid-font prints against its smudged ones (bench/RESULTS.md, section 58); a dot-matrix
print's joined dots vary too much from copy to copy to be graded so.
"""
from __future__ import annotations

import string
from typing import NamedTuple, Optional, Sequence

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# Half the window around a character's emission column, in character pitches: narrow enough to miss the
# neighbours' strokes when characters nearly touch, wide enough to hold the character's own.
WINDOW = 0.25
# Rows at the top and bottom of a crop that are background (the detector's box reaches past the ink).
_EDGE_ROWS = 2
# Contrast equalization for the detector (CLAHE on the lightness): the clip limit and the tiles per side. A higher
# clip finds no more low-contrast prints on the bench and changes more of the others' boxes.
EQUALIZE_CLIP = 2.0
EQUALIZE_TILES = 8
# Blots. A character's ink is cut out between the emptiest columns near the midpoints to its neighbours (within
# CUT_SPAN pitches), its pixels under INK_FLOOR of the line's typical contrast taken as background (pack texture,
# noise), and drawn on a GLYPH x GLYPH canvas, the line's ink band GLYPH_BAND high. blot 1.0 is the bound of a
# smudge: its thickest stroke BLOT_THICKNESS times the line's typical one, or ink beyond a copy of the same
# character (dilated a pixel, best of +-GLYPH_SHIFT) of BLOT_UNLIKE of the line's typical character's ink.
CUT_SPAN = 0.3
INK_FLOOR = 0.5
GLYPH = 32
GLYPH_BAND = 22
GLYPH_SHIFT = 2
BLOT_THICKNESS = 2.2
BLOT_UNLIKE = 0.12
# What is graded for blots: what coders print in lot and date codes, capitals, digits and their compact marks, in a
# line of ASCII alone. A slash leans into its neighbours' columns, so no cut holds it alone ("2025/05/03"'s two
# were far past the bound); lower case in a proportional face (an address) and CJK characters beside Latin ones
# are cut no better (bench/RESULTS.md section 58).
BLOT_GRADED = frozenset(string.ascii_uppercase + string.digits + "-.")


def join_dots(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """A dot-matrix print's dots joined into strokes (a Gaussian blur of about half the dot pitch), which a
    recognizer trained on solid print reads better; sigma_px 0: the image as it is."""
    return cv2.GaussianBlur(image, (0, 0), sigma_px) if sigma_px > 0 else image


def equalized(image: np.ndarray) -> np.ndarray:
    """The image with its local contrast equalized (CLAHE on the lightness of a BGR image, or on a grey one): ink
    a few dozen grey levels from its pack stands out as a detector trained on printed text needs it to. Meant for
    the detector only: CLAHE lifts faint ink more than strong ink, so a faded character read from such an image
    would grade as printed well (bench/RESULTS.md section 50)."""
    clahe = cv2.createCLAHE(clipLimit=EQUALIZE_CLIP, tileGridSize=(EQUALIZE_TILES, EQUALIZE_TILES))
    if image.ndim == 2:
        return clahe.apply(image)
    lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB)
    lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)


def char_contrast(crop: np.ndarray, chars: Sequence[str], positions: Sequence[float], scale: float) -> list[float]:
    """Each character's contrast relative to the median of its line's letters and digits (1.0 = as the line's
    typical character; under 0.5 = printed with under half the ink). positions: each character's emission column
    in the recognizer's line image, scale: crop columns per such column. Spaces get 1.0, as does every character of
    a line with fewer than two letters or digits (nothing to compare with). Punctuation is graded against the
    letters and digits too; its thin strokes lose more to blur (verification allows for that)."""
    return _contrasts(_line_ink(crop, chars, positions, scale), chars)


def char_blots(crop: np.ndarray, chars: Sequence[str], positions: Sequence[float], scale: float) -> list[float]:
    """Each character's blot grade (see the module's doc; 1.0 = the bound of a smudge, 0.0 = not graded: a
    character not in BLOT_GRADED, a line with a character outside ASCII, or with fewer than two capitals or digits).
    positions and scale as for char_contrast."""
    return _blots(crop, _line_ink(crop, chars, positions, scale), chars)


def grade_chars(crop: np.ndarray, chars: Sequence[str], positions: Sequence[float], scale: float
                ) -> tuple[list[float], list[float]]:
    """char_contrast and char_blots of one line, its ink measured once."""
    line = _line_ink(crop, chars, positions, scale)
    return _contrasts(line, chars), _blots(crop, line, chars)


def _contrasts(line: Optional[_LineInk], chars: Sequence[str]) -> list[float]:
    out = [1.0] * len(chars)
    if line is not None:
        for i, peak in line.peaks.items():
            out[i] = peak / line.typical
    return out


def _blots(crop: np.ndarray, line: Optional[_LineInk], chars: Sequence[str]) -> list[float]:
    out = [0.0] * len(chars)
    if line is None or not all(ch.isascii() for ch in chars):
        return out
    ink = np.clip(_ink_of_its_colour(crop) / line.typical, 0.0, 1.5)
    ink[ink < INK_FLOOR] = 0.0
    glyphs = _glyphs(ink, chars, line.cols, line.pitch)
    alnum = [i for i in glyphs if chars[i] in BLOT_GRADED and chars[i].isalnum()]
    if len(alnum) < 2:
        return out
    thick = {i: _thickest(g) for i, g in glyphs.items()}
    typical_thick = float(np.median([thick[i] for i in alnum]))
    typical_ink = float(np.median([glyphs[i].sum() for i in alnum]))
    if typical_thick <= 0.0 or typical_ink <= 0.0:
        return out
    grown = {i: cv2.dilate(g, np.ones((3, 3), np.uint8)) for i, g in glyphs.items()}
    for i, glyph in glyphs.items():
        if chars[i] not in BLOT_GRADED:
            continue
        copies = [grown[j] for j in glyphs if j != i and chars[j] == chars[i]]
        unlike = _ink_beyond(glyph, np.stack(copies)) / typical_ink if copies else 0.0
        out[i] = max(thick[i] / typical_thick / BLOT_THICKNESS, unlike / BLOT_UNLIKE)
    return out


class _LineInk(NamedTuple):
    cols: np.ndarray         # each character's emission column in the crop
    pitch: float             # the median distance between neighbouring characters' columns
    peaks: dict              # graded character's index -> its strongest ink near its column
    typical: float           # the median peak of the line's letters and digits (> 0)


def _line_ink(crop: np.ndarray, chars: Sequence[str], positions: Sequence[float], scale: float
              ) -> Optional[_LineInk]:
    """The line's ink and each character's peak of it; None where there is nothing to compare with."""
    if sum(1 for ch in chars if ch.isalnum()) < 2 or crop.size == 0:
        return None
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    background = float(np.median(np.concatenate([grey[:_EDGE_ROWS].ravel(), grey[-_EDGE_ROWS:].ravel()])))
    ink = cv2.blur(cv2.absdiff(grey, np.full_like(grey, int(round(background)))), (3, 3))
    strength = ink.max(axis=0)          # the blur keeps one noisy pixel from setting a column
    cols = np.asarray(positions, dtype=np.float64) * scale
    pitch = float(np.median(np.diff(cols))) if len(cols) > 1 else crop.shape[0] * 0.5
    half = max(1.0, WINDOW * pitch)
    width = strength.shape[0]
    peaks = {}
    for i, ch in enumerate(chars):
        if ch.isspace():
            continue
        lo = int(max(0.0, cols[i] - half))
        hi = int(min(width, cols[i] + half + 1))
        peaks[i] = float(strength[lo:hi].max()) if hi > lo else 0.0
    typical = float(np.median([peak for i, peak in peaks.items() if chars[i].isalnum()]))
    return _LineInk(cols, pitch, peaks, typical) if typical > 0.0 else None


def _ink_of_its_colour(crop: np.ndarray) -> np.ndarray:
    """float32: how much darker than the background each pixel is (3x3 mean), or lighter for a light print on a
    dark pack: a glint on the pack is not ink. The print's colour is the side that strays further."""
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    grey = cv2.blur(grey, (3, 3)).astype(np.float32)
    background = float(np.median(np.concatenate([grey[:_EDGE_ROWS].ravel(), grey[-_EDGE_ROWS:].ravel()])))
    darker = np.clip(background - grey, 0.0, None)
    lighter = np.clip(grey - background, 0.0, None)
    return darker if np.percentile(darker, 99) >= np.percentile(lighter, 99) else lighter


def _glyphs(ink: np.ndarray, chars: Sequence[str], cols: np.ndarray, pitch: float) -> dict[int, np.ndarray]:
    """Each non-space character's ink, cut between the emptiest columns near the midpoints to its neighbours and
    drawn on a GLYPH-square canvas: the line's ink band GLYPH_BAND high, the glyph's centre of ink in the
    middle. A character with no ink in its cut is left out."""
    rows = ink.sum(axis=1)
    band = np.flatnonzero(rows > 0.15 * rows.max()) if rows.max() > 0 else np.array([], int)
    if band.size == 0:
        return {}
    top, f = int(band[0]), GLYPH_BAND / max(1, int(band[-1]) + 1 - int(band[0]))
    profile = ink.sum(axis=0)
    marks = [i for i, ch in enumerate(chars) if not ch.isspace()]
    cuts = [max(0, int(cols[marks[0]] - 0.8 * pitch))]
    for a, b in zip(marks, marks[1:]):
        mid = 0.5 * (cols[a] + cols[b])
        lo = int(max(cols[a] + 1, mid - CUT_SPAN * pitch))
        hi = int(min(cols[b] - 1, mid + CUT_SPAN * pitch)) + 1
        cuts.append(lo + int(np.argmin(profile[lo:hi])) if hi > lo else int(mid))
    cuts.append(min(ink.shape[1], int(cols[marks[-1]] + 0.8 * pitch) + 1))
    out = {}
    for k, i in enumerate(marks):
        cut = ink[:, cuts[k]:cuts[k + 1]]
        total = float(cut.sum())
        if total <= 0.0:
            continue
        centre = float((cut.sum(axis=0) * np.arange(cut.shape[1])).sum()) / total
        warp = np.float32([[f, 0, GLYPH / 2 - f * centre], [0, f, (GLYPH - GLYPH_BAND) / 2 - f * top]])
        out[i] = cv2.warpAffine(cut, warp, (GLYPH, GLYPH), flags=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    return out


def _thickest(glyph: np.ndarray) -> float:
    """The distance from the glyph's innermost ink pixel (half the typical contrast and over) to the nearest
    background pixel: half its thickest stroke, or the blot's size."""
    solid = (glyph > 0.5).astype(np.uint8)
    return float(cv2.distanceTransform(solid, cv2.DIST_L2, 3).max()) if solid.any() else 0.0


def _ink_beyond(glyph: np.ndarray, copies: np.ndarray) -> float:
    """The glyph's ink outside the closest of other copies of its character (k x GLYPH x GLYPH, each grown by a
    pixel), at the best of small shifts: every copy and shift at once, the glyph's windows in a padded copy of it."""
    moved = sliding_window_view(np.pad(glyph, GLYPH_SHIFT), glyph.shape)     # (2s+1) x (2s+1) x GLYPH x GLYPH
    return float(np.clip(moved[None] - copies[:, None, None], 0.0, None).sum(axis=(3, 4)).min())
