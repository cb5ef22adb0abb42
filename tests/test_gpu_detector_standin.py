"""TrtModel's own GPU path with a stand-in engine (busy kernels where TensorRT cannot be installed):
buffer sets, streams, the prebuilt letterbox kernel into the input buffer, output downloads, the
detector protocol with one and with two buffer sets, and the shared activation block."""
from __future__ import annotations

import numpy as np
import pytest

from daemon.gpu import pycuda_available

_OK, _WHY = pycuda_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _OK, reason=f"no GPU with pycuda here: {_WHY}")]

DET = (1, 3, 320, 320)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    from daemon.gpu.kernel_build import context_with_built_kernels

    return context_with_built_kernels(tmp_path_factory.mktemp("kernels"))


def _model(ctx, streams, block_bytes=1 << 20):
    from daemon.backends.base import ModelSpec
    from daemon.backends.tensorrt.engine import TrtModel
    from daemon.config import GpuConfig
    from daemon.gpu.standin import BusyLoad, StandInSession

    load = BusyLoad(ctx, 1.0)
    sessions = []

    def open_session(alloc, contexts):
        sessions.append(StandInSession(load, DET, alloc, contexts, block_bytes))
        return sessions[-1]

    model = TrtModel(ctx, open_session, ModelSpec("det", "stand-in", DET), GpuConfig(streams=streams, zero_copy="off"))
    return model, sessions[0]


@pytest.mark.parametrize("streams", [1, 2])
def test_detector_protocol_with_one_and_two_buffer_sets(ctx, streams):
    model, session = _model(ctx, streams)
    det = model.detector()
    assert det.overlaps is (streams == 2)
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    first = det.submit([frame])
    if streams == 1:
        with pytest.raises(RuntimeError, match="collect it first"):
            det.submit([frame])
    else:
        second = det.submit([frame])
    probs, boxes = det.collect(first)
    assert probs.shape == (1, 1, 320, 320) and boxes[0].new_w == 320
    if streams == 2:
        det.collect(second)
    # every context bound its input and output once; one activation block for all of them
    assert {name for _, name in session.bound} == {"x", "y"} and len(session.bound) == 2 * streams
    assert model.context_memory.contexts == streams and model.context_memory.saved_bytes == (streams - 1) << 20
    model.close()
