#!/usr/bin/env python3
"""The GPU detector path with one and with two buffer sets (gpu.streams 1 vs 2), side by side, and the
device memory a shared activation block saves.

TrtModel runs for real (buffer sets, streams, the prebuilt letterbox kernel, output downloads); only the
engine is a stand-in (daemon/gpu/standin.StandInSession: busy kernels of a fixed length). The loop is the
daemon's: with two sets it submits frame N+1, then collects frame N and does frame N's CPU work
(post-processing and recognition, here a CPU busy wait of --cpu-ms); with one set it collects each frame
before the next submit.

    python3 bench/detector_streams.py [--infer-ms 5] [--cpu-ms 4] [--frames 300] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DET_SHAPE = (1, 3, 736, 960)


def _cpu_work(ms: float) -> None:
    end = time.perf_counter() + ms / 1000.0
    while time.perf_counter() < end:
        pass


def _model(ctx, load, streams: int, block_mib: int, share: bool):
    from daemon.backends.base import ModelSpec
    from daemon.backends.tensorrt.engine import TrtModel
    from daemon.config import GpuConfig
    from daemon.gpu.standin import StandInSession

    def open_session(alloc, contexts):
        return StandInSession(load, DET_SHAPE, alloc, contexts, block_mib << 20, share_block=share)

    return TrtModel(ctx, open_session, ModelSpec("det", "stand-in", DET_SHAPE), GpuConfig(streams=streams, zero_copy="off"))


def run_loop(model, frames, cpu_ms: float) -> dict:
    det = model.detector()
    latencies, pending = [], None
    start = time.perf_counter()
    for frame in frames:
        t0 = time.perf_counter()
        ticket = det.submit([frame])
        if det.overlaps:
            if pending is not None:
                det.collect(pending[0])
                latencies.append((time.perf_counter() - pending[1]) * 1000.0)
                _cpu_work(cpu_ms)
            pending = (ticket, t0)
        else:
            det.collect(ticket)
            latencies.append((time.perf_counter() - t0) * 1000.0)
            _cpu_work(cpu_ms)
    if pending is not None:
        det.collect(pending[0])
        latencies.append((time.perf_counter() - pending[1]) * 1000.0)
        _cpu_work(cpu_ms)
    elapsed = time.perf_counter() - start
    lat = sorted(latencies)
    return {"frames_per_s": len(frames) / elapsed, "latency_p50_ms": statistics.median(lat),
            "latency_p95_ms": lat[int(0.95 * (len(lat) - 1))]}


def device_used_mib(cuda) -> float:
    free, total = cuda.mem_get_info()
    return (total - free) / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--infer-ms", type=float, default=5.0)
    ap.add_argument("--cpu-ms", type=float, default=4.0)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--block-mib", type=int, default=64, help="stand-in activation block per engine")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import pycuda.driver as cuda

    from daemon.gpu.kernel_build import context_with_built_kernels
    from daemon.gpu.standin import BusyLoad

    ctx = context_with_built_kernels(tempfile.mkdtemp(prefix="kernels-"))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (960, 1280, 3), dtype=np.uint8) for _ in range(8)]
    frames = [frames[i % len(frames)] for i in range(args.frames)]
    load = BusyLoad(ctx, args.infer_ms)
    result = {"device": ctx.facts.name, "infer_ms_alone": load.measure_ms(), "cpu_ms": args.cpu_ms,
              "frames": args.frames, "runs": {}}
    with ctx.active():
        for streams in (1, 2):
            model = _model(ctx, load, streams, args.block_mib, share=True)
            run_loop(model, frames[:20], args.cpu_ms)       # warm-up
            runs = [run_loop(model, frames, args.cpu_ms) for _ in range(args.repeats)]
            model.close()
            result["runs"][f"streams={streams}"] = {
                k: statistics.median(r[k] for r in runs) for k in runs[0]}
        memory = {}
        for share in (False, True):
            cuda.Context.synchronize()
            before = device_used_mib(cuda)
            model = _model(ctx, load, 2, args.block_mib, share=share)
            memory["shared" if share else "one per context"] = device_used_mib(cuda) - before
            model.close()
            del model
        result["device_mib_two_buffer_sets"] = memory
    one, two = result["runs"]["streams=1"], result["runs"]["streams=2"]
    print(f"{result['device']}: stand-in inference {result['infer_ms_alone']:.2f} ms, CPU work {args.cpu_ms} ms/frame, "
          f"{args.frames} frames 1280x960 -> {DET_SHAPE}, median of {args.repeats}")
    print(f"| gpu.streams | frames/s | latency p50 ms | p95 ms |\n|---:|---:|---:|---:|")
    for name, r in result["runs"].items():
        print(f"| {name.split('=')[1]} | {r['frames_per_s']:.1f} | {r['latency_p50_ms']:.2f} | {r['latency_p95_ms']:.2f} |")
    print(f"throughput ratio streams 2 / 1: {two['frames_per_s'] / one['frames_per_s']:.2f}x")
    print(f"device memory of the detector with two buffer sets and a {args.block_mib} MiB activation block: "
          + ", ".join(f"{k} {v:.1f} MiB" for k, v in memory.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
