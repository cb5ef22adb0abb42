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
from pathlib import Path

from daemon import config
from daemon.imageio import IMAGE_SUFFIXES, ImageError, read_image

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files (PNG, JPEG, TIFF, BMP, WebP, ...) or folders of them")
    p.add_argument("--config", default=None, help="config.yaml (default: built-in defaults)")
    p.add_argument("--json", action="store_true", help="compact JSON lines (the default is indented)")


def main(args: argparse.Namespace) -> int:
    try:
        cfg = config.load_or_defaults(args.config)
    except config.ConfigError as exc:
        print(f"invalid config: {exc}", file=sys.stderr)
        return 2
    from daemon.backends.base import BackendError
    from daemon.ocr.models import ModelFileError
    from daemon.ocr.pipeline import OcrPipeline

    try:
        pipeline = OcrPipeline.from_config(cfg)
    except (ModelFileError, BackendError) as exc:
        print(f"cannot load the OCR models: {exc}", file=sys.stderr)
        return 1
    from daemon.codes.reader import reader_for
    code_formats = tuple(cfg.cameras[0].codes)
    decode_ms: dict[int, float] = {}
    errors: dict[int, str] = {}
    read: dict[int, object] = {}      # frames between reading and their result (two at most)
    paths = image_paths(args.images)

    def frames():
        for i, path in enumerate(paths):     # keyed by position: a file may be named twice
            t0 = time.perf_counter()
            try:
                frame = read_image(path)
            except ImageError as exc:
                errors[i] = str(exc)
                frame = None
            decode_ms[i] = (time.perf_counter() - t0) * 1000.0
            read[i] = frame
            yield i, frame

    failures = 0
    for i, result in pipeline.run_stream(frames()):
        frame = read.pop(i)
        if result is None:
            failures += 1
            _emit({"image": paths[i], "error": errors.pop(i)}, args.json)
            continue
        t_codes = time.perf_counter()
        codes = reader_for(code_formats).read(frame) if code_formats else []
        codes_ms = (time.perf_counter() - t_codes) * 1000.0
        timing = {"decode": round(decode_ms.pop(i), 3), **result.timing_ms, "codes": round(codes_ms, 3)}
        timing["total"] = round(sum(timing.values()), 3)
        _emit({"image": paths[i], "texts": [line.to_json() for line in result.lines],
               "codes": [code.to_json() for code in codes], "timing_ms": timing}, args.json)
    return 1 if failures else 0


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
