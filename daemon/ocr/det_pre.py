"""Detector pre-processing: letterbox a BGR frame into the fixed input, normalized like PP-OCR.

The frame is scaled by one factor (aspect kept) into the top-left corner of the fixed input; the rest
is zero after normalization. The GPU kernel in daemon/gpu computes the same thing and is tested
against this function.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

# PP-OCRv4 det was trained on (x/255 - 0.5) / 0.5 of BGR pixels (rapidocr 1.4.4's config says the same).
# PP-OCRv6 small det takes the same (RapidOCR 3.10's config).
DET_MEAN = 0.5
DET_STD = 0.5


@dataclass(frozen=True)
class Letterbox:
    scale: float      # input pixels per frame pixel
    new_h: int        # rows of the input covered by the frame
    new_w: int        # columns of the input covered by the frame


# A frame much smaller than the detector's input is enlarged at most this much; the rest is padding.
# Enlarged further, a small photograph's text grows past the sizes the detector finds (bench/RESULTS.md
# section 17).
MAX_UPSCALE = 2.0


def letterbox_geometry(frame_h: int, frame_w: int, in_h: int, in_w: int) -> Letterbox:
    scale = min(in_h / frame_h, in_w / frame_w, MAX_UPSCALE)
    new_h = max(1, min(in_h, int(round(frame_h * scale))))
    new_w = max(1, min(in_w, int(round(frame_w * scale))))
    return Letterbox(scale=scale, new_h=new_h, new_w=new_w)


def to_frame_coords(points: np.ndarray, lb: Letterbox, frame_h: int, frame_w: int) -> np.ndarray:
    """Maps (x, y) points in input pixels back to frame pixels, clipped to the frame."""
    sx = frame_w / lb.new_w
    sy = frame_h / lb.new_h
    out = np.asarray(points, dtype=np.float32) * np.array([sx, sy], dtype=np.float32)
    out[..., 0] = np.clip(out[..., 0], 0, frame_w - 1)
    out[..., 1] = np.clip(out[..., 1], 0, frame_h - 1)
    return out


def preprocess_det(frame_bgr: np.ndarray, in_h: int, in_w: int, out: np.ndarray | None = None
                   ) -> tuple[np.ndarray, Letterbox]:
    """uint8 HxWx3 BGR -> float32 3 x in_h x in_w, written into ``out`` when given (a batch slot)."""
    if out is None:
        out = np.empty((3, in_h, in_w), dtype=np.float32)
    return out, _letterbox_into(frame_bgr, out, *_planes(frame_bgr.shape[:2]))


def _planes(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    return np.empty(shape, dtype=np.uint8), np.empty(shape, dtype=np.float32)


def _letterbox_into(frame_bgr: np.ndarray, out: np.ndarray, channel: np.ndarray, plane: np.ndarray) -> Letterbox:
    """Writes the letterboxed frame into ``out`` (3 x in_h x in_w), one channel at a time through ``channel``
    and ``plane`` (uint8 and float32, the frame's H x W): each channel is resized straight into its rows of
    ``out`` and normalized there, so nothing of the frame's size is allocated and nothing is transposed."""
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise ValueError(f"the detector takes H x W x 3 BGR frames, not {frame_bgr.shape}")
    h, w = frame_bgr.shape[:2]
    _, in_h, in_w = out.shape
    lb = letterbox_geometry(h, w, in_h, in_w)
    out[:, lb.new_h:, :] = 0.0
    out[:, : lb.new_h, lb.new_w:] = 0.0
    for c in range(3):
        # Resize in float so the result does not depend on OpenCV's 8-bit fixed-point rounding
        # (the GPU kernel interpolates in float too; the two must agree to 1e-3). OpenCV takes the channel out
        # (faster than numpy's strided copy), numpy converts it.
        np.copyto(plane, cv2.extractChannel(frame_bgr, c, dst=channel))
        dst = out[c, : lb.new_h, : lb.new_w]
        resized = cv2.resize(plane, (lb.new_w, lb.new_h), dst=dst, interpolation=cv2.INTER_LINEAR)
        if not np.may_share_memory(resized, dst):    # OpenCV wrote elsewhere (a layout it would not take)
            dst[...] = resized
        np.multiply(dst, 1.0 / (255.0 * DET_STD), out=dst)
        np.subtract(dst, DET_MEAN / DET_STD, out=dst)
    return lb


class Letterboxer:
    """The CPU detector's input: letterboxes up to ``batch`` frames into one batch buffer it owns and reuses,
    with one channel's planes of scratch, so a frame costs no allocation of its size (fresh buffers of that size
    were most of this stage's time: the allocator hands them back to the system and faults them in again;
    bench/RESULTS.md section 32).

    One thread at a time: the batch returned is the same buffer, overwritten by the next call. Slots the call
    does not fill are zero."""

    def __init__(self, batch: int, in_h: int, in_w: int):
        self.batch = np.zeros((batch, 3, in_h, in_w), dtype=np.float32)
        self._planes = _planes((0, 0))
        self._filled = 0     # slots holding a frame from an earlier call

    def __call__(self, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, list[Letterbox]]:
        if len(frames) > len(self.batch):
            raise ValueError(f"{len(frames)} frames for a detector batch of {len(self.batch)}")
        boxes = []
        for slot, frame in zip(self.batch, frames):
            if self._planes[0].shape != frame.shape[:2]:
                self._planes = _planes(frame.shape[:2])
            boxes.append(_letterbox_into(frame, slot, *self._planes))
        self.batch[len(frames):self._filled] = 0.0
        self._filled = len(frames)
        return self.batch, boxes
