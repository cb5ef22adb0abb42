"""Representative frames for calibration: a folder of images or a video file, split into calibration and held-out.

Calibration data must be representative (the source article's blurred invoices broke INT8 in production),
so an unreadable image is an error naming the file, not something to skip quietly.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daemon.imageio import ImageError, read_image
from daemon.samples.render import GroundTruthLine, read_labels

MIN_FRAMES = 8
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v"}


class CalibrationInputError(ValueError):
    """Calibration input that cannot be used; the message names the path (exit code 2)."""


@dataclass(frozen=True)
class Frame:
    name: str
    image: np.ndarray                                   # BGR uint8
    truth: tuple[GroundTruthLine, ...] | None = None    # from labels.jsonl beside the images, when present


@dataclass(frozen=True)
class FrameSplit:
    calibration: tuple[Frame, ...]
    held_out: tuple[Frame, ...]


def load_frames(path: Path | str, max_frames: int = 400) -> list[Frame]:
    """Frames from a folder of images (sorted by name) or evenly spaced frames of a video file."""
    path = Path(path)
    if path.is_dir():
        frames = _folder(path, max_frames)
    elif path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        frames = _video(path, max_frames)
    elif path.exists():
        raise CalibrationInputError(f"--images {path}: neither a folder of images nor a video file "
                                    f"({', '.join(sorted(VIDEO_SUFFIXES))})")
    else:
        raise CalibrationInputError(f"--images {path}: does not exist")
    if len(frames) < MIN_FRAMES:
        raise CalibrationInputError(
            f"--images {path}: {len(frames)} usable frames; calibration needs at least {MIN_FRAMES} "
            f"representative frames (more is better: 50-200 covering blur, angle and lighting)")
    return frames


def _folder(path: Path, max_frames: int) -> list[Frame]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    labels = read_labels(path)
    frames = []
    for p in files[:max_frames]:
        try:
            image = read_image(p)
        except ImageError as exc:
            raise CalibrationInputError(f"unreadable calibration image: {exc}") from None
        frames.append(Frame(p.name, image, labels.get(p.name)))
    return frames


def _video(path: Path, max_frames: int) -> list[Frame]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise CalibrationInputError(f"--images {path}: the video cannot be opened")
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        step = max(1, total // max_frames) if total > 0 else 1   # spread over the whole video
        frames, index = [], 0
        while len(frames) < max_frames:
            ok, image = cap.read()
            if not ok:
                break
            if index % step == 0 and image is not None:
                frames.append(Frame(f"{path.name}#{index}", image))
            index += 1
        return frames
    finally:
        cap.release()


def split_frames(frames: list[Frame], held_out: float, seed: int = 0) -> FrameSplit:
    """A seeded shuffle, then the last share is held out; both parts keep at least one frame."""
    if not 0.0 <= held_out < 1.0:
        raise CalibrationInputError(f"--held-out {held_out}: must be in [0, 1)")
    order = list(range(len(frames)))
    random.Random(seed).shuffle(order)
    n_held = min(len(frames) - 1, max(1, round(held_out * len(frames)))) if held_out > 0 else 0
    cut = len(frames) - n_held
    return FrameSplit(tuple(frames[i] for i in sorted(order[:cut])), tuple(frames[i] for i in sorted(order[cut:])))
