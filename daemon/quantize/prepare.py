"""An FP32 model made ready for per-channel Q/DQ: opset 13, the fixed input shape, metadata kept.

PP-OCR's ONNX files are opset 12; per-channel QuantizeLinear needs 13 (onnx.checker rejects the
axis attribute otherwise). ORT's quant_pre_process would drop metadata_props, where the
recognizer keeps its character dictionary, so this does only what quantization needs.
"""
from __future__ import annotations

from pathlib import Path

QDQ_OPSET = 13


def prepare_fp32(src: Path, input_shape: tuple[int, ...], dst: Path) -> Path:
    """Writes src converted to opset >= 13 with its single input fixed to input_shape; returns dst."""
    import onnx
    from onnx import version_converter

    model = onnx.load(str(src))
    metadata = [(p.key, p.value) for p in model.metadata_props]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < QDQ_OPSET:
        model = version_converter.convert_version(model, QDQ_OPSET)
    constants_to_initializers(model)
    graph_input = model.graph.input[0]
    dims = graph_input.type.tensor_type.shape.dim
    if len(dims) != len(input_shape):
        raise ValueError(f"{src}: input {graph_input.name} has rank {len(dims)}, the config gives {input_shape}")
    for dim, size in zip(dims, input_shape):
        dim.ClearField("dim_param")
        dim.dim_value = int(size)
    model = onnx.shape_inference.infer_shapes(model)
    restore_metadata(model, metadata)
    onnx.checker.check_model(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return dst


def restore_metadata(model, metadata: list[tuple[str, str]]) -> None:
    """Puts metadata_props back (the rec dictionary lives there); existing keys are overwritten."""
    del model.metadata_props[:]
    for key, value in metadata:
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value


def free_batch(model) -> None:
    """Makes the batch dimension symbolic again after calibration at one fixed shape, so one Q/DQ model
    serves every batch the config asks for (rec and rec_tail; a det_batch changed later); the height
    and width stay fixed. Intermediate shapes inferred at the calibration batch are dropped."""
    for tensor in list(model.graph.input) + list(model.graph.output):
        dims = tensor.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    del model.graph.value_info[:]


def constants_to_initializers(model) -> None:
    """Paddle2ONNX stores weights as Constant nodes; ORT's quantizer only quantizes initializers
    (with Constant weights it leaves every Conv weight and bias in float)."""
    keep = []
    for node in model.graph.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is not None:
            value.name = node.output[0]
            model.graph.initializer.append(value)
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
