"""A folder reading the outbox refuses is not lost (issue 9, item 3), with the real models, a real outbox and a
real folder: the refused file stays in the folder and is retried; the de-dup filter records a reading only once
it is stored, so the retry is not dropped as a duplicate of itself. Bounded by deadlines, no timing assertions."""
import json
import threading

from daemon import config
from broker import wait_until
from daemon.service import Service
from service_support import render_label, small_ocr, waybill


def test_refused_folder_reading_is_retried_and_stored_once_there_is_room(tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    cfg = config.from_dict({
        "device_id": "dock", "backend": "onnxruntime", "ocr": small_ocr(),
        "cameras": [{"name": "scan", "kind": "folder", "uri": str(scans), "watchdog_s": 0,
                     "dedup_window_s": 600}],   # a window far longer than the test: the retry is inside it
        "mqtt": {"enabled": False}, "metrics": {"enabled": False},
        "outbox": {"path": str(tmp_path / "outbox.sqlite3"), "max_rows": 1, "full_policy": "refuse_new"},
    })
    service = Service(cfg, str(tmp_path / "unused.yaml"))
    service.start()
    loop = threading.Thread(target=service.run)
    try:
        # The outbox is full (one row, max_rows 1, refuse_new) before the scan arrives.
        assert service.outbox.put("other", "ocr/dock/other/text", "dock:other:1:0", b"{}")
        text = waybill(3)
        render_label(scans / "label.png", text)
        loop.start()
        # Refused once, released, read again and refused again: not dropped as a duplicate of itself.
        assert wait_until(lambda: service.outbox.counters.put_refused_full >= 2, 120)
        assert (scans / "label.png").exists() and not (scans / "done" / "label.png").exists()
        snap = service.snapshot()["cameras"]["scan"]
        assert snap["stored"] == 0 and snap["rejected"].get("duplicate", 0) == 0
        # Room again: the next retry is stored and only then does the file leave the folder.
        [row] = service.outbox.pending(10)
        service.outbox.delete_many([row.id])
        assert wait_until(lambda: (scans / "done" / "label.png").exists(), 120)
        [stored] = service.outbox.pending(10)
        doc = json.loads(stored.payload)
        assert "".join(t["text"] for t in doc["texts"]).replace(" ", "") == text
        assert doc["schema"] == "ocr-result/4" and doc["source"] == {"kind": "folder", "file": "label.png"}
        assert service.outbox.counters.refused_new == 0   # refused while full, stored later: no loss counted
    finally:
        service.request_stop()
        if loop.is_alive():
            loop.join(timeout=60)
        else:
            service.close()
    assert not loop.is_alive()
