"""Detector input size and 0/180 classifier: accuracy and speed side by side in one run (RapidOCR as reference).

    python -m daemon.samples.render /tmp/bench-labels -n 21 --seed 100
    python bench/det_size_sweep.py /tmp/bench-labels [--json FILE]

Each image goes through every variant in turn, so a noisy neighbour hits all of them alike.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from daemon import config
from daemon.ocr import evaluate
from daemon.ocr.pipeline import OcrPipeline
from daemon.samples.render import load_dataset

VARIANTS = [  # name, det_input_size [h, w], angle classifier
    ("640x640, cls on", (640, 640), True), ("736x736, cls on", (736, 736), True),
    ("736x960, cls on", (736, 960), True), ("960x960, cls on", (960, 960), True),
    ("1280x1280, cls on", (1280, 1280), True), ("736x960, cls off", (736, 960), False),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from rapidocr_onnxruntime import RapidOCR

    samples = load_dataset(args.images)
    runners = {name: OcrPipeline.from_config(config.from_dict({"backend": "onnxruntime", "ocr": {
        "det_input_size": list(size), "use_angle_classifier": cls}})).run for name, size, cls in VARIANTS}
    peer = RapidOCR()
    runners["rapidocr"] = lambda img: peer(img)[0] or []
    times = {n: [] for n in runners}
    scores = {n: [] for n in runners}
    upside = {n: [] for n in runners}
    for run in runners.values():       # warm-up
        run(samples[0].image)
    for s in samples:
        truth = [(l.text, l.box) for l in s.lines]
        for name, run in runners.items():
            t0 = time.perf_counter()
            out = run(s.image)
            times[name].append((time.perf_counter() - t0) * 1000.0)
            lines = [(t, b) for b, t, _ in out] if name == "rapidocr" else [(l.text, l.box) for l in out.lines]
            acc = evaluate.score_image(truth, lines)
            scores[name].append(acc)
            if "upside" in s.name:
                upside[name].append(acc)
    report = {}
    print("| det input, classifier | CER | line recall | upside-down CER | upside-down recall | p50 ms | p95 ms | images/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in runners:
        a, u, t = evaluate.combine(scores[name]), evaluate.combine(upside[name]), np.asarray(times[name])
        r = report[name] = {"cer": a.cer, "line_recall": a.line_recall, "upside_down_cer": u.cer,
                            "upside_down_recall": u.line_recall, "p50_ms": float(np.percentile(t, 50)),
                            "p95_ms": float(np.percentile(t, 95)), "images_per_s": 1000.0 * len(t) / t.sum()}
        print(f"| {name} | {r['cer'] * 100:.2f} % | {r['line_recall'] * 100:.1f} % | {r['upside_down_cer'] * 100:.2f} % "
              f"| {r['upside_down_recall'] * 100:.1f} % | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['images_per_s']:.2f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
