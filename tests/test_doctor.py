"""`ocr-daemon doctor` on whatever box runs the tests: it must report, never crash, and say what to do."""
from __future__ import annotations

import argparse
import json
import socket

import pytest

from daemon import doctor
from daemon.backends.tensorrt.generation import TENSORRT, TENSORRT_RTX, TensorRTInstall
from daemon.config import from_dict
from daemon.engines.check import check_engine
from daemon.engines.plan import plan_engines
from daemon.engines.sidecar import DeviceInfo, engine_path, make_sidecar, sha256_file, sidecar_path, write_sidecar


@pytest.fixture()
def listener():
    """A real TCP listener on loopback: what doctor's broker check connects to."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    yield srv.getsockname()[1]
    srv.close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture()
def cfg_dict(tmp_path):
    det, rec = tmp_path / "det.onnx", tmp_path / "rec.onnx"
    det.write_bytes(b"det model")
    rec.write_bytes(b"rec model")
    return {"ocr": {"det_model": str(det), "rec_model": str(rec), "use_angle_classifier": False,
                    "det_input_size": [640, 640]},
            "engines": {"dir": str(tmp_path / "engines"), "timing_cache": None}}


def by_check(findings):
    return {f.check: f for f in findings}


def test_doctor_reports_every_area_with_a_next_step_for_each_gap(cfg_dict, listener):
    cfg_dict["mqtt"] = {"host": "127.0.0.1", "port": listener}
    findings = doctor.diagnose(from_dict(cfg_dict))
    checks = by_check(findings)
    for name in ("TensorRT", "CUDA", "GPU", "pycuda", "engine det (fp32)", "engine rec (fp32)", "cameras", "MQTT broker"):
        assert name in checks, name
    assert checks["MQTT broker"].ok
    for f in findings:
        assert f.ok or f.next_step, f"{f.check} is a gap without a next step"


def test_unreachable_broker_is_a_gap_that_says_the_daemon_still_starts(cfg_dict):
    cfg_dict["mqtt"] = {"host": "127.0.0.1", "port": closed_port()}
    broker = by_check(doctor.diagnose(from_dict(cfg_dict)))["MQTT broker"]
    assert not broker.ok and "failed" in broker.detail and "queues results on disk" in broker.next_step


def test_missing_engines_name_the_build_command(cfg_dict):
    cfg = from_dict(cfg_dict)
    gpu = doctor.GpuProbe("Orin", "8.7", "12.6", True, "pycuda")
    findings = doctor.engine_findings(cfg, "10.3.0", gpu)
    assert [f.check for f in findings] == ["engine det (fp32)", "engine rec (fp32)", "engine rec_tail (fp32)"]
    for f in findings:
        assert not f.ok and "does not exist" in f.detail
        assert "ocr-daemon build-engine --config FILE --precision fp32" in f.next_step


def test_matching_and_stale_engines_are_told_apart(cfg_dict):
    cfg = from_dict(cfg_dict)
    orin = DeviceInfo("Orin", "8.7", "10.3.0", 8, 7620)
    for plan in plan_engines(cfg):
        path = engine_path(cfg.engines.dir, plan.engine_stem, plan.precision, orin)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"engine")
        sha = sha256_file(plan.source_onnx) if plan.role == "det" else "0" * 64   # rec: built from another model
        write_sidecar(sidecar_path(path), make_sidecar(orin, plan.precision, {"x": plan.input_shape}, sha,
                                                       head=plan.head))
    orin_probe = doctor.GpuProbe("Orin", "8.7", "12.6", True, "pycuda", multiprocessors=8, total_memory_mib=7620)
    findings = by_check(doctor.engine_findings(cfg, "10.3.0", orin_probe))
    assert findings["engine det (fp32)"].ok
    assert not findings["engine rec (fp32)"].ok and "sha256" in findings["engine rec (fp32)"].detail
    assert not findings["engine rec_tail (fp32)"].ok and "sha256" in findings["engine rec_tail (fp32)"].detail
    # the same files seen from another TensorRT version: nothing matches any more
    assert not check_engine(plan_engines(cfg)[0], DeviceInfo("Orin", "8.7", "10.4.0", 8, 7620), cfg.engines.dir).ok
    # another Orin module (same name and compute capability, fewer SMs) does not match either
    nano = doctor.GpuProbe("Orin", "8.7", "12.6", True, "pycuda", multiprocessors=4, total_memory_mib=3450)
    det = by_check(doctor.engine_findings(cfg, "10.3.0", nano))["engine det (fp32)"]
    assert not det.ok and "SM count" in det.detail


def test_without_tensorrt_engines_on_disk_are_listed_but_not_trusted(cfg_dict):
    cfg = from_dict(cfg_dict)
    plan = plan_engines(cfg)[0]
    path = engine_path(cfg.engines.dir, plan.engine_stem, "fp32", DeviceInfo("Orin", "8.7", "10.3.0", 8, 7620))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"engine")
    det = by_check(doctor.engine_findings(cfg, None, doctor.GpuProbe(None, None, None, None, "none", "no GPU")))["engine det (fp32)"]
    assert not det.ok and path.name in det.detail and "cannot check" in det.detail


def test_int8_without_calibrated_models_says_run_calibrate(cfg_dict):
    cfg_dict["ocr"]["precision"] = "int8"
    findings = doctor.engine_findings(from_dict(cfg_dict), None, doctor.GpuProbe(None, None, None, None, "none"))
    gaps = [f for f in findings if f.check.startswith("int8 model")]
    assert len(gaps) == 2 and all("ocr-daemon calibrate" in f.next_step for f in gaps)


def test_int8_models_that_are_not_onnx_say_run_calibrate_in_doctor_and_at_start(cfg_dict):
    from daemon.ocr import models
    from daemon.ocr.pipeline import OcrPipeline

    cfg_dict["ocr"]["precision"] = "int8"
    cfg_dict["backend"] = "onnxruntime"
    cfg = from_dict(cfg_dict)
    paths = models.resolve(cfg)
    for fp32 in (paths.det, paths.rec):   # cut short or overwritten
        target = models.int8_path(cfg.engines.dir, fp32)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"garbage, not a protobuf")
    gaps = [f for f in doctor.engine_findings(cfg, None, doctor.GpuProbe(None, None, None, None, "none"))
            if f.check.startswith("int8 model")]
    assert len(gaps) == 2 and all("not an ONNX model" in f.detail and "ocr-daemon calibrate" in f.next_step
                                  for f in gaps)
    with pytest.raises(Exception, match="ocr-daemon calibrate"):
        OcrPipeline.from_config(cfg)


def test_a_gstreamer_camera_is_checked_against_this_opencv(cfg_dict):
    from daemon.sources.capture import gstreamer_available

    cfg_dict["cameras"] = [{"name": "line", "kind": "gstreamer", "uri": "videotestsrc ! videoconvert ! appsink"}]
    cfg_dict["mqtt"] = {"enabled": False}
    gst = by_check(doctor.diagnose(from_dict(cfg_dict)))["GStreamer cameras"]
    assert gst.ok == gstreamer_available() and "line" in gst.detail
    assert gst.ok or "make-venv.sh --gpu" in gst.next_step


def test_configured_camera_that_is_absent_is_a_gap(cfg_dict):
    cfg_dict["cameras"] = [{"name": "dock", "kind": "v4l2", "uri": "/dev/video-does-not-exist"}]
    cfg_dict["mqtt"] = {"enabled": False}
    cams = by_check(doctor.diagnose(from_dict(cfg_dict)))["cameras"]
    assert not cams.ok and "dock" in cams.detail and cams.next_step


def test_main_prints_json_and_exits_zero(cfg_dict, tmp_path, capsys):
    import yaml

    cfg_dict["mqtt"] = {"host": "127.0.0.1", "port": closed_port()}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg_dict))
    parser = argparse.ArgumentParser()
    doctor.add_arguments(parser)
    assert doctor.main(parser.parse_args(["--config", str(path), "--json"])) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"check", "ok", "detail", "next_step"} <= set(rows[0])


def test_invalid_config_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("mqtt: {port: 0}\n")
    parser = argparse.ArgumentParser()
    doctor.add_arguments(parser)
    assert doctor.main(parser.parse_args(["--config", str(path)])) == 2
    assert "mqtt.port" in capsys.readouterr().err


def test_pycuda_gap_points_to_the_gpu_installer_not_apt(cfg_dict):
    pycuda = by_check(doctor.diagnose(from_dict(cfg_dict)))["pycuda"]
    if pycuda.ok:
        pytest.skip("pycuda imports here")
    assert "systemd/install.sh --gpu" in pycuda.next_step and "apt" not in pycuda.next_step


def test_nvidia_smi_line_gives_name_compute_capability_and_memory():
    assert doctor._smi_fields("NVIDIA H200, 9.0, 143771") == ("NVIDIA H200", "9.0", 143771)
    assert doctor._smi_fields("Orin, 8.7, [N/A]") == ("Orin", "8.7", None)


def test_backend_finding_on_a_cpu_box_without_tensorrt_says_onnxruntime_and_why(cfg_dict, monkeypatch):
    # CI's venv has TensorRT-RTX (for its builder): no edition importable is what a plain CPU box sees
    monkeypatch.setattr(doctor, "probe_tensorrt", lambda: (None, "tensorrt: No module named 'tensorrt'"))
    monkeypatch.setattr(doctor, "nvidia_gpu_seen", lambda: "PCI 0000:01:00.0")   # a GPU, without TensorRT
    backend = by_check(doctor.diagnose(from_dict(cfg_dict)))["backend auto"]
    assert not backend.ok and backend.next_step
    assert backend.detail.startswith("backend auto → onnxruntime (fp32): TensorRT is not importable (")
    assert backend.choice["backend"] == "onnxruntime" and backend.choice["category"] == "tensorrt_unavailable"
    assert backend.choice["degraded"] is True


def test_auto_on_a_box_without_an_nvidia_gpu_says_so_and_is_not_degraded(cfg_dict, monkeypatch):
    monkeypatch.setattr(doctor, "probe_gpu", lambda: doctor.GpuProbe(None, None, None, None, "none", "no GPU"))
    monkeypatch.setattr(doctor, "nvidia_gpu_seen", lambda: "")
    backend = by_check(doctor.diagnose(from_dict(cfg_dict)))["backend auto"]
    assert backend.ok and backend.choice["category"] == "no_gpu" and backend.choice["degraded"] is False
    assert backend.detail == ("backend auto → onnxruntime (fp32): no NVIDIA GPU: the CPU backend is this box's "
                              "backend; set backend: onnxruntime to say so")


def test_configured_onnxruntime_is_no_gap(cfg_dict):
    cfg_dict["backend"] = "onnxruntime"
    backend = by_check(doctor.diagnose(from_dict(cfg_dict)))["backend onnxruntime"]
    assert backend.ok and backend.detail == "backend onnxruntime → onnxruntime (fp32): configured"


def test_configured_onnxruntime_shows_the_gpu_side_as_facts_not_gaps(cfg_dict, tmp_path, capsys):
    """Whatever this box has (no GPU, no pycuda here), none of it is a gap for the CPU backend."""
    import yaml

    cfg_dict.update(backend="onnxruntime", mqtt={"enabled": False})
    findings = doctor.diagnose(from_dict(cfg_dict))
    checks = by_check(findings)
    for name in ("TensorRT", "CUDA", "GPU", "pycuda", "engines"):
        f = checks[name]
        assert f.ok and f.info and not f.next_step and f.detail.startswith("not used by backend onnxruntime: ")
    assert not [f.check for f in findings if f.check.startswith(("engine ", "GPU kernels"))]
    assert all(f.ok for f in findings), [f for f in findings if not f.ok]
    assert "\n--   pycuda " in "\n" + doctor.render(findings)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg_dict))
    parser = argparse.ArgumentParser()
    doctor.add_arguments(parser)
    assert doctor.main(parser.parse_args(["--config", str(path), "--json"])) == 0
    rows = json.loads(capsys.readouterr().out)     # the rows keep their keys: a fact is ok with its detail
    assert all(set(r) <= {"check", "ok", "detail", "next_step", "choice"} for r in rows)
    assert {r["check"]: r["ok"] for r in rows}["pycuda"] is True


def test_configured_onnxruntime_still_checks_the_int8_models_it_runs(cfg_dict):
    cfg_dict.update(backend="onnxruntime", mqtt={"enabled": False})
    cfg_dict["ocr"]["precision"] = "int8"
    gaps = [f for f in doctor.diagnose(from_dict(cfg_dict)) if not f.ok]
    assert [f.check for f in gaps] == ["int8 model (det)", "int8 model (rec)"]


@pytest.fixture()
def orin_box(monkeypatch):
    """doctor's probes as on a Jetson Orin with TensorRT 10.3 and pycuda (nothing of it here)."""
    probe = doctor.GpuProbe("Orin", "8.7", "12.6", True, "pycuda", multiprocessors=8, total_memory_mib=7620)
    monkeypatch.setattr(doctor, "probe_tensorrt", lambda: (TensorRTInstall(TENSORRT, "10.3.0"), ""))
    monkeypatch.setattr(doctor, "probe_pycuda", lambda: (True, "2024.1.2"))
    monkeypatch.setattr(doctor, "probe_gpu", lambda: probe)
    monkeypatch.setattr(doctor, "probe_nvcc", lambda: None)
    return DeviceInfo("Orin", "8.7", "10.3.0", 8, 7620)


