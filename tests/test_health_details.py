"""/healthz, what a supervisor watches: it comes up once a metrics port another program held at start is free (the
daemon runs on meanwhile), and it names why a camera is not streaming."""
import socket
import time
import urllib.request

from broker import free_port
from daemon import config
from daemon.service import Service
from service_support import small_ocr, write_config


def _held_port() -> tuple[int, socket.socket]:
    """A free port another program listens on (close the socket to free it)."""
    port = free_port()
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen(1)
    return port, holder


def test_a_taken_metrics_port_is_tried_again_and_healthz_comes_up(tmp_path, caplog):
    port, holder = _held_port()
    path = write_config(tmp_path / "config.yaml", {
        "device_id": "st1", "backend": "onnxruntime", "ocr": small_ocr(), "mqtt": {"enabled": False},
        "cameras": [{"name": "cam", "kind": "sample", "max_fps": 1}], "web": {"enabled": False},
        "outbox": {"path": str(tmp_path / "outbox.sqlite3")}, "metrics": {"host": "127.0.0.1", "port": port}})
    service = Service(config.load(path), str(path))
    service.start()
    try:
        assert service.metrics_server is None and "tried again every" in caplog.text
        now = time.monotonic()
        service._retry_metrics_server(now)            # still taken: quietly, nothing changes
        assert service.metrics_server is None and caplog.text.count("not started") == 1
        holder.close()
        service._retry_metrics_server(now + 5.0)      # not due yet
        assert service.metrics_server is None
        service._retry_metrics_server(now + 11.0)
        assert service.metrics_server is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            assert r.status in (200, 503) and b"cameras" in r.read()
    finally:
        holder.close()
        service.close()


def test_healthz_names_why_a_camera_is_not_streaming(tmp_path):
    # A folder camera whose folder is removed: /healthz's camera_errors says so (its 503 reason alone said only
    # that no frame made progress).
    import shutil

    from broker import wait_until

    scans = tmp_path / "scans"
    scans.mkdir()
    path = write_config(tmp_path / "config.yaml", {
        "device_id": "st1", "backend": "onnxruntime", "ocr": small_ocr(), "mqtt": {"enabled": False},
        "cameras": [{"name": "scan", "kind": "folder", "uri": str(scans), "reconnect_initial_s": 0.1,
                     "reconnect_max_s": 0.2}],
        "web": {"enabled": False}, "metrics": {"enabled": False},
        "outbox": {"path": str(tmp_path / "state" / "outbox.sqlite3")}})
    service = Service(config.load(path), str(path))
    service.start()
    try:
        assert wait_until(lambda: service.health()[1]["cameras"]["scan"] == "idle", 30)
        assert service.health()[1]["camera_errors"] == {}
        shutil.rmtree(scans)
        assert wait_until(lambda: "does not exist" in service.health()[1]["camera_errors"].get("scan", ""), 30)
        assert service.snapshot()["cameras"]["scan"]["error"].startswith("image folder")
    finally:
        service.close()


def test_a_taken_page_port_is_tried_again_and_the_page_comes_up(tmp_path, caplog):
    """Found from outside: a page port taken at start was never tried again (metrics was)."""
    from daemon.web.page import RETRY_S, Page

    port, holder = _held_port()
    cfg = config.from_dict({"device_id": "st1", "mqtt": {"enabled": False},
                            "web": {"enabled": True, "host": "127.0.0.1", "port": port},
                            "outbox": {"path": str(tmp_path / "outbox.sqlite3")}})
    page = Page.start(lambda: cfg, lambda: {}, lambda: None)
    try:
        assert page.server is None and f"tried again every {RETRY_S:g} s" in caplog.text
        now = time.monotonic()
        page.retry(now)                        # still taken: quietly, nothing changes
        assert page.server is None and caplog.text.count("not started") == 1
        holder.close()
        page.retry(now + RETRY_S / 2)          # not due yet
        assert page.server is None
        page.retry(now + RETRY_S + 1.0)
        assert page.server is not None and page.server.port == port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200
        page.stop()
        page.retry(now + 10 * RETRY_S)         # stopped for good: not served again
        assert page.server is None
    finally:
        holder.close()
        page.stop()


def test_a_reload_that_moves_metrics_to_a_taken_port_keeps_the_old_one_serving_until_it_can_move(tmp_path):
    """Found from outside: the reload stopped the working listener first, and /healthz answered on neither port
    until the new one was freed."""
    old_port = free_port()
    new_port, holder = _held_port()

    def cfg(port: int) -> dict:
        return {"device_id": "st1", "backend": "onnxruntime", "ocr": small_ocr(), "mqtt": {"enabled": False},
                "cameras": [{"name": "cam", "kind": "sample", "max_fps": 1}], "web": {"enabled": False},
                "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
                "metrics": {"host": "127.0.0.1", "port": port}}

    path = write_config(tmp_path / "config.yaml", cfg(old_port))
    service = Service(config.load(path), str(path))
    service.start()
    try:
        write_config(path, cfg(new_port))
        assert service.reload() is True
        with urllib.request.urlopen(f"http://127.0.0.1:{old_port}/healthz", timeout=10) as r:
            assert r.status in (200, 503)            # still watched where it was
        holder.close()
        service._retry_metrics_server(time.monotonic() + 11.0)
        with urllib.request.urlopen(f"http://127.0.0.1:{new_port}/healthz", timeout=10) as r:
            assert r.status in (200, 503)
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{old_port}/healthz", timeout=2)
            moved = False
        except OSError:
            moved = True
        assert moved                                 # and the old address is let go
    finally:
        holder.close()
        service.close()
