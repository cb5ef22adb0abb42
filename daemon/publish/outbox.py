"""The durable outbox: every result is a SQLite row before any publish, and leaves only after a good PUBACK.

Durability: WAL journal with synchronous=FULL, so a put() that returned a stored result survives a SIGKILL of
the daemon and a power cut. Ids come from AUTOINCREMENT, so they never repeat and "oldest first" is "lowest id
first". Caps (rows, payload bytes) apply on put() with the configured full_policy; the TTL applies on pending().
One connection guarded by one lock: the pipeline thread puts while the MQTT thread reads and deletes.

Faults it survives (each has a test on real SQLite):
- Disk full or failing writes: put() returns a falsy PutResult (reason "disk_full" or "io_error") instead of
  raising; SQLite has rolled back on its own, the outbox stays usable, health().writable turns False and
  turns True again at the first write that succeeds (every put tries: resuming needs no timer).
- A corrupt file: `PRAGMA quick_check` at open, and any "malformed"/"not a database" error later, sets the
  file (with its -wal and -shm) aside as `<path>.corrupt-<UTC time>`, starts a fresh one and re-queues every
  row still readable from the old one with its id, payload and message id (counted: corrupt_set_aside,
  salvaged_rows). Sequence numbers are salvaged too where readable; message ids carry the capture time in ms,
  so a sequence number that restarts never makes two readings share an id.
- A row nobody can deliver (too large for the broker, refused N times): dead_letter() moves it to the
  dead_letters table of the same file, with its reason and failure count; replay_dead_letters() moves it back.

TTL clock: a row's age is the time this outbox has been open since the row was stored (time.monotonic, summed
over runs in the outbox_clock table), never the wall clock. A box without a clock battery that steps its clock
by months when NTP syncs expires nothing, and neither does a clock set backwards. The price: time the daemon is
stopped does not age rows, so a reading stored before a week powered off is still sent afterwards, which is
what "nothing lost" asks for. Rows keep their wall-clock created_at for information.

Rows in flight (given to pending() as exclude_ids, or returned by it) are never removed by the caps or the TTL:
they are about to be acknowledged, and counting them as lost while they arrive would be wrong. The caps can
therefore be exceeded by at most the rows in flight (mqtt.max_inflight).
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Collection, Optional

from daemon.config import OutboxConfig

log = logging.getLogger(__name__)

_CLOCK_PERSIST_S = 60.0   # the TTL clock is saved at least this often (and with every put): a crash loses less

_TABLES = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    topic TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,          -- wall clock, for information only
    born_s REAL,                       -- outbox clock (see the module docstring): what the TTL uses
    failures INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS camera_seq (
    camera TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,            -- the outbox id it had, kept so a replay restores its place
    camera TEXT NOT NULL,
    topic TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    failures INTEGER NOT NULL,
    reason TEXT NOT NULL,
    dead_at REAL NOT NULL              -- wall clock
);
CREATE TABLE IF NOT EXISTS outbox_clock (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    elapsed_s REAL NOT NULL
);
"""
_INDEXES = "CREATE INDEX IF NOT EXISTS outbox_born_s ON outbox (born_s);"
_ROW_COLUMNS = "id, camera, topic, msg_id, payload, created_at, born_s, failures"


@dataclass
class OutboxRow:
    id: int
    camera: str
    topic: str
    msg_id: str
    payload: bytes
    created_at: float
    failures: int = 0


@dataclass(frozen=True)
class DeadLetter:
    id: int
    camera: str
    topic: str
    msg_id: str
    payload: bytes
    created_at: float
    failures: int
    reason: str
    dead_at: float


