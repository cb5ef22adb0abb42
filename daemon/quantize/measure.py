"""INT8 against FP32 on held-out frames, with ONNX Runtime: detection recall, recognition CER, speed.

The reference is the ground truth from labels.jsonl when the frames have it, else the FP32 pipeline's
own output. Recognition is measured twice: the INT8 recognizer on the FP32 detector's crops (the
recognizer's own loss) and both models INT8 (what the daemon will run).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from daemon.config import OcrConfig
from daemon.ocr.db_post import DbParams, boxes_from_prob
from daemon.ocr.det_pre import to_frame_coords
from daemon.ocr.evaluate import combine, score_image
from daemon.ocr.models import ModelPaths
from daemon.quantize.frames import Frame

IOU_MATCH = 0.5


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a32, b32 = np.asarray(a, np.float32).reshape(4, 2), np.asarray(b, np.float32).reshape(4, 2)
    inter, _ = cv2.intersectConvexConvex(cv2.convexHull(a32), cv2.convexHull(b32))
    union = abs(cv2.contourArea(a32)) + abs(cv2.contourArea(b32)) - inter
    return float(inter / union) if union > 0 else 0.0


def matched_count(truth: Sequence[np.ndarray], found: Sequence[np.ndarray], threshold: float = IOU_MATCH) -> int:
    """Truth boxes matched one-to-one by a found box with IoU >= threshold (greedy, best pairs first)."""
    pairs = sorted(((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)), reverse=True)
    used_t, used_f, n = set(), set(), 0
    for score, i, j in pairs:
        if score < threshold:
            break
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
            n += 1
    return n


@dataclass(frozen=True)
class Comparison:
    reference: str             # "ground truth" or "fp32"
    frames: int
    lines: int                 # reference lines
    det_recall_fp32: float
    det_recall_int8: float
    cer_fp32: float            # FP32 det + FP32 rec
    cer_int8_rec: float        # FP32 det + INT8 rec
    cer_int8: float            # INT8 det + INT8 rec


def detect_quads(pipeline, frame: np.ndarray) -> list[np.ndarray]:
    """The detector's quads for one frame, as the pipeline computes them (before recognition)."""
    probs, boxes = pipeline.det.run_frames([frame])
    lb = boxes[0]
    found = boxes_from_prob(probs[0, 0, : lb.new_h, : lb.new_w], pipeline.db)
    h, w = frame.shape[:2]
    return [to_frame_coords(q, lb, h, w) for q, _ in found]


def compare_accuracy(ocr: OcrConfig, fp32: ModelPaths, int8_det: Path, int8_rec: Path,
                     frames: Sequence[Frame], threads: int = 0) -> Comparison:
    from daemon.backends.onnxruntime import OnnxRuntimeBackend
    from daemon.ocr.pipeline import OcrPipeline

    backend = OnnxRuntimeBackend(threads, "fp32")   # "fp32" = run the given files as they are
    pipes = {
        "fp32": OcrPipeline(ocr, backend, fp32),
        "int8_rec": OcrPipeline(ocr, backend, ModelPaths(fp32.det, int8_rec, fp32.cls, fp32.dictionary)),
        "int8": OcrPipeline(ocr, backend, ModelPaths(int8_det, int8_rec, fp32.cls, fp32.dictionary)),
    }
    has_truth = all(f.truth is not None for f in frames)
    matched = {"fp32": 0, "int8": 0}
    scores: dict[str, list] = {k: [] for k in pipes}
    n_lines = 0
    try:
        for frame in frames:
            results = {k: p.run(frame.image).lines for k, p in pipes.items()}
            if has_truth:
                truth = [(ln.text, ln.box) for ln in frame.truth]  # type: ignore[union-attr]
                truth_quads = [np.asarray(b, np.float32) for _, b in truth]
            else:   # the FP32 pipeline's own reading is the reference
                truth = [(ln.text, ln.box) for ln in results["fp32"]]
                truth_quads = detect_quads(pipes["fp32"], frame.image)
            n_lines += len(truth_quads)
            for k in matched:
                matched[k] += matched_count(truth_quads, detect_quads(pipes[k], frame.image))
            for k, lines in results.items():
                scores[k].append(score_image(truth, [(ln.text, ln.box) for ln in lines]))
    finally:
        for p in pipes.values():
            p.close()
    total = max(1, n_lines)
    return Comparison(
        reference="ground truth" if has_truth else "fp32", frames=len(frames), lines=n_lines,
        det_recall_fp32=matched["fp32"] / total, det_recall_int8=matched["int8"] / total,
        cer_fp32=combine(scores["fp32"]).cer, cer_int8_rec=combine(scores["int8_rec"]).cer,
        cer_int8=combine(scores["int8"]).cer)


@dataclass(frozen=True)
class Speed:
    model: str
    input_shape: tuple[int, ...]
    fp32_ms: float       # median latency of one call
    int8_ms: float


def compare_speed(role: str, fp32: Path, int8: Path, shape: tuple[int, ...], runs: int = 10,
                  threads: int = 0) -> Speed:
    """Median latency of both models on the same random input, calls interleaved so that load on the
    machine hits both alike (timings on this CPU jump between levels from process to process)."""
    import onnxruntime as ort

    def session(path: Path):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])

    sessions = [session(fp32), session(int8)]
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    feeds = [{s.get_inputs()[0].name: x} for s in sessions]
    times: list[list[float]] = [[], []]
    for s, f in zip(sessions, feeds):
        s.run(None, f)   # warm-up
    for _ in range(runs):
        for k, (s, f) in enumerate(zip(sessions, feeds)):
            t0 = time.perf_counter()
            s.run(None, f)
            times[k].append((time.perf_counter() - t0) * 1000.0)
    return Speed(role, tuple(shape), float(np.median(times[0])), float(np.median(times[1])))
