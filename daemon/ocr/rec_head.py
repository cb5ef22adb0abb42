"""The recognizer's head: its softmax over every class as shipped, or the top 3 classes of each step.

Greedy CTC with runner-ups (ctc.py) reads per step only the best class and its probability and, where a character
is emitted, the most probable class that is neither the blank nor that character: always among the step's three
most probable. A TopK(3) after the softmax (``top3_model``, a graph edit) makes the recognizer return N x T x 3
probabilities and class indices instead of N x T x C probabilities. ONNX's TopK puts the lower index first among
equal values, as numpy's argmax picks it, so both forms decode to the same characters, steps and probabilities.

Which backend runs which head was measured (bench/RESULTS.md section 36): TensorRT engines are built with the top-3
head (no argmax over every class left to the CPU, a small copy to the host); ONNX Runtime keeps the softmax head,
because its TopK kernel costs more CPU than numpy's argmaxes over the same probabilities.
"""
from __future__ import annotations

from pathlib import Path

MODEL = "model"     # the model's own outputs, as shipped
TOP3 = "top3"       # the recognizer's softmax followed by TopK(3): VALUES and CLASSES
HEADS = (MODEL, TOP3)

TOP_K = 3
VALUES = "top3_values"      # N x T x 3 float32, best first
CLASSES = "top3_classes"    # N x T x 3 int32, the class of each value


def top3_model(model):
    """``model`` (an onnx.ModelProto of a recognizer with one N x T x C softmax output) with that output replaced by
    its top 3 classes per step: VALUES (float32) and CLASSES (int32; TopK's int64 indices cast, so every backend
    hands the host the same type). The model is edited in place and returned; metadata (the dictionary) is kept."""
    from onnx import TensorProto, helper

    graph = model.graph
    if len(graph.output) != 1:
        raise ValueError(f"the recognizer has {len(graph.output)} outputs; the top-3 head needs exactly one")
    probs = graph.output[0].name
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in graph.output[0].type.tensor_type.shape.dim]
    if len(dims) != 3:
        raise ValueError(f"the recognizer's output {probs!r} has {len(dims)} dimensions; expected N x T x C")
    k = f"{probs}.top3_k"
    graph.initializer.append(helper.make_tensor(k, TensorProto.INT64, [1], [TOP_K]))
    indices = f"{probs}.top3_indices"
    # sorted=1, largest=1: best first; ties in the lower index first (the ONNX TopK specification)
    graph.node.append(helper.make_node("TopK", [probs, k], [VALUES, indices], name="top3_head",
                                       axis=-1, largest=1, sorted=1))
    graph.node.append(helper.make_node("Cast", [indices], [CLASSES], name="top3_head_classes",
                                       to=TensorProto.INT32))
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info(VALUES, TensorProto.FLOAT, [dims[0], dims[1], TOP_K]),
                         helper.make_tensor_value_info(CLASSES, TensorProto.INT32, [dims[0], dims[1], TOP_K])])
    return model


def write_top3(src: Path, dst: Path) -> Path:
    """The top-3 copy of the recognizer ``src``, written atomically to ``dst`` (afresh each time: never older than
    its source)."""
    import onnx

    from daemon.atomic_write import write_atomic

    model = top3_model(onnx.load(str(src)))
    onnx.checker.check_model(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(dst, model.SerializeToString())
    return dst


def declared_classes(rec_model: Path) -> int:
    """The class count C of the recognizer's N x T x C output as its ONNX file declares it; -1 where it is dynamic.
    The top-3 head hides C from the engine's outputs, so the dictionary is checked against this."""
    import onnx

    model = onnx.load(str(rec_model), load_external_data=False)
    dims = model.graph.output[0].type.tensor_type.shape.dim
    return int(dims[-1].dim_value) if dims and dims[-1].HasField("dim_value") else -1
