"""`ocr-daemon bench --images DIR`: this pipeline vs its references vs the models alone, side by side in one run.

References: RapidOCR 1.4.4 (rapidocr_onnxruntime, PP-OCRv4 mobile) and, where it is installed, RapidOCR
3.10 (rapidocr, PP-OCRv6 small), each with its own default models and settings. Each image goes through
all of them in turn (interleaved, so a noisy neighbour hits all alike). "Models alone" replays the model
calls the pipeline made for that image with copies of the very inputs it fed them (ONNX Runtime's speed
can depend on the data: bench/RESULTS.md section 18), with nothing around them:
the floor on this machine. The copies are made outside the timed calls, taken off the pipeline's time, and dropped after
each image's replay. Pipeline overhead is everything but the time spent inside the models, same run.
With two frames in flight (ocr.frames_in_flight) each repeat also runs the images as one stream, the
way `once` and the service run them, and reports that throughput against the references'.
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, help="folder of images (a labels.jsonl beside them adds accuracy)")
    p.add_argument("--config", default=None, help="config file (default: config.yaml if present, else defaults)")
    p.add_argument("--repeat", type=int, default=3, help="passes over the images (default 3)")
    p.add_argument("--no-rapidocr", action="store_true", help="skip the RapidOCR 1.4.4 reference")
    p.add_argument("--no-rapidocr3", action="store_true",
                   help="skip the RapidOCR 3.10 reference (skipped anyway where the rapidocr package is not installed)")
    p.add_argument("--cameras", type=int, default=0, metavar="N",
                   help="also compare N frames per detector call (frames of N cameras batched) against batch 1")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")


class _Recorder:
    """One image's model calls, in call order, with copies of their feeds: what "models alone" replays."""

    def __init__(self) -> None:
        self.calls: list[tuple[Model, dict[str, np.ndarray]]] = []
        self.inside_ms = 0.0    # time inside the models
        self.copy_ms = 0.0      # the bench's own copying, taken off the pipeline's time
        self.recording = True   # off for the streamed pass, which is timed as a whole

    def clear(self) -> None:
        self.calls.clear()
        self.inside_ms = self.copy_ms = 0.0


class _TimedModel(Model):
    """Delegates to a model, records how long each call spent inside it and a copy of what it was fed
    (the pipeline reuses its input buffers, so a reference would replay the last batch only)."""

    def __init__(self, inner: Model, recorder: _Recorder):
        self.inner, self.recorder = inner, recorder
        self.inputs, self.outputs = inner.inputs, inner.outputs

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        out = self.inner.run(feeds)
        t1 = time.perf_counter()
        if not self.recorder.recording:
            return out
        self.recorder.calls.append((self.inner, {k: np.array(v, copy=True) for k, v in feeds.items()}))
        self.recorder.inside_ms += (t1 - t0) * 1000.0
        self.recorder.copy_ms += (time.perf_counter() - t1) * 1000.0
        return out


def _time_models(pipeline, recorder: _Recorder) -> None:
    """Puts a _TimedModel around each of the pipeline's models, the detector's included."""
    from daemon.ocr.detector import EagerDetector, ThreadedDetector

    for name in ("det", "rec", "rec_tail", "cls"):
        if getattr(pipeline, name) is not None:
            setattr(pipeline, name, _TimedModel(getattr(pipeline, name), recorder))
    # The pipeline drives the detector it built at load, around the bare model: rebuild it, same kind,
    # around the timed one. Only the CPU ways (the model's own letterbox + run, inline or on the detector's
    # thread; bench runs one image at a time, so the calls stay in order); a GPU detector keeps its buffers.
    old = pipeline.detector
    if type(old) in (EagerDetector, ThreadedDetector) and type(pipeline.det.inner).run_frames is Model.run_frames:
        pipeline.detector = type(old)(pipeline.det)
        if hasattr(old, "close"):
            old.close()
    else:
        log.warning("the detector's calls are not timed on this backend: overhead and models alone leave it out")


class _Reference:
    """One other OCR system, with its own default models and settings: how to build it and read its output."""

    def __init__(self, key: str, label: str, ocr, read):
        self.key, self.label, self._ocr, self._read = key, label, ocr, read

    def __call__(self, frame: np.ndarray) -> list[tuple[str, object]]:
        return self._read(self._ocr(frame))


def _rapidocr_1() -> _Reference:
    from rapidocr_onnxruntime import RapidOCR

    # 1.4.4 returns ([[box, text, score], ...] or None, elapsed)
    return _Reference("rapidocr", f"rapidocr_onnxruntime {_version('rapidocr_onnxruntime')} (PP-OCRv4 mobile)",
                      RapidOCR(), lambda out: [(text, box) for box, text, _score in (out[0] or [])])


