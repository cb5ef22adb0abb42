"""Per-layer INT8 sensitivity of the detector, measured on hard frames against FP32 and the ground truth.

    python -m daemon.quantize.det_sensitivity --images CALIB_DIR --eval-images HARD_DIR [--out FILE.json]

The recognizer's study (daemon.quantize.sensitivity) counts flipped time steps; the detector's output is a
probability map, and what INT8 costs there is lines: a line whose map falls under the DB threshold is lost.
So each variant is scored by the ground-truth lines its boxes still match (IoU >= 0.5) and by how much of
FP32's text mask (probability > det_threshold) it keeps (mask IoU). One set of |x| histograms from the
calibration frames serves every variant:
  1. each range method, every Conv and ConvTranspose quantized (the final Sigmoid is not a quantized type);
  2. one node quantized at a time: the loss of mask IoU ranks the nodes;
  3. the k most sensitive nodes kept in float, k growing.
These measurements chose daemon.quantize.defaults' detector exclusions (bench/RESULTS-int8.md).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class DetScore:
    recall: float        # ground-truth lines matched by a detected box (IoU >= 0.5)
    mask_iou: float      # mean over frames of IoU(FP32 text mask, this model's text mask)
    prob_mae: float      # mean absolute difference of the probability maps


class DetRunner:
    """Letterboxes the frames once; runs a detector ONNX (Q/DQ computed exactly as written) on each."""

    def __init__(self, frames, shape: tuple[int, int, int, int], db, threads: int = 0):
        from daemon.ocr.det_pre import preprocess_det

        _, _, h, w = shape
        self.frames = list(frames)
        prepared = [preprocess_det(f.image, h, w) for f in self.frames]
        self.inputs = [x[None] for x, _ in prepared]
        self.boxes = [lb for _, lb in prepared]
        self.db = db
        self.threads = threads

    def maps(self, model: Path) -> list[np.ndarray]:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC   # Q/DQ as written
        opts.log_severity_level = 3
        if self.threads:
            opts.intra_op_num_threads = self.threads
        s = ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
        name = s.get_inputs()[0].name
        return [s.run(None, {name: x})[0][0, 0, : lb.new_h, : lb.new_w] for x, lb in zip(self.inputs, self.boxes)]

    def score(self, maps: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> DetScore:
        from daemon.ocr.db_post import boxes_from_prob
        from daemon.ocr.det_pre import to_frame_coords
        from daemon.quantize.measure import matched_count

        matched = lines = 0
        ious, maes = [], []
        for frame, lb, prob, ref in zip(self.frames, self.boxes, maps, reference):
            fh, fw = frame.image.shape[:2]
            quads = [to_frame_coords(b.quad, lb, fh, fw) for b in boxes_from_prob(prob, self.db)]
            truth = [np.asarray(ln.box, np.float32) for ln in frame.truth or ()]
            matched += matched_count(truth, quads)
            lines += len(truth)
            a, b = ref > self.db.threshold, prob > self.db.threshold
            union = np.logical_or(a, b).sum()
            ious.append(float(np.logical_and(a, b).sum() / union) if union else 1.0)
            maes.append(float(np.abs(prob - ref).mean()))
        return DetScore(matched / max(1, lines), float(np.mean(ious)), float(np.mean(maes)))


def run(cfg, images: Path, eval_images: Path | None, held_out: float, seed: int, methods: Sequence[str],
        method: str, ks: Sequence[int], rank_frames: int, max_frames: int = 400, log=print) -> dict:
    from daemon.ocr import models
    from daemon.ocr.db_post import DbParams
    from daemon.quantize import defaults
    from daemon.quantize.frames import load_frames, split_frames
    from daemon.quantize.prepare import prepare_fp32
    from daemon.quantize.qdq import write_qdq
    from daemon.quantize.ranges import activation_ranges, collect_histograms
    from daemon.quantize.readers import det_batches

    import onnx

    o = cfg.ocr
    shape = (o.det_batch, 3, *o.det_input_size)
    split = split_frames(load_frames(images, max_frames), 0.0 if eval_images else held_out, seed)
    evaluation = load_frames(eval_images, max_frames) if eval_images else list(split.held_out)
    if any(f.truth is None for f in evaluation):
        raise SystemExit("the evaluation frames need ground truth (labels.jsonl)")
    db = DbParams(o.det_threshold, o.det_box_threshold, o.det_unclip_ratio, o.det_min_size, o.det_max_candidates)
    paths = models.resolve(cfg)
    result: dict = {"calibration_frames": len(split.calibration), "eval_frames": len(evaluation),
                    "eval_lines": sum(len(f.truth or ()) for f in evaluation)}
    ops = defaults.DET_OP_TYPES
    with tempfile.TemporaryDirectory(prefix="ocr-det-sens-") as tmp:
        fp32 = prepare_fp32(paths.det, shape, Path(tmp) / "det.fp32.onnx")
        model = onnx.load(str(fp32), load_external_data=False)
        nodes = [n.name for n in model.graph.node if n.op_type in ops]
        t0 = time.perf_counter()
        hists = collect_histograms(fp32, ops, det_batches([f.image for f in split.calibration], shape))
        result["histogram_s"] = round(time.perf_counter() - t0, 1)
        runner = DetRunner(evaluation, shape, db, o.threads)
        ref = runner.maps(fp32)
        base = runner.score(ref, ref)
        result["fp32"] = asdict(base)
        log(f"{len(split.calibration)} calibration frames, {len(evaluation)} evaluation frames "
            f"({result['eval_lines']} lines); FP32 recall {100 * base.recall:.2f} %")
        rank = DetRunner(evaluation[:rank_frames], shape, db, o.threads) if rank_frames else runner
        rank_ref = rank.maps(fp32) if rank_frames else ref
        qdq = Path(tmp) / "det.int8.onnx"

        def measure(ranges, exclude=(), only=(), run=runner, reference=ref) -> DetScore:
            write_qdq(fp32, qdq, ranges, ops, exclude_nodes=tuple(exclude), only_nodes=only)
            return run.score(run.maps(qdq), reference)

        def show(label: str, s: DetScore) -> None:
            log(f"{label:28s}: recall {100 * s.recall:6.2f} %  mask IoU {s.mask_iou:.4f}  prob MAE {s.prob_mae:.4f}")

        ranges_by = {}
        result["methods"] = {}
        for m in methods:
            ranges_by[m] = activation_ranges(hists, m)
            s = measure(ranges_by[m])
            result["methods"][m] = asdict(s)
            show(f"method {m}", s)
        if method == "best":
            method = max(result["methods"], key=lambda m: (result["methods"][m]["recall"], result["methods"][m]["mask_iou"]))
        result["per_node_method"] = method
        ranges = ranges_by.get(method) or activation_ranges(hists, method)
        per_node = {}
        for name in nodes:
            s = measure(ranges, only=(name,), run=rank, reference=rank_ref)
            per_node[name] = asdict(s)
            show(f"only {name}", s)
        result["per_node"] = per_node
        ranked = sorted(nodes, key=lambda n: per_node[n]["mask_iou"])
        result["ranked"] = ranked
        result["exclude_top_k"] = {}
        for k in ks:
            s = measure(ranges, exclude=ranked[:k])
            result["exclude_top_k"][k] = {**asdict(s), "excluded": ranked[:k]}
            show(f"top {k} in float", s)
    return result


def _main(argv: Sequence[str] | None = None) -> int:
    from daemon import config

    p = argparse.ArgumentParser(prog="python -m daemon.quantize.det_sensitivity", description=__doc__.split("\n")[0])
    p.add_argument("--images", required=True, help="calibration frames (labels.jsonl optional)")
    p.add_argument("--eval-images", help="frames with labels.jsonl to score on (default: the held-out share)")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--held-out", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default="percentile,minmax,entropy")
    p.add_argument("--method", default="best", help="range method of the per-layer runs (best: highest recall)")
    p.add_argument("--k", default="0,1,2,3,4,6,8", help="numbers of most sensitive nodes kept in float")
    p.add_argument("--rank-frames", type=int, default=8, help="evaluation frames of the per-node ranking (0 = all)")
    p.add_argument("--max-frames", type=int, default=400)
    p.add_argument("--out", help="write the measurements as JSON here")
    args = p.parse_args(argv)
    cfg = config.load(args.config) if Path(args.config).is_file() else config.Config()
    res = run(cfg, Path(args.images), Path(args.eval_images) if args.eval_images else None, args.held_out, args.seed,
              [m for m in args.methods.split(",") if m], args.method, [int(k) for k in args.k.split(",")],
              args.rank_frames, args.max_frames)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
