"""What reading codes costs per 1280x960 frame: median ms of CodeReader.read over rendered labels,
per format set, with and without a real Code 128 / QR code on the label.

    .venv/bin/python bench/codes_cost.py [--calls 50]
"""
from __future__ import annotations

import argparse
import statistics
import time

from daemon.codes.reader import CodeReader
from daemon.samples.codes import paste_code
from daemon.samples.render import render_label

SETS = {
    "Code128": ["Code128"],
    "Code128,QRCode": ["Code128", "QRCode"],
    "Code128,QRCode,DataMatrix": ["Code128", "QRCode", "DataMatrix"],
    "AllReadable": ["AllReadable"],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=50)
    args = ap.parse_args()
    frames = {}
    for seed in (100, 101, 102, 103, 104):
        img = render_label(seed).image
        frames[f"no code {seed}"] = img
    img = render_label(105).image
    frames["Code128"] = paste_code(img, "EE123456785CN", 820, 40, "Code128", 2, height_px=80)
    frames["QRCode"] = paste_code(img, "EE123456785CN", 1000, 40, "QRCode", 4)
    print("| formats | frame | codes found | median ms |\n|---|---|---:|---:|")
    for name, formats in SETS.items():
        reader = CodeReader(formats)
        for label, frame in (("no code (5 labels)", None), ("Code 128 on label", "Code128"),
                             ("QR on label", "QRCode")):
            imgs = [v for k, v in frames.items() if k.startswith("no code")] if frame is None else [frames[frame]]
            found, times = 0, []
            for i in range(args.calls):
                im = imgs[i % len(imgs)]
                t0 = time.perf_counter()
                codes = reader.read(im)
                times.append((time.perf_counter() - t0) * 1000.0)
                found = max(found, len(codes))
            print(f"| {name} | {label} | {found} | {statistics.median(times):.1f} |")


if __name__ == "__main__":
    main()
