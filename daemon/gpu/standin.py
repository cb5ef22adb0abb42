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


class StandInSession:
    """The surface of backends/tensorrt/session.EngineSession (input, outputs, memory, bind, enqueue,
    close) with a BusyLoad for the inference, so TrtModel's real detector path (buffer sets, streams,
    GPU letterbox, output downloads) runs where TensorRT cannot be installed. ``block_bytes`` of device
    memory stand in for the activation block, allocated once and shared by all contexts (or once per
    context with ``share_block=False``, as before the shared block) so the saving can be measured."""

    def __init__(self, load: BusyLoad, input_shape: tuple[int, ...], alloc, contexts: int,
                 block_bytes: int, share_block: bool = True):
        from daemon.backends.tensorrt.buffers import IoTensor
        from daemon.backends.tensorrt.session import ContextMemory

        n, _, h, w = input_shape
        self.input = IoTensor("x", True, tuple(input_shape), np.dtype(np.float32))
        self.outputs = [IoTensor("y", False, (n, 1, h, w), np.dtype(np.float32))]
        self._blocks = [alloc(block_bytes) for _ in range(1 if share_block else contexts)]
        self.memory = ContextMemory(block_bytes, contexts if share_block else 1)
        self._load = load
        self.bound: dict[tuple[int, str], int] = {}

    def bind(self, context: int, name: str, ptr: int) -> None:
        self.bound[(context, name)] = int(ptr)

    def enqueue(self, context: int, stream) -> None:
        self._load.enqueue(stream)

    def close(self) -> None:
        self._blocks = []
