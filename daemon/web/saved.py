"""The page's one write: "save frame" keeps the camera's current frame as a PNG (for a bug report, a calibration
set, an ROI to measure), at most max_files in the folder, the oldest deleted first."""
from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from daemon.atomic_write import write_atomic

_SAVED = re.compile(r".+-\d{8}T\d{6}\.\d{3}Z\.png")   # saved_name()'s: the only files the bound removes


def saved_name(camera: str, captured_at: float) -> str:
    """<camera>-<UTC capture time to the ms>.png, e.g. dock1-20261201T223015.123Z.png."""
    dt = datetime.fromtimestamp(captured_at, tz=timezone.utc)
    return f"{camera}-{dt.strftime('%Y%m%dT%H%M%S')}.{dt.microsecond // 1000:03d}Z.png"


def save_frame(folder: str, camera: str, image: np.ndarray, captured_at: float, max_files: int) -> Path:
    import cv2

    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("PNG encoding failed")
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    path = root / saved_name(camera, captured_at)
    write_atomic(path, buf.tobytes())
    pngs = sorted((p for p in root.glob("*.png") if _SAVED.fullmatch(p.name) and p.is_file()),
                  key=lambda p: (p.stat().st_mtime, p.name))
    for old in pngs[:max(0, len(pngs) - max_files)]:
        try:
            os.unlink(old)
        except FileNotFoundError:
            pass
    return path
