"""DB (differentiable binarization) post-processing: probability map -> quadrilateral text boxes.

DbParams' defaults are PaddleOCR's for PP-OCR det (thresh 0.3, box 0.5, unclip 1.6, min size 3); the pipeline
passes its ocr.* settings (unclip 1.4 by default: bench/RESULTS.md section 43).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import pyclipper


@dataclass(frozen=True)
class DbParams:
    threshold: float = 0.3
    box_threshold: float = 0.5
    unclip_ratio: float = 1.6
    min_size: int = 3
    max_candidates: int = 1000


def order_quad(points: np.ndarray) -> np.ndarray:
    """Four points -> clockwise from top-left (top-left has the smaller x of the two upper points)."""
    pts = np.asarray(points, dtype=np.float32).reshape(4, 2)
    # Sorted in Python: for four points, numpy's three argsorts cost more in calls than in sorting. sorted() is
    # stable, as the stable argsort was: ties keep their order.
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = pts.tolist()
    xs, ys = (x0, x1, x2, x3), (y0, y1, y2, y3)
    l0, l1, r0, r1 = sorted(range(4), key=xs.__getitem__)
    tl, bl = (l0, l1) if ys[l0] <= ys[l1] else (l1, l0)
    tr, br = (r0, r1) if ys[r0] <= ys[r1] else (r1, r0)
    return pts[[tl, tr, br, bl]]


def min_area_quad(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Smallest rotated rectangle around the points, ordered, and its shorter side."""
    rect = cv2.minAreaRect(np.asarray(points, dtype=np.float32).reshape(-1, 1, 2))
    quad = order_quad(cv2.boxPoints(rect))
    return quad, float(min(rect[1]))