@dataclass(frozen=True)
class PutResult:
    """What put() did. Truthy when the reading is durable (in the outbox, or in the dead letters: replayable).

    reason: "stored"; "dead_letter" (refused by the admission check, e.g. above mqtt.max_payload_bytes, and kept
    in the dead_letters table); "refused_new" (a cap with full_policy refuse_new); "too_large" (above
    outbox.max_bytes: can never fit); "disk_full" (SQLITE_FULL); "io_error" (SQLITE_IOERR: a failing disk, or a
    file-size limit); "busy" (the database stayed locked past its timeout); "error" (any other SQLite error).
    A falsy result is a reading not stored: a live one is lost (count it by reason), a folder file must stay
    in the folder."""
    reason: str
    detail: str = ""

    @property
    def stored(self) -> bool:
        return self.reason in ("stored", "dead_letter")

    def __bool__(self) -> bool:
        return self.stored


@dataclass(frozen=True)
class OutboxHealth:
    """A snapshot for /healthz, stats and the watchdog; health() never waits long for a busy database."""
    writable: bool                          # False after a put that failed to write (disk full, I/O error)
    responsive: bool                        # False when the outbox lock was held longer than health()'s wait
    rows: int
    oldest_undelivered_age_s: Optional[float]   # on the outbox clock (see the module docstring); None: empty
    failing_rows: int                       # rows with at least one failed delivery that are still queued
    dead_letters: int
    last_error: str                         # "" when none since the last good write


@dataclass
class OutboxCounters:
    """Events since the process started; increments are thread-safe."""
    dropped_oldest: int = 0   # deleted to make room (full_policy drop_oldest)
    refused_new: int = 0      # new results not stored (full_policy refuse_new, or one payload above max_bytes)
    expired: int = 0          # older than ttl_s, deleted unpublished
    dead_lettered: int = 0    # moved to the dead_letters table (refused at put, or failing delivery N times)
    replayed: int = 0         # moved back from the dead_letters table by replay_dead_letters()
    disk_full: int = 0        # puts refused because the disk was full (SQLITE_FULL)
    io_errors: int = 0        # puts refused by a write error (SQLITE_IOERR) or another SQLite error
    corrupt_set_aside: int = 0   # damaged outbox files moved to <path>.corrupt-<time>
    salvaged_rows: int = 0    # rows re-queued from a set-aside file
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)