def _rapidocr_3() -> _Reference | str:
    """RapidOCR 3.x where the rapidocr package imports, else the reason it is skipped."""
    try:
        from rapidocr import RapidOCR
    except ImportError as exc:
        return f"RapidOCR 3.10 skipped: the rapidocr package does not import ({exc}); " \
               f"`pip install omegaconf colorlog requests && pip install --no-deps rapidocr==3.10.0` adds it"
    ocr = RapidOCR(params={"Global.log_level": "error"})   # its defaults; only its INFO lines silenced
    det, rec = ocr.cfg.Det, ocr.cfg.Rec

    def read(out) -> list[tuple[str, object]]:
        # 3.x returns a RapidOCROutput: boxes (N x 4 x 2, or None when nothing was found), txts, scores
        if getattr(out, "boxes", None) is None:
            return []
        return [(text, box.tolist()) for box, text in zip(out.boxes, out.txts)]

    label = (f"rapidocr {_version('rapidocr')} ({det.ocr_version.value} {det.model_type.value} det, "
             f"{rec.ocr_version.value} {rec.model_type.value} rec)")
    return _Reference("rapidocr3", label, ocr, read)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


@dataclass
class _Series:
    total_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        a = np.asarray(self.total_ms)
        return {"images_per_s": round(float(1000.0 * len(a) / a.sum()), 2), "p50_ms": round(float(np.percentile(a, 50)), 1),
                "p95_ms": round(float(np.percentile(a, 95)), 1)}


def _load_images(folder: Path) -> list[tuple[str, np.ndarray]]:
    """(file name, frame) of the folder's images in name order, as `once` lists them; unreadable ones skipped."""
    from daemon.once import image_paths

    out = []
    for path in map(Path, image_paths([str(folder)])):
        try:
            out.append((path.name, read_image(path)))
        except ImageError as exc:
            log.warning("skipped: %s", exc)
    return out


def run_bench(cfg: config.Config, folder: Path, repeat: int, with_rapidocr: bool, with_rapidocr3: bool = True) -> dict:
    from daemon.ocr import evaluate
    from daemon.ocr.pipeline import OcrPipeline
    from daemon.samples.render import read_labels

    images = _load_images(folder)
    if not images:
        raise SystemExit(f"no readable images in {folder}")
    truth = {name: [(l.text, l.box) for l in lines] for name, lines in read_labels(folder).items()}
    pipeline = OcrPipeline.from_config(cfg)
    recorder = _Recorder()
    _time_models(pipeline, recorder)
    notes: list[str] = []
    refs: list[_Reference] = []
    if with_rapidocr:
        refs.append(_rapidocr_1())
    if with_rapidocr3:
        ref = _rapidocr_3()
        if isinstance(ref, str):
            notes.append(ref)
            log.warning("%s", ref)
        else:
            refs.append(ref)

    ours, floor, overhead = _Series(), _Series(), _Series()
    stream_ms: list[float] = []          # whole passes through run_stream, when the pipeline overlaps
    peers = {r.key: _Series() for r in refs}
    stages: dict[str, list[float]] = {}
    acc_ours: list = []
    acc_peers: dict[str, list] = {r.key: [] for r in refs}
    for name, frame in images[:2]:          # warm-up: first-call allocations, thread pools
        pipeline.run(frame)
        for ref in refs:
            ref(frame)
    for rep in range(repeat):
        for name, frame in images:
            recorder.clear()
            t0 = time.perf_counter()
            result = pipeline.run(frame)
            total = (time.perf_counter() - t0) * 1000.0 - recorder.copy_ms
            ours.total_ms.append(total)
            overhead.total_ms.append(total - recorder.inside_ms)
            for stage, ms in result.timing_ms.items():
                stages.setdefault(stage, []).append(ms)

            t0 = time.perf_counter()            # the same model calls on the same inputs, nothing around them
            for model, feeds in recorder.calls:
                model.run(feeds)
            floor.total_ms.append((time.perf_counter() - t0) * 1000.0)
            recorder.clear()                    # one image's inputs at a time

            found: dict[str, list] = {}
            for ref in refs:
                t0 = time.perf_counter()
                found[ref.key] = ref(frame)
                peers[ref.key].total_ms.append((time.perf_counter() - t0) * 1000.0)
            if rep == 0 and name in truth:
                acc_ours.append(evaluate.score_image(truth[name], [(l.text, l.box) for l in result.lines]))
                for key, lines in found.items():
                    acc_peers[key].append(evaluate.score_image(truth[name], lines))
        if pipeline.overlaps:
            # Two frames in flight only show over a stream: the same images as one pass through
            # run_stream (what `once` and the service do), in the same repeat as the peers' passes.
            recorder.recording = False
            t0 = time.perf_counter()
            streamed = sum(1 for _ in pipeline.run_stream(images))
            stream_ms.append((time.perf_counter() - t0) * 1000.0)
            recorder.recording = True
            recorder.clear()
            assert streamed == len(images)

    report: dict = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version()},
        "command": " ".join(["ocr-daemon", *sys.argv[1:]]) if sys.argv else "",
        "images": len(images), "repeat": repeat, "engine": pipeline.describe(),
        "model_set": cfg.ocr.model_set,
        "det_input_size": list(cfg.ocr.det_input_size), "angle_classifier": cfg.ocr.use_angle_classifier,
        "systems": {"pipeline": ours.summary(), "models_alone": floor.summary()},
        "references": {r.key: r.label for r in refs},
        "stages_ms": {s: {"p50": round(float(np.percentile(v, 50)), 2), "p95": round(float(np.percentile(v, 95)), 2)}
                      for s, v in stages.items()},
        "overhead_share": round(sum(overhead.total_ms) / sum(ours.total_ms), 4),
    }
    if stream_ms:
        report["stream"] = {"frames_in_flight": 2, "images_per_s": round(1000.0 * len(images) * len(stream_ms) / sum(stream_ms), 2),
                            "passes_ms": [round(x, 1) for x in stream_ms]}
    for ref in refs:
        report["systems"][ref.key] = peers[ref.key].summary()
        report[f"speedup_vs_{ref.key}"] = round(sum(peers[ref.key].total_ms) / sum(ours.total_ms), 3)
        if stream_ms:
            report["stream"][f"speedup_vs_{ref.key}"] = round(
                report["stream"]["images_per_s"] / report["systems"][ref.key]["images_per_s"], 3)
    if notes:
        report["notes"] = notes
    if acc_ours:
        ours_acc = evaluate.combine(acc_ours)
        report["accuracy"] = {"pipeline": _acc(ours_acc)}
        for key, scores in acc_peers.items():
            if scores:
                peer_acc = evaluate.combine(scores)
                report["accuracy"][key] = _acc(peer_acc)
                # "agreement" stays the 1.4.4 comparison's key; the others are named for their reference
                report["accuracy"]["agreement" if key == "rapidocr" else f"agreement_{key}"] = \
                    _agreement(ours_acc, peer_acc, key)
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


