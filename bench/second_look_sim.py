"""Would a second look with PP-OCRv6 small's detector, only on frames the first pass read unsurely, reach
RapidOCR 3.10's CER on hard labels? A simulation from both model sets' per-image results, not a pipeline.

    python bench/second_look_sim.py build/sets/hard40 build/sets/labels40 build/sets/hard120b

Every image runs through the default set and through `ocr.model_set: pp-ocrv6-small`; a frame whose lowest
line confidence in the first pass is under a threshold takes the second set's result. Prints, per set and
threshold, how many frames would take the second look (its cost) and the CER that results.
"""
from __future__ import annotations

import sys

from daemon import config
from daemon.ocr import evaluate
from daemon.ocr.pipeline import OcrPipeline
from daemon.samples.render import load_dataset

SETS = {"default": {}, "v6 small": {"model_set": "pp-ocrv6-small"}}
THRESHOLDS = (0.6, 0.7, 0.8, 0.85, 0.9, 0.95)


def main() -> None:
    folders = sys.argv[1:] or sys.exit(__doc__)
    per_image: dict[str, dict[str, dict[str, tuple[int, int, float]]]] = {}   # folder -> image -> set -> result
    for name, ocr in SETS.items():
        pipeline = OcrPipeline.from_config(config.from_dict({"backend": "onnxruntime", "ocr": ocr}))
        for folder in folders:
            for sample in load_dataset(folder):
                lines = pipeline.run(sample.image).lines
                acc = evaluate.score_image([(l.text, l.box) for l in sample.lines], [(l.text, l.box) for l in lines])
                chars = sum(len(evaluate.fold_text(s.truth)) for s in acc.lines)
                lowest = min((l.confidence for l in lines), default=0.0)
                per_image.setdefault(folder, {}).setdefault(sample.name, {})[name] = (
                    sum(s.edits for s in acc.lines), chars, lowest)
        pipeline.close()
    for folder, images in per_image.items():
        chars = sum(r["default"][1] for r in images.values())
        cer = {name: sum(r[name][0] for r in images.values()) / chars for name in SETS}
        print(f"{folder}: {len(images)} images, CER default {cer['default']:.2%}, v6 small {cer['v6 small']:.2%}")
        for t in THRESHOLDS:
            second = [n for n, r in images.items() if r["default"][2] < t]
            edits = sum(r["v6 small"][0] if n in second else r["default"][0] for n, r in images.items())
            print(f"  lowest confidence < {t}: second look on {len(second):3d} of {len(images)}, "
                  f"CER {edits / chars:.2%}")


if __name__ == "__main__":
    main()
