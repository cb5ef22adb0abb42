"""`rm -rf var/` under a running daemon (issue 28 item 3), as a process with the real models: the outbox is
written anew with every undelivered reading, the restart delivers them all once a broker appears; when it cannot
be written anew, /healthz says so and the stop does not claim the readings were kept."""
from __future__ import annotations

import json
import shutil
import signal

from broker import Recorder, free_port, wait_until
from service_support import Daemon, http_get, render_label, small_ocr, waybill, write_config


def _config(tmp_path, folder, mqtt_port):
    port = free_port()
    cfg = write_config(tmp_path / "config.yaml", {
        "device_id": "dock", "backend": "onnxruntime", "ocr": small_ocr(),
        "cameras": [{"name": "scan", "kind": "folder", "uri": str(folder), "done_action": "delete",
                     "dedup_window_s": 0, "watchdog_s": 0, "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0}],
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "keepalive_s": 5, "reconnect_min_s": 0.2,
                 "reconnect_max_s": 1.0},
        "outbox": {"path": str(tmp_path / "var" / "outbox.sqlite3")},
        "metrics": {"port": port}, "web": {"enabled": False}, "evidence": {"enabled": False},
        "service": {"drain_timeout_s": 2.0},
    })
    return cfg, f"http://127.0.0.1:{port}"


def _drop(folder, tmp_path, numbers):
    for i in numbers:
        tmp = tmp_path / f"label_{i:03d}.png"
        render_label(tmp, waybill(i))
        tmp.replace(folder / tmp.name)


def _left(folder) -> int:
    return len(list(folder.glob("*.png")))


def _metric(base: str, name: str) -> float:
    for line in http_get(base + "/metrics")[1].splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return -1.0


def test_rm_rf_of_the_state_directory_keeps_every_reading_for_the_restart(tmp_path, make_broker):
    broker = make_broker(start=False)   # not running: every reading waits in the outbox
    folder = tmp_path / "scans"
    folder.mkdir()
    cfg, base = _config(tmp_path, folder, broker.port)
    d = Daemon(cfg, tmp_path / "daemon.log").start()
    try:
        _drop(folder, tmp_path, range(3))
        assert wait_until(lambda: _left(folder) == 0, 90), d.log()
        shutil.rmtree(tmp_path / "var")                    # the operator's "clean up"
        _drop(folder, tmp_path, range(3, 6))
        assert wait_until(lambda: _left(folder) == 0, 60), d.log()
        code, body = http_get(base + "/healthz")
        assert code == 200, body
        assert _metric(base, "ocr_outbox_recreated_total") == 1.0
        assert "written anew with the 3 results" in d.log()
        d.signal(signal.SIGTERM)
        assert d.wait(30) == 0
        assert "stopped: 6 result(s) left in the outbox" in d.log()
        broker.start()                                     # a broker appears; the daemon restarts
        rec = Recorder(broker.port, topic="ocr/dock/+/text", client_id="rec-gone")
        rec.wait_subscribed()
        d = Daemon(cfg, tmp_path / "daemon.log").start()
        texts = lambda: {"".join(t["text"] for t in m.json()["texts"]).replace(" ", "") for m in rec.results()}
        assert wait_until(lambda: texts() == {waybill(i) for i in range(6)}, 90), (texts(), d.log())
        d.signal(signal.SIGTERM)
        assert d.wait(30) == 0
        rec.close()
    finally:
        d.close()


def test_a_state_directory_that_cannot_be_made_again_is_unhealthy_and_the_stop_says_nothing_was_kept(
        tmp_path, make_broker):
    broker = make_broker(start=False)
    folder = tmp_path / "scans"
    folder.mkdir()
    cfg, base = _config(tmp_path, folder, broker.port)
    d = Daemon(cfg, tmp_path / "daemon.log").start()
    try:
        _drop(folder, tmp_path, range(2))
        assert wait_until(lambda: _left(folder) == 0, 90), d.log()
        shutil.rmtree(tmp_path / "var")
        (tmp_path / "var").write_text("a file where the directory was")   # mkdir fails, even for root
        code, body = http_get(base + "/healthz")
        assert code == 503, body
        assert any("is gone" in r and "lost when it stops" in r for r in json.loads(body)["reasons"]), body
        _drop(folder, tmp_path, [2])
        assert wait_until(lambda: _metric(base, "ocr_outbox_put_failed_io_error_total") >= 1, 60), d.log()
        assert _left(folder) == 1                         # not stored: the image stays for the next start
        d.signal(signal.SIGTERM)
        assert d.wait(30) == 0
        log = d.log()
        assert "stopped: 2 result(s) NOT kept" in log and "for the next start" not in log, log
    finally:
        d.close()
