"""`ocr-daemon build-kernels --config FILE`: kernels.cu compiled ahead of time for this GPU.

The only step of the project that runs nvcc (JetPack installs it at /usr/local/cuda/bin): it writes
engines.dir/kernels.sm<cc>.cubin and its JSON sidecar (daemon/gpu/kernel_files.py), which the daemon
loads without a compiler. `ocr-daemon build-engine` calls build_kernels as well. The cubin is compiled
with pycuda's own compiler API and the flags SourceModule used (-O3, no extern "C" wrapper, -arch of
this GPU), and is loaded once before it is written, so a written file is known to load here.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from daemon.gpu.kernel_files import (KERNELS_CU, arch_tag, check_kernels, expected_for_device, kernels_path,
                                     make_kernels_sidecar, sha256_bytes, toolkit_release, write_kernels)

NVCC_FLAGS = ["-O3"]
# Where JetPack and NVIDIA's x86 packages put nvcc; a root shell's PATH often lacks it.
NVCC_FALLBACK = Path("/usr/local/cuda/bin/nvcc")


class KernelBuildError(RuntimeError):
    """The kernels could not be built here; the message says why and what to do."""


def find_nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    if NVCC_FALLBACK.is_file() and os.access(NVCC_FALLBACK, os.X_OK):
        return str(NVCC_FALLBACK)
    return None


def build_kernels(engines_dir: str | Path, ctx) -> Path:
    """Compiles kernels.cu for ``ctx``'s GPU (a daemon.gpu.context.CudaContext) into
    ``engines_dir``/kernels.sm<cc>.cubin plus sidecar; returns the cubin's path."""
    nvcc = find_nvcc()
    if nvcc is None:
        raise KernelBuildError(f"nvcc is neither on PATH nor at {NVCC_FALLBACK}: build the kernels on the "
                               "device with its CUDA toolkit (JetPack installs it), or put its bin/ on PATH")
    try:
        import pycuda.driver as cuda
        from pycuda.compiler import compile as nvcc_compile
        from pycuda.compiler import get_nvcc_version
    except ImportError as exc:
        from daemon.gpu import PYCUDA_HINT

        raise KernelBuildError(f"pycuda is not importable ({exc}); {PYCUDA_HINT}") from None
    from daemon.gpu.context import GpuUnavailable

    cc = ctx.facts.compute_capability
    arch = f"sm_{arch_tag(cc)}"
    source = KERNELS_CU.read_bytes()
    out = kernels_path(engines_dir, cc)
    try:
        toolkit = toolkit_release(get_nvcc_version(nvcc))
        # cache_dir=False: always a fresh compile, and no cache directory is needed
        image = nvcc_compile(source.decode("utf-8"), nvcc=nvcc, options=list(NVCC_FLAGS), no_extern_c=True,
                             arch=arch, cache_dir=False, target="cubin")
    except cuda.CompileError as exc:
        raise KernelBuildError(f"nvcc could not compile {KERNELS_CU} for {arch}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise KernelBuildError(f"{nvcc} did not run ({exc})") from None
    sidecar = make_kernels_sidecar(compute_capability=cc, cuda_toolkit_version=toolkit,
                                   kernels_cu_sha256=sha256_bytes(source), cubin_sha256=sha256_bytes(image),
                                   gpu_name=ctx.facts.name)
    problems = check_kernels(sidecar, expected_for_device(ctx))
    if problems:
        raise KernelBuildError(f"the cubin nvcc {toolkit} built would not be usable here: {'; '.join(problems)}")
    try:
        ctx.load_kernels(image, out)
    except GpuUnavailable as exc:
        raise KernelBuildError(str(exc)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    write_kernels(out, image, sidecar)
    return out


def context_with_built_kernels(kernels_dir: str | Path, device_index: int = 0):
    """For tests and benchmarks on a machine with nvcc: build into ``kernels_dir``, then a CudaContext that
    loads from it as the daemon does. The daemon itself never builds."""
    from daemon.gpu.context import CudaContext

    ctx = CudaContext(device_index, kernels_dir=kernels_dir)
    build_kernels(kernels_dir, ctx)
    return ctx


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="config.yaml", help="config file (default: config.yaml); "
                        "the kernels go into its engines.dir")


def main(args: argparse.Namespace) -> int:
    from daemon import config as config_mod
    from daemon.gpu import pycuda_available

    cfg = config_mod.load(args.config, read_secrets=False)   # a ConfigError: cli.main's one line, exit 2
    ok, why = pycuda_available()
    if not ok:
        print(f"error: cannot build the GPU kernels here: {why}", file=sys.stderr)
        return 1
    from daemon.gpu.context import CudaContext, GpuUnavailable

    try:
        ctx = CudaContext(kernels_dir=cfg.engines.dir)
        try:
            path = build_kernels(cfg.engines.dir, ctx)
        finally:
            ctx.close()
    except (GpuUnavailable, KernelBuildError) as exc:
        print(f"error: cannot build the GPU kernels: {exc}", file=sys.stderr)
        return 1
    print(f"built kernels: {path} (sidecar {path.name}.json)")
    return 0
