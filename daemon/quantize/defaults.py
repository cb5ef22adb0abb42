"""What is quantized by default, per model role, and which nodes stay in float.

Measured on PP-OCRv4 mobile with rendered labels (bench/RESULTS-int8.md, issue 4), and the float nodes of
PP-OCRv6 small's recognizer on that model (issue 12): quantizing Add, Mul or Div in the recognizer destroys
it (CER 94-99 %), so only Conv and MatMul get Q/DQ there, and its classification head (the MatMul feeding
the final Softmax) stays float. The detector's final Sigmoid must stay float: entropy calibration clips it
below the 0.3 DB threshold and nothing is detected.
"""
from __future__ import annotations

from pathlib import Path

DET_OP_TYPES = ("Conv", "ConvTranspose")
REC_OP_TYPES = ("Conv", "MatMul")
REC_CALIBRATION_LINES = 256   # line crops that calibrate the recognizer (128 held clean labels; hard frames used 256)
# Activation ranges, measured on the recognizer (128 calibration lines, 218 held-out lines, FP32 CER 0.38 %):
# percentile 99.99 CER 1.28 %, minmax 3.48 % (outliers waste the INT8 steps), entropy 44.7 % (KL clips
# tensors whose rare large values carry the reading).
METHOD = "percentile"
# Share of |x| the percentile method keeps unclipped, per model. The recognizer's 99.99 as above. The detector's
# rarest large activations carry small text: at 99.99 INT8 lost 3 of the 42 lines of the real photographs
# (small text, tight lines) that FP32 finds, at 99.999 none, with the hard labels' recall unchanged
# (bench/RESULTS-int8.md, issue 10); minmax lost 1 there and 1 of the hard labels.
DET_PERCENTILE = 99.999
REC_PERCENTILE = 99.99

# Nodes kept in float by measurement, per model file name: the names are Paddle2ONNX's and hold only for that
# model; another model gets only the structural rules. Both models' lists were measured on hard frames
# (bench/RESULTS-int8.md, issue 10): 42 held-out hard labels (motion and defocus blur, tilt, dim, noisy,
# small text, mixed) and 8 real photographs, calibrated on 60 ordinary + 30 hard rendered labels.
MEASURED_EXCLUDES: dict[str, tuple[str, ...]] = {
    # Detector, one node quantized at a time (python -m daemon.quantize.det_sensitivity): the early backbone
    # convolutions move the text mask most (mask IoU with FP32 alone: Conv.2 0.938, Conv.1 0.972, Conv.3 0.973,
    # Conv.6 0.974; every other node >= 0.987); these four in float: mask IoU 0.914 -> 0.969 on hard frames.
    "ch_PP-OCRv4_det_infer.onnx": ("p2o.Conv.1", "p2o.Conv.2", "p2o.Conv.3", "p2o.Conv.6"),
    # Recognizer: Conv.1, .2, .4 from the per-layer study on clean labels (+0.91 -> +0.08 pt); on hard frames
    # those three left INT8 rec alone at +0.51 pt, and the next ones of the ranking (.3, .6, .7, .29, .32) in
    # float brought INT8 det + rec to -0.04 pt on the hard set.
    "ch_PP-OCRv4_rec_infer.onnx": (
        "p2o.Conv.1",   # 1st backbone block: alone 2.9 % of steps flip, CER +0.44 pt (clean labels)
        "p2o.Conv.2",   # alone 1.8 % flip, +0.35 pt
        "p2o.Conv.3",
        "p2o.Conv.4",   # alone 1.1 % flip, +0.18 pt
        "p2o.Conv.6",
        "p2o.Conv.7",   # alone 0.85 % flip
        "p2o.Conv.29",  # alone 0.93 % flip
        "p2o.Conv.32",  # alone 0.72 % flip
    ),
    # PP-OCRv6 small's recognizer (ocr.model_set pp-ocrv4-det-v6-rec and pp-ocrv6-small; its exporter names
    # nodes without the p2o. prefix), one node quantized at a time (python -m daemon.quantize.sensitivity) on
    # 120 held-out lines of ordinary and hard labels: the first four backbone convolutions and two late ones
    # flip most steps. These six in float: CER +0.48 -> +0.03 pt over FP32 on 320 held-out lines
    # (bench/RESULTS-int8.md, "PP-OCRv6 small's recognizer"); k = 2, 3, 4 gained nothing, 8 and 12 no more.
    "PP-OCRv6_rec_small.onnx": (
        "Conv.1",       # alone 1.12 % of steps flip
        "Conv.2",       # 1.05 %
        "Conv.3",       # 0.48 %
        "Conv.4",       # 0.42 %
        "Conv.56",      # 0.39 %
        "Conv.46",      # 0.34 %
    ),
    # PP-OCRv6 small's detector (the default set pp-ocrv6-small), measured the same way as v4's on the same
    # 90 calibration and 42 hard frames (python -m daemon.quantize.det_sensitivity --methods percentile, on the
    # GPU machine's 16 vCPUs, 2026-12-03): every Conv in INT8 already finds 97.4 % of the 389 lines against
    # FP32's 97.2 % (mask IoU 0.960); no single node costs more than 0.009 of mask IoU (Conv.41 0.991, Conv.82
    # 0.992, Conv.42 0.993), and the 1 to 6 most sensitive in float moved recall by at most 0.3 pt either way
    # (mask IoU 0.959-0.962). Measured: none kept in float.
    "PP-OCRv6_det_small.onnx": (),
}


def measured_excludes(model_path: Path) -> tuple[str, ...]:
    return MEASURED_EXCLUDES.get(Path(model_path).name, ())


def op_types(role: str) -> tuple[str, ...]:
    return DET_OP_TYPES if role == "det" else REC_OP_TYPES


def structural_excludes(model, role: str) -> tuple[str, ...]:
    """Node names found by graph structure: the op feeding each graph output (det Sigmoid's input conv
    stays quantized; the Sigmoid itself is not a quantized type) and, for rec, the head MatMul."""
    producers = {out: node for node in model.graph.node for out in node.output}
    names: list[str] = []
    for graph_out in model.graph.output:
        node = producers.get(graph_out.name)
        hops = 0
        # walk back through the float-only tail (Softmax, Sigmoid, Add of a bias, Reshape...) to the head op
        while node is not None and hops < 6:
            if node.op_type in ("MatMul", "Gemm") and role == "rec":
                names.append(node.name)
                break
            node = producers.get(node.input[0])
            hops += 1
    return tuple(names)
