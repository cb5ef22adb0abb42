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
    steps = np.flatnonzero(_run_starts(best))
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
    return _top3_at(values, classes, _run_starts(classes[:, 0]))


def ctc_candidates_top3_ranges(values: np.ndarray, classes: np.ndarray, ranges: Sequence[tuple[int, int, int]]
                                ) -> list[tuple[list[int], list[int], list[float], list[int], list[float]]]:
    """ctc_candidates_top3 of values[k, lo:hi], classes[k, lo:hi] for each (k, lo, hi) of a batch (N x T x 3), as
    lists, with each step counted from its slot's first step (lo + the step ctc_candidates_top3 gives). One pass over
    the whole batch instead of a dozen numpy calls per range: a range's first step is emitted by the rule of a first
    step (not blank), whatever precedes it, as when the range is decoded alone. Overlapping ranges (two decodings of
    one step) are decoded one by one."""
    n, t, k = values.shape
    spans = [(s * t + lo, s * t + hi) for s, lo, hi in ranges]
    filled = sorted(span for span in spans if span[1] > span[0])
    if any(b[0] < a[1] for a, b in zip(filled, filled[1:])):
        return [_lists(*ctc_candidates_top3(values[s, lo:hi], classes[s, lo:hi]), lo) for s, lo, hi in ranges]
    flat_values, flat_classes = _ties_lower_class_first(values.reshape(n * t, k), classes.reshape(n * t, k))
    best = flat_classes[:, 0]
    keep = _run_starts(best)
    starts = np.array([start for start, _ in filled], dtype=np.intp)
    keep[starts] = best[starts] != BLANK
    idx, steps, p, alt, alt_p = _top3_at(flat_values, flat_classes, keep)
    cuts = np.searchsorted(steps, [edge for span in spans for edge in span]).tolist()
    lists = (idx.tolist(), (steps % t).tolist(), p.tolist(), alt.tolist(), alt_p.tolist())
    return [tuple(column[cuts[2 * i]:cuts[2 * i + 1]] for column in lists)  # type: ignore[misc]
            for i in range(len(spans))]


def ctc_candidates_ranges(probs: np.ndarray, ranges: Sequence[tuple[int, int, int]]
                          ) -> list[tuple[list[int], list[int], list[float], list[int], list[float]]]:
    """ctc_candidates of probs[k, lo:hi] (N x T x C softmax outputs) for each (k, lo, hi), as
    ctc_candidates_top3_ranges gives them. Range by range: each argmax reads rows of one slot while they are in the
    cache (one argmax over the whole batch, then its emitted rows gathered, measured slower: bench/RESULTS.md
    section 32)."""
    return [_lists(*ctc_candidates(probs[k, lo:hi]), lo) for k, lo, hi in ranges]


def excluded_best(values: np.ndarray, classes: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """Per step (... x T) of top-3 rows read before the exclusion, the highest probability among the excluded
    classes, 0 where none is there (the softmax head takes the max of the excluded columns it keeps). Where it lies
    above what the step emits after the exclusion, it was the step's best (the same test on either head), and
    rescale_excluded renormalizes."""
    return np.where(np.isin(classes, excluded), values, values.dtype.type(0.0)).max(axis=-1)


def rescale_excluded(prob: list[float], alt_p: list[float], steps: list[int], best_excluded: np.ndarray
                     ) -> tuple[list[float], list[float]]:
    """The emitted characters' probabilities and their runner-ups' where the step's best class was excluded, as
    probabilities over the classes left: divided by 1 - the excluded best's (a letter read at 0.3 where the
    excluded sign had 0.65 is 0.86 of what is left). best_excluded: excluded_best's row for the slot. The lists
    are returned as they are where no step's best was excluded (nearly always)."""
    if not steps:
        return prob, alt_p
    gone = best_excluded[np.asarray(steps)].tolist()
    hit = [i for i, (g, q) in enumerate(zip(gone, prob)) if q < g < 1.0]
    if not hit:
        return prob, alt_p
    out_p, out_alt = list(prob), list(alt_p)
    for i in hit:
        keep = 1.0 - gone[i]
        out_p[i] = min(1.0, out_p[i] / keep)
        out_alt[i] = min(1.0, out_alt[i] / keep) if out_alt[i] > 0 else out_alt[i]
    return out_p, out_alt


def drop_unseen_runner_ups(alt_p: list[float], steps: list[int], excluded_p: np.ndarray, blank_p: np.ndarray
                           ) -> list[float]:
    """Softmax head: the runner-ups the top-3 head cannot name once the excluded classes are out of its rows, set
    to probability 0 (no runner-up), so that both heads read the same. Such a runner-up ranked fourth or lower:
    the emitted class, and the blank or excluded classes, lay above it. excluded_p (T x k) and blank_p (T): the
    slot's probabilities of the excluded classes (before exclude_columns) and of the blank. One pass per piece;
    the list is returned as it is where nothing is dropped (nearly always)."""
    if not steps:
        return alt_p
    at = np.asarray(steps)
    q = np.asarray(alt_p, dtype=np.float64)
    above = 1 + (blank_p[at] > q) + (excluded_p[at] > q[:, None]).sum(axis=1)
    drop = (q > 0) & (above >= 3)
    if not drop.any():
        return alt_p
    return [0.0 if d else a for a, d in zip(alt_p, drop.tolist())]


def exclude_columns(probs: np.ndarray, excluded: np.ndarray) -> None:
    """Softmax outputs (... x C) with the excluded classes' probabilities set to 0, in place (the model's output
    buffer, read once): greedy decoding then emits the best of the other classes (ocr.exclude_chars). The pipeline
    calls it only where something is excluded."""
    probs[..., excluded] = 0.0


def exclude_top3(values: np.ndarray, classes: np.ndarray, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-3 rows (... x 3, best first) with the excluded classes taken out: such an entry becomes the blank at
    probability -1, last in its row, so the best and the runner-up are the best of the others within the three
    kept, as exclude_columns makes them from the full rows. Returned as they are where no row holds one."""
    hit = np.isin(classes, excluded)
    if not hit.any():
        return values, classes
    values = np.where(hit, values.dtype.type(-1.0), values)
    classes = np.where(hit, classes.dtype.type(BLANK), classes)
    order = np.argsort(-values, axis=-1, kind="stable")
    return np.take_along_axis(values, order, axis=-1), np.take_along_axis(classes, order, axis=-1)


def _run_starts(best: np.ndarray) -> np.ndarray:
    """Which steps emit a character: not the blank, and not the class of the step before (greedy CTC)."""
    keep = best != BLANK
    keep[1:] &= best[1:] != best[:-1]
    return keep


def _top3_at(values: np.ndarray, classes: np.ndarray, keep: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(class, step, probability, runner-up, its probability) of the kept steps of top-3 rows in TopK's order."""
    steps = np.flatnonzero(keep)
    top = classes[steps]
    top_p = values[steps]
    second_is_blank = top[:, 1] == BLANK
    alt = np.where(second_is_blank, top[:, 2], top[:, 1])
    alt_p = np.where(second_is_blank, top_p[:, 2], top_p[:, 1])
    return top[:, 0], steps, top_p[:, 0], alt, alt_p


def _lists(idx: np.ndarray, steps: np.ndarray, p: np.ndarray, alt: np.ndarray, alt_p: np.ndarray, lo: int
           ) -> tuple[list[int], list[int], list[float], list[int], list[float]]:
    return idx.tolist(), (steps + lo).tolist(), p.tolist(), alt.tolist(), alt_p.tolist()


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
