"""The Jetson install, reproduced on Debian 12: `systemd/make-venv.sh --gpu --without-pycuda` on Debian's
own /usr/bin/python3 with python3-opencv (4.6, GStreamer, numpy 1.24: like JetPack's OpenCV) keeps the
system numpy and cv2 in the venv, and the daemon run from that venv reads a rendered label through a
`kind: gstreamer` camera into its SQLite outbox under state_dir.

pip downloads from PyPI here (its cache is ~/.cache/pip). The Debian packages come from scripts/setup.sh.
"""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from service_support import ROOT, render_label, small_ocr, waybill, write_config

SYSTEM_PYTHON = "/usr/bin/python3"
DEADLINE_S = 180.0          # the venv build and the first reading each; a bound, not a measurement

pytestmark = pytest.mark.slow


def _system(code: str) -> str:
    return subprocess.run([SYSTEM_PYTHON, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def system_venv(tmp_path_factory):
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip(f"{SYSTEM_PYTHON} does not exist (not a Debian/Ubuntu system Python)")
    if shutil.which("apt-get") is None:
        pytest.skip("no apt-get: the system OpenCV (python3-opencv) cannot be installed here")
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import numpy, cv2"], capture_output=True, text=True)
    assert probe.returncode == 0, (
        f"{SYSTEM_PYTHON} cannot import numpy and cv2; run scripts/setup.sh as root (it apt-installs "
        f"python3-opencv python3-numpy gstreamer1.0-plugins-base gstreamer1.0-plugins-good):\n{probe.stderr}")
    venv = tmp_path_factory.mktemp("system-python") / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(["bash", str(ROOT / "systemd" / "make-venv.sh"), "--gpu", "--without-pycuda", str(venv)],
                          capture_output=True, text=True, env=env, timeout=DEADLINE_S * 3)
    assert proc.returncode == 0, f"make-venv.sh failed:\n{proc.stdout}\n{proc.stderr}"
    assert "ready: system numpy" in proc.stdout, proc.stdout
    return venv


def test_gpu_venv_keeps_the_system_numpy_and_the_gstreamer_opencv(system_venv):
    probe = ("import json, numpy, cv2, onnx, onnxruntime; from daemon.sources.capture import gstreamer_available; "
             "print(json.dumps({'numpy': numpy.__file__, 'numpy_version': numpy.__version__, 'cv2': cv2.__file__, "
             "'gstreamer': gstreamer_available()}))")
    seen = json.loads(subprocess.run([str(system_venv / "bin" / "python"), "-c", probe], cwd=str(system_venv),
                                     capture_output=True, text=True, check=True).stdout)
    assert seen["numpy"] == _system("import numpy; print(numpy.__file__)")
    assert seen["numpy"].startswith("/usr/lib/python3/dist-packages/")
    assert seen["numpy_version"].startswith("1.")
    assert seen["cv2"] == _system("import cv2; print(cv2.__file__)")
    assert seen["cv2"].startswith("/usr/lib/python3/dist-packages/")
    assert seen["gstreamer"] is True
    # pip itself agrees: neither the daemon nor rapidocr-onnxruntime is reported broken. (rapidocr 3.10 is,
    # by design: it is installed with --no-deps as the carrier of the v6 recognizer file, never imported.)
    check = subprocess.run([str(system_venv / "bin" / "python"), "-m", "pip", "check"], capture_output=True, text=True)
    ours = [line for line in check.stdout.splitlines()
            if line.lower().replace("_", "-").startswith(("ocr-daemon", "rapidocr-onnxruntime"))]
    assert ours == [], check.stdout


def test_gpu_venv_carries_the_default_model_sets_files(system_venv):
    probe = ("import json; from daemon.config import Config; from daemon.ocr import models; "
             "p = models.resolve(Config()); print(json.dumps([str(p.det), str(p.rec), str(p.cls)]))")
    det, rec, cls = json.loads(subprocess.run([str(system_venv / "bin" / "python"), "-c", probe], cwd=str(system_venv),
                                              capture_output=True, text=True, check=True).stdout)
    assert det.endswith("rapidocr/models/PP-OCRv6_det_small.onnx") and det.startswith(str(system_venv))
    assert rec.endswith("rapidocr/models/PP-OCRv6_rec_small.onnx") and rec.startswith(str(system_venv))
    assert cls.endswith("rapidocr/models/ch_ppocr_mobile_v2.0_cls_mobile.onnx")   # byte for byte 1.4.4's _infer.onnx


def _readings(db: Path) -> list[dict]:
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return [json.loads(p) for (p,) in con.execute("SELECT payload FROM outbox ORDER BY id")]
    except sqlite3.OperationalError:   # the daemon has not created the table yet
        return []
    finally:
        con.close()


def test_daemon_from_the_system_venv_reads_a_gstreamer_camera_into_the_outbox(system_venv, tmp_path):
    text = waybill(3)
    label = tmp_path / "label.png"
    render_label(label, text)
    pipeline = (f"filesrc location={label} ! pngdec ! imagefreeze ! videoconvert ! video/x-raw,format=BGR "
                "! appsink drop=true max-buffers=1")
    state = tmp_path / "state"
    config = write_config(tmp_path / "config.yaml", {
        "device_id": "jetson-ci",
        "backend": "onnxruntime",
        "state_dir": str(state),          # the relative default outbox.path lands in state/var/
        "ocr": small_ocr(),
        "cameras": [{"name": "csi", "kind": "gstreamer", "uri": pipeline, "max_fps": 2.0}],
        "mqtt": {"enabled": False},
        "metrics": {"enabled": False},
    })
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    log_path = tmp_path / "daemon.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(system_venv / "bin" / "ocr-daemon"), "run", "--config", str(config)],
                                cwd=str(cwd), env=env, stdout=log, stderr=subprocess.STDOUT)
    db = state / "var" / "outbox.sqlite3"
    try:
        end = time.monotonic() + DEADLINE_S
        while not _readings(db) and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.5)
        assert proc.poll() is None, f"the daemon exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}"
        assert _readings(db), f"no reading within {DEADLINE_S:.0f} s:\n{log_path.read_text()[-4000:]}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log_path.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    readings = _readings(db)
    assert readings and all(r["camera"] == "csi" for r in readings)
    assert [t["text"] for t in readings[0]["texts"]] == [text], readings[0]
    assert not (cwd / "var").exists()     # nothing written into the caller's working directory
