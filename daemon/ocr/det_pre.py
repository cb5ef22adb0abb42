"""Detector pre-processing: letterbox a BGR frame into the fixed input, normalized like PP-OCR.

The frame is scaled by one factor (aspect kept) into the top-left corner of the fixed input; the rest
is zero after normalization. The GPU kernel in daemon/gpu computes the same thing and is tested
against this function.
"""
from __future__ import annotations

from dataclasses import dataclass

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
    h, w = frame_bgr.shape[:2]
    lb = letterbox_geometry(h, w, in_h, in_w)
    # Resize in float so the result does not depend on OpenCV's 8-bit fixed-point rounding
    # (the GPU kernel interpolates in float too; the two must agree to 1e-3).
    resized = cv2.resize(frame_bgr.astype(np.float32), (lb.new_w, lb.new_h), interpolation=cv2.INTER_LINEAR)
    if out is None:
        out = np.empty((3, in_h, in_w), dtype=np.float32)
    out.fill(0.0)
    norm = resized * (1.0 / (255.0 * DET_STD)) - (DET_MEAN / DET_STD)
    out[:, : lb.new_h, : lb.new_w] = norm.transpose(2, 0, 1)
    return out, lb
