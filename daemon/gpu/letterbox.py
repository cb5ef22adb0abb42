"""Detector pre-processing on the GPU: a BGR uint8 frame in pinned host memory becomes the normalized,
letterboxed float32 CHW input, written straight into a device pointer (the engine's input buffer).

Two ways for the frame to reach the kernel, chosen by gpu.zero_copy (see context.use_zero_copy):
- upload: pinned host staging buffer -> async copy on the stream -> device frame buffer -> kernel;
- zero-copy: the staging buffer is mapped pinned memory and the kernel reads it in place.
Buffers are allocated once, for the largest frame seen so far.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daemon.ocr.det_pre import DET_MEAN, DET_STD, Letterbox, letterbox_geometry

BLOCK = (32, 8, 1)      # 256 threads; one thread per output pixel writes all three channel planes


@dataclass(frozen=True)
class LetterboxLaunch:
    """The kernel's scalar arguments for one frame: pure arithmetic, tested on the CPU."""
    box: Letterbox
    scale_y: float      # source pixels per input pixel, as OpenCV's resize computes them
    scale_x: float
    grid: tuple[int, int, int]


def plan_launch(frame_h: int, frame_w: int, in_h: int, in_w: int) -> LetterboxLaunch:
    box = letterbox_geometry(frame_h, frame_w, in_h, in_w)
    # cv::resize: inv_scale = dst/src in double, scale = 1/inv_scale; reproduced to the last bit.
    scale_x = 1.0 / (box.new_w / frame_w)
    scale_y = 1.0 / (box.new_h / frame_h)
    grid = ((in_w + BLOCK[0] - 1) // BLOCK[0], (in_h + BLOCK[1] - 1) // BLOCK[1], 1)
    return LetterboxLaunch(box, scale_y, scale_x, grid)


# x * NORM_MUL + NORM_ADD == (x / 255 - mean) / std, the same float32 constants preprocess_det uses.
NORM_MUL = np.float32(1.0 / (255.0 * DET_STD))
NORM_ADD = np.float32(-(DET_MEAN / DET_STD))


class GpuLetterbox:
    """One buffer set's frame path. Not thread-safe: it belongs to the thread owning the context.
    Takes the kernel from ctx.kernels(), the prebuilt cubin: GpuUnavailable when it is missing or stale."""

    def __init__(self, ctx, in_h: int, in_w: int, zero_copy: bool, initial_frame_hw: tuple[int, int] = (1080, 1920)):
        import pycuda.driver as cuda

        self._cuda = cuda
        self._ctx = ctx
        self.in_h, self.in_w = in_h, in_w
        self.zero_copy = zero_copy
        self._kernels = ctx.kernels()
        self._capacity = 0
        self._staging: np.ndarray | None = None
        self._device_frame = None
        self._src_ptr = 0
        with ctx.active():
            # Recorded after the kernel: once it completes, the staging buffer may be overwritten.
            self._consumed = cuda.Event(cuda.event_flags.DISABLE_TIMING)
            self._reserve(initial_frame_hw[0] * initial_frame_hw[1] * 3)

    def _reserve(self, nbytes: int) -> None:
        if nbytes <= self._capacity:
            return
        cuda = self._cuda
        if self.zero_copy:
            staging = cuda.pagelocked_empty(nbytes, np.uint8, mem_flags=cuda.host_alloc_flags.DEVICEMAP)
            self._src_ptr = int(staging.base.get_device_pointer())
            self._device_frame = None
        else:
            staging = cuda.pagelocked_empty(nbytes, np.uint8)
            self._device_frame = cuda.mem_alloc(nbytes)
            self._src_ptr = int(self._device_frame)
        self._staging = staging
        self._capacity = nbytes

    def host_frame(self, frame_h: int, frame_w: int) -> np.ndarray:
        """The pinned buffer as an HxWx3 array: a source that decodes into it saves the host copy.
        Valid until the next call with a larger frame."""
        with self._ctx.active():
            self._consumed.synchronize()
            self._reserve(frame_h * frame_w * 3)
        return self._staging[: frame_h * frame_w * 3].reshape(frame_h, frame_w, 3)

    def enqueue(self, frame: np.ndarray, dst_ptr: int, stream) -> Letterbox:
        """Queues upload (unless zero-copy) and the kernel on ``stream``; returns the letterbox geometry.
        ``dst_ptr`` must hold 3 * in_h * in_w float32."""
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected a uint8 HxWx3 BGR frame, got {frame.dtype} {frame.shape}")
        h, w = frame.shape[:2]
        nbytes = h * w * 3
        launch = plan_launch(h, w, self.in_h, self.in_w)
        with self._ctx.active():
            self._consumed.synchronize()        # the previous frame's upload/kernel has read the staging buffer
            self._reserve(nbytes)
            view = self._staging[:nbytes].reshape(h, w, 3)
            if _data_ptr(view) != _data_ptr(frame) or view.strides != frame.strides:
                np.copyto(view, frame)      # the one host copy, unless the source decoded into host_frame()
            if not self.zero_copy:
                self._cuda.memcpy_htod_async(self._device_frame, view, stream)
            self._kernels.letterbox.prepared_async_call(
                launch.grid, BLOCK, stream,
                self._src_ptr, h, w, w * 3,
                int(dst_ptr), self.in_h, self.in_w, launch.box.new_h, launch.box.new_w,
                launch.scale_y, launch.scale_x, NORM_MUL, NORM_ADD)
            self._consumed.record(stream)
        return launch.box


def _data_ptr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]
