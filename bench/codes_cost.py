"""What reading codes costs per 1280x960 frame, and what it reads, format by format (issue 33 item 2).

Frames: every format of daemon/samples/codes.py's FORMAT_SAMPLES as a real code (zxing-cpp's writer) on a rendered
label, in each SCENE_VARIANT (plain, small, blurred, perspective, glare, turned, inverted), ``--seeds`` labels
each; and rendered labels with no code (text and a drawn bar pattern only: the frame that costs zxing-cpp most).
Ways of reading, timed interleaved on the same frames (the order rotates per frame):

- ``old default``: Code 128 + QR in one zxing-cpp call with its default options, as the daemon read them
  before issue 33;
- ``all, naive``: every format of the default list in one call with zxing-cpp's default options;
- ``default``: the daemon's reader with the default list (daemon/codes/reader.py);
- ``listed Code128,QRCode``: the daemon's reader for a config that lists only Code 128 and QR.

Also reads bench/photos-b/4_barcodes.jpg (four photographed ISBN EAN-13 codes). Prints markdown tables; ``--json``
writes every figure.

    .venv/bin/python bench/codes_cost.py [--seeds 3] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import cv2

from daemon.codes import CODE_FORMATS
from daemon.codes.reader import CodeReader, config_name, reader_for
from daemon.samples.codes import FORMAT_SAMPLES, SCENE_VARIANTS, code_scene
from daemon.samples.render import render_label

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "bench" / "photos-b" / "4_barcodes.jpg"
PHOTO_CODES = {"9787564350840", "9783319200064", "9787118081473", "9787122276124"}


def _zxing(formats):
    import zxingcpp
    wanted = zxingcpp.barcode_formats_from_str(",".join(formats))
    return lambda image: [(config_name(b.format.name), b.text) for b in zxingcpp.read_barcodes(image, formats=wanted)]


def _reader(reader: CodeReader):
    return lambda image: [(c.format, c.text) for c in reader.read(image)]


def strategies() -> dict:
    return {
        "old default": _zxing(["Code128", "QRCode"]),
        "all, naive": _zxing(CODE_FORMATS),
        "default": _reader(reader_for(CODE_FORMATS)),
        "listed Code128,QRCode": _reader(CodeReader(["Code128", "QRCode"])),
    }


def _q(values, p):
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if len(values) > 1 else values[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3, help="labels per format and variant")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    ways = strategies()
    names = list(ways)
    reads = {n: {} for n in names}                      # name -> (format, variant) -> [bool]
    ms_code = {n: [] for n in names}
    ms_none = {n: [] for n in names}
    turn = 0

    def timed(name, image):
        t0 = time.perf_counter()
        got = ways[name](image)
        return got, (time.perf_counter() - t0) * 1000.0

    for fmt, sample in FORMAT_SAMPLES.items():
        for variant in SCENE_VARIANTS:
            for seed in range(300, 300 + args.seeds):
                frame = code_scene(fmt, seed, variant)
                turn += 1
                for name in names[turn % len(names):] + names[:turn % len(names)]:
                    got, ms = timed(name, frame)
                    ms_code[name].append(ms)
                    hit = any(f in sample.reported and t == sample.text for f, t in got)
                    reads[name].setdefault((fmt, variant), []).append(hit)
    blanks = [render_label(seed).image for seed in range(100, 110)]
    for _ in range(3):
        for frame in blanks:
            turn += 1
            for name in names[turn % len(names):] + names[:turn % len(names)]:
                ms_none[name].append(timed(name, frame)[1])
    photo = cv2.imread(str(PHOTO))
    photo_read = {n: sorted({t for _, t in ways[n](photo)} & PHOTO_CODES) for n in names}

    def rate(name, fmt=None, variant=None):
        hits = [h for (f, v), hs in reads[name].items() if fmt in (None, f) and variant in (None, v) for h in hs]
        return sum(hits), len(hits)

    print(f"zxing-cpp reading 1280x960 frames, {args.seeds} labels per format and variant; "
          f"{platform.processor() or platform.machine()}, {len(ms_code[names[0]])} code frames, "
          f"{len(ms_none[names[0]])} frames without a code\n")
    print("| way | frames with a code: ms p50 | p95 | frames without: ms p50 | p95 | codes read | photo ISBNs |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for n in names:
        hit, total = rate(n)
        print(f"| {n} | {statistics.median(ms_code[n]):.1f} | {_q(ms_code[n], 95):.1f} | "
              f"{statistics.median(ms_none[n]):.1f} | {_q(ms_none[n], 95):.1f} | {hit}/{total} | "
              f"{len(photo_read[n])}/{len(PHOTO_CODES)} |")
    print("\nRead per format (all variants):\n")
    print("| format | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names))
    for fmt in FORMAT_SAMPLES:
        print(f"| {fmt} | " + " | ".join("{}/{}".format(*rate(n, fmt=fmt)) for n in names) + " |")
    print("\nRead per variant (all formats):\n")
    print("| variant | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names))
    for variant in SCENE_VARIANTS:
        print(f"| {variant} | " + " | ".join("{}/{}".format(*rate(n, variant=variant)) for n in names) + " |")
    if args.json:
        doc = {"seeds": args.seeds, "machine": platform.node(), "processor": platform.processor(),
               "formats": list(FORMAT_SAMPLES), "variants": list(SCENE_VARIANTS),
               "ways": {n: {"ms_with_code_p50": statistics.median(ms_code[n]), "ms_with_code_p95": _q(ms_code[n], 95),
                            "ms_without_code_p50": statistics.median(ms_none[n]),
                            "ms_without_code_p95": _q(ms_none[n], 95),
                            "read": dict(zip(("hits", "frames"), rate(n))),
                            "read_per_format": {f: dict(zip(("hits", "frames"), rate(n, fmt=f)))
                                                for f in FORMAT_SAMPLES},
                            "read_per_variant": {v: dict(zip(("hits", "frames"), rate(n, variant=v)))
                                                 for v in SCENE_VARIANTS},
                            "photo_isbns_read": photo_read[n]} for n in names}}
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
