"""Which frames are hard for an INT8 detector, measured from the image (and its ground truth when given).

INT8 loses lines on frames unlike the easy majority of a calibration set (hard frames, bench/RESULTS-int8.md: blur, low contrast, noise,
small or tilted text). The calibrate report groups its held-out frames by these measures and warns when the
calibration set has few such frames. Pure functions of arrays: no models.

Thresholds from the rendered sets of bench/RESULTS-int8.md, at 640 px on the long side: sharp labels measure a
Laplacian variance of 1,000-3,500, Gaussian blur of sigma 1.8 or motion blur of 9 px 70-900; printed labels
span 95-120 grey levels between the 5th and 95th percentile, dim ones 35-45; sensor noise (Immerkaer's
estimate) is 2-3.5 grey levels, a high-gain sensor 7-9.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

SHARPNESS_MIN = 400.0       # Laplacian variance at 640 px below which a frame is blurred
CONTRAST_MIN = 60.0         # grey levels between the 5th and 95th percentile below which it is dim
NOISE_MAX = 5.0             # estimated noise sigma (grey levels) above which it is noisy
# median ground-truth line height, as a share of the frame's long side, below which its text is small: 17 px
# once a frame is scaled to a 960 px wide detector input (ordinary rendered labels: 0.020-0.031; small: 0.013-0.017)
TEXT_HEIGHT_MIN_SHARE = 0.018
TILT_MAX_DEG = 5.0          # median ground-truth line angle beyond which it is tilted (upside down counts)
_MEASURE_SIDE = 640


@dataclass(frozen=True)
class Hardness:
    sharpness: float
    contrast: float
    noise: float
    text_height_px: Optional[float]    # median line height; None without ground truth
    tilt_deg: Optional[float]
    reasons: tuple[str, ...]           # "blurred", "dim", "noisy", "small text", "tilted"; empty for an easy frame

    @property
    def hard(self) -> bool:
        return bool(self.reasons)


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian with the long side scaled to 640 px (so that frame size does not count)."""
    s = _MEASURE_SIDE / max(gray.shape[:2])
    small = cv2.resize(gray, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else gray
    return float(cv2.Laplacian(small, cv2.CV_64F).var())


def contrast(gray: np.ndarray) -> float:
    p5, p95 = np.percentile(gray, [5, 95])
    return float(p95 - p5)


def noise_sigma(gray: np.ndarray) -> float:
    """Immerkaer's fast noise estimate: the mean response of a mask that cancels smooth image structure."""
    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
    response = cv2.filter2D(gray.astype(np.float64), -1, mask)[1:-1, 1:-1]
    return float(math.sqrt(math.pi / 2) * np.abs(response).mean() / 6.0)


def line_geometry(boxes: Sequence[Sequence[Sequence[float]]]) -> tuple[Optional[float], Optional[float]]:
    """Median height (px) and median absolute angle from upright (degrees, 0-180) of ground-truth quads
    given top-left, top-right, bottom-right, bottom-left."""
    if not boxes:
        return None, None
    heights, angles = [], []
    for box in boxes:
        q = np.asarray(box, np.float64).reshape(4, 2)
        top = q[1] - q[0]
        heights.append(0.5 * (np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])))
        angles.append(abs(math.degrees(math.atan2(top[1], top[0]))))
    return float(np.median(heights)), float(np.median(angles))


def measure(image: np.ndarray, truth_boxes: Sequence[Sequence[Sequence[float]]] = ()) -> Hardness:
    gray = _gray(image)
    sharp, cont, noise = sharpness(gray), contrast(gray), noise_sigma(gray)
    height, tilt = line_geometry(truth_boxes)
    reasons = []
    if sharp < SHARPNESS_MIN:
        reasons.append("blurred")
    if cont < CONTRAST_MIN:
        reasons.append("dim")
    if noise > NOISE_MAX:
        reasons.append("noisy")
    if height is not None and height < TEXT_HEIGHT_MIN_SHARE * max(gray.shape[:2]):
        reasons.append("small text")
    if tilt is not None and tilt > TILT_MAX_DEG:
        reasons.append("tilted")
    return Hardness(round(sharp, 1), round(cont, 1), round(noise, 2), height and round(height, 1),
                    tilt and round(tilt, 1), tuple(reasons))
