"""Calibration inputs at the engines' fixed shapes, fed the way the pipeline feeds the models.

The detector sees frames letterboxed by daemon.ocr.det_pre.preprocess_det; the recognizer sees the
line crops that the FP32 pipeline itself detects, cut and batched by daemon.ocr.rec_pre.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from daemon.ocr.det_pre import preprocess_det
from daemon.ocr.rec_pre import fixed_batches, to_pieces


def det_batches(frames: Sequence[np.ndarray], shape: tuple[int, int, int, int]) -> Iterator[np.ndarray]:
    """Frames -> N x 3 x H x W detector inputs (the last batch zero-padded, as the pipeline pads it),
    made one at a time (a 960x960 input is 11 MB)."""
    n, _, h, w = shape
    for first in range(0, len(frames), n):
        batch = np.zeros(shape, dtype=np.float32)
        for slot, frame in enumerate(frames[first:first + n]):
            preprocess_det(frame, h, w, out=batch[slot])
        yield batch


def rec_batches(crops: Sequence[np.ndarray], shape: tuple[int, int, int, int]) -> list[np.ndarray]:
    """Line crops -> B x 3 x 48 x W recognizer inputs: split into pieces that fit, sorted by width, padded."""
    n, _, h, w = shape
    pieces = [p.image for p in to_pieces(list(crops), h, w)]
    pieces.sort(key=lambda im: im.shape[1])
    # Full batches only where there are enough pieces: padding slots would skew the activation ranges.
    return [batch.copy() for batch, _ in fixed_batches(pieces, n, h, w)]
