"""The daemon as a process with a real Mosquitto and the real models: nothing lost across broker outages and
daemon SIGKILLs, SIGTERM drains, a folder of scanned labels each yields exactly one result id."""
import signal
import sqlite3
import time
from collections import defaultdict


from broker import Recorder, free_port, wait_until
from publish_support import VALIDATOR
from service_support import Daemon, render_label, small_ocr, waybill, write_config

N_LABELS = 10


def reading(msg) -> str:
    """The label's text from a result message; spaces dropped (OCR may split a long number in two)."""
    return "".join(t["text"] for t in msg["texts"]).replace(" ", "")


def daemon_config(tmp_path, port, folder, **over):
    cfg = {
        "device_id": "dock",
        "backend": "onnxruntime",
        "ocr": small_ocr(),
        "cameras": [{"name": "scan", "kind": "folder", "uri": str(folder), "done_action": "move",
                     "dedup_window_s": 0, "watchdog_s": 0, "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0}],
        "mqtt": {"host": "127.0.0.1", "port": port, "keepalive_s": 5, "reconnect_min_s": 0.2,
                 "reconnect_max_s": 1.0, "stats_interval_s": 1.0},
        "outbox": {"path": str(tmp_path / "state" / "outbox.sqlite3")},
        "metrics": {"port": free_port()},
        "service": {"drain_timeout_s": 5.0},
    }
    for k, v in over.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) else v
    return write_config(tmp_path / "config.yaml", cfg)


def outbox_rows(tmp_path):
    """Rows in the daemon's outbox, read as any other SQLite client would (0 before the table exists)."""
    path = tmp_path / "state" / "outbox.sqlite3"
    if not path.exists():
        return 0
    db = sqlite3.connect(path, timeout=5)
    try:
        return db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def test_folder_labels_survive_broker_outage_and_daemon_sigkill(tmp_path, make_broker):
    broker = make_broker()
    rec = Recorder(broker.port, topic="ocr/dock/+/text", client_id="rec-crash")
    rec.wait_subscribed()
    broker.stop()                                    # the recorder's session is kept by the broker's persistence
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(N_LABELS):
        render_label(folder / f"label_{i:03d}.png", waybill(i))
    time.sleep(0.6)                                  # older than the folder source's settle time
    cfg = daemon_config(tmp_path, broker.port, folder)
    d = Daemon(cfg, tmp_path / "daemon.log").start()
    try:
        # Broker down: the daemon starts anyway and keeps its results in the outbox.
        assert wait_until(lambda: outbox_rows(tmp_path) >= 3,
                          60), d.log()
        d.kill9()                                    # crash while labels are in flight
        broker.start()
        d = Daemon(cfg, tmp_path / "daemon.log").start()
        assert wait_until(lambda: len(rec.results()) >= 6, 60), d.log()
        d.kill9()                                    # and again, with the broker up
        d = Daemon(cfg, tmp_path / "daemon.log").start()
        texts = lambda: {reading(m.json()) for m in rec.results()}
        assert wait_until(lambda: len(texts()) == N_LABELS and outbox_rows(tmp_path) == 0, 90), d.log()
        d.signal(signal.SIGTERM)
        assert d.wait(20) == 0
    finally:
        d.close()
        rec.close()
    msgs = [m.json() for m in rec.results()]
    for m in msgs:
        VALIDATOR.validate(m)
    ids_by_text = defaultdict(set)
    for m in msgs:
        ids_by_text[reading(m)].add(m["id"])
    assert sorted(ids_by_text) == sorted(waybill(i) for i in range(N_LABELS))
    assert all(len(ids) == 1 for ids in ids_by_text.values()), ids_by_text   # duplicates only by id
    assert sorted(p.name for p in (folder / "done").iterdir()) == [f"label_{i:03d}.png" for i in range(N_LABELS)]
    assert not [p for p in folder.iterdir() if p.is_file()]
    assert all(m["latency_ms"]["capture_to_outbox"] >= 0 for m in msgs)


def test_sigterm_drains_and_leaves_the_rest_on_disk(tmp_path, broker):
    folder = tmp_path / "scans"
    folder.mkdir()
    rec = Recorder(broker.port, topic="ocr/dock/#", client_id="rec-drain")
    rec.wait_subscribed()
    for i in range(3):
        render_label(folder / f"l{i}.png", waybill(100 + i))
    time.sleep(0.6)
    cfg = daemon_config(tmp_path, broker.port, folder)
    d = Daemon(cfg, tmp_path / "daemon.log").start()
    try:
        assert wait_until(lambda: len(rec.results()) == 3, 60), d.log()
        # Stats arrive on their topic; the retained status says online, then offline after the drain.
        stored = lambda: [m.json() for m in rec.on_topic("ocr/dock/stats") if m.json()["cameras"]["scan"]["stored"] == 3]
        assert wait_until(stored, 10), d.log()
        stats = stored()[-1]
        assert stats["mqtt"]["connected"] and {"rows", "bytes"} <= set(stats["outbox"]) and "rec" in stats["latency_ms"]
        d.signal(signal.SIGTERM)
        t0 = time.monotonic()
        assert d.wait(20) == 0
        assert time.monotonic() - t0 < 10
        assert wait_until(lambda: [m.payload for m in rec.on_topic("ocr/dock/status")][-1:] == [b"offline"], 5)
        assert "stopped: 0 result(s) left" in d.log()
        # Broker gone: SIGTERM still exits 0 within the drain time, the results wait on disk.
        broker.stop()
        render_label(folder / "late.png", waybill(200))
        d = Daemon(cfg, tmp_path / "daemon.log").start()
        assert wait_until(lambda: outbox_rows(tmp_path) == 1, 60), d.log()
        d.signal(signal.SIGTERM)
        t0 = time.monotonic()
        assert d.wait(20) == 0
        assert time.monotonic() - t0 < 5.0 + 4.0     # drain_timeout_s plus shutting the rest down
        assert outbox_rows(tmp_path) == 1
        assert "stopped: 1 result(s) left" in d.log()
    finally:
        d.close()
        rec.close()
