"""The CPU levers side by side in one process: threads, ONNX Runtime's spinning, frames in flight.

    python bench/cpu_levers.py --images DIR [--rounds 3] [--limit N] [--json OUT]

Every configuration is a real OcrPipeline on the ONNX Runtime backend; each round runs every
configuration over the same images (the order rotating per round) through `run_stream`, the path `once`
takes. Reports images/s (median over rounds) and, for the first round, CER against labels.jsonl, which
must not move: the levers change speed only.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon import config  # noqa: E402
from daemon.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from daemon.backends.onnxruntime.threads import physical_cores, usable_cpus  # noqa: E402
from daemon.imageio import read_image  # noqa: E402
from daemon.ocr import evaluate, models  # noqa: E402
from daemon.ocr.pipeline import OcrPipeline  # noqa: E402
from daemon.once import image_paths  # noqa: E402
from daemon.samples.render import read_labels  # noqa: E402


def configurations() -> dict[str, dict]:
    logical, physical = len(usable_cpus()), physical_cores()
    counts = sorted({logical, physical, max(1, physical // 2)}, reverse=True)
    out = {}
    for threads in counts:
        for spinning in (True, False):
            for in_flight in (1, 2):
                out[f"threads {threads}, spin {'on' if spinning else 'off'}, in flight {in_flight}"] = \
                    dict(threads=threads, spinning=spinning, in_flight=in_flight)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", required=True, type=Path)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--limit", type=int, default=0, help="first N images only")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    cfg = config.load_or_defaults(None)
    paths = models.resolve(cfg)
    files = image_paths([str(args.images)])[: args.limit or None]
    images = [(Path(f).name, read_image(f)) for f in files]
    truth = read_labels(args.images)
    pipes = {name: OcrPipeline(cfg.ocr, OnnxRuntimeBackend(**kw), paths) for name, kw in configurations().items()}
    for pipe in pipes.values():
        list(pipe.run_stream(images[:2]))              # first-call allocations
    speed = {name: [] for name in pipes}
    cer = {}
    names = list(pipes)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            results = list(pipes[name].run_stream(images))
            speed[name].append(len(images) / (time.perf_counter() - t0))
            if r == 0:
                scores = [evaluate.score_image([(l.text, l.box) for l in truth[k]], [(l.text, l.box) for l in res.lines])
                          for k, res in results if k in truth]
                cer[name] = round(evaluate.combine(scores).cer, 4) if scores else None
    report = {"machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                          "usable_cpus": len(usable_cpus()), "physical_cores": physical_cores()},
              "images": len(images), "rounds": args.rounds,
              "configurations": {n: {"images_per_s": round(float(np.median(v)), 3), "all": [round(x, 3) for x in v],
                                     "cer": cer[n]} for n, v in speed.items()}}
    print(f"{len(images)} images, {args.rounds} rounds, {report['machine']['usable_cpus']} CPUs "
          f"({report['machine']['physical_cores']} physical cores)")
    print("| configuration | images/s (median) | rounds | CER |\n|---|---:|---|---:|")
    for n, c in report["configurations"].items():
        print(f"| {n} | {c['images_per_s']} | {c['all']} | {c['cer']} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
