"""`ocr-daemon build-engine --config FILE [--precision fp32|fp16|int8] [--compute-capability X.Y]`: TensorRT
engines for this device, or (TensorRT-RTX) for a compute capability.

One engine per model the config uses (det, rec, rec_tail and, when enabled, cls; the recognizer's with its top-3
head, daemon/ocr/rec_head.py), written as
engines/<model>.b<batch>.<precision>.sm<cc>.<trt|rtx><version>.engine with a JSON sidecar, both atomically.
Engines are truly fixed-shape: every network input is set to the config's shape before the build
(backends/tensorrt/shapes.py), and the build stops if any network input or output still has a -1 dim, so
the engine needs no optimization profile. int8 engines come from the Q/DQ ONNX that `ocr-daemon calibrate`
writes (engines/<model>.int8.qdq.onnx): explicit quantization, no calibrator. What differs between
TensorRT 8.6, 10.x, 11.x and TensorRT-RTX (explicit-batch flag, FP16/INT8 builder flags or FP16 ONNX
copies, a compute-capability target) is backends/tensorrt/generation.py's. A timing cache file
(engines.timing_cache) is read before and written after each TensorRT build, so rebuilding on a Jetson
skips most kernel timing; one from another device or version is refused and a fresh one started. The GPU
pre-processing kernels are compiled here too (daemon/gpu/kernel_build.py), so the daemon never needs nvcc.

TensorRT-RTX's builder needs no GPU: `--compute-capability 8.9` builds for an RTX PC on any x86-64 machine
(no GPU, no pycuda; the kernels are then built on the PC with `ocr-daemon build-kernels`). Without the
option it builds for this machine's GPU.

TensorRT calls, checked against NVIDIA's real Python bindings of 8.6.1, 10.3.0, 10.16.1.11 and
11.4.0.106 by tests/test_tensorrt_bindings.py, and run by TensorRT-RTX 1.7.1.116 in
tests/test_tensorrt_rtx_build.py: Logger, Builder(logger), Builder.create_network(flags),
OnnxParser(network, logger).parse(bytes, path), num_errors, get_error(i); INetworkDefinition.num_inputs,
get_input(i).name / .shape (get and set), num_outputs, get_output(i); Builder.create_builder_config(),
IBuilderConfig.set_memory_pool_limit(MemoryPoolType.WORKSPACE, bytes), set_flag(BuilderFlag.X),
create_timing_cache(bytes), set_timing_cache(cache, ignore_mismatch) -> bool, get_timing_cache()
.serialize(); TensorRT-RTX: num_compute_capabilities (set), set_compute_capability(ComputeCapability.SMxy,
0) -> bool; Builder.build_serialized_network(network, config) -> IHostMemory or None.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from daemon.atomic_write import write_atomic
from daemon.engines.plan import EnginePlan
from daemon.ocr import rec_head

log = logging.getLogger(__name__)


class BuildError(RuntimeError):
    """An engine that could not be built; the message says why."""


class TargetError(BuildError):
    """A --compute-capability this TensorRT edition cannot build for (exit 2, like a usage error)."""


@dataclass(frozen=True)
class BuildTarget:
    """What engines are built with and for: the TensorRT module, the edition and version found, the device
    they are tied to, and the CUDA context to build in (None: TensorRT-RTX building without a GPU)."""
    trt: object
    found: object           # generation.TensorRTInstall
    device: object          # sidecar.DeviceInfo
    ctx: object | None = None

    def active(self):
        return self.ctx.active() if self.ctx is not None else nullcontext()


@dataclass(frozen=True)
class BuiltEngine:
    path: Path
    seconds: float                                  # build_serialized_network alone
    input_shapes: dict[str, tuple[int, ...]]        # the network's, as set just before the build
    output_shapes: dict[str, tuple[int, ...]]       # the network's, read just before the build


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="config.yaml", help="config file (default: config.yaml)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=None,
                        help="engine precision (default: the config's ocr.precision); int8 needs "
                             "`ocr-daemon calibrate` to have written the Q/DQ models first")
    parser.add_argument("--role", action="append", choices=("det", "rec", "rec_tail", "cls"), default=None,
                        help="build only this model (repeatable; default: every model the config uses)")
    parser.add_argument("--compute-capability", default=None, metavar="X.Y",
                        help="TensorRT-RTX only: build for this compute capability (e.g. 8.6, 8.9, 12.0) on a "
                             "machine without that GPU, or without any GPU; the GPU kernels are then built on the "
                             "target with `ocr-daemon build-kernels`. Default: this machine's GPU")


def main(args: argparse.Namespace) -> int:
    from daemon import config as config_mod
    from daemon.engines.plan import plan_engines
    from daemon.gpu.kernel_files import build_command
    from daemon.ocr.models import ModelFileError

    try:
        cfg = config_mod.load(args.config, read_secrets=False)
        plans = plan_engines(cfg, args.precision)
    except ModelFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.role:
        plans = [p for p in plans if p.role in args.role]
    failed = 0
    try:
        if args.compute_capability:
            target = cpu_target(args.compute_capability)
        else:
            target = gpu_target()
            failed += _build_kernels(cfg, target.ctx)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, TargetError) else 1
    if target.ctx is None:
        print(f"GPU kernels not built (no GPU used): run `{build_command(cfg.source_path)}` on the "
              f"compute capability {target.device.compute_capability} machine")
    for plan in plans:
        try:
            built = build_engine(plan, cfg.engines, target)
        except BuildError as exc:
            failed += 1
            print(f"error: {plan.role}: {exc}", file=sys.stderr)
            continue
        peak = peak_rss_mib()
        shapes = "; ".join(f"{'in' if name in built.input_shapes else 'out'} {name} {'x'.join(map(str, shape))}"
                           for name, shape in {**built.input_shapes, **built.output_shapes}.items())
        print(f"built {plan.role}: {built.path} ({built.seconds:.1f} s; {shapes}"
              + (f"; process peak RSS {peak} MiB)" if peak else ")"))
    return 1 if failed else 0


def gpu_target(ctx=None) -> BuildTarget:
    """Building on and for this machine's GPU (``ctx``: a CudaContext; one is made when None)."""
    from daemon.backends.tensorrt import device_info, tensorrt_available

    trt, found = _import()
    if ctx is None:
        ok, why = tensorrt_available()
        if not ok:
            rtx = (" TensorRT-RTX builds without a GPU: name the RTX PC's compute capability with "
                   "--compute-capability." if found.edition.name == "tensorrt-rtx" else "")
            raise BuildError(f"cannot build engines here: {why}. Build them on the target device (JetPack 6.0 "
                             f"has TensorRT 8.6, JetPack 6.1/6.2 TensorRT 10.3; `sudo systemd/install.sh --gpu` "
                             f"installs pycuda).{rtx}")
        from daemon.gpu.context import CudaContext

        ctx = CudaContext()
    device = device_info(ctx, found)
    if not found.runs_on(device.compute_capability):
        raise BuildError(f"{found.label} builds for compute capability {', '.join(found.compute_capabilities)}; "
                         f"this {device.gpu_name} is {device.compute_capability}: use TensorRT 10.x or 11.x here")
    return BuildTarget(trt, found, device, ctx)


