"""`ocr-daemon build-engine --config FILE [--precision fp32|fp16|int8]`: TensorRT engines for this device.

One engine per model the config uses (det, rec, rec_tail and, when enabled, cls), written as
engines/<model>.b<batch>.<precision>.sm<cc>.trt<version>.engine with a JSON sidecar, both atomically.
Engines are truly fixed-shape: every network input is set to the config's shape before the build
(backends/tensorrt/shapes.py), so the engine reports no -1 dims and needs no optimization profile.
int8 engines come from the Q/DQ ONNX that `ocr-daemon calibrate` writes (engines/<model>.int8.qdq.onnx):
explicit quantization, no calibrator. What differs between TensorRT 8.6, 10.x and 11.x (explicit-batch
flag, FP16/INT8 builder flags or FP16 ONNX copies) is backends/tensorrt/generation.py's. A timing cache
file (engines.timing_cache) is read before and written after each build, so rebuilding on a Jetson skips
most kernel timing; one from another device or version is refused and a fresh one started. The GPU
pre-processing kernels are compiled here too (daemon/gpu/kernel_build.py), so the daemon never needs nvcc.

TensorRT calls, checked against NVIDIA's real Python bindings of 8.6.1, 10.3.0, 10.16.1.11 and
11.4.0.106 by tests/test_tensorrt_bindings.py: Logger, Builder(logger), Builder.create_network(flags),
OnnxParser(network, logger).parse(bytes, path), num_errors, get_error(i); INetworkDefinition.num_inputs,
get_input(i).name / .shape (get and set); Builder.create_builder_config(),
IBuilderConfig.set_memory_pool_limit(MemoryPoolType.WORKSPACE, bytes), set_flag(BuilderFlag.X),
create_timing_cache(bytes), set_timing_cache(cache, ignore_mismatch) -> bool, get_timing_cache()
.serialize(); Builder.build_serialized_network(network, config) -> IHostMemory or None.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from daemon.atomic_write import write_atomic
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
        print(f"error: cannot build engines here: {why}. Build them on the target device (JetPack 6.0 has "
              f"TensorRT 8.6, JetPack 6.1/6.2 TensorRT 10.3; `sudo systemd/install.sh --gpu` installs pycuda).",
              file=sys.stderr)
        return 1
    from daemon.gpu.context import CudaContext
    from daemon.gpu.kernel_build import KernelBuildError, build_kernels

    ctx = CudaContext()
    failed = 0
    try:
        print(f"built kernels: {build_kernels(cfg.engines.dir, ctx)}")
    except KernelBuildError as exc:
        failed += 1
        print(f"error: kernels: {exc}", file=sys.stderr)
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

    from daemon.backends.tensorrt import device_info
    from daemon.backends.tensorrt.generation import (UnsupportedTensorRT, build_recipe, generation,
                                                     network_flags)
    from daemon.backends.tensorrt.shapes import ShapeError, network_input_shape
    from daemon.engines.sidecar import engine_path, make_sidecar, sha256_file, sidecar_path, write_sidecar

    if not plan.source_onnx.is_file():
        hint = " (run `ocr-daemon calibrate --config FILE --images DIR` first)" if plan.precision == "int8" else ""
        raise BuildError(f"source model {str(plan.source_onnx)!r} does not exist{hint}")
    try:
        recipe = build_recipe(generation(trt.__version__), plan.precision)
    except UnsupportedTensorRT as exc:
        raise BuildError(str(exc)) from None
    device = device_info(ctx, trt.__version__)
    out = engine_path(engines_cfg.dir, plan.engine_stem, plan.precision, device)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx_path = onnx_to_parse(recipe.source, plan.source_onnx, Path(engines_cfg.dir))

    with ctx.active():
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(network_flags(trt, recipe))
        parser = trt.OnnxParser(network, logger)
        # path= lets the parser find weights stored beside the model (external data).
        if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            for e in errors:
                print(f"  ONNX parser: {e}", file=sys.stderr)
            raise BuildError(f"the ONNX parser rejected {onnx_path} ({len(errors)} error(s) above)")

        input_shapes = {}
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            try:
                shape = network_input_shape(tensor.name, tuple(tensor.shape), plan.input_shape)
            except ShapeError as exc:
                raise BuildError(str(exc)) from None
            tensor.shape = shape        # fixed before the build: the engine reports no -1 dims
            input_shapes[tensor.name] = shape

        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, engines_cfg.workspace_mib << 20)
        for flag in recipe.builder_flags:
            config.set_flag(getattr(trt.BuilderFlag, flag))

        cache_path = Path(engines_cfg.timing_cache) if engines_cfg.timing_cache else None
        _attach_timing_cache(config, cache_path)

        started = time.monotonic()
        log.info("building %s (%s) from %s; this takes minutes on a Jetson", out.name, plan.role, onnx_path)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BuildError(f"TensorRT could not build {out.name} (its log above says why)")
        write_atomic(out, bytes(serialized))
        if cache_path:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(cache_path, bytes(config.get_timing_cache().serialize()))

    # The sidecar names the model the user gave (FP32 or Q/DQ); an FP16 copy is derived from it here.
    write_sidecar(sidecar_path(out), make_sidecar(device, plan.precision, input_shapes, sha256_file(plan.source_onnx)))
    log.info("built %s in %.0f s", out, time.monotonic() - started)
    return out


def _attach_timing_cache(config, cache_path: Path | None) -> None:
    """Reuses the cache file when TensorRT accepts it; one from another GPU or TensorRT version is
    refused (ignore_mismatch=False: its timings would be wrong here) and a fresh cache started."""
    cache_bytes = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    if cache is not None and config.set_timing_cache(cache, False):
        return
    if cache_bytes:
        log.warning("timing cache %s does not match this GPU or TensorRT version; starting a new one", cache_path)
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, False):
        raise BuildError("TensorRT refused a new, empty timing cache")


def onnx_to_parse(source: str, model: Path, engines_dir: Path) -> Path:
    """The ONNX file a build parses: the model itself, or (TensorRT 11, strongly typed) an FP16 copy of it
    written beside the engines, made afresh each build so it never lags its source."""
    from daemon.quantize.fp16 import qdq_to_fp16, to_fp16

    if source in ("fp32", "qdq"):
        return model
    copy = engines_dir / f"{model.stem}.fp16.onnx"
    log.info("writing the FP16 copy %s of %s for a strongly typed build", copy, model)
    return (qdq_to_fp16 if source == "qdq_fp16" else to_fp16)(model, copy)
