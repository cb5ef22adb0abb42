"""One deserialized TensorRT engine behind the Model interface.

Every TensorRT call below was checked against NVIDIA's TensorRT 10 Python reference (not executed:
TensorRT cannot be installed on our machines):
- trt.Runtime(logger), Runtime.deserialize_cuda_engine(buffer) -> ICudaEngine or None:
  https://docs.nvidia.com/deeplearning/tensorrt/api/python_api/infer/Core/Runtime.html
- ICudaEngine.num_io_tensors, get_tensor_name(i), get_tensor_mode(name) -> trt.TensorIOMode.INPUT/OUTPUT,
  get_tensor_dtype(name), get_tensor_shape(name), create_execution_context():
  https://docs.nvidia.com/deeplearning/tensorrt/api/python_api/infer/Core/Engine.html
- IExecutionContext.set_tensor_address(name, int device pointer) -> bool,
  execute_async_v3(stream_handle: int) -> bool:
  https://docs.nvidia.com/deeplearning/tensorrt/api/python_api/infer/Core/ExecutionContext.html
  and the 8.x -> 10.x migration guide (name-based IO, enqueueV3 after setTensorAddress for every IO
  tensor): https://docs.nvidia.com/deeplearning/tensorrt/migration-guide/index.html
- trt.nptype(DataType) -> numpy type (used with np.dtype(...).itemsize for element sizes):
  the same migration guide's buffer allocation example.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from daemon.backends.base import BackendError, Model, ModelSpec, TensorSpec
from daemon.backends.tensorrt.buffers import IoTensor
from daemon.config import GpuConfig
from daemon.ocr.det_pre import Letterbox


def read_io_tensors(engine) -> list[IoTensor]:
    import tensorrt as trt

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


class TrtModel(Model):
    """Deserialized once; per buffer set one execution context with its IO addresses bound once.

    The detector gets gpu.streams buffer sets so that run_frames/submit_frames overlap frame N+1's
    letterbox with frame N's inference; the recognizer and classifier get one (their input comes
    from the host, batch by batch)."""

    def __init__(self, ctx, engine_bytes: bytes, spec: ModelSpec, gpu: GpuConfig, trt_logger, rebuild_hint: str):
        import pycuda.driver as cuda
        import tensorrt as trt

        from daemon.gpu.context import use_zero_copy
        from daemon.gpu.streams import StreamPipeline, make_buffer_sets

        self._cuda = cuda
        self._ctx = ctx
        self.role = spec.role
        with ctx.active():
            self._runtime = trt.Runtime(trt_logger)
            self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
            if self._engine is None:
                raise BackendError(f"{spec.role} engine did not deserialize (built by another TensorRT "
                                   f"version or corrupt): rebuild it with `{rebuild_hint}`")
            io = read_io_tensors(self._engine)
            ins = [t for t in io if t.is_input]
            outs = [t for t in io if not t.is_input]
            if len(ins) != 1 or not outs:
                raise BackendError(f"{spec.role} engine has {len(ins)} inputs and {len(outs)} outputs; "
                                   f"expected one image input and at least one output")
            if ins[0].shape != tuple(spec.input_shape):
                raise BackendError(f"{spec.role} engine input {ins[0].name!r} is fixed at {ins[0].shape} but the "
                                   f"config needs {tuple(spec.input_shape)}: rebuild it with `{rebuild_hint}`")
            if ins[0].dtype != np.float32:
                raise BackendError(f"{spec.role} engine input is {ins[0].dtype}; the pre-processing writes float32")
            self._in = ins[0]
            self._outs = outs
            self.inputs = (TensorSpec(self._in.name, self._in.shape, self._in.dtype),)
            self.outputs = tuple(TensorSpec(t.name, t.shape, t.dtype) for t in outs)

            n_sets = gpu.streams if spec.role == "det" else 1
            n, _, in_h, in_w = self._in.shape
            inputs_dev = [cuda.mem_alloc(self._in.nbytes) for _ in range(n_sets)]
            self._sets = make_buffer_sets(ctx, n_sets, n, in_h, in_w,
                                          use_zero_copy(gpu.zero_copy, ctx.facts.integrated),
                                          input_ptrs=[int(d) for d in inputs_dev], frames=spec.role == "det")
            for s, d_in in zip(self._sets, inputs_dev):
                context = self._engine.create_execution_context()
                outputs = {t.name: (cuda.pagelocked_empty(t.shape, t.dtype), cuda.mem_alloc(t.nbytes)) for t in outs}
                s.extra.update(context=context, input_dev=d_in, outputs=outputs,
                               input_host=cuda.pagelocked_empty(self._in.shape, np.float32))
                # Addresses never change: bind once per context.
                bound = context.set_tensor_address(self._in.name, int(d_in))
                for name, (_, d_out) in outputs.items():
                    bound = context.set_tensor_address(name, int(d_out)) and bound
                if not bound:
                    raise BackendError(f"{spec.role} engine rejected a tensor address")
            self._pipeline = StreamPipeline(ctx, self._sets, self._infer, batch=n)
            self._events = [cuda.Event() for _ in range(4)]
        self.last_timing_ms: dict[str, float] = {}

    def _infer(self, s) -> None:
        """The inference step on the set's stream: enqueue the engine, then the output downloads."""
        if not s.extra["context"].execute_async_v3(s.stream.handle):
            raise BackendError(f"{self.role} engine: execute_async_v3 failed (see TensorRT's log)")
        for host, dev in s.extra["outputs"].values():
            self._cuda.memcpy_dtoh_async(host, dev, s.stream)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Host batch in, host outputs out, on buffer set 0; CUDA events time upload, inference, download."""
        x = feeds[self._in.name]
        if tuple(x.shape) != self._in.shape:
            raise ValueError(f"input {self._in.name} has shape {x.shape}; the engine is fixed at {self._in.shape}")
        s = self._sets[0]
        if s.pending is not None:
            raise RuntimeError("run() while a submit_frames() on buffer set 0 is not collected")
        cuda = self._cuda
        e0, e1, e2, e3 = self._events
        with self._ctx.active():
            np.copyto(s.extra["input_host"], x, casting="same_kind")
            e0.record(s.stream)
            cuda.memcpy_htod_async(s.extra["input_dev"], s.extra["input_host"], s.stream)
            e1.record(s.stream)
            if not s.extra["context"].execute_async_v3(s.stream.handle):
                raise BackendError(f"{self.role} engine: execute_async_v3 failed (see TensorRT's log)")
            e2.record(s.stream)
            for host, dev in s.extra["outputs"].values():
                cuda.memcpy_dtoh_async(host, dev, s.stream)
            e3.record(s.stream)
            e3.synchronize()
            self.last_timing_ms = {"upload": e1.time_since(e0), "infer": e2.time_since(e1),
                                   "download": e3.time_since(e2)}
            return {name: host.copy() for name, (host, _) in s.extra["outputs"].items()}

    # -- detector entry: GPU letterbox straight into the engine's input buffer -----------------------

    def submit_frames(self, frames: Sequence[np.ndarray]):
        """Queues letterbox + inference for up to one batch of frames and returns at once; the caller
        may submit the next batch (on the next buffer set) before collecting this one."""
        return self._pipeline.submit(frames)

    def collect(self, ticket) -> tuple[np.ndarray, list[Letterbox]]:
        s, timing = self._pipeline.collect(ticket)
        self.last_timing_ms = {"preprocess": timing.pre_ms, "infer": timing.infer_ms}
        host, _ = s.extra["outputs"][self._outs[0].name]
        return host.copy(), list(ticket.boxes)

    def run_frames(self, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, list[Letterbox]]:
        return self.collect(self.submit_frames(frames))

    def close(self) -> None:
        with self._ctx.active():
            self._sets = []
            self._pipeline = None
            self._engine = None
            self._runtime = None
