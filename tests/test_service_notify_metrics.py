"""systemd notify datagrams over a real unix socket, and the metrics/healthz HTTP server."""
import os
import socket
import urllib.error
import urllib.request

from daemon.metrics import Metrics, MetricsServer
from daemon.sd_notify import Notifier, watchdog_interval_s


def test_notify_messages_reach_the_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        s.settimeout(2)
        n = Notifier({"NOTIFY_SOCKET": path})
        assert n.enabled
        assert n.ready("models loaded")
        assert s.recv(4096) == b"READY=1\nSTATUS=models loaded"
        n.status("2 cameras\nup")
        assert s.recv(4096) == b"STATUS=2 cameras up"
        n.watchdog()
        assert s.recv(4096) == b"WATCHDOG=1"
        n.stopping()
        assert s.recv(4096) == b"STOPPING=1"
        n.close()


def test_abstract_socket_and_no_systemd():
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        name = f"ocr-test-{os.getpid()}"
        s.bind("\0" + name)
        s.settimeout(2)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).watchdog()
        assert s.recv(100) == b"WATCHDOG=1"
    off = Notifier({})
    assert not off.enabled and not off.ready()


def test_watchdog_interval_only_for_this_process():
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({}) is None


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_metrics_and_healthz_over_http():
    snap = {"cameras": {"dock1": {"fps": 4.5, "frames": 90, "dropped": 7, "corrupt": 1, "reconnects": 2,
                                  "watchdog_restarts": 0, "stored": 12, "rejected": {"duplicate": 70},
                                  "state": "streaming"}},
            "outbox": {"rows": 3, "bytes": 1200, "dropped_oldest": 0, "refused_new": 5, "expired": 0},
            "mqtt": {"enabled": True, "connected": False, "published": 9, "reconnects": 1}}
    healthy = {"ok": True}
    m = Metrics(lambda: snap)
    m.observe_ms("det", 40.0)
    m.observe_ms("capture_to_outbox", 130.0)
    server = MetricsServer(m, lambda: (healthy["ok"], {"cameras": {"dock1": "streaming"}}), "127.0.0.1", 0).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        code, text = get(base + "/metrics")
        assert code == 200
        for line in ('ocr_camera_fps{camera="dock1"} 4.5', 'ocr_frames_dropped_total{camera="dock1"} 7.0',
                     'ocr_source_reconnects_total{camera="dock1"} 2.0', "ocr_outbox_rows 3.0",
                     'ocr_outbox_lost_total{reason="refused_new"} 5.0', "ocr_broker_connected 0.0",
                     'ocr_results_rejected_total{camera="dock1",reason="duplicate"} 70.0',
                     'ocr_stage_latency_seconds_count{stage="det"} 1.0',
                     'ocr_stage_latency_seconds_bucket{le="0.25",stage="capture_to_outbox"} 1.0',
                     "ocr_mqtt_reconnects_total 1.0"):
            assert line in text, line
        assert get(base + "/healthz")[0] == 200
        healthy["ok"] = False
        code, body = get(base + "/healthz")
        assert code == 503 and '"healthy":false' in body
        assert get(base + "/nope")[0] == 404
    finally:
        server.stop()
