"""Recognizer (and line classifier) pre-processing: line crops -> fixed B x 3 x H x W batches.

A crop is scaled to the fixed height with its aspect kept and right-padded to the fixed width. A crop
that would be wider than the fixed width is cut at the emptiest columns (gaps between characters) into
pieces that fit, instead of being squeezed or cut off. Each piece reaches half a line height past its
cuts, so a character at a cut is seen whole, and reads only the characters between its cuts
(daemon.ocr.line_join puts the line back together).

At a fixed shape every slot costs a full H x W whatever it holds, so short pieces share a slot side by
side (pack_slots) and each is decoded from its own output columns (piece_steps); an image's last few
slots go to a smaller fixed batch (batch_plan) instead of a padded full one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import cv2
import numpy as np

REC_MEAN = 0.5
REC_STD = 0.5
CLS_HEIGHT, CLS_WIDTH = 48, 192     # the PP-OCR mobile v2.0 line classifier's input
# Pieces aim below the fixed width so the cut can move to a nearby gap between characters.
_PIECE_TARGET = 0.92
_PIECE_MIN = 0.6
# A gap at least this many line heights wide at the cut is a space between words.
_SPACE_GAP = 0.2
# How far a piece reaches past each of its cuts, in line heights: context for the character at the cut.
SEAM_MARGIN = 0.5


@dataclass(frozen=True)
class Piece:
    image: np.ndarray         # h x w x 3 uint8, h = the fixed height, w <= the fixed width
    crop_index: int           # which crop it came from
    offset: int               # its first column in the line (at the fixed height)
    keep: tuple[int, int]     # the line columns [start, end) between its cuts: the characters it reads
    space_before: bool        # the cut in front of it fell in a word gap


def resize_to_height(crop: np.ndarray, height: int) -> np.ndarray:
    """The crop scaled to ``height`` with its aspect kept; one already that high is returned as it is (OpenCV's
    resize to the same size is a copy of it)."""
    h, w = crop.shape[:2]
    if h == height:
        return crop
    new_w = max(1, int(math.ceil(height * w / h)))
    return cv2.resize(crop, (new_w, height), interpolation=cv2.INTER_LINEAR)


def _ink_profile(line: np.ndarray) -> np.ndarray:
    """Share of pixels per column that differ clearly from the background.

    The background is the median of the top and bottom rows: the detector's unclip margin leaves
    background there even on lines dense with ink.
    """
    grey = cv2.cvtColor(line, cv2.COLOR_BGR2GRAY) if line.ndim == 3 else line
    background = np.median(np.concatenate([grey[:2].ravel(), grey[-2:].ravel()]))
    return (np.abs(grey.astype(np.int16) - int(background)) > 40).mean(axis=0)


def split_points(ink: np.ndarray, max_width: int, height: int) -> list[tuple[int, int, bool]]:
    """Column ranges [(start, end, space_before)] covering the line, none wider than max_width.

    Each cut goes to the emptiest column in the last part of the allowed range (the nearest to the
    target on ties), so it falls between characters where there is a gap.
    """
    total = len(ink)
    pieces: list[tuple[int, int, bool]] = []
    start, space = 0, False
    while total - start > max_width:
        lo = start + int(max_width * _PIECE_MIN)
        hi = start + max_width
        target = start + int(max_width * _PIECE_TARGET)
        window = ink[lo:hi + 1]
        best = np.flatnonzero(window == window.min()) + lo
        cut = int(best[np.argmin(np.abs(best - target))])
        pieces.append((start, cut, space))
        # how wide is the empty run around the cut: a word gap becomes a space
        left = cut
        while left > start and ink[left - 1] == 0:
            left -= 1
        right = cut
        while right < total - 1 and ink[right + 1] == 0:
            right += 1
        space = ink[cut] == 0 and (right - left + 1) >= _SPACE_GAP * height
        start = cut
    pieces.append((start, total, space))
    return pieces


def to_pieces(crops: Sequence[np.ndarray], height: int, width: int) -> list[Piece]:
    """Crops -> pieces at the fixed height that fit the fixed width, each crop's pieces left to right."""
    out: list[Piece] = []
    margin = int(round(SEAM_MARGIN * height))
    for i, crop in enumerate(crops):
        line = resize_to_height(crop, height)
        total = line.shape[1]
        if total <= width:
            out.append(Piece(line, i, 0, (0, total), False))
            continue
        # cuts at most width - 2 margins apart, so each piece with its margins still fits
        for start, end, space in split_points(_ink_profile(line), width - 2 * margin, height):
            lo, hi = max(0, start - margin), min(total, end + margin)
            out.append(Piece(np.ascontiguousarray(line[:, lo:hi]), i, lo, (start, end), bool(space)))
    return out


def normalize_into(image: np.ndarray, slot: np.ndarray) -> None:
    """h x w x 3 uint8 -> the left part of a 3 x H x W float slot, the rest zero.

    An image of another height is scaled to H with its aspect kept (the line classifier gets raw crops);
    one that would then be wider than W is squeezed into it, in the same single resize: scaled to H and then
    squeezed, a small crop was blurred twice and tipped the 0/180 classifier (bench/RESULTS.md section 37)."""
    _, height, width = slot.shape
    h, w = image.shape[:2]
    new_w = min(width, max(1, int(math.ceil(height * w / h))))
    if (h, w) != (height, new_w):
        image = cv2.resize(image, (new_w, height), interpolation=cv2.INTER_LINEAR)
    _normalize(image, slot, 0)
    slot[:, :, image.shape[1]:] = 0.0      # only what the image leaves: zeroing the whole slot first wrote it twice


