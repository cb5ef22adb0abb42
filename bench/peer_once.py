"""RapidOCR as a whole process, the way a user would script it: `python bench/peer_once.py 1.4.4|3.10 IMAGE|DIR...`.

Prints one JSON line per image in `ocr-daemon once --json`'s shape (image, texts with text and box), so
bench/process_bench.py scores both alike. Each engine runs with its own default models and settings.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def _paths(args: list[str]) -> list[str]:
    out = []
    for arg in args:
        p = Path(arg)
        out += [str(f) for f in sorted(p.iterdir()) if f.suffix.lower() in SUFFIXES] if p.is_dir() else [arg]
    return out


def engine(version: str):
    """A function image (path or BGR array) -> [(text, box)] for RapidOCR `version`, with its defaults."""
    if version == "1.4.4":
        from rapidocr_onnxruntime import RapidOCR

        ocr = RapidOCR()

        def read(path):
            found, _ = ocr(path)
            return [(text, box) for box, text, _score in (found or [])]
    elif version == "3.10":
        from rapidocr import RapidOCR

        ocr = RapidOCR()

        def read(path):
            out = ocr(path)
            if out.txts is None:
                return []
            return list(zip(out.txts, out.boxes.tolist()))
    else:
        raise SystemExit(f"unknown RapidOCR version {version!r} (1.4.4 or 3.10)")
    return read


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("version", choices=("1.4.4", "3.10"), help="the RapidOCR to run")
    ap.add_argument("images", nargs="+", help="image files or folders of images")
    args = ap.parse_args(argv)
    read = engine(args.version)
    for path in _paths(args.images):
        lines = read(path)
        print(json.dumps({"image": path, "texts": [{"text": t, "box": [[float(x), float(y)] for x, y in b]}
                                                   for t, b in lines]}, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
