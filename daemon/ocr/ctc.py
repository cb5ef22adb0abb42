"""Greedy CTC decoding: best class per time step, repeats collapsed, blanks removed."""
from __future__ import annotations

from typing import Sequence

import numpy as np

BLANK = 0


def ctc_emissions(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """T x C softmax output -> (class, time step, probability) of each emitted character, in order.

    A character is emitted at the first step of its run; a repeat counts once unless a blank separates it.
    """
    best = probs.argmax(axis=1)
    best_p = probs[np.arange(len(best)), best]
    keep = best != BLANK
    keep[1:] &= best[1:] != best[:-1]
    steps = np.flatnonzero(keep)
    return best[steps], steps, best_p[steps]


def ctc_candidates(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ctc_emissions, plus for each emitted character the runner-up at the same step: the most probable class
    that is neither the blank nor the character itself, and its probability (what verification calls
    "confused" when it comes close). Costs one argmax over the emitted steps' rows only."""
    idx, steps, p = ctc_emissions(probs)
    rows = probs[steps]                    # fancy indexing copies: probs is left as it was
    hit = np.arange(len(steps))
    rows[:, BLANK] = -1.0
    rows[hit, idx] = -1.0
    alt = rows.argmax(axis=1)
    return idx, steps, p, alt, rows[hit, alt]


def ctc_candidates_top3(values: np.ndarray, classes: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ctc_candidates from each step's three most probable classes (T x 3 probabilities and their classes, best
    first, equal probabilities in the lower class first: ONNX TopK's order, rec_head.py) instead of all C.

    The best class is the first; the runner-up, neither the blank nor the best, is the second unless that is the
    blank, else the third. Every value is the one ctc_candidates gives for the full softmax rows."""
    values, classes = _ties_lower_class_first(values, classes)
    best = classes[:, 0]
    keep = best != BLANK
    keep[1:] &= best[1:] != best[:-1]
    steps = np.flatnonzero(keep)
    top = classes[steps]
    top_p = values[steps]
    second_is_blank = top[:, 1] == BLANK
    alt = np.where(second_is_blank, top[:, 2], top[:, 1])
    alt_p = np.where(second_is_blank, top_p[:, 2], top_p[:, 1])
    return top[:, 0], steps, top_p[:, 0], alt, alt_p


def ctc_greedy(probs: np.ndarray, charset: Sequence[str]) -> tuple[str, float]:
    """T x C softmax output -> (text, confidence = mean max-probability of the emitted characters).

    An empty reading has confidence 0.0.
    """
    idx, _, p = ctc_emissions(probs)
    if idx.size == 0:
        return "", 0.0
    return "".join(charset[i] for i in idx), float(p.mean())


def _ties_lower_class_first(values: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows with equal values put in ONNX's order, the lower class first. TensorRT does not document the order
    of its TopK among equal values; within the three returned this makes it not matter (which of several equal
    values beyond the third it returns still could). Rows without ties, nearly all, are returned as they are."""
    if not (values[:, :-1] == values[:, 1:]).any():
        return values, classes
    order = np.lexsort((classes, -values), axis=-1)
    return np.take_along_axis(values, order, axis=-1), np.take_along_axis(classes, order, axis=-1)
