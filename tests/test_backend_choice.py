"""Never silently on the CPU: `backend: auto` falls back to ONNX Runtime on any failure of the GPU attempt,
says why in one WARNING line, and shows the choice in /healthz, /metrics and the stats topic; an explicit
`backend: tensorrt` fails hard. The GPU side is a fake here (no GPU in CI): probes that say TensorRT and
pycuda import, and a TensorRT backend whose engines check out on disk but whose loading raises."""
import json
import logging
import signal
import threading
import urllib.request

import numpy as np
import pytest

import daemon.backends as backends
import daemon.backends.tensorrt as trt_backend
from daemon import config
from daemon.backends import BackendChoice, EngineFact, GpuFacts, decide
from daemon.backends.base import Backend, BackendError, Model
from daemon.backends.tensorrt.generation import TENSORRT, TensorRTInstall
from daemon.engines.plan import plan_engines
from daemon.engines.sidecar import DeviceInfo, engine_path, make_sidecar, sha256_file, sidecar_path, write_sidecar
from daemon.gpu import kernel_files
from daemon.ocr.pipeline import OcrPipeline
from broker import Recorder, free_port, wait_until
from service_support import small_ocr

FAKE_DEVICE = DeviceInfo("FakeOrin", "8.7", "10.3.0", 8, 7620)


# ---------------------------------------------------------------- decide(): pure

def _ok_facts(**over) -> GpuFacts:
    base = dict(tensorrt_version="10.3.0", gpu="Orin (compute capability 8.7)",
                engines=(EngineFact("det", True, ()), EngineFact("rec", True, ())))
    return GpuFacts(**{**base, **over})


def test_onnxruntime_in_the_config_is_configured_not_degraded():
    choice = decide("onnxruntime", "fp16", None)
    assert choice == BackendChoice("onnxruntime", "fp32", "configured", "configured") and not choice.degraded


def test_auto_takes_tensorrt_when_every_fact_is_good():
    choice = decide("auto", "int8", _ok_facts())
    assert (choice.backend, choice.precision, choice.category) == ("tensorrt", "int8", "loaded")
    assert "TensorRT 10.3.0" in choice.reason and not choice.degraded


@pytest.mark.parametrize("facts, category, words", [
    (GpuFacts(tensorrt_why="No module named 'tensorrt'"), "tensorrt_unavailable",
     "auto: TensorRT is not importable (No module named 'tensorrt')"),
    (_ok_facts(tensorrt_version="8.5.2"), "tensorrt_unavailable", "TensorRT 8.5.2 is not supported; this daemon runs on "
                                                                  "TensorRT 8.6, 10.3 or a later 10.x, or 11.x"),
    (_ok_facts(pycuda_why="No module named 'pycuda'"), "pycuda_unavailable", "sudo systemd/install.sh --gpu"),
    (_ok_facts(gpu=None, gpu_why="CUDA did not initialize"), "gpu_unavailable", "CUDA did not initialize"),
    (_ok_facts(engines=(EngineFact("det", True, ("TensorRT version: built by 10.2.0",)),
                        EngineFact("rec", False, ("engine 'x' does not exist",)))),
     "engine_missing", "rec engine cannot be used: engine 'x' does not exist. Rebuild it with "
                       "`ocr-daemon build-engine --config FILE --precision fp32`"),
    (_ok_facts(engines=(EngineFact("det", True, ("TensorRT version: built by 10.2.0",)),)),
     "engine_stale", "det engine cannot be used: TensorRT version"),
    (_ok_facts(kernels_problem="GPU kernels 'engines/kernels.sm87.cubin' cannot be used: missing"),
     "kernels_missing", "kernels.sm87.cubin"),
])
def test_auto_falls_back_with_the_first_gap_as_reason(facts, category, words):
    choice = decide("auto", "fp32", facts)
    assert (choice.backend, choice.category) == ("onnxruntime", category)
    assert words in choice.reason and choice.reason.startswith("auto: ") and choice.degraded


def test_fp16_falls_back_to_fp32_on_the_cpu():
    assert decide("auto", "fp16", GpuFacts()).precision == "fp32"


