"""TensorRT backend: prebuilt fixed-shape engines, pycuda buffers and streams, GPU letterboxing.

What was executed where (kept honest because TensorRT cannot be installed on any of our machines):
- Executed on the GPU test machine (one H100, CUDA 13, pycuda built from source): everything this
  backend stands on that is not TensorRT: daemon/gpu (context, fused letterbox kernel, pinned and
  mapped buffers, two streams with two buffer sets, event timing), through tests/test_gpu_*.py and
  bench/gpu_bench.py, with a calibrated busy kernel standing in for ``execute_async_v3``.
- Executed everywhere (CI): engine naming, sidecars and their checks, element sizes, the refusal
  messages (tests/test_engine_sidecar.py), doctor (tests/test_doctor.py).
- Executed everywhere (CI) against NVIDIA's real Python bindings of TensorRT 8.6.1, 10.3.0, 10.16.1.11
  and 11.4.0.106 (imported over stub libraries, nothing runs inside TensorRT) and TensorRT-RTX 1.7.1.116
  (x86-64; its real libraries, every call shadowed): every TensorRT class,
  enum member, method, property and call arity that build.py and session.py use, on the code path each
  version takes (tests/test_tensorrt_bindings.py).
- Executed everywhere (CI, x86-64) with NVIDIA's real TensorRT-RTX 1.7 parser and builder (PyPI wheels;
  its builder needs no GPU): `ocr-daemon build-engine --compute-capability` for every model of both model
  sets at fp32, fp16 and int8 (calibrate's Q/DQ models), tests/test_tensorrt_rtx_build.py.
- Never executed: TensorRT 8.6/10.x/11.x themselves (no machine of ours can install their libraries), and
  deserializing or running any engine, TensorRT-RTX's included (it needs an RTX-class GPU: compute
  capability 7.5 to 12.1 but not 9.0, the only GPUs we have). Their GPU tests skip with "tensorrt not
  importable (not installable on this machine; see README)".

The TensorRT-specific code is small and isolated: generation.py (what differs between 8.6, 10, 11 and
TensorRT-RTX), shapes.py (fixed shapes, pure), session.py (load and run), and daemon/engines/build.py (build).
"""
from __future__ import annotations

import logging
from pathlib import Path

from daemon.backends.base import Backend, BackendError, Model, ModelSpec
from daemon.backends.tensorrt.generation import TENSORRT
from daemon.config import Config
from daemon.engines.plan import ENGINE_REC_HEAD, plan_for_spec, rebuild_command
from daemon.ocr.rec_head import TOP3, declared_classes

log = logging.getLogger(__name__)


def import_tensorrt():
    """(module, TensorRTInstall) of the first TensorRT edition that imports: TensorRT, else TensorRT-RTX.
    ImportError naming why each did not."""
    import importlib

    from daemon.backends.tensorrt.generation import (EDITIONS, TENSORRT_RTX, TensorRTInstall,
                                                     target_compute_capabilities)

    why = []
    for edition in EDITIONS:
        try:
            trt = importlib.import_module(edition.module)
        except ImportError as exc:     # a missing library under the module is an ImportError too
            why.append(f"{edition.module}: {exc}")
            continue
        # TensorRT-RTX names the compute capabilities its builder targets; TensorRT builds for the GPU it is on.
        ccs = target_compute_capabilities(trt.ComputeCapability.__members__) if edition == TENSORRT_RTX else ()
        return trt, TensorRTInstall(edition, str(trt.__version__), ccs)
    raise ImportError("; ".join(why))


def tensorrt_available() -> tuple[bool, str]:
    """(True, what) when a TensorRT edition imports and pycuda sees a GPU, else (False, why not)."""
    try:
        _, found = import_tensorrt()
    except ImportError as exc:
        return False, f"no TensorRT edition is importable ({exc})"
    from daemon.gpu import pycuda_available

    ok, why = pycuda_available()
    if not ok:
        return False, why
    return True, f"{found.label} on {why}"


def device_info(ctx, found):
    """What an engine built or loaded through ``ctx`` (a daemon.gpu.context.CudaContext) with ``found``
    (a TensorRTInstall) is tied to."""
    from daemon.engines.sidecar import DeviceInfo

    facts = ctx.facts
    return DeviceInfo(facts.name, facts.compute_capability, found.version, facts.multiprocessors,
                      int(ctx.device.total_memory()) // 2**20, found.edition.name)


class TensorRTBackend(Backend):
    name = "tensorrt"
    rec_head = ENGINE_REC_HEAD

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.precision = cfg.ocr.precision
        self._ctx = None
        self._trt_logger = None

    def _context(self):
        if self._ctx is None:
            from daemon.gpu.context import CudaContext, GpuUnavailable

            try:
                self._ctx = CudaContext(kernels_dir=self.cfg.engines.dir, config_path=self.cfg.source_path)
            except GpuUnavailable as exc:
                raise BackendError(f"TensorRT backend: {exc}") from None
        return self._ctx

    def device(self):
        """DeviceInfo of this box: what engines must have been built for. A GPU that the TensorRT-RTX
        found here cannot run on (compute capability 9.0, say) is a BackendError naming the way out."""
        try:
            _, found = import_tensorrt()
        except ImportError as exc:
            raise BackendError(f"TensorRT backend: no TensorRT edition is importable ({exc})") from None
        device = device_info(self._context(), found)
        if not found.runs_on(device.compute_capability):
            raise BackendError(f"{found.label} runs on compute capability {', '.join(found.compute_capabilities)}; "
                               f"this {device.gpu_name} is {device.compute_capability} (use {TENSORRT.supported})")
        return device

    def load(self, spec: ModelSpec) -> Model:
        try:
            trt, found = import_tensorrt()
        except ImportError as exc:
            raise BackendError(f"TensorRT backend: no TensorRT edition is importable ({exc})") from None
        from daemon.backends.tensorrt.engine import TrtModel
        from daemon.backends.tensorrt.generation import UnsupportedTensorRT, generation
        from daemon.backends.tensorrt.session import EngineSession

        try:
            gen = generation(found.version, found.edition)
        except UnsupportedTensorRT as exc:
            raise BackendError(str(exc)) from None
        from daemon.engines.check import check_engine

        plan = plan_for_spec(spec, self.precision, self.cfg.engines.dir)
        check = check_engine(plan, self.device(), self.cfg.engines.dir)
        if not check.ok:
            raise BackendError(
                f"{spec.role} engine cannot be used: {'; '.join(check.problems)}. "
                f"Rebuild it on this device with `{rebuild_command(self.precision, self.cfg.source_path)}`")
        if self._trt_logger is None:
            self._trt_logger = trt.Logger(trt.Logger.WARNING)
        log.info("loading %s engine %s%s", spec.role, check.path, "".join(f" ({n})" for n in check.notes))
        engine_bytes = Path(check.path).read_bytes()
        hint = rebuild_command(self.precision, self.cfg.source_path)

        def open_session(alloc, contexts):
            return EngineSession(trt, engine_bytes, spec.role, tuple(spec.input_shape), contexts, alloc,
                                 self._trt_logger, hint, gen)

        classes = declared_classes(Path(spec.onnx_path)) if spec.head == TOP3 else None
        return TrtModel(self._context(), open_session, spec, self.cfg.gpu, classes)

    def describe(self) -> dict:
        return {"backend": self.name, "precision": self.precision}

    def close(self) -> None:
        """Releases the CUDA context (after a fallback to the CPU, nothing of ours stays on the GPU)."""
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None
