"""CER and line recall of this pipeline on rendered or photographed sets, with ocr.* overrides.

    python bench/sets_cer.py '{"model_set": "pp-ocrv6-small"}' build/sets/hard40 build/sets/hard120b bench/photos

Each DIR holds images and a labels.jsonl (daemon.samples.render, bench/cpu_sets.py, bench/photos). Ours
only, one process; bench/wrong_lines.py compares line by line with RapidOCR.
"""
from __future__ import annotations

import argparse
import json

from daemon import config
from daemon.ocr import evaluate
from daemon.ocr.pipeline import OcrPipeline
from daemon.samples.render import load_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ocr", type=json.loads, help="JSON object of ocr.* settings to override ('{}' for none)")
    ap.add_argument("sets", nargs="+", help="folders of images with a labels.jsonl")
    args = ap.parse_args()
    overrides, sets = args.ocr, args.sets
    pipeline = OcrPipeline.from_config(config.from_dict({"backend": "onnxruntime", "ocr": overrides}))
    print(f"ocr overrides: {overrides}")
    for folder in sets:
        scores = []
        for sample in load_dataset(folder):
            truth = [(line.text, line.box) for line in sample.lines]
            found = [(line.text, line.box) for line in pipeline.run(sample.image).lines]
            scores.append(evaluate.score_image(truth, found))
        acc = evaluate.combine(scores)
        print(f"{folder}: {len(acc.lines)} lines, CER {acc.cer:.4%}, line recall {acc.line_recall:.2%}", flush=True)
    pipeline.close()


if __name__ == "__main__":
    main()
