"""Line by line: what FP32 and INT8 (det + rec, and each alone) read on labelled photographs.

    python bench/photos_b_check.py --config CFG bench/photos-b [bench/photos ...]

CFG as for `ocr-daemon calibrate --report-only`: the Q/DQ models are read from its engines.dir. The figures
are those of daemon.quantize.measure.compare_accuracy (same pipelines, same matching); this prints, for every
labelled line, the best IoU of each detector's boxes with it (>= 0.5 counts as detected) and each
combination's reading with its edits, so a difference in the report's table can be traced to its lines.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from daemon import config
from daemon.ocr import models
from daemon.ocr.evaluate import fold_text, score_image
from daemon.ocr.models import ModelPaths
from daemon.quantize.frames import load_frames
from daemon.quantize.measure import COMBOS, _quads, iou


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", help="folders of images with labels.jsonl")
    ap.add_argument("--config", required=True)
    args = ap.parse_args()

    from daemon.backends.onnxruntime import OnnxRuntimeBackend
    from daemon.ocr.pipeline import OcrPipeline

    cfg = config.load(args.config)
    paths = models.resolve(cfg)
    engines = Path(cfg.engines.dir)
    det_path = {"fp32": paths.det, "int8": models.int8_path(engines, paths.det)}
    rec_path = {"fp32": paths.rec, "int8": models.int8_path(engines, paths.rec)}
    exact = OnnxRuntimeBackend(cfg.ocr.threads, "fp32", exact_qdq=True)
    pipes = {k: OcrPipeline(cfg.ocr, exact, ModelPaths(det_path[d], rec_path[r], paths.cls, paths.dictionary))
             for k, (d, r) in COMBOS.items()}
    edits = {k: 0 for k in COMBOS}
    chars = 0
    try:
        for folder in args.folders:
            for frame in load_frames(Path(folder)):
                results, quads = {}, {}
                for d in ("fp32", "int8"):
                    sub = pipes[d].submit([frame.image])
                    for k, (det, _) in COMBOS.items():
                        if det == d:
                            results[k] = pipes[k].finish([sub])[0].lines
                    quads[d] = _quads(sub.probs[0], sub.boxes[0], frame.image, pipes[d].db)
                truth = [(ln.text, ln.box) for ln in frame.truth]
                scored = {k: score_image(truth, [(ln.text, ln.box) for ln in results[k]]).lines for k in COMBOS}
                for i, (text, box) in enumerate(truth):
                    t = np.asarray(box, np.float32)
                    best = {d: max((iou(t, q) for q in quads[d]), default=0.0) for d in ("fp32", "int8")}
                    chars += len(fold_text(text))
                    for k in COMBOS:
                        edits[k] += scored[k][i].edits
                    row = "  ".join(f"{k} {scored[k][i].predicted!r} ({scored[k][i].edits})" for k in COMBOS)
                    flag = "" if len({scored[k][i].edits for k in COMBOS}) == 1 else "  <-- differs"
                    print(f"{frame.name:34s} {text!r:40s} IoU fp32 {best['fp32']:.2f} int8 {best['int8']:.2f}  "
                          f"{row}{flag}")
    finally:
        for p in pipes.values():
            p.close()
    print(f"characters {chars}; edits " + ", ".join(f"{k} {n} (CER {100 * n / max(1, chars):.2f} %)"
                                                    for k, n in edits.items()))


if __name__ == "__main__":
    main()