def cpu_target(compute_capability: str) -> BuildTarget:
    """Building without a GPU for ``compute_capability``: TensorRT-RTX only (TensorRT's builder needs the GPU)."""
    from daemon.backends.tensorrt.generation import compute_capability_member
    from daemon.engines.sidecar import DeviceInfo

    trt, found = _import()
    if found.edition.name != "tensorrt-rtx":
        raise TargetError(f"--compute-capability needs TensorRT-RTX; {found.label} builds only for the GPU it runs "
                         f"on: run build-engine without it on the target device")
    try:
        compute_capability_member(compute_capability)
    except ValueError as exc:
        raise TargetError(str(exc)) from None
    if not found.runs_on(compute_capability):
        raise TargetError(f"--compute-capability {compute_capability}: {found.label} builds for "
                         f"{', '.join(found.compute_capabilities)}")
    return BuildTarget(trt, found, DeviceInfo(None, compute_capability, found.version, None, None,
                                              found.edition.name))


def _import():
    from daemon.backends.tensorrt import import_tensorrt
    from daemon.backends.tensorrt.generation import UnsupportedTensorRT, generation

    try:
        trt, found = import_tensorrt()
    except ImportError as exc:
        raise BuildError(f"cannot build engines here: no TensorRT edition is importable ({exc}). Build them on the "
                         f"target device (JetPack 6.0 has TensorRT 8.6, JetPack 6.1/6.2 TensorRT 10.3), or for an "
                         f"RTX PC on any x86-64 machine after `pip install tensorrt-rtx-cu12` with "
                         f"--compute-capability") from None
    try:
        generation(found.version, found.edition)
    except UnsupportedTensorRT as exc:
        raise BuildError(str(exc)) from None
    return trt, found


def _build_kernels(cfg, ctx) -> int:
    """The GPU pre-processing kernels for this GPU; 1 when they failed (reported), else 0."""
    from daemon.gpu.kernel_build import KernelBuildError, build_kernels

    try:
        print(f"built kernels: {build_kernels(cfg.engines.dir, ctx)}")
    except KernelBuildError as exc:
        print(f"error: kernels: {exc}", file=sys.stderr)
        return 1
    return 0


