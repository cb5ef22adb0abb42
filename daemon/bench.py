"""`ocr-daemon bench --images DIR`: this pipeline vs RapidOCR vs the models alone, side by side in one run.

Each image goes through the three in turn (interleaved, so a noisy neighbour hits all three alike).
"Models alone" replays exactly the model calls the pipeline made for that image (same shapes, same
count) with nothing around them: the floor on this machine. Pipeline overhead is everything but the
time spent inside the models, measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from daemon import config
from daemon.backends.base import Model
from daemon.imageio import ImageError, read_image

log = logging.getLogger(__name__)
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, help="folder of images (a labels.jsonl beside them adds accuracy)")
    p.add_argument("--config", default=None, help="config.yaml (default: built-in defaults)")
    p.add_argument("--repeat", type=int, default=3, help="passes over the images (default 3)")
    p.add_argument("--no-rapidocr", action="store_true", help="skip the RapidOCR reference")
    p.add_argument("--cameras", type=int, default=0, metavar="N",
                   help="also compare N frames per detector call (frames of N cameras batched) against batch 1")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")


class _TimedModel(Model):
    """Delegates to a model and records how long each call spent inside it."""

    def __init__(self, inner: Model):
        self.inner = inner
        self.inputs, self.outputs = inner.inputs, inner.outputs
        self.calls_ms: list[float] = []

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        out = self.inner.run(feeds)
        self.calls_ms.append((time.perf_counter() - t0) * 1000.0)
        return out


@dataclass
class _Series:
    total_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        a = np.asarray(self.total_ms)
        return {"images_per_s": round(1000.0 * len(a) / a.sum(), 2), "p50_ms": round(float(np.percentile(a, 50)), 1),
                "p95_ms": round(float(np.percentile(a, 95)), 1)}


def _load_images(folder: Path) -> list[tuple[str, np.ndarray]]:
    out = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in _IMAGE_SUFFIXES:
            try:
                out.append((path.name, read_image(path)))
            except ImageError as exc:
                log.warning("skipped: %s", exc)
    return out


def run_bench(cfg: config.Config, folder: Path, repeat: int, with_rapidocr: bool) -> dict:
    from daemon.ocr import evaluate
    from daemon.ocr.pipeline import OcrPipeline
    from daemon.samples.render import read_labels

    images = _load_images(folder)
    if not images:
        raise SystemExit(f"no readable images in {folder}")
    truth = {name: [(l.text, l.box) for l in lines] for name, lines in read_labels(folder).items()}
    pipeline = OcrPipeline.from_config(cfg)
    timed = {name: _TimedModel(getattr(pipeline, name))
             for name in ("det", "rec", "rec_tail", "cls") if getattr(pipeline, name)}
    for name, model in timed.items():
        setattr(pipeline, name, model)
    zeros = {name: np.zeros(m.inputs[0].shape, dtype=np.float32) for name, m in timed.items()}
    rapid = None
    if with_rapidocr:
        from rapidocr_onnxruntime import RapidOCR

        rapid = RapidOCR()

    ours, floor, peer, overhead = _Series(), _Series(), _Series(), _Series()
    stages: dict[str, list[float]] = {}
    acc_ours, acc_peer = [], []
    for name, frame in images[:2]:          # warm-up: first-call allocations, thread pools
        pipeline.run(frame)
        if rapid:
            rapid(frame)
    for m in timed.values():
        m.calls_ms.clear()
    for rep in range(repeat):
        for name, frame in images:
            calls_before = {k: len(m.calls_ms) for k, m in timed.items()}
            t0 = time.perf_counter()
            result = pipeline.run(frame)
            total = (time.perf_counter() - t0) * 1000.0
            ours.total_ms.append(total)
            inside = sum(sum(m.calls_ms[calls_before[k]:]) for k, m in timed.items())
            overhead.total_ms.append(total - inside)
            for stage, ms in result.timing_ms.items():
                stages.setdefault(stage, []).append(ms)

            t0 = time.perf_counter()            # the same model calls, nothing around them
            for k, m in timed.items():
                for _ in range(len(m.calls_ms) - calls_before[k]):
                    m.inner.run1(zeros[k])
            floor.total_ms.append((time.perf_counter() - t0) * 1000.0)

            peer_lines = None
            if rapid:
                t0 = time.perf_counter()
                found, _ = rapid(frame)
                peer.total_ms.append((time.perf_counter() - t0) * 1000.0)
                peer_lines = [(text, box) for box, text, _score in (found or [])]
            if rep == 0 and name in truth:
                acc_ours.append(evaluate.score_image(truth[name], [(l.text, l.box) for l in result.lines]))
                if peer_lines is not None:
                    acc_peer.append(evaluate.score_image(truth[name], peer_lines))

    report: dict = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version()},
        "command": " ".join(["ocr-daemon", *sys.argv[1:]]) if sys.argv else "",
        "images": len(images), "repeat": repeat, "engine": pipeline.describe(),
        "det_input_size": list(cfg.ocr.det_input_size), "angle_classifier": cfg.ocr.use_angle_classifier,
        "systems": {"pipeline": ours.summary(), "models_alone": floor.summary()},
        "stages_ms": {s: {"p50": round(float(np.percentile(v, 50)), 2), "p95": round(float(np.percentile(v, 95)), 2)}
                      for s, v in stages.items()},
        "overhead_share": round(sum(overhead.total_ms) / sum(ours.total_ms), 4),
    }
    if rapid:
        report["systems"]["rapidocr"] = peer.summary()
        report["speedup_vs_rapidocr"] = round(sum(peer.total_ms) / sum(ours.total_ms), 3)
    if acc_ours:
        report["accuracy"] = {"pipeline": _acc(evaluate.combine(acc_ours))}
        if acc_peer:
            report["accuracy"]["rapidocr"] = _acc(evaluate.combine(acc_peer))
            report["accuracy"]["agreement"] = _agreement(evaluate.combine(acc_ours), evaluate.combine(acc_peer))
    return report


def batching_gain(cfg: config.Config, folder: Path, cameras: int, repeat: int) -> dict:
    """Frames of `cameras` cameras ready together: one detector call of batch N vs N calls of batch 1.

    Both pipelines run the same groups of frames, interleaved; recognition batches are shared by all
    crops of a group in both, so the difference is the detector batching alone."""
    import dataclasses

    from daemon.ocr.pipeline import OcrPipeline

    images = [frame for _, frame in _load_images(folder)]
    groups = [images[i:i + cameras] for i in range(0, len(images) - cameras + 1, cameras)]
    if not groups:
        raise SystemExit(f"--cameras {cameras}: need at least {cameras} images in {folder}")
    pipes = {n: OcrPipeline.from_config(dataclasses.replace(cfg, ocr=dataclasses.replace(cfg.ocr, det_batch=n)))
             for n in (1, cameras)}
    series = {n: _Series() for n in pipes}
    for n, p in pipes.items():
        p.run_batch(groups[0])          # warm-up
    for _ in range(repeat):
        for group in groups:
            for n, p in pipes.items():
                t0 = time.perf_counter()
                p.run_batch(group)
                series[n].total_ms.append((time.perf_counter() - t0) * 1000.0 / len(group))
    one, many = series[1].summary(), series[cameras].summary()
    return {"cameras": cameras, "det_batch_1": one, f"det_batch_{cameras}": many,
            "gain": round(many["images_per_s"] / one["images_per_s"], 3)}


def _acc(a) -> dict:
    return {"lines": len(a.lines), "cer": round(a.cer, 4), "line_recall": round(a.line_recall, 4),
            "exact_lines": round(a.exact_lines, 4), "false_positives": a.false_positives}


def _agreement(ours, peer) -> dict:
    """Share of ground-truth lines read identically by both, and CER of each where they differ."""
    from daemon.ocr.evaluate import fold_text

    same = [o.predicted == p.predicted for o, p in zip(ours.lines, peer.lines)]
    differ = [(o, p) for (o, p), s in zip(zip(ours.lines, peer.lines), same) if not s]
    chars = sum(len(fold_text(o.truth)) for o, _ in differ) or 1
    return {"same_lines": round(sum(same) / max(1, len(same)), 4), "differing_lines": len(differ),
            "cer_ours_where_differ": round(sum(o.edits for o, _ in differ) / chars, 4),
            "cer_rapidocr_where_differ": round(sum(p.edits for _, p in differ) / chars, 4)}


def format_table(report: dict) -> str:
    rows = ["| system | images/s | p50 ms | p95 ms |", "|---|---:|---:|---:|"]
    for name, s in report["systems"].items():
        rows.append(f"| {name} | {s['images_per_s']} | {s['p50_ms']} | {s['p95_ms']} |")
    rows += ["", "| stage | p50 ms | p95 ms |", "|---|---:|---:|"]
    rows += [f"| {k} | {v['p50']} | {v['p95']} |" for k, v in report["stages_ms"].items()]
    rows.append("")
    rows.append(f"pipeline overhead (all but the models): {report['overhead_share'] * 100:.1f} % of total time")
    if "speedup_vs_rapidocr" in report:
        rows.append(f"throughput vs RapidOCR: {report['speedup_vs_rapidocr']:.2f}x")
    for name, a in report.get("accuracy", {}).items():
        rows.append(f"accuracy {name}: {json.dumps(a)}")
    return "\n".join(rows)


def main(args: argparse.Namespace) -> int:
    try:
        cfg = config.load_or_defaults(args.config)
    except config.ConfigError as exc:
        print(f"invalid config: {exc}", file=sys.stderr)
        return 2
    report = run_bench(cfg, Path(args.images), args.repeat, not args.no_rapidocr)
    print(format_table(report))
    if args.cameras > 1:
        report["camera_batching"] = batching_gain(cfg, Path(args.images), args.cameras, args.repeat)
        b = report["camera_batching"]
        print(f"\ndetector batching, {b['cameras']} cameras: batch 1 {b['det_batch_1']['images_per_s']} images/s, "
              f"batch {b['cameras']} {b[f'det_batch_{args.cameras}']['images_per_s']} images/s, gain {b['gain']}x")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0
