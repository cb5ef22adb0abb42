"""TensorRT backend end to end: build an engine from the bundled detector, load it, compare with ONNX
Runtime, and refuse it once stale. TensorRT cannot be installed on our machines, so these skip; they are
here for a box that has it (a Jetson with JetPack 6)."""
from __future__ import annotations

import numpy as np
import pytest

try:
    import tensorrt  # noqa: F401  (presence only)
    _HAVE_TRT = True
except ImportError:
    _HAVE_TRT = False

pytestmark = [pytest.mark.gpu, pytest.mark.tensorrt,
              pytest.mark.skipif(not _HAVE_TRT, reason="tensorrt not importable (not installable on this machine; "
                                                        "see docs/what-ran-where.md)")]


@pytest.fixture()
def cfg(tmp_path):
    from daemon.config import from_dict

    return from_dict({"ocr": {"det_input_size": [320, 320], "use_angle_classifier": False},
                      "engines": {"dir": str(tmp_path / "engines"), "timing_cache": str(tmp_path / "engines/timing.cache")},
                      "gpu": {"streams": 2, "zero_copy": "off"}})


def test_engine_builds_loads_and_matches_onnxruntime(cfg):
    from daemon.backends.onnxruntime import OnnxRuntimeBackend
    from daemon.backends.tensorrt import TensorRTBackend
    from daemon.engines.build import build_engine, gpu_target
    from daemon.engines.plan import model_specs, plan_for_spec
    from daemon.gpu.kernel_build import build_kernels

    backend = TensorRTBackend(cfg)
    spec = model_specs(cfg)[0]
    build_kernels(cfg.engines.dir, backend._context())
    path = build_engine(plan_for_spec(spec, "fp32", cfg.engines.dir), cfg.engines, gpu_target(backend._context())).path
    assert path.is_file() and path.with_name(path.name + ".json").is_file()
    model = backend.load(spec)
    assert model.inputs[0].shape == (1, 3, 320, 320)
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    probs, boxes = model.run_frames([frame])
    ref = OnnxRuntimeBackend().load(spec)
    want, want_boxes = ref.run_frames([frame])
    assert boxes == want_boxes
    assert np.abs(probs - want).max() < 1e-2
    # two submissions in flight on the two buffer sets give the same answers as one at a time
    det = model.detector()
    assert det.overlaps
    t1, t2 = det.submit([frame]), det.submit([frame[::-1].copy()])
    assert np.abs(det.collect(t1)[0] - probs).max() == 0
    det.collect(t2)


def test_stale_engine_is_refused_with_the_rebuild_command(cfg):
    from daemon.backends.base import BackendError
    from daemon.backends.tensorrt import TensorRTBackend
    from daemon.engines.build import build_engine, gpu_target
    from daemon.engines.plan import model_specs, plan_for_spec
    from daemon.engines.sidecar import read_sidecar, sidecar_path, write_sidecar

    backend = TensorRTBackend(cfg)
    spec = model_specs(cfg)[0]
    path = build_engine(plan_for_spec(spec, "fp32", cfg.engines.dir), cfg.engines, gpu_target(backend._context())).path
    sidecar = read_sidecar(sidecar_path(path))
    write_sidecar(sidecar_path(path), dict(sidecar, tensorrt_version="9.9.9"))
    with pytest.raises(BackendError, match="ocr-daemon build-engine --config FILE --precision fp32"):
        backend.load(spec)