def build_engine(plan: EnginePlan, engines_cfg, target: BuildTarget) -> BuiltEngine:
    """Builds one engine and its sidecar."""
    from daemon.backends.tensorrt.generation import (UnsupportedTensorRT, build_recipe, build_refusal_hint,
                                                     compute_capability_member, generation, network_flags)
    from daemon.backends.tensorrt.shapes import ShapeError, network_input_shape, require_static
    from daemon.engines.sidecar import engine_path, make_sidecar, sha256_file, sidecar_path, write_sidecar

    trt, found, device = target.trt, target.found, target.device
    if not plan.source_onnx.is_file():
        hint = " (run `ocr-daemon calibrate --config FILE --images DIR` first)" if plan.precision == "int8" else ""
        raise BuildError(f"source model {str(plan.source_onnx)!r} does not exist{hint}")
    try:
        gen = generation(found.version, found.edition)
        recipe = build_recipe(gen, plan.precision)
    except UnsupportedTensorRT as exc:
        raise BuildError(str(exc)) from None
    out = engine_path(engines_cfg.dir, plan.engine_stem, plan.precision, device)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx_path = onnx_to_parse(recipe.source, plan.source_onnx, Path(engines_cfg.dir))
    if plan.head == rec_head.TOP3:
        # The edit comes last, on the output as the parsed model computes it (after any FP16 copy).
        onnx_path = rec_head.write_top3(onnx_path, Path(engines_cfg.dir) / f"{onnx_path.stem}.top3.onnx")

    with target.active():
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

        input_shapes, output_shapes = {}, {}
        try:
            for i in range(network.num_inputs):
                tensor = network.get_input(i)
                shape = network_input_shape(tensor.name, tuple(tensor.shape), plan.input_shape)
                tensor.shape = shape        # fixed before the build: the engine reports no -1 dims
                input_shapes[tensor.name] = require_static(tensor.name, tuple(tensor.shape))
            for i in range(network.num_outputs):
                tensor = network.get_output(i)
                output_shapes[tensor.name] = require_static(tensor.name, tuple(tensor.shape))
        except ShapeError as exc:
            raise BuildError(str(exc)) from None

        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, engines_cfg.workspace_mib << 20)
        for flag in recipe.builder_flags:
            config.set_flag(getattr(trt.BuilderFlag, flag))
        if recipe.compute_capability_target:
            # One target, explicit: CURRENT would need libcuda, and TensorRT-RTX's default (every
            # compute capability from 8.0) would not match the engine's name.
            member = getattr(trt.ComputeCapability, compute_capability_member(device.compute_capability))
            config.num_compute_capabilities = 1
            if not config.set_compute_capability(member, 0):
                raise BuildError(f"{found.label} refused compute capability {device.compute_capability}")

        cache_path = Path(engines_cfg.timing_cache) if engines_cfg.timing_cache and recipe.timing_cache else None
        if recipe.timing_cache:
            _attach_timing_cache(config, cache_path)

        log.info("building %s (%s) from %s; this takes minutes on a Jetson", out.name, plan.role, onnx_path)
        started = time.monotonic()
        serialized = builder.build_serialized_network(network, config)
        seconds = time.monotonic() - started
        if serialized is None:
            hint = build_refusal_hint(gen, device.compute_capability, plan.precision)
            raise BuildError(f"{found.label} could not build {out.name} (its log above says why)"
                             + (f": {hint}" if hint else ""))
        # The old sidecar goes first: at no moment does a sidecar describe other engine bytes than its own
        # (a crash in between leaves an engine without one, which is refused and rebuilt).
        sidecar_path(out).unlink(missing_ok=True)
        engine = bytes(serialized)
        write_atomic(out, engine)
        if cache_path:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(cache_path, bytes(config.get_timing_cache().serialize()))

    # The sidecar names the model the user gave (FP32 or Q/DQ); an FP16 copy is derived from it here.
    write_sidecar(sidecar_path(out), make_sidecar(device, plan.precision, input_shapes, sha256_file(plan.source_onnx),
                                                  output_shapes=output_shapes, head=plan.head,
                                                  engine_sha256=hashlib.sha256(engine).hexdigest()))
    log.info("built %s in %.1f s", out, seconds)
    return BuiltEngine(out, seconds, input_shapes, output_shapes)


def peak_rss_mib() -> int | None:
    """This process's peak resident memory so far (Linux VmHWM), in MiB; None where it cannot be read."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


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
    """The ONNX file a build parses: the model itself, or (TensorRT 11, TensorRT-RTX: strongly typed) an FP16
    copy of it written beside the engines, made afresh each build so it never lags its source."""
    from daemon.quantize.fp16 import qdq_to_fp16, to_fp16

    if source in ("fp32", "qdq"):
        return model
    copy = engines_dir / f"{model.stem}.fp16.onnx"
    log.info("writing the FP16 copy %s of %s for a strongly typed build", copy, model)
    return (qdq_to_fp16 if source == "qdq_fp16" else to_fp16)(model, copy)
