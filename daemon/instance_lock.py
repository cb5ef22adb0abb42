"""One running daemon per outbox: an exclusive lock on a file beside it, held while `ocr-daemon run` lives.

Two daemons on one outbox would deliver the same rows twice, share one MQTT client id (and knock each other off
the broker every second), and fight over the plant-network ports. The lock is flock(2) on ``<outbox>.lock``: the
kernel drops it when the process ends, SIGKILL included, so a crash never leaves a stale lock to clean up. The
file holds the holder's pid, only to name it in the refusal.

A lock lives on the file it was taken on: if that file is deleted (the state folder removed by hand while the
daemon runs, which the outbox survives by writing itself anew) a second daemon could lock a new file of the same
name. keep(), called from the work loop, takes the lock again on the file now at the path.
"""
from __future__ import annotations

import fcntl
import logging
import os
from typing import Optional

log = logging.getLogger(__name__)

KEEP_INTERVAL_S = 1.0   # how often keep() looks at the lock file: one stat


class AlreadyRunning(RuntimeError):
    """Another process holds the outbox's lock; the message names the lock file and the holder's pid."""


class InstanceLock:
    def __init__(self, outbox_path: str):
        self.path = f"{outbox_path}.lock"
        self._fd: Optional[int] = None
        self._id: tuple = ()             # (st_dev, st_ino) of the file locked
        self._next_keep = 0.0
        self.lost: Optional[str] = None  # why the lock could not be taken again (another daemon has it)

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
        st = os.fstat(fd)
        self._fd, self._id = fd, (st.st_dev, st.st_ino)

    def keep(self, now_mono: float) -> None:
        """At most every KEEP_INTERVAL_S: if the lock file was deleted or replaced, the lock is taken again on the
        file now at the path (logged). Another daemon holding that one already is logged as an error, once."""
        if self._fd is None or now_mono < self._next_keep:
            return
        self._next_keep = now_mono + KEEP_INTERVAL_S
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._id:
                return
            why = "replaced"
        except FileNotFoundError:
            why = "deleted"
        except OSError:
            return   # cannot look (a permission changed): nothing to act on
        old = self._fd
        try:
            self.acquire()
        except AlreadyRunning as exc:
            if self.lost is None:
                log.error("the outbox's lock file %s was %s while this daemon ran, and %s", self.path, why, exc)
            self.lost = str(exc)
            self._fd = old
            return
        except OSError as exc:   # the folder cannot be made now: the next look tries again
            log.warning("the outbox's lock file %s was %s and cannot be made again yet (%s)", self.path, why, exc)
            self._fd = old
            return
        os.close(old)
        self.lost = None
        log.warning("the outbox's lock file %s was %s while this daemon ran: locked again", self.path, why)

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