def unclip(quad: np.ndarray, ratio: float) -> np.ndarray:
    """Grows a polygon by distance = area * ratio / perimeter, undoing DB's shrunk text kernels."""
    quad = np.asarray(quad)
    poly32 = quad.astype(np.float32, copy=False).reshape(-1, 2)
    area = abs(cv2.contourArea(poly32))
    perimeter = cv2.arcLength(poly32, True)
    if perimeter <= 0:
        return poly32
    distance = area * ratio / perimeter
    offset = pyclipper.PyclipperOffset()
    # pyclipper takes Python floats: a float32 quad's own values are what its float64 copy gave
    points = quad if quad.dtype == np.float32 else quad.astype(np.float64)
    offset.AddPath(points.reshape(-1, 2).tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    grown = offset.Execute(distance)
    if not grown:
        return poly32
    return np.asarray(max(grown, key=len), dtype=np.float32)


def box_score(prob: np.ndarray, quad: np.ndarray) -> float:
    """Mean probability inside the quad (PaddleOCR's 'fast' score mode)."""
    h, w = prob.shape
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = quad.tolist()
    xmin = min(max(math.floor(min(x0, x1, x2, x3)), 0), w - 1)
    xmax = min(max(math.ceil(max(x0, x1, x2, x3)), 0), w - 1)
    ymin = min(max(math.floor(min(y0, y1, y2, y3)), 0), h - 1)
    ymax = min(max(math.ceil(max(y0, y1, y2, y3)), 0), h - 1)
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    q = quad - np.array((xmin, ymin), dtype=quad.dtype)
    cv2.fillPoly(mask, [q.round().astype(np.int32)], 1)
    return float(cv2.mean(prob[ymin:ymax + 1, xmin:xmax + 1], mask)[0])


# Joins characters split by one-pixel gaps (rapidocr use_dilation). It also grows every kernel by one map
# pixel to the right and down, which the unclip then multiplies: small print got boxes far taller than the
# text. DbBox.text takes the pixel back (bench/RESULTS.md section 20).
_DILATE = np.ones((2, 2), dtype=np.uint8)


@dataclass(frozen=True)
class DbBox:
    """One text region in map pixels. The recognizer reads the looser quad (tighter crops read worse,
    bench/RESULTS.md section 20); results report the text box."""
    quad: np.ndarray    # the dilated kernel grown by the unclip
    text: np.ndarray    # the kernel without the dilation's pixel, grown by the unclip
    score: float        # mean probability inside the kernel


def undilated(quad: np.ndarray) -> np.ndarray:
    """The kernel rectangle without what the 2x2 dilation added: it widened the rectangle along each of
    its axes by the unit square's extent on that axis (|cos| + |sin|) and moved it half a pixel down-right."""
    (cx, cy), (w, h), angle = cv2.minAreaRect(quad.reshape(-1, 1, 2))
    t = np.deg2rad(angle)
    grow = abs(np.cos(t)) + abs(np.sin(t))
    rect = ((cx - 0.5, cy - 0.5), (max(1.0, w - grow), max(1.0, h - grow)), angle)
    return order_quad(cv2.boxPoints(rect))


# A region the detector marks only faintly (mean probability at least the threshold, below box_threshold) that
# lies on an accepted line's axis just past one of its ends, about as thick as the line, is taken into that line:
# at native size the detector gives a plate's last letter set apart by a space ("SF 1825 T") such a region, and
# on its own it is dropped (bench/RESULTS.md section 37). Distances in the line's kernel thickness.
WEAK_END_GAP = 1.5        # between the line's end and the region, at most
WEAK_END_OFFSET = 0.35    # the region's centre off the line's axis, at most
WEAK_END_THICKNESS = (0.5, 1.5)   # the region's thickness across the axis, within


def weak_ends(points: np.ndarray, weak: list[np.ndarray]) -> list[int]:
    """Which of the weak regions (point arrays) lie past an end of the line whose kernel has these points, on its
    axis (see WEAK_END_*)."""
    (cx, cy), (rw, rh), angle = cv2.minAreaRect(np.asarray(points, dtype=np.float32).reshape(-1, 1, 2))
    t = np.deg2rad(angle)
    along, across = np.array([np.cos(t), np.sin(t)]), np.array([-np.sin(t), np.cos(t)])
    length, thick = rw, rh
    if rh > rw:                  # the rectangle's second side is the line's axis
        along, across, length, thick = across, along, rh, rw
    if thick <= 0:
        return []
    out = []
    reach = length / 2 + (WEAK_END_GAP + 1) * thick
    for k, region in enumerate(weak):
        rel = np.asarray(region, dtype=np.float32).reshape(-1, 2) - (cx, cy)
        # a cheap first test: its first point farther than a letter past the line's end in x or in y (most faint
        # regions of a frame lie elsewhere; a long faint region is not a lone last word)
        if np.abs(rel[0]).max() > reach:
            continue
        s, n = rel @ along, rel @ across
        gap = max(s.min() - length / 2, -length / 2 - s.max())
        if (0 <= gap <= WEAK_END_GAP * thick and abs(n.mean()) <= WEAK_END_OFFSET * thick
                and WEAK_END_THICKNESS[0] * thick <= np.ptp(n) <= WEAK_END_THICKNESS[1] * thick):
            out.append(k)
    return out


def boxes_from_prob(prob: np.ndarray, p: DbParams) -> list[DbBox]:
    """HxW probability map -> text boxes in map pixels, at most max_candidates of them."""
    bitmap = cv2.dilate((prob > p.threshold).view(np.uint8), _DILATE)    # numpy's bools are 0 and 1 bytes
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    h, w = prob.shape
    lines: list[tuple[np.ndarray, np.ndarray, float]] = []      # accepted kernels: points, quad, score
    weak: list[np.ndarray] = []
    for contour in contours[: p.max_candidates]:
        if len(contour) < 4:
            continue
        quad, short_side = min_area_quad(contour)
        if short_side < p.min_size:
            continue
        score = box_score(prob, quad)
        if score >= p.box_threshold:
            lines.append((contour.reshape(-1, 2), quad, score))
        elif score >= p.threshold:
            weak.append(contour.reshape(-1, 2))
    taken: set[int] = set()
    out: list[DbBox] = []
    for points, quad, score in lines:
        ends = [k for k in weak_ends(points, weak) if k not in taken] if weak else []
        if ends:
            taken.update(ends)
            quad, _ = min_area_quad(np.concatenate([points, *(weak[k] for k in ends)]))
        grown, short_side = min_area_quad(unclip(quad, p.unclip_ratio))
        if short_side < p.min_size + 2:
            continue
        text, _ = min_area_quad(unclip(undilated(quad), p.unclip_ratio))
        out.append(DbBox(_clip(grown, w, h), _clip(text, w, h), score))
    return out


def _clip(quad: np.ndarray, w: int, h: int) -> np.ndarray:
    np.clip(quad, 0.0, np.array((w, h), dtype=quad.dtype), out=quad)
    return quad