def _classify(exc: sqlite3.Error) -> str:
    """disk_full | io_error | corrupt | busy | error, from the SQLite error code (Python 3.11+) or message."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    if name == "SQLITE_FULL" or "database or disk is full" in text:
        return "disk_full"
    if name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB" or "malformed" in text \
            or "not a database" in text:
        return "corrupt"
    if name.startswith("SQLITE_IOERR") or "disk i/o error" in text:
        return "io_error"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return "busy"
    return "error"


class Outbox:
    def __init__(self, cfg: OutboxConfig, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, busy_timeout_s: float = 10.0):
        """clock: wall clock for created_at and dead_at; monotonic: what ages rows for the TTL;
        busy_timeout_s: how long a write waits for another process's lock before it fails."""
        self._cfg = cfg
        self._busy_timeout_s = busy_timeout_s
        self._clock = clock
        self._mono = monotonic
        self._lock = threading.Lock()
        self.counters = OutboxCounters()
        self._path = Path(cfg.path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._admit: Optional[Callable[[str, bytes], Optional[str]]] = None
        self._protected: frozenset[int] = frozenset()   # ids in flight at the last pending()
        self._writable = True
        self._last_error = ""
        self._db: sqlite3.Connection
        with self._lock:
            try:
                self._open_locked()
                bad = [r[0] for r in self._db.execute("PRAGMA quick_check").fetchall()]
                if bad != ["ok"]:
                    self._set_aside_locked("quick_check: " + "; ".join(str(b) for b in bad[:3]))
            except sqlite3.DatabaseError as exc:
                if _classify(exc) != "corrupt":
                    raise
                self._set_aside_locked(str(exc))
        if self._rows:
            log.info("outbox %s holds %d unpublished results (%d bytes)", self._path, self._rows, self._bytes)
        if self._dead:
            log.warning("outbox %s holds %d dead letters (`ocr-daemon outbox dead-letters` lists them)",
                        self._path, self._dead)

    # ------------------------------------------------------------ opening, the clock, counts

    def _open_locked(self) -> None:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so each put/delete is exactly one transaction.
        db = sqlite3.connect(str(self._path), isolation_level=None, check_same_thread=False,
                             timeout=self._busy_timeout_s)
        self._db = db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")   # fsync the WAL on every commit: a returned put() is on disk
        db.executescript(_TABLES)
        cols = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
        for col, decl in (("born_s", "REAL"), ("failures", "INTEGER NOT NULL DEFAULT 0")):
            if col not in cols:   # a file from before the dead letters and the outbox clock
                db.execute(f"ALTER TABLE outbox ADD COLUMN {col} {decl}")
        db.executescript(_INDEXES)
        row = db.execute("SELECT elapsed_s FROM outbox_clock WHERE id = 0").fetchone()
        self._clock_base_s = float(row[0]) if row else 0.0
        self._clock_base_mono = self._mono()
        self._clock_saved_mono = self._clock_base_mono
        # Rows of an older file have only the wall clock: their age so far counts once, never negative.
        db.execute("UPDATE outbox SET born_s = ? - MAX(0.0, ? - created_at) WHERE born_s IS NULL",
                   (self._now_s(), self._clock()))
        self._seqs = {cam: int(n) for cam, n in db.execute("SELECT camera, last_seq FROM camera_seq")}
        self._recount_locked()

    def _now_s(self) -> float:
        """The outbox clock: seconds this file has been open, over all runs."""
        return self._clock_base_s + (self._mono() - self._clock_base_mono)

    def _save_clock_sql(self) -> None:
        """Inside the caller's transaction."""
        self._db.execute("INSERT INTO outbox_clock (id, elapsed_s) VALUES (0, ?) "
                         "ON CONFLICT (id) DO UPDATE SET elapsed_s = excluded.elapsed_s", (self._now_s(),))
        self._clock_saved_mono = self._mono()

    def _recount_locked(self) -> None:
        db = self._db
        rows, nbytes = db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()
        self._rows, self._bytes = int(rows), int(nbytes)   # kept in memory: caps are checked on every put
        self._dead = int(db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])
        self._failing = {int(r[0]) for r in db.execute("SELECT id FROM outbox WHERE failures > 0")}
        self._data_version = db.execute("PRAGMA data_version").fetchone()[0]

    def _sync_external_locked(self) -> None:
        """Another process (`ocr-daemon outbox replay`) committed: our in-memory counts are stale."""
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._recount_locked()

    def _rollback_quietly(self) -> None:
        # SQLite rolls back by itself on SQLITE_FULL and some I/O errors: an explicit ROLLBACK then raises
        # "cannot rollback - no transaction is active", which used to hide the real error.
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _write_failed_locked(self, exc: sqlite3.Error, what: str) -> str:
        """Rolls back, records the error and returns its kind; a corrupt file is set aside here."""
        self._rollback_quietly()
        kind = _classify(exc)
        self._last_error = f"{what}: {exc}"
        if kind == "corrupt":
            self._set_aside_locked(str(exc))
        elif kind in ("disk_full", "io_error"):
            if self._writable:
                log.error("outbox: %s failed (%s); readings are not stored until the disk accepts writes again",
                          what, exc)
            self._writable = False
        else:
            log.error("outbox: %s failed (%s)", what, exc)
        return kind

    def _write_ok_locked(self) -> None:
        if not self._writable:
            log.warning("outbox: writes succeed again; storing readings")
        self._writable = True
        self._last_error = ""

    # ------------------------------------------------------------ writer side (pipeline thread)

    def set_admission(self, admit: Optional[Callable[[str, bytes], Optional[str]]]) -> None:
        """admit(topic, payload) -> None to store, or the reason a row can never be delivered (it then goes to
        the dead letters at put()). The publisher installs one checking mqtt.max_payload_bytes and the broker's
        Maximum Packet Size; it is called under the outbox lock and must not call back into the outbox."""
        self._admit = admit

    def next_seq(self, camera: str) -> int:
        """Per-camera sequence number, persisted, so it keeps increasing across restarts.

        Committed without its own fsync (halves the cost of a result): the WAL is one sequential file, so the
        fsync of the put() that stores this number makes the counter durable too. A power cut before that put
        can only reuse a number that no stored, and so no published, message carries. A process crash loses
        nothing: the commit is in the OS's page cache. Never raises for a full or failing disk: the number is
        kept in memory and written with the next write that succeeds."""
        with self._lock:
            seq = self._seqs.get(camera, 0) + 1
            self._seqs[camera] = seq
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("INSERT INTO camera_seq (camera, last_seq) VALUES (?, ?) ON CONFLICT (camera) "
                                 "DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)", (camera, seq))
            except sqlite3.DatabaseError as exc:
                self._write_failed_locked(exc, "storing a sequence number")
            finally:
                try:
                    self._db.execute("PRAGMA synchronous=FULL")
                except sqlite3.Error:
                    pass
            return seq

    def put(self, camera: str, topic: str, msg_id: str, payload: bytes) -> PutResult:
        """Stores one message; durable when the result is truthy. Never raises for SQLite errors: a full or
        failing disk, a locked or corrupt database come back as a falsy PutResult (see its reason)."""
        with self._lock:
            try:
                return self._put_locked(camera, topic, msg_id, payload)
            except sqlite3.DatabaseError as exc:
                kind = self._write_failed_locked(exc, f"storing {msg_id}")
                if kind != "corrupt":
                    return self._refused_locked(kind, str(exc))
            try:   # the damaged file was set aside: a fresh one takes the reading
                return self._put_locked(camera, topic, msg_id, payload)
            except sqlite3.DatabaseError as exc:
                kind = self._write_failed_locked(exc, f"storing {msg_id}")
                return self._refused_locked("io_error" if kind == "corrupt" else kind, str(exc))

    def _refused_locked(self, kind: str, detail: str) -> PutResult:
        self.counters.add("disk_full" if kind == "disk_full" else "io_errors")
        return PutResult(kind, detail)

    def _put_locked(self, camera: str, topic: str, msg_id: str, payload: bytes) -> PutResult:
        size = len(payload)
        cfg = self._cfg
        self._sync_external_locked()
        if size > cfg.max_bytes:   # could never fit, whatever the policy
            self.counters.add("refused_new")
            log.warning("outbox: result %s of %d bytes is above max_bytes=%d; dropped", msg_id, size, cfg.max_bytes)
            return PutResult("too_large", f"{size} bytes above outbox.max_bytes={cfg.max_bytes}")
        why = self._admit(topic, payload) if self._admit is not None else None
        if why:   # never deliverable as it is: kept in the dead letters (replayable), not queued
            self._db.execute("BEGIN IMMEDIATE")
            row_id = self._db.execute(
                "INSERT INTO outbox (camera, topic, msg_id, payload, created_at, born_s) VALUES (?, ?, ?, ?, ?, ?) "
                "RETURNING id", (camera, topic, msg_id, sqlite3.Binary(payload), self._clock(), self._now_s())
            ).fetchall()[0][0]
            self._db.execute(
                "INSERT INTO dead_letters (id, camera, topic, msg_id, payload, created_at, failures, reason, dead_at) "
                "SELECT id, camera, topic, msg_id, payload, created_at, 0, ?, ? FROM outbox WHERE id = ?",
                (why, self._clock(), row_id))
            self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
            self._db.execute("COMMIT")
            self._write_ok_locked()
            self._dead += 1
            self.counters.add("dead_lettered")
            log.warning("outbox: result %s goes to the dead letters: %s", msg_id, why)
            return PutResult("dead_letter", why)
        full = self._rows + 1 > cfg.max_rows or self._bytes + size > cfg.max_bytes
        if full and cfg.full_policy == "refuse_new":
            self.counters.add("refused_new")
            return PutResult("refused_new", "outbox full")
        self._db.execute("BEGIN IMMEDIATE")
        dropped, dropped_bytes, dropped_ids = self._drop_oldest_locked(size) if full else (0, 0, [])
        self._db.execute(
            "INSERT INTO outbox (camera, topic, msg_id, payload, created_at, born_s) VALUES (?, ?, ?, ?, ?, ?)",
            (camera, topic, msg_id, sqlite3.Binary(payload), self._clock(), self._now_s()))
        self._save_clock_sql()
        if camera in self._seqs:   # a number handed out while the disk was full is written now
            self._db.execute("INSERT INTO camera_seq (camera, last_seq) VALUES (?, ?) ON CONFLICT (camera) "
                             "DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)", (camera, self._seqs[camera]))
        self._db.execute("COMMIT")
        self._write_ok_locked()
        self._rows += 1 - dropped
        self._bytes += size - dropped_bytes
        self._failing.difference_update(dropped_ids)
        if dropped:
            self.counters.add("dropped_oldest", dropped)
        return PutResult("stored")

    def _drop_oldest_locked(self, incoming_bytes: int) -> tuple[int, int, list[int]]:
        """Deletes the oldest rows not in flight until one more row of incoming_bytes fits; inside the caller's
        transaction. Rows in flight stay (they are about to be acknowledged): the cap may be exceeded by them."""
        need_rows = self._rows + 1 - self._cfg.max_rows
        need_bytes = self._bytes + incoming_bytes - self._cfg.max_bytes
        dropped = dropped_bytes = 0
        cursor = self._db.execute("SELECT id, LENGTH(payload) FROM outbox ORDER BY id")
        victims = []
        for row_id, nbytes in cursor:
            if dropped >= need_rows and dropped_bytes >= need_bytes:
                break
            if row_id in self._protected:
                continue
            victims.append(row_id)
            dropped += 1
            dropped_bytes += nbytes
        cursor.close()
        self._db.executemany("DELETE FROM outbox WHERE id = ?", [(v,) for v in victims])
        return dropped, dropped_bytes, victims

    # ------------------------------------------------------------ sender side (MQTT thread)

    def pending(self, limit: int, exclude_ids: Collection[int] = (),
                exclude_cameras: Collection[str] = ()) -> list[OutboxRow]:
        """Oldest rows first, skipping the given ids (in flight) and cameras (blocked behind a failed row).
        Deletes rows older than ttl_s first (counted in counters.expired), never one in exclude_ids.
        The ids excluded and returned count as in flight (safe from caps and TTL) until the next call."""
        with self._lock:
            self._sync_external_locked()
            exclude_ids = frozenset(exclude_ids)
            if self._cfg.ttl_s > 0:
                try:
                    self._expire_locked(self._now_s() - self._cfg.ttl_s, exclude_ids)
                except sqlite3.DatabaseError as exc:
                    self._write_failed_locked(exc, "expiring old rows")
            elif self._mono() - self._clock_saved_mono > _CLOCK_PERSIST_S:
                self._save_clock_quietly_locked()
            sql = f"SELECT {_ROW_COLUMNS} FROM outbox"
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
            try:
                rows = [self._row(r) for r in self._db.execute(sql, args).fetchall()]
            except sqlite3.DatabaseError as exc:
                if self._write_failed_locked(exc, "reading pending rows") == "corrupt":
                    return []   # set aside and salvaged: the next call reads the fresh file
                raise
            self._protected = exclude_ids | {r.id for r in rows}
            return rows

    @staticmethod
    def _row(r) -> OutboxRow:
        return OutboxRow(int(r[0]), r[1], r[2], r[3], bytes(r[4]), float(r[5]), int(r[7] or 0))

    def get(self, row_id: int) -> Optional[OutboxRow]:
        """One queued row by id, or None when it left (acknowledged, dropped, expired, dead-lettered)."""
        with self._lock:
            r = self._db.execute(f"SELECT {_ROW_COLUMNS} FROM outbox WHERE id = ?", (row_id,)).fetchone()
            return self._row(r) if r else None

    def _save_clock_quietly_locked(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._save_clock_sql()
            self._db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self._write_failed_locked(exc, "saving the outbox clock")
        else:
            self._write_ok_locked()   # an idle daemon also notices that the disk takes writes again

    def _expire_locked(self, cutoff_s: float, keep: frozenset[int]) -> None:
        victims = [(int(i), int(n)) for i, n in self._db.execute(
            "SELECT id, LENGTH(payload) FROM outbox WHERE born_s < ?", (cutoff_s,)).fetchall() if i not in keep]
        if not victims and self._mono() - self._clock_saved_mono <= _CLOCK_PERSIST_S:
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i, _ in victims])
        self._save_clock_sql()
        self._db.execute("COMMIT")
        self._write_ok_locked()
        if not victims:
            return
        self._rows -= len(victims)
        self._bytes -= sum(n for _, n in victims)
        self._failing.difference_update(i for i, _ in victims)
        self.counters.add("expired", len(victims))
        log.warning("outbox: %d results older than ttl_s=%.0f dropped unpublished", len(victims), self._cfg.ttl_s)

    def delete(self, row_id: int) -> None:
        """Removes an acknowledged row; a row already gone (dropped or expired meanwhile) is not an error."""
        self.delete_many([row_id])

    def delete_many(self, row_ids: Collection[int]) -> None:
        """Removes acknowledged rows in one transaction: one fsync instead of one per row. Raises sqlite3.Error
        when the write fails (disk full, locked): the caller keeps the ids and tries again later."""
        if not row_ids:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                gone = []
                for row_id in row_ids:
                    gone += self._db.execute("DELETE FROM outbox WHERE id = ? RETURNING LENGTH(payload)",
                                             (row_id,)).fetchall()
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                self._write_failed_locked(exc, "deleting acknowledged rows")
                raise
            self._write_ok_locked()
            self._rows -= len(gone)
            self._bytes -= sum(int(g[0]) for g in gone)
            self._failing.difference_update(row_ids)

    def record_failure(self, row_id: int, reason: str) -> str:
        """One failed delivery of a row: "retry", "dead_letter" (the dead_letter_after_failures-th failure moved
        it to the dead letters), or "gone" (the row left meanwhile). Raises sqlite3.Error when the write fails."""
        with self._lock:
            try:
                r = self._db.execute("UPDATE outbox SET failures = failures + 1 WHERE id = ? RETURNING failures",
                                     (row_id,)).fetchall()
            except sqlite3.DatabaseError as exc:
                self._write_failed_locked(exc, "counting a failed delivery")
                raise
            if not r:
                return "gone"
            self._failing.add(row_id)
            if int(r[0][0]) < self._cfg.dead_letter_after_failures:
                return "retry"
            self._dead_letter_locked(row_id, reason)
            return "dead_letter"

    def dead_letter(self, row_id: int, reason: str) -> bool:
        """Moves a queued row to the dead letters at once (e.g. above the broker's Maximum Packet Size).
        False when the row had left already. Raises sqlite3.Error when the write fails."""
        with self._lock:
            return self._dead_letter_locked(row_id, reason)

    def _dead_letter_locked(self, row_id: int, reason: str) -> bool:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            moved = self._db.execute(
                "INSERT INTO dead_letters (id, camera, topic, msg_id, payload, created_at, failures, reason, dead_at) "
                "SELECT id, camera, topic, msg_id, payload, created_at, failures, ?, ? FROM outbox WHERE id = ? "
                "RETURNING msg_id, LENGTH(payload), failures", (reason, self._clock(), row_id)).fetchall()
            self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
            self._db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self._write_failed_locked(exc, "moving a row to the dead letters")
            raise
        self._write_ok_locked()
        self._failing.discard(row_id)
        if not moved:
            return False
        msg_id, nbytes, failures = moved[0]
        self._rows -= 1
        self._bytes -= int(nbytes)
        self._dead += 1
        self.counters.add("dead_lettered")
        log.warning("outbox: result %s moved to the dead letters after %d failed deliveries: %s",
                    msg_id, failures, reason)
        return True

    # ------------------------------------------------------------ dead letters (CLI, stats)

    def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        """Oldest first."""
        with self._lock:
            return [DeadLetter(int(r[0]), r[1], r[2], r[3], bytes(r[4]), float(r[5]), int(r[6]), r[7], float(r[8]))
                    for r in self._db.execute(
                        "SELECT id, camera, topic, msg_id, payload, created_at, failures, reason, dead_at "
                        "FROM dead_letters ORDER BY id LIMIT ?", (int(limit),)).fetchall()]

    def replay_dead_letters(self, ids: Optional[Collection[int]] = None) -> int:
        """Moves dead letters back into the outbox (all of them when ids is None) with their old id, a fresh
        TTL age and no failures; returns how many moved. A running daemon picks them up by itself."""
        with self._lock:
            where, args = "", []
            if ids is not None:
                if not ids:
                    return 0
                where = f" WHERE id IN ({','.join('?' * len(ids))})"
                args = [int(i) for i in ids]
            self._db.execute("BEGIN IMMEDIATE")
            try:
                moved = self._db.execute(
                    f"INSERT INTO outbox (id, camera, topic, msg_id, payload, created_at, born_s, failures) "
                    f"SELECT id, camera, topic, msg_id, payload, created_at, ?, 0 FROM dead_letters{where} "
                    f"RETURNING LENGTH(payload)", [self._now_s(), *args]).fetchall()
                self._db.execute(f"DELETE FROM dead_letters{where}", args)
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                self._write_failed_locked(exc, "replaying dead letters")
                raise
            self._rows += len(moved)
            self._bytes += sum(int(m[0]) for m in moved)
            self._dead -= len(moved)
            self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]
        self.counters.add("replayed", len(moved))
        return len(moved)

    # ------------------------------------------------------------ health

    def depth(self) -> tuple[int, int]:
        """(rows, payload bytes) waiting to be published."""
        with self._lock:
            try:
                self._sync_external_locked()
            except sqlite3.Error:
                pass
            return self._rows, self._bytes

    def dead_letter_count(self) -> int:
        return self._dead

    def health(self, wait_s: float = 0.5) -> OutboxHealth:
        """Never raises; waits at most wait_s for the lock (a wedged database reports responsive=False)."""
        if not self._lock.acquire(timeout=wait_s):
            return OutboxHealth(writable=self._writable, responsive=False, rows=self._rows,
                                oldest_undelivered_age_s=None, failing_rows=len(self._failing),
                                dead_letters=self._dead, last_error=self._last_error or "outbox lock held")
        try:
            oldest = None
            try:
                self._sync_external_locked()
                born = self._db.execute("SELECT MIN(born_s) FROM outbox").fetchone()[0]
                oldest = None if born is None else max(0.0, self._now_s() - float(born))
            except sqlite3.Error as exc:
                self._last_error = f"reading the outbox: {exc}"
            return OutboxHealth(writable=self._writable, responsive=True, rows=self._rows,
                                oldest_undelivered_age_s=oldest, failing_rows=len(self._failing),
                                dead_letters=self._dead, last_error=self._last_error)
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._save_clock_sql()
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._rollback_quietly()
            self._db.close()

    # ------------------------------------------------------------ a damaged file

    def _set_aside_locked(self, why: str) -> None:
        """Moves the damaged file (and its -wal, -shm) aside, opens a fresh one, re-queues what can be read."""
        try:
            self._db.close()
        except (sqlite3.Error, AttributeError):
            pass
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        base = f"{self._path}.corrupt-{stamp}"
        target, n = base, 0
        while os.path.exists(target):
            n += 1
            target = f"{base}.{n}"
        for suffix in ("", "-wal", "-shm"):   # names kept in step, so the old file opens with its own WAL
            src = f"{self._path}{suffix}"
            if os.path.exists(src):
                os.replace(src, target + suffix)
        self.counters.add("corrupt_set_aside")
        salvage = _salvage(target)
        self._open_locked()
        now_s = self._now_s()
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany(
            "INSERT OR IGNORE INTO outbox (id, camera, topic, msg_id, payload, created_at, born_s, failures) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [(*r[:6], now_s, r[7] or 0) for r in salvage.rows])
        self._db.executemany(
            "INSERT OR IGNORE INTO dead_letters (id, camera, topic, msg_id, payload, created_at, failures, reason, "
            "dead_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", salvage.dead)
        self._db.executemany(
            "INSERT INTO camera_seq (camera, last_seq) VALUES (?, ?) ON CONFLICT (camera) "
            "DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)", list(salvage.seqs.items()))
        top = max([r[0] for r in salvage.rows] + [d[0] for d in salvage.dead] + [salvage.max_id], default=0)
        if top:   # ids never repeat, not even across a set-aside
            self._db.execute("INSERT OR REPLACE INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)", (top,))
        self._db.execute("COMMIT")
        self._seqs = {cam: int(s) for cam, s in self._db.execute("SELECT camera, last_seq FROM camera_seq")}
        self._recount_locked()
        self._protected = frozenset()
        self.counters.add("salvaged_rows", len(salvage.rows) + len(salvage.dead))
        self._last_error = f"corrupt outbox set aside as {target}: {why}"
        log.error("outbox: %s is damaged (%s); moved to %s, started a fresh one and re-queued the %d results and "
                  "%d dead letters still readable", self._path, why, target, len(salvage.rows), len(salvage.dead))


@dataclass
class _Salvage:
    rows: list = field(default_factory=list)
    dead: list = field(default_factory=list)
    seqs: dict = field(default_factory=dict)
    max_id: int = 0


def _scan(db: sqlite3.Connection, sql_fwd: str, sql_back: str) -> list:
    """Rows readable from a damaged table: forward until the damage, then backward from the end until it."""
    found: dict = {}
    for sql in (sql_fwd, sql_back):
        try:
            for r in db.execute(sql):
                found[r[0]] = r
        except sqlite3.DatabaseError:
            pass
    return [found[k] for k in sorted(found)]


def _salvage(path: str) -> _Salvage:
    out = _Salvage()
    try:
        db = sqlite3.connect(path, isolation_level=None, timeout=1.0)
    except sqlite3.Error:
        return out
    try:
        cols = "id, camera, topic, msg_id, payload, created_at, NULL, 0"
        try:
            names = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
            if "failures" in names:
                cols = "id, camera, topic, msg_id, payload, created_at, NULL, failures"
        except sqlite3.DatabaseError:
            pass
        out.rows = [r for r in _scan(db, f"SELECT {cols} FROM outbox ORDER BY id",
                                     f"SELECT {cols} FROM outbox ORDER BY id DESC")
                    if isinstance(r[4], (bytes, str)) and r[1] is not None and r[2] is not None]
        out.rows = [(int(r[0]), r[1], r[2], r[3], sqlite3.Binary(r[4] if isinstance(r[4], bytes) else r[4].encode()),
                     float(r[5] or 0.0), None, int(r[7] or 0)) for r in out.rows]
        dcols = "id, camera, topic, msg_id, payload, created_at, failures, reason, dead_at"
        out.dead = _scan(db, f"SELECT {dcols} FROM dead_letters ORDER BY id",
                         f"SELECT {dcols} FROM dead_letters ORDER BY id DESC")
        for cam, seq in _scan(db, "SELECT camera, last_seq FROM camera_seq ORDER BY camera",
                              "SELECT camera, last_seq FROM camera_seq ORDER BY camera DESC"):
            out.seqs[cam] = max(int(seq), out.seqs.get(cam, 0))
        try:
            r = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
            out.max_id = int(r[0]) if r else 0
        except sqlite3.DatabaseError:
            pass
    finally:
        db.close()
    return out
