"""The TensorRT side of one engine: deserialize, read its IO tensors, create execution contexts that share
one activation memory block, resolve fixed shapes, bind addresses, enqueue. No pycuda in here: device
memory comes from an ``alloc(nbytes) -> device pointer`` callable, so tests/test_tensorrt_bindings.py can
drive this exact code against NVIDIA's real bindings of every supported version.

Calls (TensorRT 8.6 / 10.x / 11.x and TensorRT-RTX 1.x Python API, checked against the real bindings of
8.6.1, 10.3.0, 10.16.1.11, 11.4.0.106 and TensorRT-RTX 1.7.1.116): Runtime(logger).deserialize_cuda_engine(bytes); ICudaEngine.num_io_tensors,
get_tensor_name(i), get_tensor_mode(name), get_tensor_dtype(name), get_tensor_shape(name),
get_tensor_profile_shape(name, 0); the context-memory calls of generation.context_memory_api;
IExecutionContext.set_input_shape(name, dims), get_tensor_shape(name), set_tensor_address(name, ptr),
execute_async_v3(stream_handle).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from daemon.backends.base import BackendError
from daemon.backends.tensorrt.buffers import IoTensor
from daemon.backends.tensorrt.generation import Generation, context_memory_api, generation
from daemon.backends.tensorrt.shapes import ShapeError, require_static, resolve_input_shape

Alloc = Callable[[int], int]


@dataclass(frozen=True)
class ContextMemory:
    """One activation block shared by every context of an engine (they never run at once: the stream
    pipeline chains their inferences), instead of one block per context."""
    block_bytes: int
    contexts: int

    @property
    def saved_bytes(self) -> int:
        return self.block_bytes * (self.contexts - 1)


def read_io_tensors(trt, engine) -> list[IoTensor]:
    """The engine's IO tensors as it declares them (dynamic dims still -1)."""
    tensors = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = engine.get_tensor_mode(name)
        if mode == trt.TensorIOMode.NONE:
            continue
        try:
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
        except TypeError as exc:     # BF16/FP8/INT4 IO have no numpy type; our engines use FP32 IO
            raise BackendError(f"engine tensor {name!r} has a dtype numpy cannot hold ({exc})") from None
        shape = tuple(int(d) for d in engine.get_tensor_shape(name))
        tensors.append(IoTensor(name, mode == trt.TensorIOMode.INPUT, shape, dtype))
    return tensors


class EngineSession:
    def __init__(self, trt, engine_bytes: bytes, role: str, input_shape: tuple[int, ...], contexts: int,
                 alloc: Alloc, logger, rebuild_hint: str, gen: Generation | None = None):
        """``gen``: the generation of ``trt`` (TensorRT-RTX's must be given: its version alone reads as 1.x)."""
        self.role = role
        self._trt = trt
        gen = gen or generation(trt.__version__)
        self._runtime = trt.Runtime(logger)
        self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            raise BackendError(f"{role} engine did not deserialize (built by another TensorRT version or "
                               f"edition, or corrupt): rebuild it with `{rebuild_hint}`")
        io = read_io_tensors(trt, self._engine)
        ins = [t for t in io if t.is_input]
        outs = [t for t in io if not t.is_input]
        if len(ins) != 1 or not outs:
            raise BackendError(f"{role} engine has {len(ins)} inputs and {len(outs)} outputs; expected one "
                               f"image input and at least one output")
        declared = ins[0]
        if declared.dtype != np.float32:
            raise BackendError(f"{role} engine input is {declared.dtype}; the pre-processing writes float32")
        profile = None
        if any(d < 0 for d in declared.shape):
            profile = self._engine.get_tensor_profile_shape(declared.name, 0)
        try:
            shape, must_set = resolve_input_shape(declared.name, declared.shape, input_shape, profile)
        except ShapeError as exc:
            raise BackendError(f"{role} engine: {exc}: rebuild it with `{rebuild_hint}`") from None

        api = context_memory_api(gen)
        block = int(getattr(self._engine, api.size_attribute))
        self._block_ptr = alloc(block) if block else 0
        self.memory = ContextMemory(block, contexts)
        self._contexts = []
        for _ in range(contexts):
            if api.user_managed_strategy:
                ctx = self._engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
            else:
                ctx = self._engine.create_execution_context_without_device_memory()
            if ctx is None:
                raise BackendError(f"{role} engine: TensorRT could not create an execution context (out of memory?)")
            if must_set and not ctx.set_input_shape(declared.name, shape):
                raise BackendError(f"{role} engine refused input shape {shape} for {declared.name!r}")
            if block:
                if api.set_device_memory:
                    ctx.set_device_memory(self._block_ptr, block)
                else:
                    ctx.device_memory = self._block_ptr
            self._contexts.append(ctx)
        first = self._contexts[0]
        try:
            self.input = replace(declared, shape=shape)
            self.outputs = [replace(t, shape=require_static(t.name, first.get_tensor_shape(t.name))) for t in outs]
        except ShapeError as exc:
            raise BackendError(f"{role} engine: {exc}: rebuild it with `{rebuild_hint}`") from None

    def bind(self, context: int, name: str, ptr: int) -> None:
        """IO addresses never change: each is bound once per context."""
        if not self._contexts[context].set_tensor_address(name, int(ptr)):
            raise BackendError(f"{self.role} engine rejected the address of tensor {name!r}")

    def enqueue(self, context: int, stream) -> None:
        """Queues one inference on ``stream`` (a pycuda Stream: TensorRT takes its handle)."""
        if not self._contexts[context].execute_async_v3(int(stream.handle)):
            raise BackendError(f"{self.role} engine: execute_async_v3 failed (see TensorRT's log)")

    def close(self) -> None:
        self._contexts = []
        self._engine = None
        self._runtime = None
