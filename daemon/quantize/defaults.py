"""What is quantized by default, per model role, and which nodes stay in float.

Measured on PP-OCRv4 mobile with rendered labels (bench/RESULTS-int8.md, issue 4): quantizing Add, Mul
or Div in the recognizer destroys it (CER 94-99 %), so only Conv and MatMul get Q/DQ there, and its
classification head (the MatMul feeding the final Softmax) stays float. The detector's final Sigmoid
must stay float: entropy calibration clips it below the 0.3 DB threshold and nothing is detected.
"""
from __future__ import annotations

DET_OP_TYPES = ("Conv", "ConvTranspose")
REC_OP_TYPES = ("Conv", "MatMul")


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
