"""One running daemon per outbox: an exclusive lock on a file beside it, held while `ocr-daemon run` lives.

Two daemons on one outbox would deliver the same rows twice, share one MQTT client id (and knock each other off
the broker every second), and fight over the plant-network ports. The lock is flock(2) on ``<outbox>.lock``: the
kernel drops it when the process ends, SIGKILL included, so a crash never leaves a stale lock to clean up. The
file holds the holder's pid, only to name it in the refusal.
"""
from __future__ import annotations

import fcntl
import os
from typing import Optional


class AlreadyRunning(RuntimeError):
    """Another process holds the outbox's lock; the message names the lock file and the holder's pid."""


class InstanceLock:
    def __init__(self, outbox_path: str):
        self.path = f"{outbox_path}.lock"
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        """Takes the lock or raises AlreadyRunning at once (never waits)."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunning(
                f"another ocr-daemon{f' (pid {holder})' if holder else ''} is running on this outbox (it holds "
                f"{self.path}): stop it first, or give this one its own outbox.path") from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)   # closing drops the flock; the file stays (removing it would race a new holder)
            self._fd = None


def _read_pid(fd: int) -> Optional[int]:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None
