"""The GPU letterbox's arithmetic, checked on the CPU: a numpy mirror of kernels.cu's index maths must
match OpenCV's resize as preprocess_det uses it. If this passes and tests/test_gpu_preprocess.py fails,
the bug is in the kernel's code, not in our reading of OpenCV. Also the pure overlap measure."""
from __future__ import annotations

import numpy as np
import pytest

from daemon.gpu.context import use_zero_copy
from daemon.gpu.letterbox import NORM_ADD, NORM_MUL, plan_launch
from daemon.gpu.streams import FrameTiming, hidden_share
from daemon.ocr.det_pre import preprocess_det


def kernel_mirror(frame: np.ndarray, in_h: int, in_w: int) -> np.ndarray:
    """What letterbox_bgr_to_chw computes, vectorized: same coordinates, clamps and float32 weights."""
    h, w = frame.shape[:2]
    launch = plan_launch(h, w, in_h, in_w)
    box = launch.box

    def axis(n: int, scale: float, size: int):
        f = ((np.arange(n) + 0.5) * scale - 0.5).astype(np.float32)
        i = np.floor(f).astype(np.int64)
        f = (f - i).astype(np.float32)
        low = i < 0
        f[low], i[low] = 0, 0
        high = i >= size - 1
        f[high], i[high] = 0, size - 1
        return i, np.minimum(i + 1, size - 1), f

    x0, x1, fx = axis(box.new_w, launch.scale_x, w)
    y0, y1, fy = axis(box.new_h, launch.scale_y, h)
    src = frame.astype(np.float32)
    ax0, ax1 = (1 - fx)[None, :, None], fx[None, :, None]
    h0 = src[y0][:, x0] * ax0 + src[y0][:, x1] * ax1
    h1 = src[y1][:, x0] * ax0 + src[y1][:, x1] * ax1
    v = h0 * (1 - fy)[:, None, None] + h1 * fy[:, None, None]
    out = np.zeros((3, in_h, in_w), np.float32)
    out[:, : box.new_h, : box.new_w] = (v * NORM_MUL + NORM_ADD).transpose(2, 0, 1)
    return out


# Exact 2x downscales (OpenCV switches to INTER_AREA there: the same 2x2 mean), odd sizes, upscales,
# tall and wide frames, and degenerate 1-pixel frames.
SIZES = [(960, 1280, 640, 640), (480, 640, 640, 640), (640, 640, 640, 640), (1080, 1920, 960, 960),
         (333, 517, 640, 640), (2000, 1500, 960, 960), (37, 1000, 640, 640), (7, 5, 64, 64), (1, 1, 32, 32),
         (720, 1280, 640, 640), (1280, 960, 960, 960)]


@pytest.mark.parametrize("h, w, in_h, in_w", SIZES)
def test_kernel_arithmetic_matches_opencv_preprocess(h, w, in_h, in_w):
    frame = np.random.default_rng(h * 7919 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    want, _ = preprocess_det(frame, in_h, in_w)
    got = kernel_mirror(frame, in_h, in_w)
    assert np.abs(got - want).max() <= 1e-3


def test_launch_covers_the_whole_input_and_scales_like_opencv():
    launch = plan_launch(960, 1280, 640, 640)
    assert (launch.box.new_h, launch.box.new_w) == (480, 640)
    assert launch.scale_x == 2.0 and launch.scale_y == 2.0
    assert launch.grid[0] * 32 >= 640 and launch.grid[1] * 8 >= 640


@pytest.mark.parametrize("setting, integrated, expected", [
    ("auto", True, True), ("auto", False, False), ("on", False, True), ("off", True, False)])
def test_zero_copy_follows_the_integrated_attribute_unless_forced(setting, integrated, expected):
    assert use_zero_copy(setting, integrated) is expected


def _t(seq, pre, infer):
    return FrameTiming(seq, seq % 2, pre[0], pre[1], infer[0], infer[1])


def test_hidden_share_counts_preprocessing_under_other_frames_inference():
    # frame 1's pre-processing (1.0-1.2) runs entirely inside frame 0's inference (0.1-2.1)
    overlapped = [_t(0, (0.0, 0.1), (0.1, 2.1)), _t(1, (1.0, 1.2), (2.1, 4.1)), _t(2, (3.0, 3.2), (4.1, 6.1))]
    assert hidden_share(overlapped) == pytest.approx(1.0)
    # strictly serial: every pre-processing starts after the previous inference ended
    serial = [_t(0, (0.0, 0.1), (0.1, 2.1)), _t(1, (2.1, 2.3), (2.3, 4.3)), _t(2, (4.3, 4.5), (4.5, 6.5))]
    assert hidden_share(serial) == pytest.approx(0.0)
    # half hidden
    half = [_t(0, (0.0, 0.1), (0.1, 2.0)), _t(1, (1.9, 2.1), (2.1, 4.0))]
    assert hidden_share(half) == pytest.approx(0.5)
