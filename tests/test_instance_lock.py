"""One daemon per outbox: a second `ocr-daemon run` on the same config is refused at once, naming the running one,
before it binds a port or connects to the broker; a SIGKILLed daemon leaves no lock behind."""
import signal
import subprocess
import sys
import time

import pytest

from broker import free_port
from daemon.instance_lock import AlreadyRunning, InstanceLock
from service_support import ROOT, Daemon, small_ocr, write_config

_HOLD = ("import sys, time; sys.path.insert(0, {root!r}); from daemon.instance_lock import InstanceLock; "
         "InstanceLock({path!r}).acquire(); print('held', flush=True); time.sleep(60)")


def test_a_second_holder_is_refused_naming_the_first_and_the_lock_goes_with_its_process(tmp_path):
    outbox = str(tmp_path / "state" / "outbox.sqlite3")
    holder = subprocess.Popen([sys.executable, "-c", _HOLD.format(root=str(ROOT), path=outbox)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(AlreadyRunning, match=rf"pid {holder.pid}\b.*outbox\.sqlite3\.lock"):
            InstanceLock(outbox).acquire()
        holder.send_signal(signal.SIGKILL)    # a crash: the kernel drops the lock with the process
        holder.wait(10)
        lock = InstanceLock(outbox)
        lock.acquire()
        with pytest.raises(AlreadyRunning):   # held by this process now: a second open is refused too
            InstanceLock(outbox).acquire()
        lock.release()
        InstanceLock(outbox).acquire()
    finally:
        holder.kill()
        holder.wait(10)


def test_a_second_daemon_on_the_same_config_exits_1_and_the_first_keeps_running(tmp_path):
    web_port, metrics_port = free_port(), free_port()
    config = write_config(tmp_path / "config.yaml", {
        "device_id": "st1", "backend": "onnxruntime", "ocr": small_ocr(),
        "mqtt": {"enabled": False},
        "cameras": [{"name": "cam", "kind": "sample", "max_fps": 1}],
        "outbox": {"path": str(tmp_path / "state" / "outbox.sqlite3")},
        "metrics": {"port": metrics_port}, "web": {"enabled": True, "port": web_port}})
    first = Daemon(config, tmp_path / "first.log").start()
    try:
        assert first.wait_log("running:", 120), first.log()
        started = time.monotonic()
        second = subprocess.run([sys.executable, "-m", "daemon", "run", "--config", str(config)], cwd=str(ROOT),
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert f"another ocr-daemon (pid {first.proc.pid}) is running on this outbox" in second.stderr
        assert "outbox.path" in second.stderr
        # refused before the models load, and before any port: no "address in use" from the second
        assert time.monotonic() - started < 30 and "in use" not in second.stderr
        assert first.alive()
    finally:
        first.close()


def test_a_reload_that_moves_the_outbox_takes_the_new_file_s_lock_or_is_rejected(tmp_path):
    from daemon import config as config_mod
    from daemon.service import Service

    def cfg(outbox: str) -> dict:
        return {"device_id": "st1", "backend": "onnxruntime", "ocr": small_ocr(), "mqtt": {"enabled": False},
                "cameras": [{"name": "cam", "kind": "sample", "max_fps": 1}], "outbox": {"path": outbox},
                "web": {"enabled": False}, "metrics": {"enabled": False}}

    a, b = str(tmp_path / "a" / "outbox.sqlite3"), str(tmp_path / "b" / "outbox.sqlite3")
    path = write_config(tmp_path / "config.yaml", cfg(a))
    service = Service(config_mod.load(path), str(path))
    service.start()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD.format(root=str(ROOT), path=b)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        write_config(path, cfg(b))
        assert service.reload() is False                      # b is another daemon's: the running config stays
        assert service.cfg.outbox.path == a and service.lock.path == a + ".lock"
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        # Found from outside: a move left the readings owed in the old file behind, delivered by no one, and seq and
        # result_id began again at 1 in the new file. Refused while readings are owed; the numbers go on.
        for _ in range(3):
            service.outbox.next_seq("cam")
        service.outbox.put("cam", "t", "owed-1", b"{}")
        assert service.reload() is False and service.cfg.outbox.path == a
        service.outbox.delete(service.outbox.pending(10)[0].id)
        assert service.reload() is True
        assert service.cfg.outbox.path == b and service.lock.path == b + ".lock"
        assert service.outbox.next_seq("cam") == 4
        InstanceLock(a).acquire()                             # the old file's lock was let go
        with pytest.raises(AlreadyRunning):
            InstanceLock(b).acquire()
    finally:
        holder.kill()
        holder.wait(10)
        service.close()


def test_a_lock_file_deleted_while_running_is_locked_again_so_a_second_daemon_is_still_refused(tmp_path, caplog):
    import shutil

    state = tmp_path / "state"
    outbox = str(state / "outbox.sqlite3")
    lock = InstanceLock(outbox)
    lock.acquire()
    shutil.rmtree(state)                        # the state folder removed by hand while the daemon runs
    lock.keep(1000.0)
    assert "deleted while this daemon ran: locked again" in caplog.text and lock.lost is None
    with pytest.raises(AlreadyRunning):
        InstanceLock(outbox).acquire()
    lock.keep(1000.5)                           # within the interval: not looked at again
    (state / "outbox.sqlite3.lock").unlink()
    other = subprocess.Popen([sys.executable, "-c", _HOLD.format(root=str(ROOT), path=outbox)],
                             stdout=subprocess.PIPE, text=True)
    try:                                        # another daemon took the new file before this one looked
        assert other.stdout.readline().strip() == "held"
        lock.keep(1001.0)
        assert lock.lost and f"pid {other.pid}" in lock.lost
        assert caplog.text.count("another ocr-daemon") == 1
        lock.keep(1002.0)
        assert caplog.text.count("another ocr-daemon") == 1   # logged once
    finally:
        other.kill()
        other.wait(10)
    lock.keep(1003.0)                            # the other one gone: this one holds it again
    assert lock.lost is None
    lock.release()


def test_health_says_so_when_the_lock_was_lost_and_keeps_the_watchdog():
    from daemon.health import assess

    verdict = assess(frames_progressing=True, stall_timeout_s=60, mqtt_enabled=False, delivery=None, rows=0,
                     delivery_still_s=0.0, max_undelivered_age_s=600, lock_lost="another ocr-daemon (pid 7) ...")
    assert not verdict.healthy and verdict.watchdog_ok   # a restart would be refused: systemd must not loop
    assert "another daemon may be running on this outbox" in verdict.reasons[0]
