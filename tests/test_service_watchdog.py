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


def _idle_folder_daemon(tmp_path, stall_timeout_s: float):
    """run_daemon with one folder camera on an empty folder (tmp_path/scans)."""
    (tmp_path / "scans").mkdir()
    cam = {"name": "scan", "kind": "folder", "uri": str(tmp_path / "scans"), "watchdog_s": 0}
    return run_daemon(tmp_path, [cam], stall_timeout_s=stall_timeout_s)


def test_ready_status_watchdog_and_stopping_for_an_idle_folder(tmp_path):
    d, n = _idle_folder_daemon(tmp_path, 1.0)
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
    d, n = _idle_folder_daemon(tmp_path, 5.0)
    try:
        n.first("STATUS=loading models", timeout_s=60)
        d.signal(signal.SIGTERM)
        assert d.wait(60) == 0, d.log()
    finally:
        d.close()
        n.close()
    assert any(m.startswith("STOPPING=1") for m in n.texts()), n.texts()


def test_a_long_reload_keeps_the_watchdog_fed_and_the_pings_end_with_it(tmp_path, monkeypatch):
    # The work loop sends the pings and also runs a reload: models slower to load than WatchdogSec (TensorRT
    # engines deserializing) had systemd kill the daemon mid-reload. A helper thread pings meanwhile.
    from daemon import config
    from daemon.ocr.pipeline import OcrPipeline
    from daemon.sd_notify import Notifier
    from daemon.service import Service
    from service_support import work_loop

    (tmp_path / "scans").mkdir()
    data = {"backend": "onnxruntime", "ocr": small_ocr(), "mqtt": {"enabled": False}, "web": {"enabled": False},
            "metrics": {"enabled": False}, "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
            "cameras": [{"name": "scan", "kind": "folder", "uri": str(tmp_path / "scans"), "watchdog_s": 0}]}
    path = write_config(tmp_path / "config.yaml", data)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")   # WatchdogSec=1: the loop pings every 0.5 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    n = NotifyListener(tmp_path / "notify.sock")
    service = Service(config.load(path), str(path), Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify.sock")}))
    service.start()
    load = OcrPipeline.from_config
    monkeypatch.setattr(OcrPipeline, "from_config", lambda cfg: (time.sleep(3), load(cfg))[1])   # a slow load
    try:
        with work_loop(service):
            n.first("WATCHDOG=1", timeout_s=10)
            write_config(path, {**data, "ocr": {**small_ocr(), "drop_score": 0.6}})   # the models load again
            service.request_reload()
            reloading = n.first("RELOADING=1", timeout_s=30)
            deadline = time.monotonic() + 60
            while not [t for t, m in list(n.messages) if t > reloading and m.startswith("READY=1")]:
                assert time.monotonic() < deadline, n.texts()
                time.sleep(0.05)
            ready = next(t for t, m in list(n.messages) if t > reloading and m.startswith("READY=1"))
            time.sleep(0.3)
            assert not [t for t in threading.enumerate() if t.name == "watchdog-meanwhile"]
            time.sleep(1.2)   # the loop pings again by itself
    finally:
        n.close()
    assert ready - reloading >= 3, n.texts()
    assert "STATUS=config reloaded" in next(m for t, m in n.messages if t == ready)   # applied, not rejected
    pings = [t for t, m in n.messages if m == "WATCHDOG=1" and reloading - 1 <= t <= ready + 1.5]
    assert max(b - a for a, b in zip(pings, pings[1:])) < 1.0, pings   # never a WatchdogSec without a ping


class _Pings:
    def __init__(self):
        self.at = []

    def watchdog(self):
        self.at.append(time.monotonic())
        return True


class _Verdict:
    def __init__(self, ok):
        self.ok = ok

    def watchdog_ok(self, now):
        return self.ok


def test_reload_pings_end_at_their_cap_and_never_feed_a_stalled_daemon():
    from daemon.status import Heartbeat

    pings = _Pings()
    beat = Heartbeat(_Verdict(True), pings, watchdog_interval_s=0.2)   # a ping every 0.1 s
    began = time.monotonic()
    with beat.pinging_meanwhile(max_s=0.5):
        time.sleep(1.0)   # a reload that hangs: after the cap the watchdog is left to do its job
    assert len(pings.at) >= 3 and max(pings.at) - began < 0.6, pings.at

    stalled = _Pings()
    beat = Heartbeat(_Verdict(False), stalled, watchdog_interval_s=0.2)
    beat.tick(time.monotonic() + 0.2, None, 0)   # the verdict withholds the pings ...
    with beat.pinging_meanwhile(max_s=0.5):
        time.sleep(0.3)
    assert stalled.at == []                      # ... and a reload does not send them either


def test_a_watchdog_kill_leaves_every_threads_stack_in_the_log(tmp_path):
    # systemd's watchdog sends SIGABRT: faulthandler prints where each thread was before the process dies.
    d, n = _idle_folder_daemon(tmp_path, 5.0)
    try:
        assert d.wait_log("running: 1 camera(s)", 60), d.log()
        d.signal(signal.SIGABRT)
        assert d.wait(30) == -signal.SIGABRT   # it still dies of the signal (systemd sees the watchdog's kill)
    finally:
        d.close()
        n.close()
    log = d.log()
    assert "Fatal Python error: Aborted" in log, log
    assert "most recent call first" in log and log.count("Thread 0x") >= 2, log   # the loop and the camera
    assert "daemon/service.py" in log and "in run" in log, log
