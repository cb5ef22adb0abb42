"""Per-layer INT8 sensitivity of the recognizer, measured on held-out ground-truth lines.

    python -m daemon.quantize.sensitivity --images DIR [--config FILE] [--out FILE.json]

Lines are cut from rendered labels (labels.jsonl) with their ground-truth boxes; the frames are split
into calibration and held-out exactly as `ocr-daemon calibrate` splits them. One set of |x| histograms
from the calibration lines serves every variant:
  1. each range method with the default op types (Conv, MatMul; head MatMul in float);
  2. one node quantized at a time (the rest float): the share of time steps whose best class differs
     from FP32 ("flips") ranks the nodes; CER against the ground truth is printed beside it;
  3. the k most sensitive nodes kept in float, k growing: CER against the ground truth.
These measurements chose daemon.quantize.defaults (see bench/RESULTS-int8.md).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class LineSet:
    crops: list[np.ndarray]
    texts: list[str]


@dataclass(frozen=True)
class RecScore:
    cer: float            # against the ground truth
    flips: float          # share of time steps whose best class differs from FP32's
    errors: int           # character edits
    chars: int


def truth_lines(frames, limit: int = 0, seed: int = 0) -> LineSet:
    """Ground-truth line crops of the frames (upright: the truth box runs along the text), at most
    limit of them chosen at random (0 = all)."""
    from daemon.ocr.crops import warp_crop

    pairs = [(f.image, ln) for f in frames for ln in (f.truth or ())]
    if limit and len(pairs) > limit:
        pairs = random.Random(seed).sample(pairs, limit)
    crops = [warp_crop(img, np.asarray(ln.box, np.float32)) for img, ln in pairs]
    return LineSet(crops, [ln.text for _, ln in pairs])


class RecRunner:
    """Runs a recognizer ONNX over fixed batches of the lines' pieces; returns the B x T x C outputs."""

    def __init__(self, lines: LineSet, shape: tuple[int, int, int, int], threads: int = 0):
        from daemon.ocr.rec_pre import fixed_batches, to_pieces

        n, _, h, w = shape
        self.pieces = to_pieces(lines.crops, h, w)
        self.batches = [(b.copy(), list(idx)) for b, idx in fixed_batches([p.image for p in self.pieces], n, h, w)]
        self.threads = threads

    def outputs(self, model: Path) -> list[np.ndarray]:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if self.threads:
            opts.intra_op_num_threads = self.threads
        s = ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
        name = s.get_inputs()[0].name
        return [s.run(None, {name: b})[0][: len(idx)] for b, idx in self.batches]

    def texts(self, outs: Sequence[np.ndarray], charset: Sequence[str], n_lines: int) -> list[str]:
        from daemon.ocr.ctc import ctc_greedy

        per_piece = [ctc_greedy(row, charset)[0] for out in outs for row in out]
        lines = [""] * n_lines
        for piece, text in zip(self.pieces, per_piece):
            lines[piece.crop_index] += text
        return lines


def score(runner: RecRunner, outs, ref_outs, charset, lines: LineSet) -> RecScore:
    from daemon.ocr.evaluate import fold_text, levenshtein

    got = runner.texts(outs, charset, len(lines.texts))
    errors = sum(levenshtein(fold_text(t), fold_text(g)) for t, g in zip(lines.texts, got))
    chars = sum(len(fold_text(t)) for t in lines.texts)
    steps = sum(o.shape[0] * o.shape[1] for o in outs)
    flips = sum(int((o.argmax(-1) != r.argmax(-1)).sum()) for o, r in zip(outs, ref_outs)) / max(1, steps)
    return RecScore(errors / max(1, chars), flips, errors, chars)


