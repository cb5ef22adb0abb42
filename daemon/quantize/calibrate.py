"""`ocr-daemon calibrate`: FP32 det + rec ONNX -> Q/DQ INT8 ONNX in engines/, with an INT8-vs-FP32 report.

The detector is calibrated on the frames letterboxed as the pipeline letterboxes them; the recognizer on
the line crops the FP32 pipeline itself finds in the same frames. A held-out share of the frames measures
what INT8 costs (engines/int8_report.json, .md). The outputs are engines/<model stem>.int8.qdq.onnx, which
the pipeline loads when ocr.precision is int8 and build-engine turns into INT8 TensorRT engines.

``--report-only`` calibrates nothing: it measures the Q/DQ models already in engines/ on every frame of
another folder (engines/int8_check.json, .md), so INT8 can be checked on a site's own frames before it is
deployed.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from daemon.quantize import defaults

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="config.yaml", help="config file (default: config.yaml)")
    p.add_argument("--images", required=True,
                   help="folder of representative frames (with labels.jsonl for ground truth) or a video file")
    p.add_argument("--method", choices=("percentile", "entropy", "minmax"), default=defaults.METHOD,
                   help=f"activation range calibration (default: {defaults.METHOD}, the best measured)")
    p.add_argument("--held-out", type=float, default=0.2, help="share of frames kept for the report (default 0.2)")
    p.add_argument("--max-frames", type=int, default=400, help="frames read at most (default 400)")
    p.add_argument("--rec-lines", type=int, default=defaults.REC_CALIBRATION_LINES,
                   help=f"line crops that calibrate the recognizer (default {defaults.REC_CALIBRATION_LINES})")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration / held-out split")
    p.add_argument("--speed-runs", type=int, default=10, help="timed calls per model for the report")
    p.add_argument("--report-only", action="store_true",
                   help="calibrate nothing: measure the INT8 models already in engines.dir on every frame of --images "
                        "(engines/int8_check.json, .md)")


def main(args: argparse.Namespace) -> int:
    from daemon import config
    from daemon.ocr.models import ModelFileError
    from daemon.quantize.frames import CalibrationInputError

    try:
        cfg = config.load(args.config, read_secrets=False)
        if args.report_only:
            result = check(cfg, Path(args.images), args.max_frames)
        else:
            result = run(cfg, Path(args.images), args.method, args.held_out, args.max_frames, args.seed,
                         args.speed_runs, args.rec_lines)
    except (CalibrationInputError, ModelFileError) as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return 2
    print(result)
    return 0


def run(cfg, images: Path, method: str, held_out: float, max_frames: int = 400, seed: int = 0,
        speed_runs: int = 10, rec_lines: int = defaults.REC_CALIBRATION_LINES) -> str:
    """Calibrates both models and writes the report; returns a short summary for the terminal."""
    from tqdm import tqdm

    from daemon.ocr import models
    from daemon.quantize import measure, report
    from daemon.quantize.frames import load_frames, split_frames
    from daemon.quantize.prepare import prepare_fp32
    from daemon.quantize.qdq import QdqSettings, quantize_qdq
    from daemon.quantize.readers import det_batches, rec_batches

    import onnx

    t_start = time.perf_counter()
    split = split_frames(load_frames(images, max_frames), held_out, seed)
    paths = models.resolve(cfg)
    o = cfg.ocr
    engines = Path(cfg.engines.dir)
    det_shape = (o.det_batch, 3, *o.det_input_size)
    rec_shape = (o.rec_batch, 3, o.rec_height, o.rec_width)
    out_det, out_rec = models.int8_path(engines, paths.det), models.int8_path(engines, paths.rec)
    calib_images = [f.image for f in split.calibration]
    n_det = -(-len(calib_images) // det_shape[0])
    excludes: dict[str, tuple[str, ...]] = {}
    with tempfile.TemporaryDirectory(prefix="ocr-calib-") as tmp, \
            tqdm(total=n_det + len(calib_images), desc="calibrate", unit="batch") as bar:
        fp32_det = prepare_fp32(paths.det, det_shape, Path(tmp) / "det.fp32.onnx")
        fp32_rec = prepare_fp32(paths.rec, rec_shape, Path(tmp) / "rec.fp32.onnx")
        for role, model_path in (("det", fp32_det), ("rec", fp32_rec)):
            excludes[role] = (defaults.structural_excludes(onnx.load(str(model_path), load_external_data=False), role)
                              + defaults.measured_excludes(paths.det if role == "det" else paths.rec)
                              + tuple(cfg.engines.int8_exclude_nodes))
        bar.set_postfix_str("detector")
        quantize_qdq(fp32_det, out_det, det_batches(calib_images, det_shape),
                     QdqSettings(method, defaults.DET_OP_TYPES, excludes["det"], defaults.DET_PERCENTILE),
                     progress=bar.update)
        bar.set_postfix_str("finding lines")
        crops = _fp32_line_crops(cfg, paths, calib_images, rec_lines, seed, bar.update)
        rec_in = rec_batches(crops, rec_shape)
        bar.total = bar.n + len(rec_in)
        bar.set_postfix_str(f"recognizer ({len(crops)} lines)")
        quantize_qdq(fp32_rec, out_rec, rec_in,
                     QdqSettings(method, defaults.REC_OP_TYPES, excludes["rec"], defaults.REC_PERCENTILE),
                     progress=bar.update)
        bar.set_postfix_str("measuring")
        bar.total = bar.n + len(split.held_out)
        accuracy = (measure.compare_accuracy(o, paths, out_det, out_rec, split.held_out, o.threads, bar.update)
                    if split.held_out else None)
        speeds = [measure.compare_speed("det", fp32_det, out_det, det_shape, speed_runs, o.threads),
                  measure.compare_speed("rec", fp32_rec, out_rec, rec_shape, speed_runs, o.threads)]
        sizes = {"det_fp32": paths.det.stat().st_size, "det_int8": out_det.stat().st_size,
                 "rec_fp32": paths.rec.stat().st_size, "rec_int8": out_rec.stat().st_size}
    settings = {"method": method, "calibration_s": round(time.perf_counter() - t_start, 1), "images": str(images),
                "calibration_frames": len(split.calibration),
                "held_out_frames": len(split.held_out), "rec_calibration_lines": len(crops),
                "det_input_shape": list(det_shape), "rec_input_shape": list(rec_shape),
                "det_op_types": list(defaults.DET_OP_TYPES), "rec_op_types": list(defaults.REC_OP_TYPES),
                "percentile": {"det": defaults.DET_PERCENTILE, "rec": defaults.REC_PERCENTILE},
                "exclude_nodes": {role: sorted(set(names)) for role, names in excludes.items()},
                "outputs": [str(out_det), str(out_rec)]}
    rep = report.build_report(settings, accuracy, speeds, sizes, report.frame_census(split.calibration),
                              report.frame_census(split.held_out))
    js, md = report.write_report(rep, engines)
    return "\n".join([f"wrote {out_det}", f"wrote {out_rec}", f"report {js} and {md}"] + summary_lines(rep))


def check(cfg, images: Path, max_frames: int = 400) -> str:
    """--report-only: the INT8 models in engines.dir against FP32 on every frame of images."""
    from tqdm import tqdm

    from daemon.ocr import models
    from daemon.quantize import measure, report
    from daemon.quantize.frames import load_frames

    frames = load_frames(images, max_frames)
    paths = models.resolve(cfg)
    engines = Path(cfg.engines.dir)
    out_det, out_rec = models.int8_path(engines, paths.det), models.int8_path(engines, paths.rec)
    for path in (out_det, out_rec):
        if not path.is_file():
            raise models.ModelFileError(f"{path} does not exist: run `ocr-daemon calibrate --config FILE --images DIR` "
                                        f"first (--report-only measures existing INT8 models)")
    with tqdm(total=len(frames), desc="measure", unit="frame") as bar:
        accuracy = measure.compare_accuracy(cfg.ocr, paths, out_det, out_rec, frames, cfg.ocr.threads, bar.update)
    settings = {"report_only": True, "images": str(images), "outputs": [str(out_det), str(out_rec)],
                "det_input_shape": [cfg.ocr.det_batch, 3, *cfg.ocr.det_input_size]}
    rep = report.build_report(settings, accuracy, [], {}, None, report.frame_census(frames))
    js, md = report.write_report(rep, engines, stem="int8_check")
    return "\n".join([f"report {js} and {md}"] + summary_lines(rep))


def summary_lines(rep: dict) -> list[str]:
    """One terminal line per group of measured frames, then the warnings."""
    lines = []
    for g in rep.get("accuracy", {}).get("groups", []):
        fp, q = g["scores"]["fp32"], g["scores"]["int8"]
        lines.append(f"{g['name']:>22s}: {g['frames']:3d} frames {g['lines']:4d} lines  CER {100 * fp['cer']:.2f} % -> "
                     f"{100 * q['cer']:.2f} % ({g['cer_increase_points']['int8']:+.2f} pt)  det recall "
                     f"{100 * fp['det_recall']:.1f} % -> {100 * q['det_recall']:.1f} %  "
                     f"{('met' if g['meets_targets'] else 'TARGETS MISSED') if g['judged'] else '(few chars)'}")
    return lines + [f"warning: {w}" for w in rep["warnings"]]


def _fp32_line_crops(cfg, paths, frames, limit: int, seed: int, progress) -> list:
    """Up to limit upright line crops, as the FP32 detector finds them, from frames taken in a seeded random
    order until twice the limit is found, then sampled down. 128 lines kept the recognizer's CER within
    0.1 point of FP32 (bench/RESULTS-int8.md); the detector alone runs on these frames, not the recognizer."""
    import random

    from daemon.backends.onnxruntime import OnnxRuntimeBackend
    from daemon.ocr.crops import warp_crop
    from daemon.ocr.pipeline import OcrPipeline
    from daemon.quantize.measure import detect_quads

    pipeline = OcrPipeline(cfg.ocr, OnnxRuntimeBackend(cfg.ocr.threads, "fp32"), paths)
    order = list(range(len(frames)))
    random.Random(seed).shuffle(order)
    crops: list = []
    try:
        for i in order:
            if len(crops) >= 2 * limit:
                break
            found = [warp_crop(frames[i], q) for q in detect_quads(pipeline, frames[i])]
            # the line classifier turns upside-down crops as it does before recognition in the pipeline
            crops.extend(pipeline.upright(found) if pipeline.cls is not None and found else found)
            progress(1)
    finally:
        pipeline.close()
    if len(crops) > limit:
        crops = random.Random(seed).sample(crops, limit)
    return crops
