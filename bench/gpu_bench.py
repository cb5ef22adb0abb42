#!/usr/bin/env python3
"""GPU pre-processing and overlap benchmark (run on the GPU machine; needs pycuda and a CUDA GPU).

1. Pre-processing per frame, side by side in one run: OpenCV on the CPU (daemon.ocr.det_pre) against the
   fused pycuda kernel including the upload, for both frame paths (upload from pinned memory; zero-copy
   mapped memory). GPU times are given three ways: CUDA events around upload + kernel; host wall time
   of enqueue + synchronize with the frame already in pinned memory (a source that decodes into
   GpuLetterbox.host_frame); and the same with the frame in ordinary memory (adds the host copy).
   Targets: <= 0.15 ms and >= 20x OpenCV.
2. Overlap: two streams and two buffer sets, with a calibrated busy-kernel chain of known length standing
   in for the engine (TensorRT is not installable there). CUDA event timestamps give the share of
   upload + pre-processing time that ran under another frame's inference. Target >= 90 %.

The kernels are the prebuilt cubin the daemon loads (`--kernels-dir`), or built into a temporary
directory first with daemon.gpu.kernel_build (the default; needs nvcc). bench/kernels_aot.py compares
that cubin with the run-time SourceModule of before.

    python3 bench/gpu_bench.py [--iters 300] [--load-ms 2.0] [--json FILE] [--kernels-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CASES = [((960, 1280), (640, 640)), ((640, 640), (640, 640)), ((1080, 1920), (960, 960))]


def stats(values_ms: list[float]) -> dict:
    a = np.asarray(values_ms)
    return {"median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95)), "n": int(a.size)}


def bench_cpu(frame, in_h, in_w, iters):
    from daemon.ocr.det_pre import preprocess_det

    out = np.empty((3, in_h, in_w), np.float32)
    for _ in range(5):
        preprocess_det(frame, in_h, in_w, out=out)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        preprocess_det(frame, in_h, in_w, out=out)
        times.append((time.perf_counter() - t) * 1e3)
    return stats(times), out.copy()


def bench_gpu(ctx, frame, in_h, in_w, zero_copy, iters):
    import pycuda.driver as cuda

    from daemon.gpu.letterbox import GpuLetterbox

    h, w = frame.shape[:2]
    lb = GpuLetterbox(ctx, in_h, in_w, zero_copy=zero_copy, initial_frame_hw=(h, w))
    with ctx.active():
        stream = cuda.Stream()
        dst = cuda.mem_alloc(3 * in_h * in_w * 4)
        start, end = cuda.Event(), cuda.Event()
        result = cuda.pagelocked_empty((3, in_h, in_w), np.float32)
    pinned = lb.host_frame(h, w)
    pinned[:] = frame

    def once(src, timed_events: bool):
        with ctx.active():
            if timed_events:
                start.record(stream)
            lb.enqueue(src, int(dst), stream)
            if timed_events:
                end.record(stream)
            stream.synchronize()

    for _ in range(20):
        once(pinned, True)
    events, wall, wall_copy = [], [], []
    for _ in range(iters):
        once(pinned, True)
        events.append(end.time_since(start))
    for _ in range(iters):
        t = time.perf_counter()
        once(pinned, False)
        wall.append((time.perf_counter() - t) * 1e3)
    for _ in range(iters):
        t = time.perf_counter()
        once(frame, False)
        wall_copy.append((time.perf_counter() - t) * 1e3)
    with ctx.active():
        cuda.memcpy_dtoh(result, dst)
    return {"events": stats(events), "wall_pinned": stats(wall), "wall_with_host_copy": stats(wall_copy)}, np.array(result)


def bench_overlap(ctx, load, n_frames, zero_copy):
    from daemon.gpu.streams import StreamPipeline, hidden_share, make_buffer_sets

    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (960, 1280, 3), dtype=np.uint8) for _ in range(8)]
    out = {}
    for n_sets in (1, 2):
        sets = make_buffer_sets(ctx, n_sets, 1, 640, 640, zero_copy)
        pipe = StreamPipeline(ctx, sets, lambda s: load.enqueue(s.stream), batch=1)
        pending, timings = deque(), []
        t0 = time.perf_counter()
        for i in range(n_frames):
            if len(pending) == n_sets:
                timings.append(pipe.collect(pending.popleft())[1])
            pending.append(pipe.submit([frames[i % len(frames)]]))
        while pending:
            timings.append(pipe.collect(pending.popleft())[1])
        wall_s = time.perf_counter() - t0
        steady = timings[1:]
        out[f"{n_sets}_sets"] = {
            "hidden_share": hidden_share(timings),
            "preprocess": stats([t.pre_ms for t in steady]),
            "inference": stats([t.infer_ms for t in steady]),
            "frames_per_s": n_frames / wall_s,
            "gpu_span_ms": timings[-1].infer_end_ms - timings[0].pre_start_ms,
            "first_frames": [vars(t) for t in timings[:4]],
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=300, help="timed repetitions per measurement")
    parser.add_argument("--load-ms", type=float, default=2.0, help="length of the stand-in inference")
    parser.add_argument("--overlap-frames", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--kernels-dir", type=Path, default=None,
                        help="engines directory holding kernels.sm<cc>.cubin from `ocr-daemon build-kernels` "
                             "(default: build them into a temporary directory first; needs nvcc)")
    args = parser.parse_args()

    import cv2
    import pycuda
    import pycuda.driver as cuda

    from daemon.gpu.context import CudaContext
    from daemon.gpu.kernel_build import context_with_built_kernels
    from daemon.gpu.standin import BusyLoad

    if args.kernels_dir is not None:
        ctx = CudaContext(kernels_dir=args.kernels_dir)
    else:
        ctx = context_with_built_kernels(tempfile.mkdtemp(prefix="gpu-bench-engines-"))
    v = cuda.get_driver_version()
    report = {
        "device": ctx.facts.name, "compute_capability": ctx.facts.compute_capability,
        "integrated": ctx.facts.integrated, "cuda_driver": f"{v // 1000}.{(v % 1000) // 10}",
        "pycuda": pycuda.VERSION_TEXT, "opencv": cv2.__version__, "opencv_threads": cv2.getNumThreads(),
        "cpu": platform.processor() or platform.machine(), "iters": args.iters, "preprocess": [], "overlap": {},
        "targets": {"gpu_preprocess_ms_max": 0.15, "speedup_min": 20.0, "hidden_share_min": 0.9},
    }
    rng = np.random.default_rng(0)
    print(f"# GPU pre-processing: {ctx.facts.name} (cc {ctx.facts.compute_capability}, CUDA driver "
          f"{report['cuda_driver']}), pycuda {pycuda.VERSION_TEXT}, OpenCV {cv2.__version__} "
          f"({cv2.getNumThreads()} threads); median / p95 of {args.iters} runs, ms per frame\n")
    header = ("| frame -> input | path | OpenCV CPU | GPU events (upload+kernel) | GPU wall, pinned frame | "
              "GPU wall, + host copy | speed-up (wall) | max abs diff |")
    print(header)
    print("|" + "---|" * 8)
    for (h, w), (in_h, in_w) in CASES:
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        cpu, cpu_out = bench_cpu(frame, in_h, in_w, args.iters)
        for zero_copy in (False, True):
            gpu, gpu_out = bench_gpu(ctx, frame, in_h, in_w, zero_copy, args.iters)
            diff = float(np.abs(gpu_out - cpu_out).max())
            row = {"frame": [h, w], "input": [in_h, in_w], "path": "zero-copy" if zero_copy else "upload",
                   "cpu_opencv": cpu, **gpu, "max_abs_diff": diff,
                   "speedup_wall_pinned": cpu["median_ms"] / gpu["wall_pinned"]["median_ms"],
                   "speedup_wall_with_host_copy": cpu["median_ms"] / gpu["wall_with_host_copy"]["median_ms"]}
            report["preprocess"].append(row)

            def f(s):
                return f"{s['median_ms']:.3f} / {s['p95_ms']:.3f}"
            print(f"| {w}x{h} -> {in_w}x{in_h} | {row['path']} | {f(cpu)} | {f(gpu['events'])} | "
                  f"{f(gpu['wall_pinned'])} | {f(gpu['wall_with_host_copy'])} | "
                  f"{row['speedup_wall_pinned']:.0f}x ({row['speedup_wall_with_host_copy']:.0f}x with copy) | {diff:.1e} |")

    load = BusyLoad(ctx, args.load_ms)
    load_ms = load.measure_ms()
    report["overlap"]["standin_load_ms"] = load_ms
    print(f"\n# Overlap: stand-in inference = chain of {load.kernels} busy kernels, measured {load_ms:.3f} ms; "
          f"{args.overlap_frames} frames 1280x960 -> 640x640, one frame per submission\n")
    print("| frame path | buffer sets | pre-process ms (events, median) | inference ms | hidden share | frames/s |")
    print("|---|---|---|---|---|---|")
    for zero_copy in (False, True):
        res = bench_overlap(ctx, load, args.overlap_frames, zero_copy)
        report["overlap"]["zero-copy" if zero_copy else "upload"] = res
        for key, r in res.items():
            print(f"| {'zero-copy' if zero_copy else 'upload'} | {key[0]} | {r['preprocess']['median_ms']:.3f} | "
                  f"{r['inference']['median_ms']:.3f} | {r['hidden_share']:.1%} | {r['frames_per_s']:.1f} |")
    two = report["overlap"]["upload"]["2_sets"]
    print("\nfirst frames with two buffer sets (upload path), ms since the origin event:")
    for t in two["first_frames"]:
        print(f"  frame {t['seq']} set {t['set_index']}: pre {t['pre_start_ms']:.3f}-{t['pre_end_ms']:.3f}, "
              f"infer {t['infer_start_ms']:.3f}-{t['infer_end_ms']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
