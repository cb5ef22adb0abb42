"""Backend choice: `auto` takes TensorRT where it loads and its engines match, else ONNX Runtime."""
from __future__ import annotations

import logging

from daemon.backends.base import Backend, BackendError
from daemon.config import Config

log = logging.getLogger(__name__)


def create_backend(cfg: Config) -> Backend:
    """The backend the config asks for; `auto` logs why it did not take TensorRT."""
    if cfg.backend in ("tensorrt", "auto"):
        try:
            from daemon.backends.tensorrt import TensorRTBackend, tensorrt_available
        except ImportError as exc:   # the GPU code is optional on CPU-only installs
            available, why = False, f"the TensorRT backend module cannot be imported ({exc})"
        else:
            available, why = tensorrt_available()
        if available:
            return TensorRTBackend(cfg)
        if cfg.backend == "tensorrt":
            raise BackendError(f"backend: tensorrt was asked for but {why}")
        log.info("backend auto: using ONNX Runtime on the CPU because %s", why)
    return cpu_backend(cfg)


def cpu_backend(cfg: Config) -> Backend:
    """ONNX Runtime on the CPU, running the FP32 or the calibrated Q/DQ INT8 models."""
    from daemon.backends.onnxruntime import OnnxRuntimeBackend

    precision = cfg.ocr.precision
    if precision == "fp16":
        log.warning("ocr.precision fp16 applies to TensorRT engines; ONNX Runtime on the CPU runs the FP32 models")
        precision = "fp32"
    return OnnxRuntimeBackend(threads=cfg.ocr.threads, precision=precision)
