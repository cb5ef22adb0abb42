"""`ocr-daemon once IMAGE|FOLDER...`: OCR each image once and print one JSON line per image.

Each line has the raw text lines (no filters), the codes read with the first camera's ``codes`` formats
(``[]`` = none read) and the timings. A folder stands for its image files, in name order. Images go
through the pipeline as a stream: with two frames in flight (ocr.frames_in_flight) the next image is
detected while this one is recognized.

An unreadable image prints a line with an "error" and the others still run; the exit code is then 1.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np

from daemon import config
from daemon.imageio import IMAGE_SUFFIXES, DecodeLimits, ImageError, read_image
from daemon.printable import printable

log = logging.getLogger(__name__)
T = TypeVar("T")

# A folder camera's default decode limits (cameras[].max_frame_pixels, max_file_bytes), checked from the header
# before any pixel is decoded: a small PNG that decodes to gigabytes is refused, not read.
ONCE_LIMITS = DecodeLimits(config.CameraConfig.__dataclass_fields__["max_frame_pixels"].default,
                           config.CameraConfig.__dataclass_fields__["max_file_bytes"].default)

# Images decoded ahead of the pipeline: two keep the worker busy while a frame is detected and the one
# before it recognized, and bound the memory to a few frames.
READ_AHEAD = 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files (PNG, JPEG, TIFF, BMP, WebP, ...) or folders of them")
    p.add_argument("--config", default=None, help="config file (default: config.yaml if present, else defaults)")
    p.add_argument("--json", action="store_true", help="compact JSON lines (the default is indented)")


def main(args: argparse.Namespace) -> int:
    cfg = config.load_or_defaults(args.config, read_secrets=False)   # a ConfigError: cli.main's one line, exit 2
    from daemon.backends.base import BackendError
    from daemon.ocr.models import ModelFileError
    from daemon.ocr.pipeline import OcrPipeline

    try:
        pipeline = OcrPipeline.from_config(cfg)
    except (ModelFileError, BackendError) as exc:
        print(f"cannot load the OCR models: {exc}", file=sys.stderr)
        return 1
    from daemon.codes.reader import CodeReader
    code_formats = tuple(cfg.cameras[0].codes)
    # Unrelated images, not a camera's stream: every format in every image (a camera's reader learns instead)
    codes_reader = CodeReader(code_formats, learn=False) if code_formats else None
    paths = image_paths(args.images)
    loaded: dict[int, Loaded] = {}      # images between reading and their result (a few at most)

    def frames():
        for i, item in enumerate(read_ahead(paths, lambda path: load(path, codes_reader))):
            loaded[i] = item       # keyed by position: a file may be named twice
            yield i, item.frame

    failures = 0
    for i, result in pipeline.run_stream(frames()):
        item = loaded.pop(i)
        if result is None:
            failures += 1
            _emit({"image": printable(paths[i]), "error": printable(item.error)}, args.json)
            continue
        timing = {"decode": round(item.decode_ms, 3), **result.timing_ms, "codes": round(item.codes_ms, 3)}
        timing["total"] = round(sum(timing.values()), 3)
        _emit({"image": printable(paths[i]), "texts": [line.to_json() for line in result.lines],
               "codes": [code.to_json() for code in item.codes], "timing_ms": timing}, args.json)
    return 1 if failures else 0


@dataclass(frozen=True)
class Loaded:
    """One image as read from disk, with the codes on it: what `once` needs besides the OCR."""
    frame: np.ndarray | None
    error: str = ""
    codes: tuple = ()
    decode_ms: float = 0.0
    codes_ms: float = 0.0


def load(path: str, codes_reader) -> Loaded:
    """Decode one image and read its codes (they need the pixels, not the OCR)."""
    t0 = time.perf_counter()
    try:
        frame = read_image(path, ONCE_LIMITS)
    except ImageError as exc:
        return Loaded(None, error=str(exc), decode_ms=(time.perf_counter() - t0) * 1000.0)
    t1 = time.perf_counter()
    codes = tuple(codes_reader.read(frame)) if codes_reader is not None else ()
    return Loaded(frame, codes=codes, decode_ms=(t1 - t0) * 1000.0, codes_ms=(time.perf_counter() - t1) * 1000.0)


def read_ahead(paths: Sequence[str], load_one: Callable[[str], T], depth: int = READ_AHEAD) -> Iterator[T]:
    """load_one(path) for each path, in order, up to `depth` images ahead on one worker thread: JPEG
    decoding and code reading release the GIL, so they run while the models hold the cores' attention
    between their calls (measured when done in line: bench/RESULTS.md section 23)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as worker:
        pending: deque[Future[T]] = deque()
        for path in paths:
            pending.append(worker.submit(load_one, path))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def image_paths(args: list[str]) -> list[str]:
    """Files as given; a folder becomes its image files in name order (other files are skipped)."""
    out = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            out += [str(p) for p in sorted(path.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        else:
            out.append(arg)
    return out


def _emit(obj: dict, compact: bool) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=None if compact else 2), flush=True)
