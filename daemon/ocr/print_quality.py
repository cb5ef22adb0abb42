"""How well each character of a line is printed: its ink contrast against the line's other characters. Pure.

A recognizer reads a character printed at a fifth of its ink (a dry inkjet nozzle, a worn ribbon) as surely as a
good one, so verification cannot see that print failing from the recognizer's outputs; an inspection station must
(bench/RESULTS.md, "Verification quality"). The recognizer does say where it emitted each character: that column
of the line crop is where the character's strokes are, and their contrast against the background, next to the
line's typical character, is the grade.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

# Half the window around a character's emission column, in character pitches: narrow enough to miss the
# neighbours' strokes when characters nearly touch, wide enough to hold the character's own.
WINDOW = 0.25
# Rows at the top and bottom of a crop that are background (the detector's box reaches past the ink).
_EDGE_ROWS = 2
# Contrast equalization for the detector (CLAHE on the lightness): the clip limit and the tiles per side. A higher
# clip finds no more low-contrast prints on the bench and changes more of the others' boxes.
EQUALIZE_CLIP = 2.0
EQUALIZE_TILES = 8


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
    graded = [i for i, ch in enumerate(chars) if not ch.isspace()]
    out = [1.0] * len(chars)
    if sum(1 for ch in chars if ch.isalnum()) < 2 or crop.size == 0:
        return out
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    background = float(np.median(np.concatenate([grey[:_EDGE_ROWS].ravel(), grey[-_EDGE_ROWS:].ravel()])))
    ink = cv2.absdiff(grey, np.full_like(grey, int(round(background))))
    strength = cv2.blur(ink, (3, 3)).max(axis=0)          # the blur keeps one noisy pixel from setting a column
    cols = np.asarray(positions, dtype=np.float64) * scale
    pitch = float(np.median(np.diff(cols))) if len(cols) > 1 else crop.shape[0] * 0.5
    half = max(1.0, WINDOW * pitch)
    width = strength.shape[0]
    peaks = {}
    for i in graded:
        lo = int(max(0.0, cols[i] - half))
        hi = int(min(width, cols[i] + half + 1))
        peaks[i] = float(strength[lo:hi].max()) if hi > lo else 0.0
    typical = float(np.median([peak for i, peak in peaks.items() if chars[i].isalnum()]))
    if typical <= 0.0:
        return out
    for i, peak in peaks.items():
        out[i] = peak / typical
    return out
