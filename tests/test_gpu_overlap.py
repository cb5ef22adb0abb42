"""Two streams, two buffer sets: frame N+1's upload and letterbox run while frame N infers. A calibrated
busy-kernel chain stands in for the engine (TensorRT is absent on the GPU machine); CUDA event
timestamps show how much pre-processing time is hidden. Runs on the GPU machine; skips elsewhere."""
from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from daemon.gpu import pycuda_available
from daemon.ocr.det_pre import preprocess_det

_OK, _WHY = pycuda_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _OK, reason=f"needs pycuda and an NVIDIA GPU: {_WHY}")]

IN_H = IN_W = 640
LOAD_MS = 2.0


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """The daemon's way in: kernels built ahead of time into a directory, then loaded from there."""
    from daemon.gpu.kernel_build import context_with_built_kernels

    return context_with_built_kernels(tmp_path_factory.mktemp("engines"))


@pytest.fixture(scope="module")
def load(ctx):
    from daemon.gpu.standin import BusyLoad

    return BusyLoad(ctx, LOAD_MS)


def make_pipeline(ctx, load, n_sets: int, batch: int = 1, zero_copy: bool = False, download: bool = True):
    """The stand-in inference: the busy chain, then (download=True) a download of the model input it
    'consumed', so a test can check each set's input held its own frame. Timing runs leave the download
    and the host-side copy of the result out: they are test instrumentation on the submitting thread."""
    import pycuda.driver as cuda

    from daemon.gpu.streams import StreamPipeline, make_buffer_sets

    sets = make_buffer_sets(ctx, n_sets, batch, IN_H, IN_W, zero_copy)
    with ctx.active():
        for s in sets:
            s.extra["host_out"] = cuda.pagelocked_empty((batch, 3, IN_H, IN_W), np.float32)

    def infer(s):
        load.enqueue(s.stream)
        if download:
            cuda.memcpy_dtoh_async(s.extra["host_out"], s.extra["input"], s.stream)

    return StreamPipeline(ctx, sets, infer, batch=batch)


def run_stream(pipe, frames, keep_outputs: bool = True):
    """Submit ahead as far as the buffer sets allow; collect in order."""
    pending, timings, outputs = deque(), [], []

    def collect_one():
        ticket = pending.popleft()
        s, timing = pipe.collect(ticket)
        timings.append(timing)
        if keep_outputs:
            outputs.append(np.array(s.extra["host_out"][0]))

    for f in frames:
        if len(pending) == len(pipe.sets):
            collect_one()
        pending.append(pipe.submit([f]))
    while pending:
        collect_one()
    return timings, outputs


def frames(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (960, 1280, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("zero_copy", [False, True], ids=["upload", "zero_copy"])
def test_two_streams_hide_preprocessing_behind_inference(ctx, load, zero_copy):
    from daemon.gpu.streams import hidden_share

    pipe = make_pipeline(ctx, load, n_sets=2, zero_copy=zero_copy, download=False)
    batch = frames(30)
    timings, _ = run_stream(pipe, batch, keep_outputs=False)
    share = hidden_share(timings)
    for t in timings[:4]:
        print(f"frame {t.seq} set {t.set_index}: pre {t.pre_start_ms:8.3f}-{t.pre_end_ms:8.3f} ms, "
              f"infer {t.infer_start_ms:8.3f}-{t.infer_end_ms:8.3f} ms")
    pre = np.median([t.pre_ms for t in timings])
    print(f"stand-in load {load.measure_ms():.2f} ms, pre-process median {pre:.3f} ms, hidden share {share:.1%}")
    assert share >= 0.9
    assert [t.seq for t in timings] == list(range(len(batch)))


@pytest.mark.parametrize("zero_copy", [False, True], ids=["upload", "zero_copy"])
def test_results_stay_in_order_and_each_buffer_set_holds_its_own_frame(ctx, load, zero_copy):
    pipe = make_pipeline(ctx, load, n_sets=2, zero_copy=zero_copy)
    batch = frames(12, seed=3)
    timings, outputs = run_stream(pipe, batch)
    assert [t.seq for t in timings] == list(range(len(batch)))
    for frame, out in zip(batch, outputs):
        want, _ = preprocess_det(frame, IN_H, IN_W)
        assert np.abs(out - want).max() <= 1e-3


def test_one_stream_hides_nothing(ctx, load):
    from daemon.gpu.streams import hidden_share

    pipe = make_pipeline(ctx, load, n_sets=1)
    timings, _ = run_stream(pipe, frames(10))
    share = hidden_share(timings)
    print(f"one buffer set: hidden share {share:.1%}")
    assert share < 0.1


def test_inference_runs_one_at_a_time_in_submission_order(ctx, load):
    pipe = make_pipeline(ctx, load, n_sets=2)
    timings, _ = run_stream(pipe, frames(8))
    for a, b in zip(timings, timings[1:]):
        assert b.infer_start_ms >= a.infer_end_ms - 1e-3


def test_unused_batch_slots_are_zero(ctx, load):
    pipe = make_pipeline(ctx, load, n_sets=2, batch=2)
    frame = frames(1)[0]
    ticket = pipe.submit([frame])
    s, _ = pipe.collect(ticket)
    out = np.array(s.extra["host_out"])
    want, _ = preprocess_det(frame, IN_H, IN_W)
    assert np.abs(out[0] - want).max() <= 1e-3
    assert not out[1].any()


def test_a_buffer_set_is_not_reused_before_it_is_collected(ctx, load):
    pipe = make_pipeline(ctx, load, n_sets=2)
    f = frames(1)[0]
    first = pipe.submit([f])
    second = pipe.submit([f])
    with pytest.raises(RuntimeError, match="collect it first"):
        pipe.submit([f])
    pipe.collect(first)
    pipe.collect(second)