def run(cfg, images: Path, held_out: float, seed: int, calib_lines: int, held_lines: int, rank_lines: int, methods: Sequence[str],
        method: str, ks: Sequence[int], max_frames: int = 400, log=print) -> dict:
    from daemon.ocr import models
    from daemon.ocr.evaluate import fold_text
    from daemon.quantize import defaults
    from daemon.quantize.frames import load_frames, split_frames
    from daemon.quantize.prepare import prepare_fp32
    from daemon.quantize.qdq import write_qdq
    from daemon.quantize.ranges import activation_ranges, collect_histograms
    from daemon.quantize.readers import rec_batches

    import onnx

    o = cfg.ocr
    shape = (o.rec_batch, 3, o.rec_height, o.rec_width)
    split = split_frames(load_frames(images, max_frames), held_out, seed)
    calib = truth_lines(split.calibration, calib_lines, seed)
    held = truth_lines(split.held_out, held_lines, seed)
    paths = models.resolve(cfg)
    charset = models.load_charset(paths.rec, paths.dictionary)
    result: dict = {"calibration_lines": len(calib.texts), "held_out_lines": len(held.texts),
                    "held_out_chars": sum(len(fold_text(t)) for t in held.texts)}
    with tempfile.TemporaryDirectory(prefix="ocr-sens-") as tmp:
        fp32 = prepare_fp32(paths.rec, shape, Path(tmp) / "rec.fp32.onnx")
        model = onnx.load(str(fp32), load_external_data=False)
        structural = defaults.structural_excludes(model, "rec")
        ops = defaults.REC_OP_TYPES
        nodes = [n.name for n in model.graph.node if n.op_type in ops and n.name not in structural]
        t0 = time.perf_counter()
        hists = collect_histograms(fp32, ops, rec_batches(calib.crops, shape))
        result["histogram_s"] = round(time.perf_counter() - t0, 1)
        runner = RecRunner(held, shape, o.threads)
        ref = runner.outputs(fp32)
        base = score(runner, ref, ref, charset, held)
        result["fp32"] = base.__dict__
        log(f"{len(calib.texts)} calibration lines, {len(held.texts)} held-out lines ({base.chars} chars); "
            f"FP32 CER {100 * base.cer:.2f} %")
        qdq = Path(tmp) / "rec.int8.onnx"

        # the per-node ranking runs on a random part of the held-out lines (51 nodes x all lines is too slow here)
        rank = LineSet(held.crops[:rank_lines], held.texts[:rank_lines]) if rank_lines else held
        rank_runner = RecRunner(rank, shape, o.threads)
        rank_ref = rank_runner.outputs(fp32)

        def measure(ranges, exclude=(), only=(), lines=held, run=runner, reference=ref) -> RecScore:
            write_qdq(fp32, qdq, ranges, ops, exclude_nodes=tuple(structural) + tuple(exclude), only_nodes=only)
            return score(run, run.outputs(qdq), reference, charset, lines)

        ranges_by = {}
        result["methods"] = {}
        for m in methods:
            t0 = time.perf_counter()
            ranges_by[m] = activation_ranges(hists, m)
            s = measure(ranges_by[m])
            result["methods"][m] = {**s.__dict__, "threshold_s": round(time.perf_counter() - t0, 1)}
            log(f"method {m:10s}: CER {100 * s.cer:.2f} % flips {100 * s.flips:.2f} %")
        if method == "best":   # the method with the lowest CER above
            method = min(result["methods"], key=lambda m: result["methods"][m]["cer"])
        result["per_node_method"] = method
        log(f"per-node runs with {method}")
        ranges = ranges_by.get(method) or activation_ranges(hists, method)
        per_node = {}
        for name in nodes:
            s = measure(ranges, only=(name,), lines=rank, run=rank_runner, reference=rank_ref)
            per_node[name] = s.__dict__
            log(f"only {name:16s}: CER {100 * s.cer:.2f} % flips {100 * s.flips:.3f} %")
        result["per_node"] = per_node
        result["rank_lines"] = len(rank.texts)
        ranked = sorted(nodes, key=lambda n: per_node[n]["flips"], reverse=True)
        result["ranked"] = ranked
        result["exclude_top_k"] = {}
        for k in ks:
            s = measure(ranges, exclude=ranked[:k])
            result["exclude_top_k"][k] = {**s.__dict__, "excluded": ranked[:k]}
            log(f"top {k:2d} in float: CER {100 * s.cer:.2f} % (+{100 * (s.cer - base.cer):.2f} pt) "
                f"flips {100 * s.flips:.2f} %")
    return result


def _main(argv: Sequence[str] | None = None) -> int:
    from daemon import config

    p = argparse.ArgumentParser(prog="python -m daemon.quantize.sensitivity", description=__doc__.split("\n")[0])
    p.add_argument("--images", required=True, help="rendered labels with labels.jsonl")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--held-out", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--calib-lines", type=int, default=128)
    p.add_argument("--held-lines", type=int, default=0, help="held-out lines measured at most (0 = all)")
    p.add_argument("--rank-lines", type=int, default=96, help="held-out lines of the per-node ranking (0 = all)")
    p.add_argument("--methods", default="minmax,percentile,entropy")
    p.add_argument("--method", default="best", help="range method of the per-layer runs (best: lowest CER)")
    p.add_argument("--k", default="0,1,2,3,4,6,8,12", help="numbers of most sensitive nodes kept in float")
    p.add_argument("--out", help="write the measurements as JSON here")
    args = p.parse_args(argv)
    cfg = config.load(args.config) if Path(args.config).is_file() else config.Config()
    res = run(cfg, Path(args.images), args.held_out, args.seed, args.calib_lines, args.held_lines, args.rank_lines,
              [m for m in args.methods.split(",") if m], args.method, [int(k) for k in args.k.split(",")])
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