def built(cfg, device):
    """Engines and GPU kernels as build-engine and build-kernels leave them for ``device``."""
    from daemon.gpu import kernel_files

    for plan in plan_engines(cfg):
        path = engine_path(cfg.engines.dir, plan.engine_stem, plan.precision, device)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"engine")
        write_sidecar(sidecar_path(path), make_sidecar(device, plan.precision, {"x": plan.input_shape},
                                                       sha256_file(plan.source_onnx), head=plan.head))
    cubin = b"cubin"
    kernel_files.write_kernels(kernel_files.kernels_path(cfg.engines.dir, device.compute_capability), cubin,
                               kernel_files.make_kernels_sidecar(
                                   compute_capability=device.compute_capability, cuda_toolkit_version="12.6",
                                   kernels_cu_sha256=kernel_files.source_sha256(),
                                   cubin_sha256=kernel_files.sha256_bytes(cubin)))


def test_backend_finding_says_tensorrt_where_engines_and_kernels_match(cfg_dict, orin_box):
    cfg = from_dict(cfg_dict)
    built(cfg, orin_box)
    checks = by_check(doctor.diagnose(cfg))
    assert checks["GPU kernels"].ok and checks["CUDA"].ok     # no nvcc on the box: not a gap at run time
    backend = checks["backend auto"]
    assert backend.ok and backend.detail.startswith("backend auto → tensorrt (fp32): TensorRT 10.3.0 engines match Orin")


