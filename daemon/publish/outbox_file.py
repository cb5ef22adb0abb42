"""Whether the outbox's name still leads to the database this process has open, and putting it back when not.

Operators "clean up" with `rm -rf var/`, and scripts rename one file over another. SQLite keeps reading and
writing the file it opened, now without a name, so the daemon runs on as if nothing happened and every row is
gone at the next start. FileWatch notices: it compares the identity (st_dev, st_ino) of the file and its -wal as
opened with what the names lead to now, two system calls per look. put_back() then writes the
open database, read through its still-open connection, back under its name.

Both are called by the Outbox under its lock; neither starts threads or logs.
"""
from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

_WATCHED = ("", "-wal")   # the -wal holds every commit not yet checkpointed: losing it loses those rows


class FileWatch:
    """The identity (st_dev, st_ino) of the outbox file and its -wal as they were opened, to tell whether the
    names still lead to them. Taken right after SQLite opened them: SQLite keeps both open while its connection
    is, so neither inode can be freed and reused meanwhile. No descriptor of its own: closing one would drop
    every POSIX lock the process holds on the file, SQLite's own included (another Outbox on the same file)."""

    def __init__(self, path: Optional[Path] = None):
        self._path = path
        self._ids: dict[str, tuple[int, int]] = {}
        if path is None:   # the null watch: nothing watched, nothing ever lost
            return
        for suffix in _WATCHED:
            try:
                st = os.stat(f"{path}{suffix}")
            except OSError:
                continue   # a -wal that is not there (not WAL mode): nothing of it to lose
            self._ids[suffix] = (st.st_dev, st.st_ino)

    def lost(self) -> str:
        """"" while every watched name leads to the file that was opened; else what happened, in words."""
        for suffix, opened in self._ids.items():
            name = f"{self._path}{suffix}"
            try:
                now = os.stat(name)
            except (FileNotFoundError, NotADirectoryError):
                if not self._path.parent.is_dir():
                    return f"its directory {self._path.parent} was removed"
                return f"{name} was deleted"
            except OSError as exc:
                return f"{name} cannot be looked up ({exc})"
            if (now.st_dev, now.st_ino) != opened:
                return f"{name} was replaced by another file"
        return ""

    def owns(self, name: str) -> bool:
        """Whether the file at name is one that was opened (a missing one is not)."""
        try:
            st = os.stat(name)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) in self._ids.values()


def put_back(db: sqlite3.Connection, path: Path, watch: FileWatch) -> Optional[str]:
    """Writes the database open on db to path: its directory is created, the copy is written to a temporary
    file beside it (SQLite's online backup, read through db, so the rows of a deleted -wal come along), flushed
    and renamed into place, so a crash half-way leaves no half file at path. A file at path that is not the open
    one (renamed over it) is moved aside first, with a -wal and -shm of its own, as `<path>.replaced-<UTC time>`;
    its name is returned (None when there was none). The old connection's stale -wal and -shm are removed, so the
    copy never opens with them. Raises OSError or sqlite3.Error when it cannot (the directory cannot be created,
    the disk is full): nothing at path has changed then. The caller closes db afterwards and opens path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.recreating")
    for stale in (tmp, Path(f"{tmp}-journal")):
        stale.unlink(missing_ok=True)
    try:
        dst = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            db.backup(dst)
        finally:
            dst.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        aside = None
        if path.exists() and not watch.owns(str(path)):
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            aside, n = f"{path}.replaced-{stamp}", 0
            while os.path.exists(aside):
                n += 1
                aside = f"{path}.replaced-{stamp}.{n}"
            os.replace(path, aside)
        for suffix in ("-wal", "-shm"):
            name = f"{path}{suffix}"
            if not os.path.exists(name):
                continue
            if aside is not None and not (suffix == "-wal" and watch.owns(name)):
                os.replace(name, aside + suffix)   # the other file's own, kept with it
            else:
                os.unlink(name)                     # the open connection's: stale for the copy
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return aside


def _fsync_dir(directory: Path) -> None:
    """The rename itself durable (a power cut right after must not bring back the old name's file)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
