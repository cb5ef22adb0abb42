"""The durable outbox: every result is a SQLite row before any publish, and leaves only after a good PUBACK.

Durability: WAL journal with synchronous=FULL, so a put() that returned survives a SIGKILL of the daemon and a
power cut. Ids come from AUTOINCREMENT, so they never repeat and "oldest first" is "lowest id first".
Caps (rows, payload bytes) apply on put() with the configured full_policy; the TTL applies on pending().
One connection guarded by one lock: the pipeline thread puts while the MQTT thread reads and deletes.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection

from daemon.config import OutboxConfig

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    topic TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_created_at ON outbox (created_at);
CREATE TABLE IF NOT EXISTS camera_seq (
    camera TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
);
"""


@dataclass
class OutboxRow:
    id: int
    camera: str
    topic: str
    msg_id: str
    payload: bytes
    created_at: float


@dataclass
class OutboxCounters:
    """Rows lost on purpose, since the process started; increments are thread-safe."""
    dropped_oldest: int = 0   # deleted to make room (full_policy drop_oldest)
    refused_new: int = 0      # new results not stored (full_policy refuse_new, or one payload above max_bytes)
    expired: int = 0          # older than ttl_s, deleted unpublished
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)


class Outbox:
    def __init__(self, cfg: OutboxConfig, clock: Callable[[], float] = time.time):
        self._cfg = cfg
        self._clock = clock
        self._lock = threading.Lock()
        self.counters = OutboxCounters()
        path = Path(cfg.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so each put/delete is exactly one transaction.
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")   # fsync the WAL on every commit: a returned put() is on disk
        self._db.executescript(_SCHEMA)
        rows, nbytes = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()
        self._rows, self._bytes = int(rows), int(nbytes)   # kept in memory: caps are checked on every put
        if rows:
            log.info("outbox %s holds %d unpublished results (%d bytes)", path, rows, nbytes)

    # ------------------------------------------------------------ writer side (pipeline thread)

    def next_seq(self, camera: str) -> int:
        """Per-camera sequence number, persisted, so it keeps increasing across restarts.

        Committed without its own fsync (halves the cost of a result): the WAL is one sequential file, so the
        fsync of the put() that stores this number makes the counter durable too. A power cut before that put
        can only reuse a number that no stored, and so no published, message carries. A process crash loses
        nothing: the commit is in the OS's page cache."""
        with self._lock:
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                # fetchall(): a RETURNING statement commits only once it has run to completion.
                [(seq,)] = self._db.execute(
                    "INSERT INTO camera_seq (camera, last_seq) VALUES (?, 1) "
                    "ON CONFLICT (camera) DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq",
                    (camera,)).fetchall()
            finally:
                self._db.execute("PRAGMA synchronous=FULL")
            return int(seq)

    def put(self, camera: str, topic: str, msg_id: str, payload: bytes) -> bool:
        """Stores one message; durable when it returns True. False: refused by the caps (counted)."""
        size = len(payload)
        cfg = self._cfg
        with self._lock:
            if size > cfg.max_bytes:   # could never fit, whatever the policy
                self.counters.add("refused_new")
                log.warning("outbox: result %s of %d bytes is above max_bytes=%d; dropped", msg_id, size, cfg.max_bytes)
                return False
            full = self._rows + 1 > cfg.max_rows or self._bytes + size > cfg.max_bytes
            if full and cfg.full_policy == "refuse_new":
                self.counters.add("refused_new")
                return False
            self._db.execute("BEGIN IMMEDIATE")
            try:
                dropped, dropped_bytes = self._drop_oldest_locked(size) if full else (0, 0)
                self._db.execute(
                    "INSERT INTO outbox (camera, topic, msg_id, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                    (camera, topic, msg_id, sqlite3.Binary(payload), self._clock()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._rows += 1 - dropped
            self._bytes += size - dropped_bytes
        if dropped:
            self.counters.add("dropped_oldest", dropped)
        return True

    def _drop_oldest_locked(self, incoming_bytes: int) -> tuple[int, int]:
        """Deletes the oldest rows until one more row of incoming_bytes fits; inside the caller's transaction."""
        need_rows = self._rows + 1 - self._cfg.max_rows
        need_bytes = self._bytes + incoming_bytes - self._cfg.max_bytes
        dropped = dropped_bytes = 0
        cursor = self._db.execute("SELECT id, LENGTH(payload) FROM outbox ORDER BY id")
        victims = []
        for row_id, nbytes in cursor:
            if dropped >= need_rows and dropped_bytes >= need_bytes:
                break
            victims.append((row_id,))
            dropped += 1
            dropped_bytes += nbytes
        cursor.close()
        self._db.executemany("DELETE FROM outbox WHERE id = ?", victims)
        return dropped, dropped_bytes

    # ------------------------------------------------------------ sender side (MQTT thread)

    def pending(self, limit: int, exclude_ids: Collection[int] = (),
                exclude_cameras: Collection[str] = ()) -> list[OutboxRow]:
        """Oldest rows first, skipping the given ids (in flight) and cameras (backing off after a failed PUBACK).
        Deletes rows older than ttl_s first (counted in counters.expired)."""
        with self._lock:
            if self._cfg.ttl_s > 0:
                self._expire_locked(self._clock() - self._cfg.ttl_s)
            sql = "SELECT id, camera, topic, msg_id, payload, created_at FROM outbox"
            where, args = [], []
            if exclude_ids:
                where.append(f"id NOT IN ({','.join('?' * len(exclude_ids))})")
                args.extend(exclude_ids)
            if exclude_cameras:
                where.append(f"camera NOT IN ({','.join('?' * len(exclude_cameras))})")
                args.extend(exclude_cameras)
            if where:
                sql += " WHERE " + " AND ".join(where)
            sql += " ORDER BY id LIMIT ?"
            args.append(int(limit))
            return [OutboxRow(int(r[0]), r[1], r[2], r[3], bytes(r[4]), float(r[5]))
                    for r in self._db.execute(sql, args).fetchall()]

    def _expire_locked(self, cutoff: float) -> None:
        n, nbytes = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox WHERE created_at < ?", (cutoff,)).fetchone()
        if not n:
            return
        self._db.execute("DELETE FROM outbox WHERE created_at < ?", (cutoff,))
        self._rows -= int(n)
        self._bytes -= int(nbytes)
        self.counters.add("expired", int(n))
        log.warning("outbox: %d results older than ttl_s=%.0f dropped unpublished", n, self._cfg.ttl_s)

    def delete(self, row_id: int) -> None:
        """Removes an acknowledged row; a row already gone (dropped or expired meanwhile) is not an error."""
        with self._lock:
            gone = self._db.execute("DELETE FROM outbox WHERE id = ? RETURNING LENGTH(payload)", (row_id,)).fetchall()
            if gone:
                self._rows -= 1
                self._bytes -= int(gone[0][0])

    def delete_many(self, row_ids: Collection[int]) -> None:
        """delete() for a batch of acknowledged rows in one transaction: one fsync instead of one per row."""
        if not row_ids:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                gone = []
                for row_id in row_ids:
                    gone += self._db.execute("DELETE FROM outbox WHERE id = ? RETURNING LENGTH(payload)",
                                             (row_id,)).fetchall()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._rows -= len(gone)
            self._bytes -= sum(int(g[0]) for g in gone)

    def depth(self) -> tuple[int, int]:
        """(rows, payload bytes) waiting to be published."""
        with self._lock:
            return self._rows, self._bytes

    def close(self) -> None:
        with self._lock:
            self._db.close()