def test_backend_finding_names_missing_kernels_and_a_refused_explicit_tensorrt(cfg_dict, orin_box):
    from daemon.gpu import kernel_files

    cfg_dict["backend"] = "tensorrt"
    cfg = from_dict(cfg_dict)
    built(cfg, orin_box)
    kernel_files.kernels_path(cfg.engines.dir, "8.7").unlink()
    checks = by_check(doctor.diagnose(cfg))
    assert not checks["GPU kernels"].ok and "ocr-daemon build-kernels --config FILE" in checks["GPU kernels"].next_step
    backend = checks["backend tensorrt"]
    assert not backend.ok and backend.detail.startswith("backend tensorrt → does not start (exit 1): GPU kernels")
    assert backend.choice["category"] == "kernels_missing"


def _doctor_json(cfg_dict, tmp_path, capsys):
    """doctor --json on cfg_dict (MQTT off) written to a config file: (the file, its rows by check)."""
    import yaml

    cfg_dict["mqtt"] = {"enabled": False}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg_dict))
    parser = argparse.ArgumentParser()
    doctor.add_arguments(parser)
    assert doctor.main(parser.parse_args(["--config", str(path), "--json"])) == 0
    return path, {r["check"]: r for r in json.loads(capsys.readouterr().out)}


def test_next_steps_name_the_config_file_doctor_was_given(cfg_dict, orin_box, tmp_path, capsys):
    path, rows = _doctor_json(cfg_dict, tmp_path, capsys)
    assert rows["engine det (fp32)"]["next_step"] == f"`ocr-daemon build-engine --config {path} --precision fp32`"
    assert rows["GPU kernels"]["next_step"].startswith(f"`ocr-daemon build-kernels --config {path}`")
    assert f"--config {path} --precision fp32`" in rows["backend auto"]["detail"]
    assert "FILE" not in json.dumps(rows)


