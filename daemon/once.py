"""`ocr-daemon once IMAGE...`: OCR each image once and print one JSON line per image.

Each line has the raw text lines (no filters), the codes read with the first camera's ``codes`` formats
(``[]`` = none read) and the timings.

An unreadable image prints a line with an "error" and the others still run; the exit code is then 1.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from daemon import config
from daemon.imageio import ImageError, read_image

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, TIFF, BMP, WebP, ...)")
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
    failures = 0
    for path in args.images:
        t0 = time.perf_counter()
        try:
            frame = read_image(path)
        except ImageError as exc:
            failures += 1
            _emit({"image": path, "error": str(exc)}, args.json)
            continue
        decode_ms = (time.perf_counter() - t0) * 1000.0
        result = pipeline.run(frame)
        t_codes = time.perf_counter()
        codes = reader_for(code_formats).read(frame) if code_formats else []
        codes_ms = (time.perf_counter() - t_codes) * 1000.0
        timing = {"decode": round(decode_ms, 3), **result.timing_ms, "codes": round(codes_ms, 3),
                  "total": round((time.perf_counter() - t0) * 1000.0, 3)}
        _emit({"image": path, "texts": [line.to_json() for line in result.lines],
               "codes": [code.to_json() for code in codes], "timing_ms": timing}, args.json)
    return 1 if failures else 0


def _emit(obj: dict, compact: bool) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=None if compact else 2), flush=True)
