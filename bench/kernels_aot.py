#!/usr/bin/env python3
"""Kernels compiled ahead of time against the run-time SourceModule the daemon used before.

On the GPU machine, with nvcc on PATH (the comparison needs it; the daemon no longer does):
1. build: `build_kernels` into a temporary engines directory (what `ocr-daemon build-kernels` runs);
2. outputs: the letterbox kernel of each module on one 1280x960 frame -> 1x3x736x960, max abs diff between
   them and against the CPU path (daemon.ocr.det_pre.preprocess_det);
3. kernel time: CUDA events around each launch, the two modules alternating in blocks, median and p95;
4. module load time, host wall clock: the cubin as CudaContext.kernels() loads it (read, sidecar check,
   module_from_buffer), and SourceModule with a cold cache (nvcc compiles), a warm cache as a fresh process
   sees it (`nvcc --version` runs, then the cached cubin loads) and a warm cache later in the same process
   (pycuda memoizes the version).

    python3 bench/kernels_aot.py [--launches 2000] [--loads 20] [--cold-loads 5] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FRAME_HW = (960, 1280)
INPUT_HW = (736, 960)
BLOCK_LAUNCHES = 100        # launches per module before switching to the other one


def stats(values_ms) -> dict:
    a = np.asarray(values_ms, dtype=np.float64)
    return {"median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95)),
            "min_ms": float(a.min()), "n": int(a.size)}


def _forget_nvcc_version() -> None:
    """pycuda memoizes `nvcc --version` per process; forgetting it makes the next call pay what a fresh
    daemon process pays."""
    from pycuda.compiler import get_nvcc_version

    get_nvcc_version.__wrapped__.__dict__.pop("_memoize_dic", None)


def source_module(cache_dir: str):
    """What CudaContext.kernels() did before the kernels were built ahead of time."""
    from pycuda.compiler import SourceModule

    from daemon.gpu.kernel_files import KERNELS_CU

    return SourceModule(KERNELS_CU.read_text(encoding="utf-8"), no_extern_c=True, options=["-O3"],
                        cache_dir=cache_dir)


def time_loads(ctx, kernels_dir: Path, loads: int, cold_loads: int, work: Path) -> dict:
    from daemon.gpu.context import Kernels
    from daemon.gpu.kernel_files import expected_for_device, read_checked_cubin

    out: dict[str, dict] = {}
    with ctx.active():
        times = []
        for _ in range(loads):
            t = time.perf_counter()
            path, image = read_checked_cubin(kernels_dir, expected_for_device(ctx))
            k = ctx.load_kernels(image, path)
            times.append((time.perf_counter() - t) * 1e3)
            del k
        out["cubin (read + sidecar check + load)"] = stats(times)

        cold = []
        for i in range(cold_loads):
            cache = work / f"cold-{i}"
            cache.mkdir()
            _forget_nvcc_version()
            t = time.perf_counter()
            k = Kernels(source_module(str(cache)))
            cold.append((time.perf_counter() - t) * 1e3)
            del k
        out["SourceModule, cold cache (nvcc compiles)"] = stats(cold)

        warm_cache = str(work / "cold-0")
        fresh, later = [], []
        for _ in range(loads):
            _forget_nvcc_version()
            t = time.perf_counter()
            k = Kernels(source_module(warm_cache))
            fresh.append((time.perf_counter() - t) * 1e3)
            del k
        for _ in range(loads):
            t = time.perf_counter()
            k = Kernels(source_module(warm_cache))
            later.append((time.perf_counter() - t) * 1e3)
            del k
        out["SourceModule, warm cache, first in a process (runs nvcc --version)"] = stats(fresh)
        out["SourceModule, warm cache, later in the process"] = stats(later)
    return out


def launch_args(kernels, launch, src, dst, stream):
    from daemon.gpu.letterbox import BLOCK, NORM_ADD, NORM_MUL

    h, w = FRAME_HW
    in_h, in_w = INPUT_HW
    kernels.letterbox.prepared_async_call(launch.grid, BLOCK, stream, int(src), h, w, w * 3, int(dst), in_h, in_w,
                                          launch.box.new_h, launch.box.new_w, launch.scale_y, launch.scale_x,
                                          NORM_MUL, NORM_ADD)


def compare_kernels(ctx, modules: dict, launches: int) -> tuple[dict, dict]:
    import pycuda.driver as cuda

    from daemon.gpu.letterbox import plan_launch
    from daemon.ocr.det_pre import preprocess_det

    h, w = FRAME_HW
    in_h, in_w = INPUT_HW
    frame = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    want, _ = preprocess_det(frame, in_h, in_w)
    launch = plan_launch(h, w, in_h, in_w)
    outputs, times = {}, {name: [] for name in modules}
    with ctx.active():
        stream = cuda.Stream()
        src = cuda.mem_alloc(frame.nbytes)
        cuda.memcpy_htod(src, frame)
        dst = cuda.mem_alloc(want.nbytes)
        start, end = cuda.Event(), cuda.Event()
        for name, k in modules.items():
            cuda.memset_d32(dst, 0x7FC00000, want.size)       # NaN: every element must be written
            launch_args(k, launch, src, dst, stream)
            stream.synchronize()
            got = np.empty_like(want)
            cuda.memcpy_dtoh(got, dst)
            outputs[name] = got
            for _ in range(50):                                 # warm-up: clocks up, caches filled
                launch_args(k, launch, src, dst, stream)
            stream.synchronize()
        done = 0
        while done < launches:
            n = min(BLOCK_LAUNCHES, launches - done)
            for name, k in modules.items():
                for _ in range(n):
                    start.record(stream)
                    launch_args(k, launch, src, dst, stream)
                    end.record(stream)
                    end.synchronize()
                    times[name].append(end.time_since(start))
            done += n
    names = list(modules)
    equality = {
        "between_modules_max_abs_diff": float(np.abs(outputs[names[0]] - outputs[names[1]]).max()),
        **{f"{name}_vs_cpu_max_abs_diff": float(np.abs(outputs[name] - want).max()) for name in names},
        "nan_left": int(sum(np.isnan(o).sum() for o in outputs.values())),
    }
    return {name: stats(t) for name, t in times.items()}, equality


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=2000, help="timed launches per module")
    parser.add_argument("--loads", type=int, default=20, help="timed module loads per warm variant")
    parser.add_argument("--cold-loads", type=int, default=5, help="timed SourceModule compiles, each in a new cache")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    import pycuda
    from pycuda.compiler import compile as nvcc_compile

    from daemon.gpu.context import CudaContext, Kernels
    from daemon.gpu.kernel_build import build_kernels, find_nvcc
    from daemon.gpu.kernel_files import KERNELS_CU, read_kernels_sidecar, sidecar_path

    work = Path(tempfile.mkdtemp(prefix="kernels-aot-"))
    engines = work / "engines"
    ctx = CudaContext(kernels_dir=engines)
    t = time.perf_counter()
    cubin = build_kernels(engines, ctx)
    build_s = time.perf_counter() - t
    side = read_kernels_sidecar(sidecar_path(cubin))
    report = {"device": ctx.facts.name, "compute_capability": ctx.facts.compute_capability,
              "cuda_driver": ctx.driver_cuda_version, "nvcc": find_nvcc(), "pycuda": pycuda.VERSION_TEXT,
              "sidecar": side, "build_kernels_s": build_s, "cubin_bytes": cubin.stat().st_size,
              "frame": list(FRAME_HW), "input": list(INPUT_HW)}

    loads = time_loads(ctx, engines, args.loads, args.cold_loads, work)
    with ctx.active():
        # the bytes SourceModule loads (from its warm cache) against the file build-kernels wrote
        runtime_image = nvcc_compile(KERNELS_CU.read_text(encoding="utf-8"), no_extern_c=True, options=["-O3"],
                                     cache_dir=str(work / "cold-0"))
        modules = {"cubin": ctx.kernels(), "SourceModule": Kernels(source_module(str(work / "cold-0")))}
    report["cubin_identical_to_sourcemodule_image"] = runtime_image == cubin.read_bytes()
    kernel_times, equality = compare_kernels(ctx, modules, args.launches)
    report.update(module_load=loads, kernel_time=kernel_times, outputs=equality)

    print(f"# Kernels compiled ahead of time vs SourceModule: {ctx.facts.name} (cc {ctx.facts.compute_capability}, "
          f"driver CUDA {ctx.driver_cuda_version}), nvcc {side['cuda_toolkit_version']}, pycuda {pycuda.VERSION_TEXT}\n")
    print(f"build_kernels: {build_s:.2f} s -> {cubin.name} ({report['cubin_bytes']} bytes); same bytes as "
          f"SourceModule's cached cubin: {report['cubin_identical_to_sourcemodule_image']}\n")
    print(f"letterbox {FRAME_HW[1]}x{FRAME_HW[0]} frame -> 1x3x{INPUT_HW[0]}x{INPUT_HW[1]}: max abs diff "
          f"cubin vs SourceModule {equality['between_modules_max_abs_diff']:.1e}, cubin vs CPU "
          f"{equality['cubin_vs_cpu_max_abs_diff']:.1e}, SourceModule vs CPU "
          f"{equality['SourceModule_vs_cpu_max_abs_diff']:.1e}\n")
    print(f"| kernel time per launch (CUDA events, {args.launches} launches, alternating blocks of "
          f"{BLOCK_LAUNCHES}) | median ms | p95 ms | min ms |")
    print("|---|---|---|---|")
    for name, s in kernel_times.items():
        print(f"| {name} | {s['median_ms']:.4f} | {s['p95_ms']:.4f} | {s['min_ms']:.4f} |")
    print("\n| module load (host wall clock) | n | median ms | p95 ms |")
    print("|---|---|---|---|")
    for name, s in loads.items():
        print(f"| {name} | {s['n']} | {s['median_ms']:.2f} | {s['p95_ms']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
