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


def ctc_candidates_batch(probs: np.ndarray, ranges: Sequence[tuple[int, int, int]]
                         ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """ctc_candidates of probs[k, lo:hi] for each (k, lo, hi) of a B x T x C batch, steps counted from lo; the
    same arrays, computed with one argmax over the rows the ranges use and one over all their emitted steps
    (each range's own calls cost a pass apiece, and the Python around them, for a few steps each)."""
    if not ranges:
        return []
    rows_used = max(k for k, _, _ in ranges) + 1
    best = probs[:rows_used].argmax(axis=2)
    best_p = np.take_along_axis(probs[:rows_used], best[..., None], axis=2)[..., 0]
    at_k, at_t, per_range = [], [], []
    for k, lo, hi in ranges:
        b = best[k, lo:hi]
        keep = b != BLANK
        keep[1:] &= b[1:] != b[:-1]
        steps = np.flatnonzero(keep)
        per_range.append(steps)
        at_k.append(np.full(len(steps), k))
        at_t.append(steps + lo)
    ks, ts = np.concatenate(at_k), np.concatenate(at_t)
    idx, p = best[ks, ts], best_p[ks, ts]
    rows = probs[ks, ts]                   # fancy indexing copies: probs is left as it was
    hit = np.arange(len(ts))
    rows[:, BLANK] = -1.0
    rows[hit, idx] = -1.0
    alt = rows.argmax(axis=1)
    alt_p = rows[hit, alt]
    out, first = [], 0
    for steps in per_range:
        end = first + len(steps)
        out.append((idx[first:end], steps, p[first:end], alt[first:end], alt_p[first:end]))
        first = end
    return out
