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


def ctc_greedy(probs: np.ndarray, charset: Sequence[str]) -> tuple[str, float]:
    """T x C softmax output -> (text, confidence = mean max-probability of the emitted characters).

    An empty reading has confidence 0.0.
    """
    idx, _, p = ctc_emissions(probs)
    if idx.size == 0:
        return "", 0.0
    return "".join(charset[i] for i in idx), float(p.mean())