def test_a_box_without_an_nvidia_gpu_is_told_so_first_and_is_not_degraded():
    """Not "install pycuda" (or TensorRT) on a box that has no GPU: the CPU is its backend, not a fallback."""
    for facts in (GpuFacts(tensorrt_why="No module named 'tensorrt'", gpu_seen=""),
                  _ok_facts(pycuda_why="No module named 'pycuda'", gpu=None, gpu_seen="")):
        choice = decide("auto", "fp32", facts)
        assert (choice.backend, choice.category) == ("onnxruntime", "no_gpu") and not choice.degraded
        assert choice.reason == ("auto: no NVIDIA GPU: the CPU backend is this box's backend; "
                                 "set backend: onnxruntime to say so")
    # a GPU on the bus that pycuda cannot reach is a gap to fix, and degraded
    choice = decide("auto", "fp32", _ok_facts(pycuda_why="No module named 'pycuda'", gpu=None,
                                              gpu_seen="PCI 0000:01:00.0"))
    assert choice.category == "pycuda_unavailable" and choice.degraded
    # pycuda seeing the GPU overrules a probe that saw none
    assert decide("auto", "fp32", _ok_facts(gpu_seen="")).category == "loaded"
    # backend: tensorrt on such a box is refused with the same reason
    assert "no NVIDIA GPU" in str(backends.refusal(decide("tensorrt", "fp32", GpuFacts(gpu_seen=""))))


def test_auto_on_a_cpu_box_logs_info_not_a_warning(monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(backends, "nvidia_gpu_seen", lambda: "")
    backend, choice = backends.choose_backend(config.from_dict({"ocr": small_ocr()}))
    backend.close()
    assert (choice.backend, choice.category, choice.degraded) == ("onnxruntime", "no_gpu", False)
    assert not warnings(caplog) and "because no NVIDIA GPU" in caplog.text


def _tree(root, files):
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return str(root)


def test_nvidia_gpu_seen_reads_the_pci_bus_and_jetson_markers(tmp_path):
    from daemon.gpu import nvidia_gpu_seen

    pci = "sys/bus/pci/devices"
    assert nvidia_gpu_seen(_tree(tmp_path / "vm", {f"{pci}/0000:00:02.0/vendor": "0x1af4\n",
                                                   f"{pci}/0000:00:02.0/class": "0x018000\n"})) == ""
    # an NVIDIA audio function alone is not a GPU; its display controller is
    assert nvidia_gpu_seen(_tree(tmp_path / "audio", {f"{pci}/0000:01:00.1/vendor": "0x10de\n",
                                                      f"{pci}/0000:01:00.1/class": "0x040300\n"})) == ""
    assert nvidia_gpu_seen(_tree(tmp_path / "pc", {f"{pci}/0000:01:00.0/vendor": "0x10de\n",
                                                   f"{pci}/0000:01:00.0/class": "0x030000\n"})) == "PCI 0000:01:00.0"
    assert nvidia_gpu_seen(_tree(tmp_path / "orin", {"etc/nv_tegra_release": "# R36 (release)\n"})) == "a Jetson"


# ---------------------------------------------------------------- from_config with a fake GPU

class _FakeModel(Model):
    def __init__(self, spec, closed):
        self.role, self._closed = spec.role, closed

    def run(self, feeds):
        raise AssertionError("never run")

    def close(self):
        self._closed.append(self.role)


class _FakeTensorRT(Backend):
    """Engines check out (device() is what they were built for); loading the second model raises what
    pycuda raises when it cannot compile a kernel, which is not a BackendError."""
    name = "tensorrt"
    instances: list = []

    def __init__(self, cfg):
        self.precision = cfg.ocr.precision
        self.loaded, self.closed_models, self.closed = [], [], False
        _FakeTensorRT.instances.append(self)

    def device(self):
        return FAKE_DEVICE

    def load(self, spec):
        if self.loaded:
            raise RuntimeError("ExecError: nvcc")
        self.loaded.append(spec.role)
        return _FakeModel(spec, self.closed_models)

    def close(self):
        self.closed = True


@pytest.fixture()
def fake_gpu(monkeypatch):
    _FakeTensorRT.instances = []
    monkeypatch.setattr(backends, "probe_tensorrt", lambda: (TensorRTInstall(TENSORRT, "10.3.0"), ""))
    monkeypatch.setattr(backends, "probe_pycuda", lambda: (True, ""))
    monkeypatch.setattr(backends, "probe_driver_cuda", lambda: "12.6")
    monkeypatch.setattr(trt_backend, "TensorRTBackend", _FakeTensorRT)
    return _FakeTensorRT


def gpu_config(tmp_path, backend="auto", **over):
    cfg = config.from_dict({"backend": backend, "ocr": small_ocr(),
                            "engines": {"dir": str(tmp_path / "engines"), "timing_cache": None}, **over})
    for plan in plan_engines(cfg):     # engines whose sidecars match FAKE_DEVICE: the probe finds no gap
        path = engine_path(cfg.engines.dir, plan.engine_stem, plan.precision, FAKE_DEVICE)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"engine")
        write_sidecar(sidecar_path(path), make_sidecar(FAKE_DEVICE, plan.precision, {"x": plan.input_shape},
                                                       sha256_file(plan.source_onnx), head=plan.head))
    cubin = b"fake cubin"                # prebuilt kernels whose sidecar matches this GPU and driver
    kernel_files.write_kernels(kernel_files.kernels_path(cfg.engines.dir, FAKE_DEVICE.compute_capability), cubin,
                               kernel_files.make_kernels_sidecar(
                                   compute_capability=FAKE_DEVICE.compute_capability, cuda_toolkit_version="12.6",
                                   kernels_cu_sha256=kernel_files.source_sha256(),
                                   cubin_sha256=kernel_files.sha256_bytes(cubin)))
    return cfg


