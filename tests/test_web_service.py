"""The page as part of the daemon's life: it comes up with `run`, follows a SIGHUP that changes web or evidence
settings on the same port, keeps running when a reload is refused (a wider bind without a token), and is gone
after SIGTERM with exit 0."""
import json
import signal
import subprocess
import sys
import urllib.error
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


def test_a_rotated_token_file_is_applied_by_a_reload(tmp_path):
    """Found from outside: after a leaked page token was replaced in its file, SIGHUP said "config unchanged" and the
    old token still opened the page."""
    from daemon import config as config_mod
    from daemon.service import Service

    def status(port: int, token: str) -> int:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/state", headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    port = free_port()
    token = tmp_path / "token"
    token.write_text("old-token-0123456789abcdef\n")
    path = write_config(tmp_path / "config.yaml", config(tmp_path, port, token_file=str(token)))
    service = Service(config_mod.load(path), str(path))
    service.start()
    try:
        assert wait_until(lambda: status(port, "old-token-0123456789abcdef") == 200, 30)
        token.write_text("new-token-fedcba9876543210\n")
        assert service.reload() is True
        assert wait_until(lambda: status(port, "new-token-fedcba9876543210") == 200, 30)
        assert status(port, "old-token-0123456789abcdef") == 401
    finally:
        service.close()
