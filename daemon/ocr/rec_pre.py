"""Recognizer (and line classifier) pre-processing: line crops -> fixed B x 3 x H x W batches.

A crop is scaled to the fixed height with its aspect kept and right-padded to the fixed width. A crop
that would be wider than the fixed width is split at the emptiest columns (gaps between characters)
into pieces that fit, instead of being squeezed or cut off; the pieces' texts are joined afterwards.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import cv2
import numpy as np

REC_MEAN = 0.5
REC_STD = 0.5
# Pieces aim below the fixed width so the cut can move to a nearby gap between characters.
_PIECE_TARGET = 0.92
_PIECE_MIN = 0.6
# A gap at least this many line heights wide at the cut is a space between words.
_SPACE_GAP = 0.2


@dataclass(frozen=True)
class Piece:
    image: np.ndarray     # h x w x 3 uint8, h = the fixed height, w <= the fixed width
    crop_index: int       # which crop it came from
    space_before: bool    # the cut in front of it fell in a word gap


def resize_to_height(crop: np.ndarray, height: int) -> np.ndarray:
    h, w = crop.shape[:2]
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
    """Crops -> pieces at the fixed height that fit the fixed width."""
    out: list[Piece] = []
    for i, crop in enumerate(crops):
        line = resize_to_height(crop, height)
        if line.shape[1] <= width:
            out.append(Piece(line, i, False))
            continue
        for start, end, space in split_points(_ink_profile(line), width, height):
            out.append(Piece(np.ascontiguousarray(line[:, start:end]), i, space))
    return out


def normalize_into(image: np.ndarray, slot: np.ndarray) -> None:
    """h x w x 3 uint8 -> the left part of a 3 x H x W float slot, the rest zero.

    An image of another height is scaled to H with its aspect kept (the line classifier gets raw crops);
    what is still wider than W is squeezed into it."""
    _, height, width = slot.shape
    if image.shape[0] != height:
        image = resize_to_height(image, height)
    if image.shape[1] > width:
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    slot.fill(0.0)
    w = image.shape[1]
    slot[:, :, :w] = (image.astype(np.float32) * (1.0 / (255.0 * REC_STD)) - REC_MEAN / REC_STD).transpose(2, 0, 1)


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
