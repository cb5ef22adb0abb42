"""Runs the daemon's real TensorRT code (daemon/engines/build.py, daemon/backends/tensorrt/session.py)
against one version's real bindings through the shadow module, and prints a JSON report.

    LD_LIBRARY_PATH=<stub libs> python -m tests.trt_api.scenarios <site with tensorrt_bindings> <tmp dir>
    python -m tests.trt_api.scenarios <site with tensorrt_rtx_bindings> <tmp dir> tensorrt_rtx_bindings

Run by tests/test_tensorrt_bindings.py in a subprocess per version (the dynamic loader reads
LD_LIBRARY_PATH at start, and each version's module must be imported fresh). TensorRT-RTX's bindings are
the installed wheel over its real libraries (nothing runs in them here either: every call is shadowed), and
its module is what the daemon finds as `tensorrt_rtx`, with `tensorrt` made unimportable.
"""
from __future__ import annotations

import json
import shutil
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

DET_SHAPE = (1, 3, 736, 960)
PROB_SHAPE = (1, 1, 736, 960)
DYNAMIC_IN = (-1, 3, -1, -1)
DYNAMIC_OUT = (-1, 1, -1, -1)


class FakeCudaContext:
    """What build_engine needs of daemon.gpu.context.CudaContext: the device facts and active()."""
    facts = SimpleNamespace(name="Orin", compute_capability="8.7", multiprocessors=8, integrated=True)
    device = SimpleNamespace(total_memory=lambda: 7620 << 20)
    rtx_facts = SimpleNamespace(name="NVIDIA GeForce RTX 4070", compute_capability="8.9", multiprocessors=46,
                                integrated=False)       # TensorRT-RTX builds for no Jetson

    @contextmanager
    def active(self):
        yield


def _build_hooks(real, rec):
    from tests.trt_api.shadow import Shadow

    def get_input(network, i):
        return network._state.setdefault("input", Shadow(rec, "ITensor", name="x", shape=DYNAMIC_IN))

    def get_output(network, i):
        return network._state.setdefault("output", Shadow(rec, "ITensor", name="y", shape=PROB_SHAPE))

    return {
        "INetworkDefinition.num_inputs": lambda self: 1,
        "INetworkDefinition.get_input": get_input,
        "INetworkDefinition.num_outputs": lambda self: 1,
        "INetworkDefinition.get_output": get_output,
        "OnnxParser.num_errors": lambda self: 0,
        "Builder.build_serialized_network": lambda self, network, config: b"serialized engine",
        "ITimingCache.serialize": lambda self: b"timing cache",
    }


def build(real, rec, tmp: Path, precision: str) -> dict:
    from daemon.backends.base import ModelSpec
    from daemon.config import EnginesConfig, from_dict
    from daemon.engines import build as build_mod
    from daemon.engines.plan import plan_for_spec
    from daemon.ocr import models

    det = models.resolve(from_dict({})).det
    engines = tmp / f"engines-{precision}"
    engines.mkdir(parents=True, exist_ok=True)
    plan = plan_for_spec(ModelSpec("det", str(det), DET_SHAPE), precision, engines)
    if precision == "int8":
        shutil.copyfile(det, plan.source_onnx)     # stands in for calibrate's Q/DQ model: parse is shadowed
    sources = []

    def onnx_to_parse(source, model, engines_dir):
        sources.append(source)
        return model

    build_mod.onnx_to_parse = onnx_to_parse       # the FP16 conversion itself is tested in test_quantize
    cfg = EnginesConfig(dir=str(engines), workspace_mib=256, timing_cache=str(engines / "timing.cache"))
    ctx = FakeCudaContext()
    if RTX:
        ctx.facts = FakeCudaContext.rtx_facts
    path = build_mod.build_engine(plan, cfg, build_mod.gpu_target(ctx)).path
    sidecar = json.loads(Path(str(path) + ".json").read_text())
    return {"engine": path.name, "sources": sources, "sidecar_shapes": sidecar["input_shapes"],
            "sidecar_outputs": sidecar["output_shapes"]}