def test_json_carries_the_backend_choice(cfg_dict, tmp_path, capsys):
    _, rows = _doctor_json(cfg_dict, tmp_path, capsys)
    assert {"backend", "precision", "reason", "category", "degraded"} <= set(rows["backend auto"]["choice"])
    assert "choice" not in rows["MQTT broker"]


def test_cpu_folded_models_are_reported_from_the_files(cfg_dict, tmp_path):
    """Not written yet, then written (the real detector, folded as the backend does), then switched off."""
    from pathlib import Path

    from daemon.backends.onnxruntime.folded import folded_path
    from daemon.ocr.models import bundled_model_dir

    det = Path(cfg_dict["ocr"]["det_model"])
    det.write_bytes((bundled_model_dir("pp-ocrv4", "det") / "ch_PP-OCRv4_det_infer.onnx").read_bytes())
    cfg_dict["ocr"]["cpu_fold_dir"] = str(tmp_path / "folded")
    finding = doctor.cpu_fold_finding(from_dict(cfg_dict))
    assert finding.ok and "det not written yet" in finding.detail and "next start writes them" in finding.detail
    folded_path(det, tmp_path / "folded")
    finding = doctor.cpu_fold_finding(from_dict(cfg_dict))
    assert finding.ok and "det folded" in finding.detail and "rec not written yet" in finding.detail
    cfg_dict["ocr"]["cpu_fold"] = False
    assert doctor.cpu_fold_finding(from_dict(cfg_dict)).detail.startswith("off: ocr.cpu_fold is false")


def test_cpu_folded_models_that_cannot_be_written_are_a_gap(cfg_dict, tmp_path):
    (tmp_path / "a-file").write_text("in the way of engines.dir")
    cfg_dict["ocr"]["cpu_fold_dir"] = str(tmp_path / "a-file" / "folded")
    finding = doctor.cpu_fold_finding(from_dict(cfg_dict))
    assert not finding.ok and "unfolded" in finding.detail and "ocr.cpu_fold: false" in finding.next_step
