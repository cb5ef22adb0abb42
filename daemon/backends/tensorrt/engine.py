"""One deserialized TensorRT engine behind the Model interface: pycuda buffers and streams around an
EngineSession (session.py holds every TensorRT call).

Buffers are sized from the session's resolved shapes (an engine with dynamic dims has them resolved
through its execution context first), element sizes from the dtype. The detector gets gpu.streams
buffer sets: with two, frame N+1's upload and letterbox overlap frame N's inference; with one it runs
one batch at a time. The recognizer and classifier get one set (their input comes from the host).
Every failure here, pycuda's included, is a BackendError, so `backend: auto` falls back to the CPU.
"""
from __future__ import annotations

import logging
from typing import Callable, Mapping, Sequence

import numpy as np

from daemon.backends.base import BackendError, Model, ModelSpec, TensorSpec
from daemon.config import GpuConfig
from daemon.ocr.detector import DetectorOutput

log = logging.getLogger(__name__)

# (alloc, contexts) -> an EngineSession, or anything with its surface (input, outputs, memory, bind,
# enqueue, close): the TensorRT backend opens a deserialized engine; bench/gpu_bench.py a stand-in.
OpenSession = Callable[[Callable[[int], int], int], object]


class TrtModel(Model):
    def __init__(self, ctx, open_session: OpenSession, spec: ModelSpec, gpu: GpuConfig, classes: int | None = None):
        """``classes``: a top-3 recognizer's class count, as its source ONNX declares it (its outputs hide it)."""
        self.role = spec.role
        self._ctx = ctx
        self._classes = classes
        try:
            self._load(ctx, open_session, spec, gpu)
        except BackendError:
            self.close()
            raise
        except Exception as exc:   # pycuda.driver.Error, kernel loading, anything: never a crash loop
            self.close()
            raise BackendError(f"{spec.role} engine could not be loaded: {type(exc).__name__}: {exc}") from exc
        self.last_timing_ms: dict[str, float] = {}

    def _load(self, ctx, open_session: OpenSession, spec: ModelSpec, gpu: GpuConfig) -> None:
        import pycuda.driver as cuda

        from daemon.gpu.context import use_zero_copy
        from daemon.gpu.streams import StreamPipeline, make_buffer_sets

        self._cuda = cuda
        self._device_memory: list = []      # keeps every allocation alive as long as the model
        n_sets = gpu.streams if spec.role == "det" else 1

        def alloc(nbytes: int) -> int:
            block = cuda.mem_alloc(nbytes)
            self._device_memory.append(block)
            return int(block)

        with ctx.active():
            self._session = open_session(alloc, n_sets)
            memory = self._session.memory
            if memory.contexts > 1:
                log.info("%s engine: %d execution contexts share one %.1f MiB activation block (%.1f MiB saved)",
                         spec.role, memory.contexts, memory.block_bytes / 2**20, memory.saved_bytes / 2**20)
            self._in = self._session.input
            self._outs = self._session.outputs
            self.inputs = (TensorSpec(self._in.name, self._in.shape, self._in.dtype),)
            self.outputs = tuple(TensorSpec(t.name, t.shape, t.dtype) for t in self._outs)
            n, _, in_h, in_w = self._in.shape
            inputs_dev = [alloc(self._in.nbytes) for _ in range(n_sets)]
            self._sets = make_buffer_sets(ctx, n_sets, n, in_h, in_w, use_zero_copy(gpu.zero_copy, ctx.facts.integrated),
                                          input_ptrs=inputs_dev, frames=spec.role == "det")
            for k, (s, d_in) in enumerate(zip(self._sets, inputs_dev)):
                outputs = {t.name: (cuda.pagelocked_empty(t.shape, t.dtype), alloc(t.nbytes)) for t in self._outs}
                s.extra.update(context=k, input_dev=d_in, outputs=outputs,
                               input_host=cuda.pagelocked_empty(self._in.shape, np.float32))
                self._session.bind(k, self._in.name, d_in)
                for name, (_, d_out) in outputs.items():
                    self._session.bind(k, name, d_out)
            self._pipeline = StreamPipeline(ctx, self._sets, self._infer, batch=n)
            self._events = [cuda.Event() for _ in range(4)]

    def class_count(self) -> int:
        return self._classes if self._classes is not None else super().class_count()

    @property
    def context_memory(self):
        """The shared activation block: its size and how many contexts use it (bench/RESULTS.md)."""
        return self._session.memory

    def _infer(self, s) -> None:
        """The inference step on the set's stream: enqueue the engine, then the output downloads."""
        self._session.enqueue(s.extra["context"], s.stream)
        for host, dev in s.extra["outputs"].values():
            self._cuda.memcpy_dtoh_async(host, dev, s.stream)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Host batch in, host outputs out, on buffer set 0; CUDA events time upload, inference, download."""
        x = feeds[self._in.name]
        if tuple(x.shape) != self._in.shape:
            raise ValueError(f"input {self._in.name} has shape {x.shape}; the engine is fixed at {self._in.shape}")
        s = self._sets[0]
        if s.pending is not None:
            raise RuntimeError("run() while a detector submission on buffer set 0 is not collected")
        cuda = self._cuda
        e0, e1, e2, e3 = self._events
        with self._ctx.active():
            np.copyto(s.extra["input_host"], x, casting="same_kind")
            e0.record(s.stream)
            cuda.memcpy_htod_async(s.extra["input_dev"], s.extra["input_host"], s.stream)
            e1.record(s.stream)
            self._session.enqueue(s.extra["context"], s.stream)
            e2.record(s.stream)
            for host, dev in s.extra["outputs"].values():
                cuda.memcpy_dtoh_async(host, dev, s.stream)
            e3.record(s.stream)
            e3.synchronize()
            self.last_timing_ms = {"upload": e1.time_since(e0), "infer": e2.time_since(e1),
                                   "download": e3.time_since(e2)}
            return {name: host.copy() for name, (host, _) in s.extra["outputs"].items()}

    # -- detector: GPU letterbox straight into the engine's input buffer -----------------------------

    def detector(self) -> "GpuDetector":
        if self.role != "det":
            raise BackendError(f"the {self.role} engine is not a detector")
        return GpuDetector(self)

    def run_frames(self, frames: Sequence[np.ndarray]) -> DetectorOutput:
        det = self.detector()
        return det.collect(det.submit(frames))

    def close(self) -> None:
        with self._ctx.active():
            self._sets = []
            self._pipeline = None
            session = getattr(self, "_session", None)
            if session is not None:
                session.close()
            self._device_memory = []


class GpuDetector:
    """submit queues letterbox + inference for up to one batch and returns at once; with more than one
    buffer set the caller may submit the next batch before collecting this one (``overlaps``)."""

    def __init__(self, model: TrtModel):
        self._model = model
        self.overlaps = len(model._sets) > 1

    def submit(self, frames: Sequence[np.ndarray]):
        return self._model._pipeline.submit(frames)

    def collect(self, ticket) -> DetectorOutput:
        s, timing = self._model._pipeline.collect(ticket)
        self._model.last_timing_ms = {"preprocess": timing.pre_ms, "infer": timing.infer_ms}
        host, _ = s.extra["outputs"][self._model._outs[0].name]
        return host.copy(), list(ticket.boxes)
