"""A stand-in for an engine where TensorRT is absent: a chain of busy kernels of a known total length.

Used by the GPU tests and bench/gpu_bench.py to measure how much pre-processing hides behind
inference. Each kernel in the chain spins every block for a calibrated number of SM clock cycles; the
chain is split into short kernels so that, like an engine's many layers, it leaves scheduling gaps in
which other streams' kernels can start.
"""
from __future__ import annotations

import numpy as np


class BusyLoad:
    def __init__(self, ctx, duration_ms: float, kernels: int = 20, blocks_per_sm: int = 2, threads: int = 256):
        import pycuda.driver as cuda

        self._cuda = cuda
        self._ctx = ctx
        self._fn = ctx.kernels().busy_wait
        self.duration_ms = duration_ms
        self.kernels = kernels
        self.grid = (ctx.facts.multiprocessors * blocks_per_sm, 1, 1)
        self.block = (threads, 1, 1)
        with ctx.active():
            self._sink = cuda.mem_alloc(self.grid[0] * 4)
            self._stream = cuda.Stream()
            self.cycles_per_ms = self._calibrate()
        self.cycles_per_kernel = int(self.cycles_per_ms * duration_ms / kernels)

    def _launch(self, stream, cycles: int) -> None:
        self._fn.prepared_async_call(self.grid, self.block, stream, int(cycles), int(self._sink))

    def _calibrate(self) -> float:
        cuda = self._cuda
        start, end = cuda.Event(), cuda.Event()
        probe = 2_000_000
        self._launch(self._stream, probe)             # warm-up: module load, clocks up
        self._stream.synchronize()
        rates = []
        for _ in range(3):
            start.record(self._stream)
            self._launch(self._stream, probe)
            end.record(self._stream)
            end.synchronize()
            rates.append(probe / end.time_since(start))
        return float(np.median(rates))

    def enqueue(self, stream) -> None:
        """Queues the whole chain (about duration_ms of GPU time) on ``stream``."""
        with self._ctx.active():
            for _ in range(self.kernels):
                self._launch(stream, self.cycles_per_kernel)

    def measure_ms(self, repeats: int = 5) -> float:
        """The chain's actual length on its own, median of ``repeats``."""
        cuda = self._cuda
        with self._ctx.active():
            start, end = cuda.Event(), cuda.Event()
            times = []
            for _ in range(repeats):
                start.record(self._stream)
                self.enqueue(self._stream)
                end.record(self._stream)
                end.synchronize()
                times.append(end.time_since(start))
        return float(np.median(times))
