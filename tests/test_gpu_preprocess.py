"""GPU letterbox (pycuda kernel) against the CPU pre-processing, on both frame paths: upload from
pinned memory, and mapped pinned memory read in place (zero-copy; what a Jetson uses, and what also
works on a discrete GPU). Runs on the GPU machine; skips elsewhere."""
from __future__ import annotations

import numpy as np
import pytest

from daemon.gpu import pycuda_available
from daemon.ocr.det_pre import preprocess_det

_OK, _WHY = pycuda_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _OK, reason=f"needs pycuda and an NVIDIA GPU: {_WHY}")]

SIZES = [(960, 1280, 640, 640), (480, 640, 640, 640), (640, 640, 640, 640), (1080, 1920, 960, 960),
         (333, 517, 640, 640), (2000, 1500, 960, 960), (37, 1000, 640, 640), (7, 5, 64, 64), (1, 1, 32, 32),
         (1280, 960, 960, 960)]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """The daemon's way in: kernels built ahead of time into a directory, then loaded from there."""
    from daemon.gpu.kernel_build import context_with_built_kernels

    return context_with_built_kernels(tmp_path_factory.mktemp("engines"))


def gpu_letterbox(ctx, letterbox, frame, in_h, in_w, fill: float | None = None):
    """Runs the kernel into a fresh device buffer and downloads the result."""
    import pycuda.driver as cuda

    with ctx.active():
        stream = cuda.Stream()
        dst = cuda.mem_alloc(3 * in_h * in_w * 4)
        if fill is not None:     # stale data the kernel must overwrite, padding included
            cuda.memset_d32(dst, int(np.float32(fill).view(np.uint32)), 3 * in_h * in_w)
        box = letterbox.enqueue(frame, int(dst), stream)
        out = cuda.pagelocked_empty((3, in_h, in_w), np.float32)
        cuda.memcpy_dtoh_async(out, dst, stream)
        stream.synchronize()
    return np.array(out), box


@pytest.mark.parametrize("zero_copy", [False, True], ids=["upload", "zero_copy"])
@pytest.mark.parametrize("h, w, in_h, in_w", SIZES)
def test_gpu_letterbox_matches_cpu_preprocessing(ctx, zero_copy, h, w, in_h, in_w):
    from daemon.gpu.letterbox import GpuLetterbox

    lb = GpuLetterbox(ctx, in_h, in_w, zero_copy=zero_copy, initial_frame_hw=(64, 64))
    rng = np.random.default_rng(h * 31 + w)
    for _ in range(3):      # random frames; the staging buffer is reused between them
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        want, want_box = preprocess_det(frame, in_h, in_w)
        got, box = gpu_letterbox(ctx, lb, frame, in_h, in_w, fill=7.0)
        diff = float(np.abs(got - want).max())
        print(f"{h}x{w} -> {in_h}x{in_w} {'zero-copy' if zero_copy else 'upload'}: max abs diff {diff:.2e}")
        assert box == want_box
        assert diff <= 1e-3, f"max abs diff {diff} at {np.unravel_index(np.abs(got - want).argmax(), got.shape)}"


def test_non_contiguous_roi_frames_are_handled(ctx):
    from daemon.gpu.letterbox import GpuLetterbox

    full = np.random.default_rng(5).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    roi = full[100:900, 300:1500]           # a camera ROI: a strided view
    lb = GpuLetterbox(ctx, 640, 640, zero_copy=False)
    got, _ = gpu_letterbox(ctx, lb, roi, 640, 640)
    want, _ = preprocess_det(np.ascontiguousarray(roi), 640, 640)
    assert np.abs(got - want).max() <= 1e-3


@pytest.mark.parametrize("zero_copy", [False, True], ids=["upload", "zero_copy"])
def test_frame_buffers_are_allocated_once_and_grow_only_for_larger_frames(ctx, zero_copy):
    from daemon.gpu.letterbox import GpuLetterbox

    lb = GpuLetterbox(ctx, 640, 640, zero_copy=zero_copy, initial_frame_hw=(960, 1280))
    frame = np.zeros((960, 1280, 3), np.uint8)
    staging, src = lb._staging, lb._src_ptr
    for _ in range(5):
        gpu_letterbox(ctx, lb, frame, 640, 640)
    assert lb._staging is staging and lb._src_ptr == src
    assert (lb._device_frame is None) == zero_copy      # zero-copy: no device frame buffer at all
    gpu_letterbox(ctx, lb, np.zeros((1080, 1920, 3), np.uint8), 640, 640)
    assert lb._capacity == 1080 * 1920 * 3


def test_decoding_into_the_pinned_frame_skips_the_host_copy(ctx):
    from daemon.gpu.letterbox import GpuLetterbox

    lb = GpuLetterbox(ctx, 640, 640, zero_copy=False)
    pinned = lb.host_frame(960, 1280)
    pinned[:] = np.random.default_rng(9).integers(0, 256, pinned.shape, dtype=np.uint8)
    want, _ = preprocess_det(pinned.copy(), 640, 640)
    got, _ = gpu_letterbox(ctx, lb, pinned, 640, 640)
    assert np.abs(got - want).max() <= 1e-3


def test_wrong_frame_type_is_refused(ctx):
    from daemon.gpu.letterbox import GpuLetterbox

    lb = GpuLetterbox(ctx, 64, 64, zero_copy=False, initial_frame_hw=(64, 64))
    with pytest.raises(ValueError, match="uint8"):
        lb.enqueue(np.zeros((10, 10), np.uint8), 0, None)
