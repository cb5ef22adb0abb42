"""Every line this pipeline or RapidOCR gets wrong on a rendered set, and the CER of both.

    python -m daemon.samples.render /tmp/set60 -n 60 --seed 7
    python bench/wrong_lines.py /tmp/set60 [--ocr '{"rec_packing": false, "rec_tail_batch": 0}'] [--peer 3.10]

--ocr overrides keys of the `ocr` config section (JSON), so two settings can be compared line by line
(diff the outputs). Texts are compared as in daemon/ocr/evaluate.py: NFKC-folded, whitespace removed.
"""
from __future__ import annotations

import argparse
import json

from daemon import config
from daemon.ocr import evaluate
from daemon.ocr.pipeline import OcrPipeline
from daemon.samples.render import load_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", help="a folder written by daemon.samples.render (with labels.jsonl)")
    ap.add_argument("--ocr", default="{}", help="JSON object of ocr.* settings to override")
    ap.add_argument("--peer", default="1.4.4", choices=("1.4.4", "3.10"), help="the RapidOCR to compare with")
    args = ap.parse_args()

    from peer_once import engine      # bench/ is on sys.path when this file runs as a script

    pipeline = OcrPipeline.from_config(config.from_dict({"backend": "onnxruntime", "ocr": json.loads(args.ocr)}))
    peer = engine(args.peer)
    ours, theirs = [], []
    for sample in load_dataset(args.images):
        truth = [(line.text, line.box) for line in sample.lines]
        a = evaluate.score_image(truth, [(line.text, line.box) for line in pipeline.run(sample.image).lines])
        b = evaluate.score_image(truth, peer(sample.image))
        for x, y in zip(a.lines, b.lines):
            if x.edits or y.edits:
                print(f"{sample.name:28s} {x.truth!r:34s} ours {x.predicted!r} ({x.edits})  "
                      f"RapidOCR {args.peer} {y.predicted!r} ({y.edits})")
        ours.append(a)
        theirs.append(b)
    a, b = evaluate.combine(ours), evaluate.combine(theirs)
    print(f"lines {len(a.lines)}  CER ours {a.cer:.4%} RapidOCR {b.cer:.4%}  "
          f"line recall ours {a.line_recall:.2%} RapidOCR {b.line_recall:.2%}")


if __name__ == "__main__":
    main()
