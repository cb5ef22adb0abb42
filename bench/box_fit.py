"""How thick the reported boxes are against the ground truth, by line height: this pipeline and RapidOCR.

    python bench/box_fit.py DIR [--json OUT]

DIR is a folder written by bench/cpu_sets.py or daemon.samples.render (with labels.jsonl). Per ground-truth
line: the thickest box whose centre falls on it, over its own thickness (daemon.ocr.evaluate.thickness_ratio).
The evaluation gives a reading to the line that holds at least half of its box, so a box much thicker than
its line loses a line that was read (bench/RESULTS.md section 20).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon import config  # noqa: E402
from daemon.ocr import evaluate  # noqa: E402
from daemon.ocr.pipeline import OcrPipeline  # noqa: E402
from daemon.samples.render import load_dataset  # noqa: E402

BANDS = ((0, 16), (16, 20), (20, 26), (26, 34), (34, 10_000))   # ground-truth thickness, frame pixels


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images")
    ap.add_argument("--json", help="write the table here")
    args = ap.parse_args()
    from rapidocr_onnxruntime import RapidOCR

    pipeline = OcrPipeline.from_config(config.from_dict({"backend": "onnxruntime"}))
    peer = RapidOCR()
    rows = []     # (truth thickness, ours / truth, RapidOCR / truth); NaN where no box falls on the line
    for sample in load_dataset(args.images):
        ours = [line.box for line in pipeline.run(sample.image).lines]
        found, _ = peer(sample.image)
        theirs = [box for box, _, _ in (found or [])]
        for line in sample.lines:
            ratios = [evaluate.thickness_ratio(line.box, boxes) for boxes in (ours, theirs)]
            rows.append((evaluate.thickness(line.box), *(np.nan if r is None else r for r in ratios)))
    a = np.array(rows)
    both = ~np.isnan(a).any(axis=1)
    table = []
    print("| ground-truth line | n | this pipeline / truth | RapidOCR 1.4.4 / truth |\n|---|---:|---:|---:|")
    for lo, hi in BANDS:
        m = both & (a[:, 0] >= lo) & (a[:, 0] < hi)
        if m.any():
            ours_med, theirs_med = float(np.median(a[m, 1])), float(np.median(a[m, 2]))
            table.append({"from_px": lo, "to_px": hi, "lines": int(m.sum()), "ours": round(ours_med, 3),
                          "rapidocr": round(theirs_med, 3)})
            band = f"{lo}–{hi} px" if hi < BANDS[-1][1] else f"{lo} px and over"
            print(f"| {band} | {int(m.sum())} | {ours_med:.2f} | {theirs_med:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"images": args.images, "bands": table}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