def _agreement(ours, peer, peer_name: str = "rapidocr") -> dict:
    """Share of ground-truth lines read identically by both, and CER of each where they differ."""
    from daemon.ocr.evaluate import fold_text

    same = [o.predicted == p.predicted for o, p in zip(ours.lines, peer.lines)]
    differ = [(o, p) for (o, p), s in zip(zip(ours.lines, peer.lines), same) if not s]
    chars = sum(len(fold_text(o.truth)) for o, _ in differ) or 1
    return {"same_lines": round(sum(same) / max(1, len(same)), 4), "differing_lines": len(differ),
            "cer_ours_where_differ": round(sum(o.edits for o, _ in differ) / chars, 4),
            f"cer_{peer_name}_where_differ": round(sum(p.edits for _, p in differ) / chars, 4)}


def format_table(report: dict) -> str:
    ours = report["systems"]["pipeline"]["images_per_s"]
    rows = ["| system | images/s | p50 ms | p95 ms | pipeline's images/s ÷ its |", "|---|---:|---:|---:|---:|"]
    for name, s in report["systems"].items():
        ratio = report.get(f"speedup_vs_{name}")
        if name == "models_alone":
            ratio = round(ours / s["images_per_s"], 3)
        rows.append(f"| {name} | {s['images_per_s']} | {s['p50_ms']} | {s['p95_ms']} | "
                    f"{'' if ratio is None else f'{ratio:.2f}x'} |")
    rows += ["", "| stage | p50 ms | p95 ms |", "|---|---:|---:|"]
    rows += [f"| {k} | {v['p50']} | {v['p95']} |" for k, v in report["stages_ms"].items()]
    rows.append("")
    rows.append(f"model set: {report['model_set']}; models alone: the pipeline's own inputs replayed")
    for key, label in report.get("references", {}).items():
        rows.append(f"{key}: {label}, its default settings")
    rows.append(f"pipeline overhead (all but the models): {report['overhead_share'] * 100:.1f} % of total time")
    for key in report.get("references", {}):
        rows.append(f"throughput vs {key}: {report[f'speedup_vs_{key}']:.2f}x (one image at a time)")
    if "stream" in report:
        st = report["stream"]
        rows.append(f"pipeline as a stream, {st['frames_in_flight']} frames in flight: {st['images_per_s']} images/s"
                    + "".join(f"; {st[f'speedup_vs_{k}']:.2f}x {k}" for k in report.get("references", {})))
    for note in report.get("notes", []):
        rows.append(note)
    for name, a in report.get("accuracy", {}).items():
        rows.append(f"accuracy {name}: {json.dumps(a, ensure_ascii=False)}")
    return "\n".join(rows)


def main(args: argparse.Namespace) -> int:
    cfg = config.load_or_defaults(args.config, read_secrets=False)   # a ConfigError: cli.main's one line, exit 2
    report = run_bench(cfg, Path(args.images), args.repeat, not args.no_rapidocr, not args.no_rapidocr3)
    print(format_table(report))
    if args.cameras > 1:
        report["camera_batching"] = batching_gain(cfg, Path(args.images), args.cameras, args.repeat)
        b = report["camera_batching"]
        print(f"\ndetector batching, {b['cameras']} cameras: batch 1 {b['det_batch_1']['images_per_s']} images/s, "
              f"batch {b['cameras']} {b[f'det_batch_{args.cameras}']['images_per_s']} images/s, gain {b['gain']}x")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0
