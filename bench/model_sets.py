"""PP-OCRv4 mobile vs PP-OCRv6 small inside this pipeline (ocr.model_set): accuracy and speed, one run.

    python bench/model_sets.py DIR [DIR ...] [--config FILE] [--repeat N] [--json FILE]

Each DIR holds images and a labels.jsonl (rendered sets, daemon/samples, bench/photos). Both pipelines
are loaded side by side from one config that differs only in ocr.model_set; every image goes through
both in turn, the order swapped from one image to the next, so a noisy neighbour hits both alike.
Accuracy (CER, line recall, exact lines, false positives; daemon/ocr/evaluate.py) comes from the first
pass; speed from all passes, per set and over all sets.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daemon import config  # noqa: E402
from daemon.bench import _acc, _load_images, _Series  # noqa: E402
from daemon.ocr import evaluate, models  # noqa: E402
from daemon.ocr.pipeline import OcrPipeline  # noqa: E402
from daemon.samples.render import read_labels  # noqa: E402

SETS = ("pp-ocrv4", "pp-ocrv6-small")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+", type=Path)
    p.add_argument("--config", default=None, help="base config (default: built-in defaults)")
    p.add_argument("--repeat", type=int, default=1, help="passes over the images for speed (default 1)")
    p.add_argument("--json", default=None, metavar="FILE")
    args = p.parse_args()

    base = config.load_or_defaults(args.config)
    cfgs = {s: dataclasses.replace(base, ocr=dataclasses.replace(base.ocr, model_set=s)) for s in SETS}
    pipes = {s: OcrPipeline.from_config(c) for s, c in cfgs.items()}
    sizes = {s: {role: round(getattr(models.resolve(c), role).stat().st_size / 1e6, 2) for role in ("det", "rec")}
             for s, c in cfgs.items()}
    folders = {d.name: (_load_images(d), read_labels(d)) for d in args.dirs}
    warm = next(iter(folders.values()))[0][:2]
    for pipe in pipes.values():          # first-call allocations, thread pools
        for _, frame in warm:
            pipe.run(frame)

    speed = {d: {s: _Series() for s in SETS} for d in folders}
    stage_ms: dict[str, dict[str, float]] = {s: {} for s in SETS}     # summed over every run
    scores: dict[str, dict[str, list]] = {d: {s: [] for s in SETS} for d in folders}
    turn = 0
    for rep in range(args.repeat):
        for d, (images, truth) in folders.items():
            for name, frame in images:
                order = SETS if turn % 2 == 0 else SETS[::-1]
                turn += 1
                for s in order:
                    t0 = time.perf_counter()
                    result = pipes[s].run(frame)
                    speed[d][s].total_ms.append((time.perf_counter() - t0) * 1000.0)
                    for stage, ms in result.timing_ms.items():
                        stage_ms[s][stage] = stage_ms[s].get(stage, 0.0) + ms
                    if rep == 0 and name in truth:
                        lines = [(l.text, l.box) for l in result.lines]
                        scores[d][s].append(evaluate.score_image([(t.text, t.box) for t in truth[name]], lines))

    everything = {s: _Series([ms for d in folders for ms in speed[d][s].total_ms]) for s in SETS}
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version()},
        "command": " ".join(["python", *sys.argv]), "repeat": args.repeat, "engine": pipes[SETS[0]].describe(),
        "model_mb": sizes,
        "sets": {d: {"images": len(folders[d][0]),
                     "accuracy": {s: _acc(evaluate.combine(scores[d][s])) for s in SETS if scores[d][s]},
                     "speed": {s: speed[d][s].summary() for s in SETS}} for d in folders},
        "all": {s: everything[s].summary() for s in SETS},
        "stage_mean_ms": {s: {k: round(v / len(everything[s].total_ms), 1) for k, v in stage_ms[s].items()} for s in SETS},
        "v6_speed_ratio": round(sum(everything[SETS[0]].total_ms) / sum(everything[SETS[1]].total_ms), 3),
    }
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


def format_table(report: dict) -> str:
    rows = ["| set | model set | lines | CER % | line recall % | exact % | false pos. | images/s | p50 ms | p95 ms |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for d, r in report["sets"].items():
        for s in SETS:
            a, v = r["accuracy"].get(s), r["speed"][s]
            acc = (f"{a['lines']} | {a['cer'] * 100:.2f} | {a['line_recall'] * 100:.1f} | {a['exact_lines'] * 100:.1f}"
                   f" | {a['false_positives']}") if a else "| | | |"
            rows.append(f"| {d} ({r['images']}) | {s} | {acc} | {v['images_per_s']} | {v['p50_ms']} | {v['p95_ms']} |")
    for s in SETS:
        v = report["all"][s]
        rows.append(f"| all | {s} | | | | | | {v['images_per_s']} | {v['p50_ms']} | {v['p95_ms']} |")
    for s in SETS:
        rows.append(f"\nmean ms per image, {s}: {report['stage_mean_ms'][s]}")
    rows.append(f"\nv6 small's images/s ÷ v4's: {report['v6_speed_ratio']:.2f}; det/rec MB: {report['model_mb']}")
    return "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())
