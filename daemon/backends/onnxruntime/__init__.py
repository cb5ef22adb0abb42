"""ONNX Runtime on the CPU: development, CI, non-NVIDIA boxes, and the accuracy reference for INT8.

It runs the same FP32 and Q/DQ INT8 ONNX files that TensorRT engines are built from.
"""
from __future__ import annotations

import logging
from typing import Mapping

import numpy as np

from daemon.backends.base import Backend, BackendError, Model, ModelSpec, TensorSpec

log = logging.getLogger(__name__)


class OrtModel(Model):
    def __init__(self, spec: ModelSpec, threads: int, exact_qdq: bool = False):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # exact_qdq: Q/DQ pairs computed as written, in float (what TensorRT's INT8 kernels compute), not
        # fused into ONNX Runtime's u8s8 integer kernels, which saturate on x86 CPUs without VNNI.
        opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC if exact_qdq
                                         else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        if threads:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1      # one model runs at a time in the inference thread
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(spec.onnx_path, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:   # ORT raises its own exception types for missing and malformed files
            raise BackendError(f"{spec.role} model {spec.onnx_path!r} cannot be loaded: {exc}") from None
        inp = self._session.get_inputs()
        if len(inp) != 1:
            raise BackendError(f"{spec.role} model {spec.onnx_path!r} has {len(inp)} inputs; expected one image input")
        self.inputs = (TensorSpec(inp[0].name, tuple(spec.input_shape), np.dtype(np.float32)),)
        # One warm-up run fixes the output shapes for this input shape (the ONNX declares them dynamic).
        outs = self._session.run(None, {inp[0].name: np.zeros(spec.input_shape, dtype=np.float32)})
        self.outputs = tuple(TensorSpec(o.name, tuple(v.shape), np.dtype(v.dtype))
                             for o, v in zip(self._session.get_outputs(), outs))

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        for spec in self.inputs:
            if tuple(feeds[spec.name].shape) != spec.shape:
                raise ValueError(f"input {spec.name} has shape {feeds[spec.name].shape}; the model is fixed at {spec.shape}")
        values = self._session.run(None, dict(feeds))
        return {o.name: v for o, v in zip(self.outputs, values)}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, threads: int = 0, precision: str = "fp32", exact_qdq: bool = False):
        self.threads = threads
        self.precision = precision
        self.exact_qdq = exact_qdq     # for INT8 accuracy measurements (daemon.quantize.measure)

    def load(self, spec: ModelSpec) -> Model:
        return OrtModel(spec, self.threads, self.exact_qdq)
