"""`ocr-daemon doctor` on whatever box runs the tests: it must report, never crash, and say what to do."""
from __future__ import annotations

import argparse
import json
import socket

import pytest

from daemon import doctor
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
    orin = DeviceInfo("Orin", "8.7", "10.3.0")
    for plan in plan_engines(cfg):
        path = engine_path(cfg.engines.dir, plan.engine_stem, plan.precision, orin)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"engine")
        sha = sha256_file(plan.source_onnx) if plan.role == "det" else "0" * 64   # rec: built from another model
        write_sidecar(sidecar_path(path), make_sidecar(orin, plan.precision, {"x": plan.input_shape}, sha))
    findings = by_check(doctor.engine_findings(cfg, "10.3.0", doctor.GpuProbe("Orin", "8.7", "12.6", True, "pycuda")))
    assert findings["engine det (fp32)"].ok
    assert not findings["engine rec (fp32)"].ok and "sha256" in findings["engine rec (fp32)"].detail
    assert not findings["engine rec_tail (fp32)"].ok and "sha256" in findings["engine rec_tail (fp32)"].detail
    # the same files seen from another TensorRT version: nothing matches any more
    assert not check_engine(plan_engines(cfg)[0], DeviceInfo("Orin", "8.7", "10.4.0"), cfg.engines.dir).ok


def test_without_tensorrt_engines_on_disk_are_listed_but_not_trusted(cfg_dict):
    cfg = from_dict(cfg_dict)
    plan = plan_engines(cfg)[0]
    path = engine_path(cfg.engines.dir, plan.engine_stem, "fp32", DeviceInfo("Orin", "8.7", "10.3.0"))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"engine")
    det = by_check(doctor.engine_findings(cfg, None, doctor.GpuProbe(None, None, None, None, "none", "no GPU")))["engine det (fp32)"]
    assert not det.ok and path.name in det.detail and "cannot check" in det.detail


def test_int8_without_calibrated_models_says_run_calibrate(cfg_dict):
    cfg_dict["ocr"]["precision"] = "int8"
    findings = doctor.engine_findings(from_dict(cfg_dict), None, doctor.GpuProbe(None, None, None, None, "none"))
    gaps = [f for f in findings if f.check.startswith("int8 model")]
    assert len(gaps) == 2 and all("ocr-daemon calibrate" in f.next_step for f in gaps)


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
