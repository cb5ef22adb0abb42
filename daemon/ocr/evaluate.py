"""Accuracy against ground truth: line assignment, character error rate, line recall. Pure functions.

A predicted line belongs to the ground-truth line that holds most of its area (at least half), so a
line the detector split in two still counts; its pieces are read left to right. Texts are compared
after Unicode NFKC folding with whitespace removed: "ZTO 7730 1234" and "ZTO77301234" carry the same
characters, and so do the full-width "：" and the ASCII ":" that a label prints after a Chinese field
name (where a label's spaces fall, and which colon form its font draws, is the font's business).
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

_MIN_SHARE = 0.5


@dataclass(frozen=True)
class LineScore:
    truth: str
    predicted: str        # pieces assigned to this line, left to right, folded (see fold_text)
    edits: int            # Levenshtein distance to the folded truth


@dataclass(frozen=True)
class Accuracy:
    lines: tuple[LineScore, ...]
    false_positives: int  # predicted lines on no ground-truth line

    @property
    def cer(self) -> float:
        chars = sum(len(fold_text(s.truth)) for s in self.lines)
        return sum(s.edits for s in self.lines) / max(1, chars)

    @property
    def line_recall(self) -> float:
        return sum(1 for s in self.lines if s.predicted) / max(1, len(self.lines))

    @property
    def exact_lines(self) -> float:
        return sum(1 for s in self.lines if s.edits == 0) / max(1, len(self.lines))


def fold_text(text: str) -> str:
    """Text as compared: NFKC-folded, whitespace removed."""
    return "".join(unicodedata.normalize("NFKC", text).split())


def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _area(quad: np.ndarray) -> float:
    return abs(float(cv2.contourArea(quad.astype(np.float32))))


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection area of two convex quads."""
    area, _ = cv2.intersectConvexConvex(a.astype(np.float32), b.astype(np.float32))
    return float(area)


def score_image(truth: Sequence[tuple[str, Sequence[Sequence[float]]]],
                predicted: Sequence[tuple[str, Sequence[Sequence[float]]]]) -> Accuracy:
    """truth and predicted: (text, 4 corner points) each."""
    gt_quads = [np.asarray(box, dtype=np.float32).reshape(4, 2) for _, box in truth]
    assigned: list[list[tuple[float, str]]] = [[] for _ in truth]
    false_positives = 0
    for text, box in predicted:
        quad = np.asarray(box, dtype=np.float32).reshape(4, 2)
        area = max(_area(quad), 1e-6)
        shares = [_overlap(quad, g) / area for g in gt_quads]
        best = int(np.argmax(shares)) if shares else -1
        if best < 0 or shares[best] < _MIN_SHARE:
            false_positives += 1
            continue
        assigned[best].append((float(quad[:, 0].min()), text))
    lines = []
    for (truth_text, _), pieces in zip(truth, assigned):
        hyp = "".join(fold_text(t) for _, t in sorted(pieces))
        lines.append(LineScore(truth_text, hyp, levenshtein(hyp, fold_text(truth_text))))
    return Accuracy(tuple(lines), false_positives)


def combine(results: Sequence[Accuracy]) -> Accuracy:
    return Accuracy(tuple(s for r in results for s in r.lines), sum(r.false_positives for r in results))


def thickness(box: Sequence[Sequence[float]]) -> float:
    """The shorter side of a box's smallest rotated rectangle."""
    return float(min(cv2.minAreaRect(np.asarray(box, dtype=np.float32).reshape(-1, 1, 2))[1]))


def thickness_ratio(truth_box: Sequence[Sequence[float]], boxes: Sequence[Sequence[Sequence[float]]]) -> float | None:
    """The thickest box whose centre falls on a ground-truth line, over that line's thickness; None if none
    does. score_image needs half of a box on its line, so a ratio near 2 loses a line that was read."""
    quad = np.asarray(truth_box, dtype=np.float32).reshape(-1, 1, 2)
    on_line = [b for b in boxes
               if cv2.pointPolygonTest(quad, tuple(map(float, np.mean(b, axis=0))), False) >= 0]
    return max(thickness(b) for b in on_line) / thickness(truth_box) if on_line else None
