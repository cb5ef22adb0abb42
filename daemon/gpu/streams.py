"""Overlap: N buffer sets on N streams, so frame N+1's upload and letterbox run while frame N infers.

Each buffer set owns a stream, the pinned/device frame buffers of its batch slots, the model input it
letterboxes into, and four timing events. ``submit`` queues [pre-process][inference] on the next set's
stream and returns at once; ``collect`` waits for that set. Inference calls are chained across sets
(each waits for the previous one's end event): an engine fills the GPU, so running two at once would
only make them slower, and results stay in submission order. Pre-processing waits for nothing but its
own set, which is where the overlap comes from.

The inference step is a callable that enqueues work on the set's stream: the TensorRT backend passes
``execute_async_v3`` plus the output downloads; tests and the benchmark pass a calibrated busy kernel.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daemon.gpu.letterbox import GpuLetterbox
from daemon.ocr.det_pre import Letterbox


@dataclass
class BufferSet:
    index: int
    stream: Any                     # pycuda.driver.Stream
    letterboxes: list[GpuLetterbox]     # one per batch slot: each slot's staging buffer is its own
    input_ptr: int                  # device address of the model input, N x 3 x H x W float32
    slot_bytes: int                 # bytes of one 3 x H x W slot
    events: dict[str, Any] = field(default_factory=dict)   # pre_start, pre_end, infer_start, infer_end
    extra: dict[str, Any] = field(default_factory=dict)    # the inference step's own buffers (outputs, context)
    pending: int | None = None      # sequence number submitted here and not yet collected


@dataclass(frozen=True)
class Ticket:
    seq: int
    set_index: int
    boxes: list[Letterbox]


@dataclass(frozen=True)
class FrameTiming:
    """CUDA event timestamps of one submission, in ms since the pipeline's origin event."""
    seq: int
    set_index: int
    pre_start_ms: float
    pre_end_ms: float
    infer_start_ms: float
    infer_end_ms: float

    @property
    def pre_ms(self) -> float:
        return self.pre_end_ms - self.pre_start_ms

    @property
    def infer_ms(self) -> float:
        return self.infer_end_ms - self.infer_start_ms


def hidden_share(timings: Sequence[FrameTiming]) -> float:
    """Share of pre-processing time (upload + letterbox) that ran while another submission's inference
    was running, over all submissions but the first (nothing can hide the first one)."""
    pre_total = 0.0
    hidden = 0.0
    for i, t in enumerate(timings):
        if i == 0:
            continue
        pre_total += t.pre_ms
        covered = [(max(t.pre_start_ms, o.infer_start_ms), min(t.pre_end_ms, o.infer_end_ms))
                   for j, o in enumerate(timings) if j != i]
        hidden += _union_length([(a, b) for a, b in covered if b > a])
    return hidden / pre_total if pre_total > 0 else 0.0


def _union_length(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


InferStep = Callable[[BufferSet], None]


class StreamPipeline:
    """Round-robin over buffer sets. Submit and collect from the thread that owns the context."""

    def __init__(self, ctx, sets: list[BufferSet], infer: InferStep, batch: int):
        import pycuda.driver as cuda

        self._cuda = cuda
        self._ctx = ctx
        self.sets = sets
        self._infer = infer
        self.batch = batch
        self._next = 0
        self._seq = 0
        self._last_infer_end = None
        with ctx.active():
            for s in sets:
                s.events = {k: cuda.Event() for k in ("pre_start", "pre_end", "infer_start", "infer_end")}
            # The origin of every timestamp: recorded and completed before any work is queued.
            self._origin = cuda.Event()
            self._origin.record(sets[0].stream)
            self._origin.synchronize()

    def submit(self, frames: Sequence[np.ndarray]) -> Ticket:
        if not 0 < len(frames) <= self.batch:
            raise ValueError(f"{len(frames)} frames for a batch of {self.batch}")
        s = self.sets[self._next]
        if s.pending is not None:
            raise RuntimeError(f"buffer set {s.index} still holds submission {s.pending}: collect it first")
        self._next = (self._next + 1) % len(self.sets)
        seq = self._seq
        self._seq += 1
        cuda = self._cuda
        with self._ctx.active():
            ev = s.events
            ev["pre_start"].record(s.stream)
            boxes = [lb.enqueue(f, s.input_ptr + i * s.slot_bytes, s.stream)
                     for i, (lb, f) in enumerate(zip(s.letterboxes, frames))]
            unused = self.batch - len(frames)
            if unused:      # padded slots of a fixed batch are zeros, as on the CPU path
                cuda.memset_d32_async(s.input_ptr + len(frames) * s.slot_bytes, 0,
                                      unused * s.slot_bytes // 4, s.stream)
            ev["pre_end"].record(s.stream)
            if self._last_infer_end is not None and len(self.sets) > 1:
                s.stream.wait_for_event(self._last_infer_end)
            ev["infer_start"].record(s.stream)
            self._infer(s)
            ev["infer_end"].record(s.stream)
            self._last_infer_end = ev["infer_end"]
        s.pending = seq
        return Ticket(seq, s.index, boxes)

    def collect(self, ticket: Ticket) -> tuple[BufferSet, FrameTiming]:
        """Waits for the submission; its outputs are in the set's buffers until the set is reused."""
        s = self.sets[ticket.set_index]
        if s.pending != ticket.seq:
            raise RuntimeError(f"submission {ticket.seq} is not pending on buffer set {s.index}")
        with self._ctx.active():
            ev = s.events
            ev["infer_end"].synchronize()
            o = self._origin
            timing = FrameTiming(ticket.seq, s.index,
                                 ev["pre_start"].time_since(o), ev["pre_end"].time_since(o),
                                 ev["infer_start"].time_since(o), ev["infer_end"].time_since(o))
        s.pending = None
        return s, timing


def make_buffer_sets(ctx, count: int, batch: int, in_h: int, in_w: int, zero_copy: bool,
                     input_ptrs: Sequence[int] | None = None, frames: bool = True) -> list[BufferSet]:
    """``count`` sets, each with its stream and (when ``frames``) per-slot frame buffers. The model input
    per set is ``input_ptrs[i]`` (an engine's input buffer) or, when not given, a device buffer allocated
    here. Models fed from the host (recognizer, classifier) pass frames=False: no frame buffers."""
    import pycuda.driver as cuda

    slot_bytes = 3 * in_h * in_w * 4
    sets = []
    with ctx.active():
        for i in range(count):
            extra: dict[str, Any] = {}
            if input_ptrs is None:
                extra["input"] = cuda.mem_alloc(batch * slot_bytes)
                ptr = int(extra["input"])
            else:
                ptr = int(input_ptrs[i])
            letterboxes = [GpuLetterbox(ctx, in_h, in_w, zero_copy) for _ in range(batch)] if frames else []
            sets.append(BufferSet(i, cuda.Stream(), letterboxes, ptr, slot_bytes, extra=extra))
    return sets
