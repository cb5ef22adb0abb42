"""Crop geometry: a rotated quad in the frame -> an upright, horizontal line image by perspective warp."""
from __future__ import annotations

import cv2
import numpy as np

# A crop this much taller than wide is a vertical line (or a line on a label turned 90 degrees):
# it is rotated to horizontal before recognition, as PaddleOCR does.
VERTICAL_RATIO = 1.5


def crop_size(quad: np.ndarray) -> tuple[int, int]:
    """(width, height) of the upright crop: the longer of each pair of opposite sides."""
    q = np.asarray(quad, dtype=np.float32)
    width = max(np.linalg.norm(q[0] - q[1]), np.linalg.norm(q[3] - q[2]))
    height = max(np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[1] - q[2]))
    return max(1, int(round(width))), max(1, int(round(height)))


def warp_crop(frame: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Perspective-warps the quad (clockwise from top-left) to a rectangle; tall crops are turned."""
    w, h = crop_size(quad)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(np.asarray(quad, dtype=np.float32), dst)
    crop = cv2.warpPerspective(frame, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    if h >= VERTICAL_RATIO * w:
        crop = np.rot90(crop)   # counter-clockwise: text written top-down reads left-right
    return np.ascontiguousarray(crop)
