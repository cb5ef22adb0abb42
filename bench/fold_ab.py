"""The CPU's folded models against the files as shipped, in one process, image by image.

    python bench/fold_ab.py build/sets/labels40 [--ocr '{"model_set": "pp-ocrv4"}'] [--json OUT]

Two pipelines of the same config, `ocr.cpu_fold` false and true, take turns on every image of a set written
by daemon.samples.render (bench/cpu_sets.py). Prints the readings that differ (there should be none: the
fold is exact up to float rounding), CER and line recall of both, and each stage's median and p95 in ms per
image. The folded copies go to a temporary ocr.cpu_fold_dir, so the first load includes writing them.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np

from daemon import config
from daemon.ocr import evaluate
from daemon.ocr.pipeline import OcrPipeline
from daemon.samples.render import load_dataset

SYSTEMS = {"shipped": False, "folded": True}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", help="a folder written by daemon.samples.render (with labels.jsonl)")
    ap.add_argument("--ocr", default="{}", help="JSON object of ocr.* settings for both pipelines")
    ap.add_argument("--json", help="also write the report here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as folded:
        pipes, load_s = {}, {}
        for name, fold in SYSTEMS.items():
            cfg = config.from_dict({"backend": "onnxruntime",
                                    "ocr": {**json.loads(args.ocr), "cpu_fold": fold, "cpu_fold_dir": folded}})
            t = time.perf_counter()
            pipes[name] = OcrPipeline.from_config(cfg)
            load_s[name] = time.perf_counter() - t
        scores = {name: [] for name in pipes}
        timings = {name: [] for name in pipes}
        differing = []
        for sample in load_dataset(args.images):
            truth = [(line.text, line.box) for line in sample.lines]
            texts = {}
            for name, pipe in pipes.items():
                result = pipe.run(sample.image)
                texts[name] = [line.text for line in result.lines]
                scores[name].append(evaluate.score_image(truth, [(line.text, line.box) for line in result.lines]))
                timings[name].append(result.timing_ms)
            if texts["shipped"] != texts["folded"]:
                differing.append({"image": sample.name, **texts})
                print(f"{sample.name}: shipped {texts['shipped']} folded {texts['folded']}")
        for pipe in pipes.values():
            pipe.close()

    report = {"images": args.images, "ocr": json.loads(args.ocr), "differing_images": differing, "systems": {}}
    for name in pipes:
        acc = evaluate.combine(scores[name])
        stages = sorted({k for t in timings[name] for k in t})
        ms = {k: {"p50": float(np.median([t.get(k, 0.0) for t in timings[name]])),
                  "p95": float(np.percentile([t.get(k, 0.0) for t in timings[name]], 95))} for k in stages}
        report["systems"][name] = {"load_s": load_s[name], "cer": acc.cer, "line_recall": acc.line_recall,
                                   "lines": len(acc.lines), "stage_ms": ms}
        print(f"{name:8s} load {load_s[name]:.2f} s  CER {acc.cer:.4%}  line recall {acc.line_recall:.2%}  "
              + "  ".join(f"{k} {v['p50']:.1f} ({v['p95']:.1f})" for k, v in ms.items()))
    a, b = (report["systems"][n]["stage_ms"] for n in SYSTEMS)
    print("shipped / folded, medians: " + "  ".join(f"{k} {a[k]['p50'] / b[k]['p50']:.2f}x" for k in a if b[k]["p50"]))
    print(f"images with different readings: {len(differing)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