def _normalize(image: np.ndarray, slot: np.ndarray, x: int) -> None:
    """Writes h x w x 3 uint8 into columns x .. x+w of a 3 x h x W float slot."""
    w = image.shape[1]
    slot[:, :, x:x + w] = (image.astype(np.float32) * (1.0 / (255.0 * REC_STD)) - REC_MEAN / REC_STD).transpose(2, 0, 1)


def classifier_inputs(crops: Sequence[np.ndarray], lines: Sequence[np.ndarray], width: int) -> list[np.ndarray]:
    """What the line classifier is shown of each crop, given the crops already scaled to its height (lines): the
    line where it fits the classifier's width; else the crop, which normalize_into squeezes in one resize (scaled
    and then squeezed, a small crop was blurred twice and tipped the classifier: bench/RESULTS.md section 37)."""
    return [line if line.shape[1] <= width else crop for crop, line in zip(crops, lines)]


def fixed_batches(images: Sequence[np.ndarray], batch: int, height: int, width: int
                  ) -> Iterator[tuple[np.ndarray, range]]:
    """Yields (B x 3 x H x W batch, indices of the images in it); the last batch is zero-padded.

    Every image lands in exactly one batch (a known peer recognized only the last batch).
    """
    buf = np.zeros((batch, 3, height, width), dtype=np.float32)
    for first in range(0, len(images), batch):
        idx = range(first, min(first + batch, len(images)))
        for slot, i in enumerate(idx):
            normalize_into(images[i], buf[slot])
        buf[len(idx):] = 0.0
        yield buf, idx


@dataclass(frozen=True)
class Placement:
    piece: int    # index of the piece
    x: int        # its first column in the slot
    width: int


def pack_slots(widths: Sequence[int], width: int, gap: int | None) -> list[tuple[Placement, ...]]:
    """Pieces -> slots of the fixed width, each slot's placements left to right.

    gap=None: one piece per slot, widest first (PaddleOCR's sort by aspect ratio). Otherwise first-fit
    decreasing: widest first, each piece into the first slot that still has `gap` + its width free, so
    neighbours are `gap` columns of padding apart. Every piece is placed exactly once.
    """
    if any(not 0 < w <= width for w in widths):
        raise ValueError(f"piece widths must be between 1 and {width}: {list(widths)}")
    order = sorted(range(len(widths)), key=lambda i: (-widths[i], i))
    if gap is None:
        return [(Placement(i, 0, widths[i]),) for i in order]
    slots: list[list[Placement]] = []
    ends: list[int] = []
    for i in order:
        w = widths[i]
        for s, end in enumerate(ends):
            if end + gap + w <= width:
                slots[s].append(Placement(i, end + gap, w))
                ends[s] = end + gap + w
                break
        else:
            slots.append([Placement(i, 0, w)])
            ends.append(w)
    return [tuple(slot) for slot in slots]


def piece_steps(slot: Sequence[Placement], width: int, steps: int) -> list[tuple[int, int]]:
    """[start, end) of each placement's recognizer output steps (the slot's `steps` columns over `width`).

    A piece reads the steps that overlap its own columns; the first also those before it and the last
    the right padding, as a piece alone in its slot does. Steps wholly inside a gap between two pieces
    belong to neither: what the network emits there is the neighbours bleeding into each other.
    """
    stride = width / steps
    ranges = []
    for j, p in enumerate(slot):
        lo = 0 if j == 0 else min(steps, int(math.floor(p.x / stride)))
        hi = steps if j == len(slot) - 1 else min(steps, int(math.ceil((p.x + p.width) / stride)))
        ranges.append((lo, max(lo, hi)))
    return ranges


def batch_plan(n_slots: int, batch: int, tail: int) -> list[tuple[int, int]]:
    """(call batch size, slots used) for each recognizer call over n_slots.

    Full calls of `batch`; the rest goes to calls of the smaller fixed `tail` batch when they cost
    fewer padded slots than one more full call (tail=0: always a padded full call).
    """
    full, rest = divmod(n_slots, batch)
    calls = [(batch, batch)] * full
    if rest:
        if tail and -(-rest // tail) * tail < batch:
            calls += [(tail, min(tail, rest - k)) for k in range(0, rest, tail)]
        else:
            calls.append((batch, rest))
    return calls


def fill_slots(images: Sequence[np.ndarray], slots: Sequence[Sequence[Placement]], out: np.ndarray) -> None:
    """Writes each slot's pieces into out[k] (B x 3 x H x W) at their columns; all the rest is zero (the columns
    between and after the pieces and the slots after the last: zeroing the whole batch first wrote it twice)."""
    for k, slot in enumerate(slots):
        end = 0
        for p in slot:      # left to right, never overlapping (pack_slots)
            out[k, :, :, end:p.x] = 0.0
            _normalize(images[p.piece], out[k], p.x)
            end = p.x + p.width
        out[k, :, :, end:] = 0.0
    out[len(slots):] = 0.0
