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


def ctc_greedy(probs: np.ndarray, charset: Sequence[str]) -> tuple[str, float]:
    """T x C softmax output -> (text, confidence = mean max-probability of the emitted characters).

    An empty reading has confidence 0.0.
    """
    idx, _, p = ctc_emissions(probs)
    if idx.size == 0:
        return "", 0.0
    return "".join(charset[i] for i in idx), float(p.mean())

