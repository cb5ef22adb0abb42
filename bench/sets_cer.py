"""CER and line recall of this pipeline on rendered or photographed sets, with ocr.* overrides.

    python bench/sets_cer.py '{"model_set": "pp-ocrv6-small"}' build/sets/hard40 build/sets/hard120b bench/photos

Each DIR holds images and a labels.jsonl (daemon.samples.render, bench/cpu_sets.py, bench/photos). Ours
only, one process; bench/wrong_lines.py compares line by line with RapidOCR.
"""
from __future__ import annotations

import json
import sys

from daemon import config
from daemon.ocr import evaluate
from daemon.ocr.pipeline import OcrPipeline
from daemon.samples.render import load_dataset


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    overrides, sets = json.loads(sys.argv[1]), sys.argv[2:]
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
