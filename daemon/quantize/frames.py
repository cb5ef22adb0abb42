"""Representative frames for calibration: a folder of images or a video file, split into calibration and held-out.

Calibration data must be representative (the source article's blurred invoices broke INT8 in production),
so an unreadable image is an error naming the file, not something to skip quietly. Each frame has a kind:
the name of the sub-folder it was read from (``calib/night/*.png`` is "night") and its labels.jsonl
record's "kind", joined by "/" when both are given ("hard/motion"), else "frames"; and a measured
hardness (daemon.quantize.hardness). The held-out share is taken from every kind, so the report
measures each.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daemon.imageio import ImageError, read_image
from daemon.quantize.hardness import Hardness, measure
from daemon.samples.render import GroundTruthLine, read_kinds, read_labels

MIN_FRAMES = 8
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v"}


class CalibrationInputError(ValueError):
    """Calibration input that cannot be used; the message names the path (exit code 2)."""


DEFAULT_KIND = "frames"


@dataclass(frozen=True)
class Frame:
    name: str
    image: np.ndarray                                   # BGR uint8
    truth: tuple[GroundTruthLine, ...] | None = None    # from labels.jsonl beside the images, when present
    kind: str = DEFAULT_KIND
    hardness: Hardness | None = None

    @property
    def hard(self) -> bool:
        return self.hardness is not None and self.hardness.hard


@dataclass(frozen=True)
class FrameSplit:
    calibration: tuple[Frame, ...]
    held_out: tuple[Frame, ...]


def load_frames(path: Path | str, max_frames: int = 400) -> list[Frame]:
    """Frames from a folder of images (sorted by name, then those of each sub-folder) or evenly spaced
    frames of a video file; each with its kind and measured hardness."""
    path = Path(path)
    if path.is_dir():
        frames = _folder(path, DEFAULT_KIND, max_frames)
        for sub in sorted(p for p in path.iterdir() if p.is_dir()):
            frames += _folder(sub, sub.name, max_frames - len(frames))
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


def _folder(path: Path, kind: str, max_frames: int) -> list[Frame]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    try:
        labels, kinds = read_labels(path), read_kinds(path)
    except ValueError as exc:
        raise CalibrationInputError(str(exc)) from None
    frames = []
    for p in files[:max(0, max_frames)]:
        try:
            image = read_image(p)
        except ImageError as exc:
            raise CalibrationInputError(f"unreadable calibration image: {exc}") from None
        truth = labels.get(p.name)
        name = p.name if kind == DEFAULT_KIND else f"{kind}/{p.name}"
        # a sub-folder's name and the record's kind both count: "hard/motion" is in "hard" and in "hard/motion"
        own = "/".join(k for k in (kind if kind != DEFAULT_KIND else "", kinds.get(p.name, "")) if k)
        frames.append(Frame(name, image, truth, own or DEFAULT_KIND,
                            measure(image, [ln.box for ln in truth or ()])))
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
                frames.append(Frame(f"{path.name}#{index}", image, hardness=measure(image)))
            index += 1
        return frames
    finally:
        cap.release()


def split_frames(frames: list[Frame], held_out: float, seed: int = 0) -> FrameSplit:
    """The held-out share taken from each group of frames (kind, and hard or not) after a seeded shuffle,
    so every group given is measured; a group of one frame goes to calibration. Both parts keep at least
    one frame."""
    if not 0.0 <= held_out < 1.0:
        raise CalibrationInputError(f"--held-out {held_out}: must be in [0, 1)")
    groups: dict[tuple[str, bool], list[int]] = {}
    for i, f in enumerate(frames):
        groups.setdefault((f.kind, f.hard), []).append(i)
    rng = random.Random(seed)
    held: list[int] = []
    for key in sorted(groups):
        members = groups[key]
        rng.shuffle(members)
        if held_out > 0 and len(members) > 1:
            held += members[len(members) - max(1, round(held_out * len(members))):]
    if held_out > 0 and not held:
        held = [rng.randrange(len(frames))]
    if len(held) >= len(frames):
        held = held[1:]
    held_set = set(held)
    return FrameSplit(tuple(f for i, f in enumerate(frames) if i not in held_set),
                      tuple(f for i, f in enumerate(frames) if i in held_set))
