"""What is quantized by default, per model role, and which nodes stay in float.

Measured on PP-OCRv4 mobile with rendered labels, and the float nodes of PP-OCRv6 small's recognizer on that model
(bench/RESULTS-int8.md, the figures behind every rule here): quantizing Add, Mul or Div in the recognizer destroys
it, so only Conv and MatMul get Q/DQ there, and its classification head (the MatMul feeding the final Softmax)
stays float. The detector's final Sigmoid must stay float: entropy calibration clips it below the 0.3 DB threshold
and nothing is detected.
"""
from __future__ import annotations

from pathlib import Path

DET_OP_TYPES = ("Conv", "ConvTranspose")
REC_OP_TYPES = ("Conv", "MatMul")
REC_CALIBRATION_LINES = 256   # line crops that calibrate the recognizer (hard frames needed more than clean ones)
# Activation ranges, measured on the recognizer: percentile reads best; minmax loses accuracy (outliers waste the
# INT8 steps) and entropy destroys it (KL clips tensors whose rare large values carry the reading).
METHOD = "percentile"
# Share of |x| the percentile method keeps unclipped, per model. The detector's rarest large activations carry
# small text: one more nine keeps the lines of real photographs that FP32 finds, with the hard labels' recall
# unchanged (bench/RESULTS-int8.md, hard frames); minmax lost lines on both.
DET_PERCENTILE = 99.999
REC_PERCENTILE = 99.99

# Nodes kept in float by measurement, per model file name: the names are Paddle2ONNX's and hold only for that
# model; another model gets only the structural rules. Both models' lists were measured on hard frames
# (bench/RESULTS-int8.md, hard frames): held-out hard labels (motion and defocus blur, tilt, dim, noisy,
# small text, mixed) and real photographs, calibrated on ordinary and hard rendered labels.
MEASURED_EXCLUDES: dict[str, tuple[str, ...]] = {
    # Detector, one node quantized at a time (python -m daemon.quantize.det_sensitivity): the early backbone
    # convolutions move the text mask most; these four in float bring the INT8 mask close to FP32's.
    "ch_PP-OCRv4_det_infer.onnx": ("p2o.Conv.1", "p2o.Conv.2", "p2o.Conv.3", "p2o.Conv.6"),
    # Recognizer: Conv.1, .2, .4 from the per-layer study on clean labels; on hard frames the next ones of the
    # ranking (.3, .6, .7, .29, .32) in float too, which brought INT8 det + rec level with FP32 on the hard set.
    "ch_PP-OCRv4_rec_infer.onnx": (
        "p2o.Conv.1", "p2o.Conv.2", "p2o.Conv.3", "p2o.Conv.4", "p2o.Conv.6", "p2o.Conv.7", "p2o.Conv.29",
        "p2o.Conv.32",
    ),
    # PP-OCRv6 small's recognizer (ocr.model_set pp-ocrv4-det-v6-rec and pp-ocrv6-small; its exporter names
    # nodes without the p2o. prefix), one node quantized at a time (python -m daemon.quantize.sensitivity) on
    # held-out lines of ordinary and hard labels: the first four backbone convolutions and two late ones flip
    # most steps; these six in float bring INT8 level with FP32 (bench/RESULTS-int8.md, "PP-OCRv6 small's
    # recognizer", with the per-node figures and the other counts tried).
    "PP-OCRv6_rec_small.onnx": ("Conv.1", "Conv.2", "Conv.3", "Conv.4", "Conv.56", "Conv.46"),
    # PP-OCRv6 small's detector (the default set pp-ocrv6-small), measured the same way as v4's on the same
    # calibration and hard frames (python -m daemon.quantize.det_sensitivity --methods percentile): every Conv
    # in INT8 already finds as many lines as FP32, no single node moves the mask much, and keeping the most
    # sensitive in float changed nothing (bench/RESULTS-int8.md, top section). Measured: none kept in float.
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