def warnings(caplog):
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_auto_falls_back_when_the_tensorrt_pipeline_raises_a_non_backend_error(tmp_path, fake_gpu, caplog):
    caplog.set_level(logging.INFO)
    pipeline = OcrPipeline.from_config(gpu_config(tmp_path))
    try:
        # the default model set's detector runs from its shipped INT8 copy on the CPU
        assert pipeline.describe() == {"backend": "onnxruntime", "precision": "fp32", "int8_models": ["det"]}
        choice = pipeline.choice
        assert (choice.backend, choice.precision, choice.category) == ("onnxruntime", "fp32", "gpu_error")
        assert "RuntimeError: ExecError: nvcc" in choice.reason and choice.degraded
        [warning] = warnings(caplog)
        assert warning.levelno == logging.WARNING and "RuntimeError: ExecError: nvcc" in warning.getMessage()
        [gpu] = fake_gpu.instances
        assert gpu.closed_models == ["det"] and gpu.closed   # nothing half-loaded stays on the GPU
        assert pipeline.run(np.full((96, 520, 3), 255, np.uint8)).lines == []   # the CPU models run
    finally:
        pipeline.close()


def test_explicit_tensorrt_raises_backend_error_naming_the_exception(tmp_path, fake_gpu, caplog):
    with pytest.raises(BackendError, match="backend: tensorrt cannot run: .*RuntimeError: ExecError: nvcc"):
        OcrPipeline.from_config(gpu_config(tmp_path, backend="tensorrt"))
    assert fake_gpu.instances[0].closed and not warnings(caplog)


def test_stale_engine_found_by_the_probe_never_loads(tmp_path, fake_gpu, caplog):
    cfg = gpu_config(tmp_path)
    det = plan_engines(cfg)[0]
    write_sidecar(sidecar_path(engine_path(cfg.engines.dir, det.engine_stem, det.precision, FAKE_DEVICE)),
                  make_sidecar(DeviceInfo("FakeOrin", "8.7", "10.2.0", 8, 7620), det.precision,
                               {"x": det.input_shape}, sha256_file(det.source_onnx)))
    pipeline = OcrPipeline.from_config(cfg)
    pipeline.close()
    assert pipeline.choice.category == "engine_stale" and "build-engine" in pipeline.choice.reason
    [gpu] = fake_gpu.instances
    assert gpu.loaded == [] and gpu.closed
    assert len(warnings(caplog)) == 1


def test_missing_kernels_found_by_the_probe_never_load(tmp_path, fake_gpu, caplog):
    cfg = gpu_config(tmp_path)
    kernel_files.kernels_path(cfg.engines.dir, FAKE_DEVICE.compute_capability).unlink()
    pipeline = OcrPipeline.from_config(cfg)
    pipeline.close()
    assert pipeline.choice.category == "kernels_missing"
    assert "ocr-daemon build-kernels --config FILE" in pipeline.choice.reason
    assert fake_gpu.instances[0].loaded == [] and len(warnings(caplog)) == 1


