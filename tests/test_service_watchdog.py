"""The daemon's systemd conversation over a real notify socket: READY=1 after the models load, STATUS= lines,
WATCHDOG=1 only while there is progress (frames, or every camera idle by design), STOPPING=1 on SIGTERM."""
import signal
import socket
import threading
import time

from broker import free_port
from service_support import Daemon, render_label, small_ocr, waybill, write_config


class NotifyListener:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages = []    # (monotonic time, text)
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def texts(self):
        return [m for _, m in self.messages]

    def first(self, prefix, timeout_s):
        """Arrival time of the first message starting with prefix, waiting up to timeout_s for it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [t for t, m in list(self.messages) if m.startswith(prefix)]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no {prefix!r} within {timeout_s} s: {self.texts()}")

    def pings_between(self, t0, t1):
        return sum(1 for t, m in self.messages if t0 <= t < t1 and m == "WATCHDOG=1")

    def close(self):
        self._stop = True
        self._thread.join()
        self.sock.close()


def run_daemon(tmp_path, cameras, stall_timeout_s):
    cfg = write_config(tmp_path / "config.yaml", {
        "backend": "onnxruntime", "ocr": small_ocr(), "cameras": cameras, "mqtt": {"enabled": False},
        "outbox": {"path": str(tmp_path / "outbox.sqlite3")}, "metrics": {"port": free_port()},
        "service": {"stall_timeout_s": stall_timeout_s}})
    listener = NotifyListener(tmp_path / "notify.sock")
    # WatchdogSec=1: the daemon pings every 0.5 s while it makes progress.
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"}
    return Daemon(cfg, tmp_path / "daemon.log", env=env).start(), listener


def test_ready_status_watchdog_and_stopping_for_an_idle_folder(tmp_path):
    (tmp_path / "scans").mkdir()
    cam = {"name": "scan", "kind": "folder", "uri": str(tmp_path / "scans"), "watchdog_s": 0}
    d, n = run_daemon(tmp_path, [cam], stall_timeout_s=1.0)
    try:
        assert d.wait_log("running: 1 camera(s)", 60), d.log()
        ready_at = n.first("READY=1", timeout_s=10)   # sent just after that log line: wait for the datagram
        render_label(tmp_path / "scans" / "a.png", waybill(3))
        time.sleep(7)
        # An empty folder is idle by design: pings go on long after the last frame (stall_timeout_s = 1).
        assert n.pings_between(ready_at + 4, ready_at + 7) >= 4, n.texts()
        assert any(m.startswith("STATUS=1/1 cameras up") for m in n.texts()), n.texts()
        d.signal(signal.SIGTERM)
        assert d.wait(20) == 0
    finally:
        d.close()
        n.close()
    texts = n.texts()
    assert texts.index(next(m for m in texts if m.startswith("STATUS=loading models"))) < \
        texts.index(next(m for m in texts if m.startswith("READY=1")))
    assert any(m.startswith("STOPPING=1") for m in texts)


def test_watchdog_pings_stop_when_no_camera_delivers(tmp_path):
    cam = {"name": "belt", "kind": "file", "uri": str(tmp_path / "missing.avi"), "reconnect_initial_s": 0.2,
           "reconnect_max_s": 0.5}
    d, n = run_daemon(tmp_path, [cam], stall_timeout_s=2.0)
    try:
        assert d.wait_log("running: 1 camera(s)", 60), d.log()
        ready_at = n.first("READY=1", timeout_s=10)   # sent just after that log line: wait for the datagram
        time.sleep(5)
        # Grace period of stall_timeout_s after READY, then silence: systemd would restart the daemon.
        assert n.pings_between(ready_at, ready_at + 1.9) >= 2, n.texts()
        assert n.pings_between(ready_at + 2.6, ready_at + 5) == 0, n.texts()
        assert d.alive()
    finally:
        d.close()
        n.close()


def test_sigterm_while_the_models_load_is_a_clean_stop(tmp_path):
    # systemd may stop a unit that is still starting: the handler is in place before "loading models"
    # is announced, so a SIGTERM from then on ends in the normal shutdown (exit 0), never the default kill
    (tmp_path / "scans").mkdir()
    cam = {"name": "scan", "kind": "folder", "uri": str(tmp_path / "scans"), "watchdog_s": 0}
    d, n = run_daemon(tmp_path, [cam], stall_timeout_s=5.0)
    try:
        n.first("STATUS=loading models", timeout_s=60)
        d.signal(signal.SIGTERM)
        assert d.wait(60) == 0, d.log()
    finally:
        d.close()
        n.close()
    assert any(m.startswith("STOPPING=1") for m in n.texts()), n.texts()
