"""What is quantized by default, per model role, and which nodes stay in float.

Measured on PP-OCRv4 mobile with rendered labels (bench/RESULTS-int8.md, issue 4): quantizing Add, Mul
or Div in the recognizer destroys it (CER 94-99 %), so only Conv and MatMul get Q/DQ there, and its
classification head (the MatMul feeding the final Softmax) stays float. The detector's final Sigmoid
must stay float: entropy calibration clips it below the 0.3 DB threshold and nothing is detected.
"""
from __future__ import annotations

from pathlib import Path

DET_OP_TYPES = ("Conv", "ConvTranspose")
REC_OP_TYPES = ("Conv", "MatMul")
REC_CALIBRATION_LINES = 128   # line crops that calibrate the recognizer
# Activation ranges, measured on the recognizer (128 calibration lines, 218 held-out lines, FP32 CER 0.38 %):
# percentile 99.99 CER 1.28 %, minmax 3.48 % (outliers waste the INT8 steps), entropy 44.7 % (KL clips
# tensors whose rare large values carry the reading).
METHOD = "percentile"

# Nodes kept in float by measurement (python -m daemon.quantize.sensitivity), per model file name: the
# names are Paddle2ONNX's and hold only for that model; another model gets only the structural rules.
# Recognizer, percentile ranges, 218 held-out lines (FP32 CER 0.38 %): Conv+MatMul quantized, head in float,
# CER 1.28 % (+0.91 pt); one node quantized at a time, these three changed the most time steps (96 lines).
MEASURED_EXCLUDES: dict[str, tuple[str, ...]] = {
    "ch_PP-OCRv4_rec_infer.onnx": (
        "p2o.Conv.1",   # 1st backbone block: alone 2.9 % of steps flip, CER +0.44 pt; kept float -> +0.49 pt in all
        "p2o.Conv.2",   # alone 1.8 % flip, +0.35 pt; Conv.1+2 float -> +0.30 pt in all
        "p2o.Conv.4",   # alone 1.1 % flip, +0.18 pt; Conv.1+2+4 float -> +0.08 pt in all (more: +0.04..0.23, noise)
    ),
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
