"""The page as part of the daemon's life: it comes up with `run`, follows a SIGHUP that changes web or evidence
settings on the same port, keeps running when a reload is refused (a wider bind without a token), and is gone
after SIGTERM with exit 0."""
import json
import signal
import subprocess
import sys
import urllib.request

from broker import free_port, wait_until
from service_support import ROOT, Daemon, http_get, write_config


def config(tmp_path, port: int, **web) -> dict:
    return {"device_id": "box1", "backend": "onnxruntime",
            "ocr": {"det_input_size": [480, 640], "use_angle_classifier": False, "threads": 1},
            "cameras": [{"name": "sample", "kind": "sample", "dedup_window_s": 0, "codes": []}],
            "mqtt": {"enabled": False}, "metrics": {"enabled": False},
            "web": {"port": port, **web}, "evidence": {"min_free_bytes": 0}}


def state(port: int) -> dict:
    status, body = http_get(f"http://127.0.0.1:{port}/api/state")
    assert status == 200, body
    return json.loads(body)


def test_page_follows_sighup_and_stops_with_the_daemon(tmp_path):
    port = free_port()
    path = write_config(tmp_path / "config.yaml", config(tmp_path, port))
    daemon = Daemon(path, tmp_path / "daemon.log").start()
    try:
        assert daemon.wait_log("sample #3 stored", 120), daemon.log()
        assert len(state(port)["cameras"]["sample"]["readings"]) >= 3
        # a reload that changes the page's and the store's settings: same port, new limits
        write_config(path, config(tmp_path, port, recent_readings=1))
        daemon.signal(signal.SIGHUP)
        assert daemon.wait_log("SIGHUP: config", 30) and "applied" in daemon.log(), daemon.log()
        assert wait_until(lambda: len(state(port)["cameras"]["sample"]["readings"]) == 1, 60), daemon.log()
        # a wider bind without a token is refused; the running page stays
        write_config(path, config(tmp_path, port, host="0.0.0.0"))
        daemon.signal(signal.SIGHUP)
        assert daemon.wait_log("rejected, the running one stays", 30), daemon.log()
        assert "web.host: '0.0.0.0' is not a loopback address" in daemon.log()
        assert state(port)["device"] == "box1"
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            raise AssertionError("the page still answers after SIGTERM")
        except OSError:
            pass
    finally:
        daemon.close()


def test_check_config_refuses_a_wider_bind_without_a_token(tmp_path):
    path = write_config(tmp_path / "config.yaml", {"device_id": "box1", "web": {"host": "0.0.0.0"}})
    run = subprocess.run([sys.executable, "-m", "daemon", "check-config", str(path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "web.host: '0.0.0.0' is not a loopback address: set web.token_env or web.token_file" in run.stderr + run.stdout
