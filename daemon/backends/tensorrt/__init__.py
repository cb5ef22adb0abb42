"""TensorRT backend: prebuilt fixed-shape engines, pycuda buffers and streams, GPU letterboxing.

What was executed where (kept honest because TensorRT cannot be installed on any of our machines):
- Executed on the GPU test machine (one H100, CUDA 13, pycuda built from source): everything this
  backend stands on that is not TensorRT: daemon/gpu (context, fused letterbox kernel, pinned and
  mapped buffers, two streams with two buffer sets, event timing), through tests/test_gpu_*.py and
  bench/gpu_bench.py, with a calibrated busy kernel standing in for ``execute_async_v3``.
- Executed everywhere (CI): engine naming, sidecars and their checks, element sizes, the refusal
  messages (tests/test_engine_sidecar.py), doctor (tests/test_doctor.py).
- Executed everywhere (CI) against NVIDIA's real Python bindings of TensorRT 8.6.1, 10.3.0, 10.16.1.11
  and 11.4.0.106 (imported over stub libraries, nothing runs inside TensorRT): every TensorRT class,
  enum member, method, property and call arity that build.py and session.py use, on the code path each
  version takes (tests/test_tensorrt_bindings.py).
- Never executed: TensorRT itself (no machine of ours can install its libraries). Their GPU tests
  skip with "tensorrt not importable (not installable on this machine; see README)".

The TensorRT-specific code is small and isolated: generation.py (what differs between 8.6, 10 and 11),
shapes.py (fixed shapes, pure), session.py (load and run), and daemon/engines/build.py (build).
"""
from __future__ import annotations

import logging
from pathlib import Path

from daemon.backends.base import Backend, BackendError, Model, ModelSpec
from daemon.config import Config
from daemon.engines.plan import plan_for_spec, rebuild_command

log = logging.getLogger(__name__)


def tensorrt_available() -> tuple[bool, str]:
    """(True, what) when TensorRT imports and pycuda sees a GPU, else (False, why not)."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        return False, f"tensorrt is not importable ({exc})"
    from daemon.gpu import pycuda_available

    ok, why = pycuda_available()
    if not ok:
        return False, why
    return True, f"TensorRT {trt.__version__} on {why}"


def device_info(ctx, tensorrt_version: str):
    """What an engine built or loaded through ``ctx`` (a daemon.gpu.context.CudaContext) is tied to."""
    from daemon.engines.sidecar import DeviceInfo

    facts = ctx.facts
    return DeviceInfo(facts.name, facts.compute_capability, tensorrt_version, facts.multiprocessors,
                      int(ctx.device.total_memory()) // 2**20)


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.precision = cfg.ocr.precision
        self._ctx = None
        self._trt_logger = None

    def _context(self):
        if self._ctx is None:
            from daemon.gpu.context import CudaContext, GpuUnavailable

            try:
                self._ctx = CudaContext(kernels_dir=self.cfg.engines.dir)
            except GpuUnavailable as exc:
                raise BackendError(f"TensorRT backend: {exc}") from None
        return self._ctx

    def device(self):
        """DeviceInfo of this box: what engines must have been built for."""
        import tensorrt as trt

        return device_info(self._context(), trt.__version__)

    def load(self, spec: ModelSpec) -> Model:
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise BackendError(f"TensorRT backend: tensorrt is not importable ({exc})") from None
        from daemon.backends.tensorrt.engine import TrtModel
        from daemon.backends.tensorrt.generation import UnsupportedTensorRT, generation
        from daemon.backends.tensorrt.session import EngineSession

        try:
            generation(trt.__version__)
        except UnsupportedTensorRT as exc:
            raise BackendError(str(exc)) from None
        from daemon.engines.check import check_engine

        plan = plan_for_spec(spec, self.precision, self.cfg.engines.dir)
        check = check_engine(plan, self.device(), self.cfg.engines.dir)
        if not check.ok:
            raise BackendError(
                f"{spec.role} engine cannot be used: {'; '.join(check.problems)}. "
                f"Rebuild it on this device with `{rebuild_command(self.precision)}`")
        if self._trt_logger is None:
            self._trt_logger = trt.Logger(trt.Logger.WARNING)
        log.info("loading %s engine %s", spec.role, check.path)
        engine_bytes = Path(check.path).read_bytes()
        hint = rebuild_command(self.precision)

        def open_session(alloc, contexts):
            return EngineSession(trt, engine_bytes, spec.role, tuple(spec.input_shape), contexts, alloc,
                                 self._trt_logger, hint)

        return TrtModel(self._context(), open_session, spec, self.cfg.gpu)

    def describe(self) -> dict:
        return {"backend": self.name, "precision": self.precision}

    def close(self) -> None:
        """Releases the CUDA context (after a fallback to the CPU, nothing of ours stays on the GPU)."""
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None
