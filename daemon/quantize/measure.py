"""INT8 against FP32 on held-out frames, with ONNX Runtime: detection recall, line recall, CER, speed.

The reference is the ground truth from labels.jsonl when the frames have it, else the FP32 pipeline's
own output. Four model combinations are measured (COMBOS): FP32, each model INT8 alone (what each model
loses) and both INT8 (what the daemon will run); for all frames, per kind, and for the frames measured
hard (daemon.quantize.hardness) apart from the ordinary ones.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from daemon.config import OcrConfig
from daemon.ocr.evaluate import Accuracy, combine, fold_text, score_image
from daemon.ocr.models import ModelPaths
from daemon.ocr.tiles import frame_boxes
from daemon.quantize.frames import DEFAULT_KIND, Frame

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


# Model combinations measured, as (detector, recognizer) precision: INT8 on one side at a time shows which
# model loses what; "int8" is what the daemon runs.
COMBOS: dict[str, tuple[str, str]] = {"fp32": ("fp32", "fp32"), "int8_rec": ("fp32", "int8"),
                                      "int8_det": ("int8", "fp32"), "int8": ("int8", "int8")}
CER_TARGET_POINTS = 0.5       # INT8 det + rec may add at most this much CER ...
RECALL_TARGET_POINTS = 1.0    # ... and lose at most this much detection recall, on every group of frames
MIN_JUDGED_CHARS = 1000       # smaller groups are shown but not judged: one edit there is more than 0.1 point


@dataclass(frozen=True)
class Scores:
    det_recall: float      # reference lines matched one-to-one by a detected box with IoU >= 0.5
    line_recall: float     # reference lines with any text read on them
    cer: float
    edits: int
    chars: int


@dataclass(frozen=True)
class Group:
    name: str              # "all", a kind ("motion", "night"...), or "hard (measured)" / "ordinary (measured)"
    frames: int
    lines: int
    scores: dict[str, Scores]   # COMBOS key -> scores

    def cer_increase_points(self, combo: str = "int8") -> float:
        return 100.0 * (self.scores[combo].cer - self.scores["fp32"].cer)

    def recall_decrease_points(self, combo: str = "int8") -> float:
        return 100.0 * (self.scores["fp32"].det_recall - self.scores[combo].det_recall)

    @property
    def judged(self) -> bool:
        """Enough characters for the CER target to mean something (0.5 points = at least 5 edits)."""
        return self.scores["fp32"].chars >= MIN_JUDGED_CHARS

    @property
    def meets_targets(self) -> bool:
        return (self.cer_increase_points() <= CER_TARGET_POINTS
                and self.recall_decrease_points() <= RECALL_TARGET_POINTS)


@dataclass(frozen=True)
class Comparison:
    reference: str               # "ground truth" or "fp32" (the FP32 pipeline's own reading)
    groups: tuple[Group, ...]    # "all" first, then each kind, then the measured hard / ordinary split

    def group(self, name: str) -> Group:
        return next(g for g in self.groups if g.name == name)

    @property
    def all(self) -> Group:
        return self.groups[0]


def detect_quads(pipeline, frame: np.ndarray) -> list[np.ndarray]:
    """The detector's quads for one frame, as the pipeline computes them (before recognition)."""
    probs, boxes = pipeline.det.run_frames([frame])
    return _quads(probs[0], boxes[0], frame, pipeline.db)


def _quads(prob, lb, frame: np.ndarray, db) -> list[np.ndarray]:
    return frame_boxes(prob, lb, frame.shape[0], frame.shape[1], db)[1]   # the crop regions, as calibrated


@dataclass
class _Tally:
    frames: int = 0
    lines: int = 0
    matched: dict[str, int] = field(default_factory=lambda: {k: 0 for k in COMBOS})
    accuracies: dict[str, list[Accuracy]] = field(default_factory=lambda: {k: [] for k in COMBOS})

    def scores(self) -> dict[str, Scores]:
        out = {}
        for k in COMBOS:
            acc = combine(self.accuracies[k])
            chars = sum(len(fold_text(s.truth)) for s in acc.lines)
            out[k] = Scores(self.matched[k] / max(1, self.lines), acc.line_recall, acc.cer,
                            sum(s.edits for s in acc.lines), chars)
        return out


def group_names(frame: Frame) -> tuple[str, ...]:
    """The groups a frame is counted in: all, its kind (when the frames have kinds), measured hardness."""
    names = ["all"]
    if frame.kind != DEFAULT_KIND:   # "hard/motion" counts in "hard" and in "hard/motion"
        parts = frame.kind.split("/")
        names += ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    if frame.hardness is not None:
        names.append("hard (measured)" if frame.hard else "ordinary (measured)")
    return tuple(names)


def compare_accuracy(ocr: OcrConfig, fp32: ModelPaths, int8_det: Path, int8_rec: Path,
                     frames: Sequence[Frame], threads: int = 0,
                     progress: Callable[[int], None] = lambda n: None) -> Comparison:
    """Detection recall, line recall and CER of the four COMBOS on the frames, for all of them and per group.

    The Q/DQ models run exactly as written (in float, ONNX Runtime's basic optimizations): that is the
    arithmetic TensorRT's INT8 engines perform; fused into ONNX Runtime's integer kernels they would also
    measure this CPU's integer overflow (bench/RESULTS-int8.md)."""
    from daemon.backends.onnxruntime import OnnxRuntimeBackend
    from daemon.ocr.pipeline import OcrPipeline

    exact = OnnxRuntimeBackend(threads, "fp32", exact_qdq=True)   # "fp32" = run the given files as they are
    det_path = {"fp32": fp32.det, "int8": int8_det}
    rec_path = {"fp32": fp32.rec, "int8": int8_rec}
    pipes = {k: OcrPipeline(ocr, exact, ModelPaths(det_path[d], rec_path[r], fp32.cls, fp32.dictionary))
             for k, (d, r) in COMBOS.items()}
    has_truth = all(f.truth is not None for f in frames)
    tallies: dict[str, _Tally] = {}
    try:
        for frame in frames:
            # each detector runs once, in the pipeline named for it; its boxes go to both recognizers
            results, quads = {}, {}
            for d, owner in (("fp32", "fp32"), ("int8", "int8")):
                sub = pipes[owner].submit([frame.image])
                for k, (det, _) in COMBOS.items():
                    if det == d:
                        results[k] = pipes[k].finish([sub])[0].lines
                quads[d] = _quads(sub.probs[0], sub.boxes[0], frame.image, pipes[owner].db)  # type: ignore[index]
            if has_truth:
                truth = [(ln.text, ln.box) for ln in frame.truth]  # type: ignore[union-attr]
                truth_quads = [np.asarray(b, np.float32) for _, b in truth]
            else:   # the FP32 pipeline's own reading is the reference
                truth = [(ln.text, ln.box) for ln in results["fp32"]]
                truth_quads = quads["fp32"]
            for name in group_names(frame):
                t = tallies.setdefault(name, _Tally())
                t.frames += 1
                t.lines += len(truth_quads)
                for k, (d, _) in COMBOS.items():
                    t.matched[k] += matched_count(truth_quads, quads[d])
                    t.accuracies[k].append(score_image(truth, [(ln.text, ln.box) for ln in results[k]]))
            progress(1)
    finally:
        for p in pipes.values():
            p.close()
    order = sorted(tallies, key=lambda n: (n != "all", n.endswith("(measured)"), n))
    return Comparison("ground truth" if has_truth else "fp32",
                      tuple(Group(n, tallies[n].frames, tallies[n].lines, tallies[n].scores()) for n in order))


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
