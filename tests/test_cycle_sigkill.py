"""SIGKILL during a read cycle, on a real daemon process (the sample camera, the page's HTTP trigger, the outbox
file): a result stored before the kill is kept, and a trigger that was answered "accepted" but whose result was not
stored is answered after the restart as no_read with trigger_source "restart" and its trigger id, never as a pass
and never silence. The open-cycle marker is written before the HTTP answer, so even a kill right after the 202
finds it."""
from __future__ import annotations

import json
import sqlite3
import urllib.request

from broker import free_port, wait_until
from service_support import Daemon, small_ocr, write_config


def trigger(port: int, trigger_id: str) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/cameras/station/trigger", method="POST",
                                 data=json.dumps({"trigger_id": trigger_id}).encode(), headers={"X-OCR-Page": "1"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


def rows(outbox) -> list[dict]:
    with sqlite3.connect(f"file:{outbox}?mode=ro", uri=True) as db:
        return [json.loads(p) for (p,) in db.execute("SELECT payload FROM outbox ORDER BY id")]


def test_sigkill_keeps_the_stored_result_and_answers_the_interrupted_trigger_as_no_read(tmp_path):
    web_port = free_port()
    outbox = tmp_path / "outbox.sqlite3"
    config = write_config(tmp_path / "config.yaml", {
        "device_id": "st1", "backend": "onnxruntime", "ocr": small_ocr(),
        "cameras": [{"name": "station", "kind": "sample", "mode": "triggered", "codes": [], "max_fps": 4,
                     "cycle_frames": 2, "cycle_window_ms": 600000, "one_label": False}],
        "mqtt": {"enabled": False}, "metrics": {"enabled": False},
        "web": {"enabled": True, "host": "127.0.0.1", "port": web_port},
        "outbox": {"path": str(outbox)}, "evidence": {"dir": str(tmp_path / "evidence")}})
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    try:
        assert daemon.wait_log(f"page on http://127.0.0.1:{web_port}/", 120), daemon.log()
        assert wait_until(lambda: trigger(web_port, "part-1") == 202, 30)
        assert daemon.wait_log("station #1 stored", 120), daemon.log()
        assert trigger(web_port, "part-2") == 202
        daemon.kill9()                                    # right after the answer: no frame of part-2 read yet
        assert (tmp_path / "cycles" / "station.json").is_file()
        daemon = Daemon(config, tmp_path / "daemon.log").start()
        assert daemon.wait_log("station #2 stored", 120), daemon.log()
    finally:
        daemon.close()
    docs = rows(outbox)
    assert [(d["trigger_id"], d["status"], d["trigger_source"], d["result_id"]) for d in docs] == [
        ("part-1", "good_read", "http", 1), ("part-2", "no_read", "restart", 2)]
    assert "interrupted" in docs[1]["note"]
    assert not (tmp_path / "cycles" / "station.json").exists()