def test_rebuild_hints_name_the_config_file_the_daemon_runs_with(tmp_path, fake_gpu):
    """Under systemd `--config /etc/ocr-daemon/config.yaml` decides where engines and kernels land: the hint says so."""
    import dataclasses

    cfg = dataclasses.replace(gpu_config(tmp_path), source_path="/etc/ocr-daemon/config.yaml")
    kernel_files.kernels_path(cfg.engines.dir, FAKE_DEVICE.compute_capability).unlink()
    det = plan_engines(cfg)[0]
    write_sidecar(sidecar_path(engine_path(cfg.engines.dir, det.engine_stem, det.precision, FAKE_DEVICE)),
                  make_sidecar(DeviceInfo("FakeOrin", "8.7", "10.2.0", 8, 7620), det.precision,
                               {"x": det.input_shape}, sha256_file(det.source_onnx)))
    facts, backend = backends._probe(cfg)
    backend.close()
    choice = decide("auto", "fp32", facts, cfg.source_path)
    assert choice.reason.endswith("`ocr-daemon build-engine --config /etc/ocr-daemon/config.yaml --precision fp32`")
    assert "`ocr-daemon build-kernels --config /etc/ocr-daemon/config.yaml`" in facts.kernels_problem


def test_explicit_tensorrt_on_a_cpu_box_without_tensorrt_is_refused(monkeypatch):
    # CI's venv has TensorRT-RTX (for its builder): no edition importable is what a plain CPU box sees
    monkeypatch.setattr(backends, "probe_tensorrt", lambda: (None, "tensorrt: No module named 'tensorrt'"))
    monkeypatch.setattr(backends, "nvidia_gpu_seen", lambda: "PCI 0000:01:00.0")   # a GPU, without TensorRT
    with pytest.raises(BackendError, match="TensorRT is not importable"):
        OcrPipeline.from_config(config.from_dict({"backend": "tensorrt", "ocr": small_ocr()}))


def test_explicit_tensorrt_on_this_box_is_refused_naming_what_is_missing():
    """Whatever this box has (CI: TensorRT-RTX without pycuda or a GPU), never a silent CPU."""
    found, _ = backends.probe_tensorrt()
    if found is not None and backends.probe_pycuda()[0]:
        pytest.skip("TensorRT and pycuda import here: the GPU tests cover this box")
    with pytest.raises(BackendError, match="is not importable|no NVIDIA GPU"):
        OcrPipeline.from_config(config.from_dict({"backend": "tensorrt", "ocr": small_ocr()}))


# ---------------------------------------------------------------- seen from outside

def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_fallback_shows_in_healthz_metrics_and_stats(tmp_path, fake_gpu, broker, caplog):
    from daemon.service import Service

    folder = tmp_path / "scans"
    folder.mkdir()
    cfg = gpu_config(tmp_path, device_id="dock",
                     cameras=[{"name": "scan", "kind": "folder", "uri": str(folder), "watchdog_s": 0}],
                     mqtt={"host": "127.0.0.1", "port": broker.port, "stats_interval_s": 1.0,
                           "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
                     outbox={"path": str(tmp_path / "outbox.sqlite3")},
                     metrics={"port": free_port()},
                     web={"port": free_port()})   # not the default 8088: another daemon on the box may hold it
    rec = Recorder(broker.port, topic="ocr/dock/stats", client_id="rec-backend")
    rec.wait_subscribed()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    service = Service(cfg, str(tmp_path / "unused.yaml"))
    loop = None
    try:
        service.start()
        loop = threading.Thread(target=service.run)
        loop.start()
        base = f"http://127.0.0.1:{service.metrics_server.port}"
        code, body = _get(base + "/healthz")
        health = json.loads(body)
        assert code == 200 and health["healthy"] and health["degraded"] is True
        assert health["backend"]["backend"] == "onnxruntime" and health["backend"]["precision"] == "fp32"
        assert health["backend"]["category"] == "gpu_error"
        assert "RuntimeError: ExecError: nvcc" in health["backend"]["reason"]
        code, text = _get(base + "/metrics")
        assert 'ocr_backend_info{backend="onnxruntime",precision="fp32",reason="gpu_error"} 1.0' in text
        assert wait_until(lambda: rec.on_topic("ocr/dock/stats"), 20)
        stats = rec.on_topic("ocr/dock/stats")[0].json()
        assert stats["backend"] == health["backend"]
        assert len(warnings(caplog)) == 1
    finally:
        service.request_stop()
        if loop is not None:
            loop.join(timeout=30)
        else:
            service.close()
        rec.close()
        for s, h in handlers.items():
            signal.signal(s, h)
