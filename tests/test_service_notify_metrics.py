"""systemd notify datagrams over a real unix socket, and the metrics/healthz HTTP server."""
import logging
import os
import socket
import struct
import threading

from daemon.metrics import MAX_CONNECTIONS, Metrics, MetricsServer
from daemon.sd_notify import Notifier, watchdog_interval_s
from service_support import http_get


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
        code, text = http_get(base + "/metrics")
        assert code == 200
        for line in ('ocr_camera_fps{camera="dock1"} 4.5', 'ocr_frames_dropped_total{camera="dock1"} 7.0',
                     'ocr_source_reconnects_total{camera="dock1"} 2.0', "ocr_outbox_rows 3.0",
                     'ocr_outbox_lost_total{reason="refused_new"} 5.0', "ocr_broker_connected 0.0",
                     'ocr_results_rejected_total{camera="dock1",reason="duplicate"} 70.0',
                     'ocr_stage_latency_seconds_count{stage="det"} 1.0',
                     'ocr_stage_latency_seconds_bucket{le="0.25",stage="capture_to_outbox"} 1.0',
                     "ocr_mqtt_reconnects_total 1.0"):
            assert line in text, line
        assert http_get(base + "/healthz")[0] == 200
        healthy["ok"] = False
        code, body = http_get(base + "/healthz")
        assert code == 503 and '"healthy":false' in body
        assert http_get(base + "/nope")[0] == 404
    finally:
        server.stop()


def test_idle_connections_cost_no_thread_and_healthz_still_answers():
    """Issue 9, item 13: 300 idle connections used to hold 300 threads forever."""
    server = MetricsServer(Metrics(lambda: {}), lambda: (True, {}), "127.0.0.1", 0, request_timeout_s=30.0).start()
    idle = []
    try:
        before = threading.active_count()
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        half = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        half.sendall(b"GET /metrics HTTP/1.1\r\n")   # a request that never ends holds one worker at most
        idle.append(half)
        code, body = http_get(f"http://127.0.0.1:{server.port}/healthz")
        assert code == 200 and '"healthy":true' in body
        assert http_get(f"http://127.0.0.1:{server.port}/metrics")[0] == 200
        assert threading.active_count() <= before   # the loop and its workers exist from start()
        assert server.stats()["evicted"] >= 300 - MAX_CONNECTIONS   # the oldest idle ones made room
    finally:
        for s in idle:
            s.close()
        server.stop()


def test_an_idle_connection_is_closed_after_the_timeout():
    server = MetricsServer(Metrics(lambda: {}), lambda: (True, {}), "127.0.0.1", 0, request_timeout_s=0.3).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            assert s.recv(1) == b""   # the server hung up; the 10 s client timeout would raise instead
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")   # headers never finished
            assert s.recv(4096) == b""   # cut off at the deadline, no worker ever held it
        assert http_get(f"http://127.0.0.1:{server.port}/healthz")[0] == 200
    finally:
        server.stop()


def test_an_aborted_scrape_logs_no_traceback(caplog, capfd):
    big = {"cameras": {f"cam{i}": {"fps": 1.0, "frames": i, "state": "streaming", "rejected": {}}
                       for i in range(3000)}}   # a reply larger than the socket buffers
    server = MetricsServer(Metrics(lambda: big), lambda: (True, {}), "127.0.0.1", 0).start()
    try:
        with caplog.at_level(logging.DEBUG, logger="daemon.http_server"):
            for _ in range(5):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # the server blocks mid-reply ...
                s.settimeout(5)
                s.connect(("127.0.0.1", server.port))
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # ... close = RST
                s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
                s.recv(1)   # the reply has started
                s.close()
            assert http_get(f"http://127.0.0.1:{server.port}/healthz")[0] == 200   # workers are free again
    finally:
        server.stop()
    assert any("gone" in r.getMessage() for r in caplog.records)   # the write did fail, quietly
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info], caplog.records
    assert "Traceback" not in capfd.readouterr().err
