"""FP16 copies of the ONNX models, for TensorRT 11: its networks are strongly typed, so precision comes
from the ONNX itself (there is no FP16 builder flag any more).

- ``to_fp16``: the FP32 model with every float tensor in FP16 except the graph's inputs and outputs
  (kept float32: the pre-processing writes float32 and the post-processing reads it).
- ``qdq_to_fp16``: calibrate's Q/DQ model likewise, its unquantized layers in FP16, the way TensorRT 10
  runs it with the FP16 flag beside INT8. QuantizeLinear/DequantizeLinear take FP16 inputs and scales
  only from opset 19, so the model is converted to opset 19 first.

The conversion is ONNX Runtime's own (onnxruntime.transformers.float16), with two fixes measured on the
bundled PP-OCRv4 detector: a node whose float constant does not fit FP16 stays in FP32 (the detector's
first BatchNormalization has a variance far above FP16's 65504; clamped, it flipped a visible share of the
probability map's pixels: bench/RESULTS.md section 26), and the nodes are put back in topological order
(the converter appends its Casts at the end; TensorRT's ONNX parser reads nodes in order).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from daemon.quantize.prepare import constants_to_initializers, restore_metadata

FP16_MAX = 65504.0
QDQ_FP16_OPSET = 19


def to_fp16(src: Path, dst: Path) -> Path:
    return _convert(src, dst, min_opset=None)


def qdq_to_fp16(src: Path, dst: Path) -> Path:
    return _convert(src, dst, min_opset=QDQ_FP16_OPSET)


def _convert(src: Path, dst: Path, min_opset: int | None) -> Path:
    import onnx
    from onnx import version_converter
    from onnxruntime.transformers import float16

    from daemon.atomic_write import write_atomic

    model = onnx.load(str(src))
    metadata = [(p.key, p.value) for p in model.metadata_props]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if min_opset is not None and opset < min_opset:
        model = version_converter.convert_version(model, min_opset)
    constants_to_initializers(model)
    keep_fp32 = _nodes_with_out_of_range_constants(model.graph)
    model = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=keep_fp32)
    topological_sort(model.graph)
    restore_metadata(model, metadata)
    onnx.checker.check_model(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(dst, model.SerializeToString())
    return dst


def _nodes_with_out_of_range_constants(graph) -> list[str]:
    """Names of the nodes that read a float initializer FP16 cannot hold (unnamed nodes get a name)."""
    from onnx import numpy_helper

    big = set()
    for init in graph.initializer:
        if init.data_type == 1:     # FLOAT
            value = numpy_helper.to_array(init)
            if value.size and float(np.abs(value).max()) > FP16_MAX:
                big.add(init.name)
    names = []
    for i, node in enumerate(graph.node):
        if not node.name:
            node.name = f"_fp16_node_{i}"
        if any(name in big for name in node.input):
            names.append(node.name)
    return names


def topological_sort(graph) -> None:
    """Reorders graph.node so that every node comes after the producers of its inputs."""
    known = {t.name for t in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        ready = [n for n in pending if all(name in known for name in n.input)]
        if not ready:
            missing = sorted({name for n in pending for name in n.input if name not in known})[:5]
            raise ValueError(f"the graph has a cycle or reads undefined tensors: {missing}")
        for node in ready:
            known.update(node.output)
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
        ordered.extend(ready)
    del graph.node[:]
    graph.node.extend(ordered)