def _load_hooks(real, rec, dynamic: bool):
    from tests.trt_api.shadow import Shadow

    declared = {"x": DYNAMIC_IN if dynamic else DET_SHAPE, "y": DYNAMIC_OUT if dynamic else PROB_SHAPE}
    resolved = {"x": DET_SHAPE, "y": PROB_SHAPE}

    def context_shape(ctx, name):
        return resolved[name] if (not dynamic or ctx._state.get("input_set")) else declared[name]

    def set_input_shape(ctx, name, shape):
        ctx._state["input_set"] = tuple(shape)
        return True

    return {
        "Runtime.deserialize_cuda_engine": lambda self, data: Shadow(rec, "ICudaEngine"),
        "ICudaEngine.num_io_tensors": lambda self: 2,
        "ICudaEngine.get_tensor_name": lambda self, i: ["x", "y"][i],
        "ICudaEngine.get_tensor_mode": lambda self, name: (real.TensorIOMode.INPUT if name == "x"
                                                           else real.TensorIOMode.OUTPUT),
        "ICudaEngine.get_tensor_dtype": lambda self, name: real.DataType.FLOAT,
        "ICudaEngine.get_tensor_shape": lambda self, name: declared[name],
        "ICudaEngine.get_tensor_profile_shape": lambda self, name, index: [(1, 3, 32, 32), DET_SHAPE, (1, 3, 1024, 1024)],
        "ICudaEngine.device_memory_size": lambda self: 48 << 20,
        "ICudaEngine.device_memory_size_v2": lambda self: 48 << 20,
        "IExecutionContext.get_tensor_shape": context_shape,
        "IExecutionContext.set_input_shape": set_input_shape,
    }


def load(real, rec, tmp: Path, dynamic: bool) -> dict:
    from daemon.backends.tensorrt import import_tensorrt
    from daemon.backends.tensorrt.generation import TENSORRT_RTX, generation
    from daemon.backends.tensorrt.session import EngineSession

    trt, _ = import_tensorrt()

    blocks = []

    def alloc(nbytes):
        blocks.append(nbytes)
        return 0x10000 * len(blocks)

    gen = generation(real.__version__, TENSORRT_RTX) if RTX else None
    session = EngineSession(trt, b"serialized engine", "det", DET_SHAPE, 2, alloc, trt.Logger(trt.Logger.WARNING),
                            "ocr-daemon build-engine --config FILE --precision fp32", gen)
    for k in range(2):
        session.bind(k, "x", 0xA000 + k)
        session.bind(k, "y", 0xB000 + k)
        session.enqueue(k, SimpleNamespace(handle=0xC000))     # a pycuda Stream
    return {"input": list(session.input.shape), "outputs": [list(t.shape) for t in session.outputs],
            "allocations": blocks, "saved_bytes": session.memory.saved_bytes}


SCENARIOS = {
    "build_fp32": (lambda real, rec, tmp: build(real, rec, tmp, "fp32"), _build_hooks),
    "build_fp16": (lambda real, rec, tmp: build(real, rec, tmp, "fp16"), _build_hooks),
    "build_int8": (lambda real, rec, tmp: build(real, rec, tmp, "int8"), _build_hooks),
    "load_static": (lambda real, rec, tmp: load(real, rec, tmp, False), lambda real, rec: _load_hooks(real, rec, False)),
    "load_dynamic": (lambda real, rec, tmp: load(real, rec, tmp, True), lambda real, rec: _load_hooks(real, rec, True)),
}


def _plain(value):
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return repr(value)


RTX = False


def main(site: str, tmp: str, module: str = "tensorrt_bindings") -> None:
    global RTX
    import importlib

    sys.path.insert(0, site)
    real = importlib.import_module(module)
    RTX = module == "tensorrt_rtx_bindings"

    from tests.trt_api.shadow import Recorder, ShadowModule

    report = {"version": real.__version__, "edition": "tensorrt-rtx" if RTX else "tensorrt", "scenarios": {}}
    for name, (run, hooks) in SCENARIOS.items():
        rec = Recorder(real)
        rec.hooks = hooks(real, rec)
        # what the daemon's `import tensorrt` (or, with it missing, `import tensorrt_rtx`) gets
        sys.modules["tensorrt"] = None if RTX else ShadowModule(rec)
        if RTX:
            sys.modules["tensorrt_rtx"] = ShadowModule(rec)
        try:
            detail, error = run(real, rec, Path(tmp) / name), None
        except Exception as exc:
            detail, error = {}, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
        report["scenarios"][name] = {
            "error": error, "problems": rec.problems, "detail": detail,
            "calls": [[q, _plain(list(a)), {k: _plain(v) for k, v in kw.items()}] for q, a, kw in rec.calls],
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:4])
