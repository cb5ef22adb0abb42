"""`ocr-daemon build-engine --config FILE [--precision fp32|fp16|int8]`: TensorRT engines for this device.

One engine per model the config uses (det, rec, rec_tail and, when enabled, cls), each with one fixed-shape
optimization profile (min = opt = max = the config's shape), written as
engines/<model>.b<batch>.<precision>.sm<cc>.trt<version>.engine with a JSON sidecar. int8 engines are built from
the Q/DQ ONNX that `ocr-daemon calibrate` writes (engines/<model>.int8.qdq.onnx): explicit quantization,
no calibrator. A timing cache file (engines.timing_cache) is read before and written after each build, so
rebuilding on a Jetson skips most kernel timing.

Each TensorRT call was checked against NVIDIA's TensorRT 10 Python reference (never executed here):
- trt.Logger, trt.Builder(logger), Builder.create_network(flags): in TensorRT 10 explicit batch is the only
  mode and the EXPLICIT_BATCH flag is deprecated and ignored, so flags = 0;
  Builder.create_builder_config(), create_optimization_profile(), build_serialized_network(network, config)
  -> IHostMemory or None: https://docs.nvidia.com/deeplearning/tensorrt/api/python_api/infer/Core/Builder.html
- trt.OnnxParser(network, logger), parse(model: buffer, path: str = None) -> bool, num_errors,
  get_error(i): https://docs.nvidia.com/deeplearning/tensorrt/api/python_api/parsers/Onnx/pyOnnx.html
- IBuilderConfig.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, bytes), set_flag(trt.BuilderFlag.FP16 /
  INT8), add_optimization_profile(profile), create_timing_cache(bytes), set_timing_cache(cache,
  ignore_mismatch), get_timing_cache(): checked on the C++ IBuilderConfig page of TensorRT 10.2
  (setMemoryPoolLimit, setFlag, addOptimizationProfile, createTimingCache, setTimingCache, getTimingCache;
  MemoryPoolType::kWORKSPACE): https://docs.nvidia.com/deeplearning/sdk/tensorrt-api/c_api/classnvinfer1_1_1_i_builder_config.html
  The Python page of this class did not turn up in our search; the snake_case names and argument order
  were confirmed in public TensorRT 10 Python code (e.g. `config.set_timing_cache(cache, ignore_mismatch=False)`).
- ITimingCache.serialize() -> IHostMemory: https://docs.nvidia.com/deeplearning/tensorrt/api/python_api/infer/Core/TimingCache.html
- IOptimizationProfile.set_shape(input, min, opt, max):
  https://docs.nvidia.com/deeplearning/tensorrt/api/python_api/infer/Core/OptimizationProfile.html
- INetworkDefinition.num_inputs, get_input(i).name / .shape: used as in NVIDIA's own migration guide's build
  example: https://docs.nvidia.com/deeplearning/tensorrt/migration-guide/index.html
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from daemon.engines.plan import EnginePlan

log = logging.getLogger(__name__)


class BuildError(RuntimeError):
    """An engine that could not be built; the message says why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="config.yaml", help="config file (default: config.yaml)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=None,
                        help="engine precision (default: the config's ocr.precision); int8 needs "
                             "`ocr-daemon calibrate` to have written the Q/DQ models first")
    parser.add_argument("--role", action="append", choices=("det", "rec", "rec_tail", "cls"), default=None,
                        help="build only this model (repeatable; default: every model the config uses)")


def main(args: argparse.Namespace) -> int:
    from daemon import config as config_mod
    from daemon.backends.tensorrt import tensorrt_available
    from daemon.engines.plan import plan_engines
    from daemon.ocr.models import ModelFileError

    try:
        cfg = config_mod.load(args.config)
        plans = plan_engines(cfg, args.precision)
    except config_mod.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModelFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.role:
        plans = [p for p in plans if p.role in args.role]
    ok, why = tensorrt_available()
    if not ok:
        print(f"error: cannot build engines here: {why}. Build them on the target device "
              f"(a Jetson with JetPack 6 has TensorRT 10.3 and can install pycuda).", file=sys.stderr)
        return 1
    from daemon.gpu.context import CudaContext

    ctx = CudaContext()
    failed = 0
    for plan in plans:
        try:
            path = build_engine(plan, cfg.engines, ctx)
            print(f"built {plan.role}: {path}")
        except BuildError as exc:
            failed += 1
            print(f"error: {plan.role}: {exc}", file=sys.stderr)
    return 1 if failed else 0


def build_engine(plan: EnginePlan, engines_cfg, ctx) -> Path:
    """Builds one engine and its sidecar; returns the engine's path."""
    import tensorrt as trt

    from daemon.engines.sidecar import DeviceInfo, engine_path, make_sidecar, sha256_file, sidecar_path, write_sidecar

    if not plan.source_onnx.is_file():
        hint = " (run `ocr-daemon calibrate --config FILE --images DIR` first)" if plan.precision == "int8" else ""
        raise BuildError(f"source model {str(plan.source_onnx)!r} does not exist{hint}")
    device = DeviceInfo(ctx.facts.name, ctx.facts.compute_capability, trt.__version__)
    out = engine_path(engines_cfg.dir, plan.engine_stem, plan.precision, device)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx_bytes = plan.source_onnx.read_bytes()

    with ctx.active():
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)     # TensorRT 10: always explicit batch
        parser = trt.OnnxParser(network, logger)
        # path= lets the parser find weights stored beside the model (external data).
        if not parser.parse(onnx_bytes, str(plan.source_onnx)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            for e in errors:
                print(f"  ONNX parser: {e}", file=sys.stderr)
            raise BuildError(f"the ONNX parser rejected {plan.source_onnx} ({len(errors)} error(s) above)")

        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, engines_cfg.workspace_mib << 20)
        if plan.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif plan.precision == "int8":
            # The Q/DQ nodes fix which tensors are INT8; the flag lets TensorRT 10 pick INT8 kernels for
            # them. TensorRT 11 drops the flag (Q/DQ alone decides), hence the hasattr.
            if hasattr(trt.BuilderFlag, "INT8"):
                config.set_flag(trt.BuilderFlag.INT8)

        profile = builder.create_optimization_profile()
        input_shapes = {}
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            declared = tuple(int(d) for d in tensor.shape)
            if len(declared) != len(plan.input_shape) or any(
                    d not in (-1, want) for d, want in zip(declared, plan.input_shape)):
                raise BuildError(f"input {tensor.name!r} is declared {declared} in the ONNX; the config needs "
                                 f"{plan.input_shape}")
            shape = plan.input_shape
            profile.set_shape(tensor.name, shape, shape, shape)     # one fixed shape: min = opt = max
            input_shapes[tensor.name] = shape
        config.add_optimization_profile(profile)

        cache_path = Path(engines_cfg.timing_cache) if engines_cfg.timing_cache else None
        cache_bytes = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
        # ignore_mismatch=False: a cache from another device or version is refused, not trusted.
        config.set_timing_cache(config.create_timing_cache(cache_bytes), False)

        started = time.monotonic()
        log.info("building %s (%s) from %s; this takes minutes on a Jetson", out.name, plan.role, plan.source_onnx)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BuildError(f"TensorRT could not build {out.name} (its log above says why)")
        out.write_bytes(bytes(serialized))
        if cache_path:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))

    write_sidecar(sidecar_path(out), make_sidecar(device, plan.precision, input_shapes, sha256_file(plan.source_onnx)))
    log.info("built %s in %.0f s", out, time.monotonic() - started)
    return out
