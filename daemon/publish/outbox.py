"""The durable outbox: every result is a SQLite row before any publish, and leaves only after a good PUBACK.

Durability: WAL journal with synchronous=FULL, so a put() that returned a stored result survives a SIGKILL of
the daemon and a power cut. Ids come from AUTOINCREMENT, so they never repeat and "oldest first" is "lowest id
first". Caps (rows, payload bytes) apply on put() with the configured full_policy; the TTL applies on pending().
One connection guarded by one lock: the pipeline thread puts while the MQTT thread reads and deletes.

Faults it survives (each has a test on real SQLite):
- Disk full or failing writes: put() returns a falsy PutResult (reason "disk_full" or "io_error") instead of
  raising; SQLite has rolled back on its own, the outbox stays usable, health().writable turns False and
  turns True again at the first write that succeeds (every put tries: resuming needs no timer). A refused put
  is counted as an event (put_failed_*), not as a loss: the caller knows whether the reading comes again.
- A corrupt file: `PRAGMA quick_check` at open, and any "malformed"/"not a database" error later, sets the
  file (with its -wal and -shm) aside as `<path>.corrupt-<UTC time>`, starts a fresh one and re-queues every
  row still readable from the old one with its id, payload and message id (counted: corrupt_set_aside,
  salvaged_rows): what SQL reads, and every row whose cell is intact on a page SQL no longer reaches
  (daemon/publish/outbox_salvage.py). Sequence numbers are salvaged too where readable; message ids carry the
  capture time in ms, so a sequence number that restarts never makes two readings share an id.
- The file deleted or replaced while open (`rm -rf var/`, a file renamed over it): SQLite would go on with the
  nameless file and every row would be gone at the next start. Each put, pending() and health() compares the
  names (file, -wal, directory) with the files it opened and, when they differ, writes the open database back
  under its name with every row (counted: recreated; daemon/publish/outbox_file.py). While that fails, health()
  is not writable with the reason, put() refuses, and close() says the rows are not kept.
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

Sinks: a row is owed to every output configured when it was stored (mqtt, opcua, sparkplug,
homeassistant; daemon/publish/sinks/). The deliveries table holds one line per (sink, row) still owed; a sink's
acknowledgement deletes its line, and the row itself leaves with its last line, so a dead or slow sink keeps
its rows without holding back the others. Failures and dead letters are per sink too. A sink named in the
config for the first time owes the rows stored from then on; a sink no longer configured is forgotten at open
(its lines dropped, logged; its dead letters kept). Methods take sink=None for the default sink (the first
configured: "mqtt" unless MQTT is off), so a single-sink outbox reads exactly as before; for_sink(name) gives a
sink its own view (SinkQueue) with the same methods. Schema version 2 (PRAGMA user_version); a version-1 file
(no deliveries) is migrated at open in one transaction: every queued row is owed to mqtt with its failures,
every dead letter is mqtt's.
"""
from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Collection, Optional, Sequence

from daemon.config import OutboxConfig
from daemon.publish.outbox_file import FileWatch, put_back
from daemon.publish.outbox_salvage import DEAD_COLUMNS as _DEAD_COLUMNS
from daemon.publish.outbox_salvage import salvage as salvage_file
from daemon.publish.sqlite_pages import wal_commits_unread

log = logging.getLogger(__name__)

_CLOCK_PERSIST_S = 60.0   # the TTL clock is saved at least this often (and with every put): a crash loses less
_PUT_BACK_RETRY_S = 5.0   # a file that could not be written anew is tried again this often (a copy is the size
                          # of the outbox: not on every put)

_DEAD_LETTERS_TABLE = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER NOT NULL,               -- the outbox id it had, kept so a replay restores its place
    sink TEXT NOT NULL DEFAULT 'mqtt', -- the output that gave up on it (the others may have delivered it)
    camera TEXT NOT NULL,
    topic TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    failures INTEGER NOT NULL,
    reason TEXT NOT NULL,
    dead_at REAL NOT NULL,             -- wall clock
    PRIMARY KEY (id, sink)
);
"""
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
"""+_DEAD_LETTERS_TABLE+"""
CREATE TABLE IF NOT EXISTS outbox_clock (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    elapsed_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (   -- one line per (sink, row) not delivered yet
    sink TEXT NOT NULL,
    row_id INTEGER NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sink, row_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sinks (
    name TEXT PRIMARY KEY,
    added_at REAL NOT NULL             -- wall clock
);
"""
_SCHEMA_VERSION = 2   # 1: rows without deliveries (one output, MQTT); 2: deliveries per sink
DEFAULT_SINK = "mqtt"
_INDEXES = ("CREATE INDEX IF NOT EXISTS outbox_born_s ON outbox (born_s);"
            "CREATE INDEX IF NOT EXISTS deliveries_row ON deliveries (row_id);")
_ROW_COLUMNS = "id, camera, topic, msg_id, payload, created_at, born_s, failures"
# A sink's rows: the row's columns with that sink's failure count (o: outbox, d: deliveries).
_SINK_ROW_COLUMNS = "o.id, o.camera, o.topic, o.msg_id, o.payload, o.created_at, o.born_s, d.failures"


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
    sink: str = DEFAULT_SINK   # the output that gave up on it


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
    refused_new: int = 0      # readings lost to the caps: one payload above max_bytes, or refused by full_policy
                              # refuse_new and never stored later (the recorder counts those, as for disk_full)
    expired: int = 0          # older than ttl_s, deleted unpublished
    dead_lettered: int = 0    # moved to the dead_letters table (refused at put, or failing delivery N times)
    replayed: int = 0         # moved back from the dead_letters table by replay_dead_letters()
    # Readings lost because they could not be stored and were never stored later (the recorder counts these
    # through add(): only it knows whether a refused reading comes again, daemon/publish/unstored.py).
    disk_full: int = 0        # ... refused by a full disk (SQLITE_FULL)
    io_errors: int = 0        # ... refused by a write error (SQLITE_IOERR), a lock or another SQLite error
    put_failed_disk_full: int = 0   # puts refused by a full disk: events, not losses (a folder file is kept)
    put_failed_io_error: int = 0    # puts refused by any other write error: events, not losses
    put_refused_full: int = 0       # puts refused by full_policy refuse_new: events, not losses
    corrupt_set_aside: int = 0   # damaged outbox files moved to <path>.corrupt-<time>
    salvaged_rows: int = 0    # rows re-queued from a set-aside file
    recreated: int = 0        # the file (or its directory, or its -wal) was deleted or replaced and written anew
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


def _space_note(path: Path) -> str:
    """Where a write failed: ", and its file system is full (N bytes free)" when it is nearly so; else ""."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return ""
    return f", and its file system is full ({free} bytes free)" if free < (1 << 20) else ""


class Outbox:
    def __init__(self, cfg: OutboxConfig, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, busy_timeout_s: float = 10.0,
                 sinks: Optional[Sequence[str]] = None):
        """clock: wall clock for created_at and dead_at; monotonic: what ages rows for the TTL;
        busy_timeout_s: how long a write waits for another process's lock before it fails;
        sinks: the outputs new rows are owed to, in order (the first is the default sink); None keeps the ones
        the file has (what the CLI wants), ["mqtt"] for a new file."""
        self._want_sinks = None if sinks is None else tuple(dict.fromkeys(sinks)) or (DEFAULT_SINK,)
        self._sinks: tuple[str, ...] = (DEFAULT_SINK,)
        self._cfg = cfg
        self._busy_timeout_s = busy_timeout_s
        self._clock = clock
        self._mono = monotonic
        self._lock = threading.Lock()
        self.counters = OutboxCounters()
        self._path = Path(cfg.path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._admit: dict[str, Callable[[str, bytes], Optional[str]]] = {}   # sink -> its admission check
        self._protected: dict[str, frozenset[int]] = {}   # sink -> ids in flight at its last pending()
        self._depth_cache: dict[str, tuple[tuple, tuple[int, int]]] = {}
        self._gen = 0   # bumped by every change of rows or deliveries: the per-sink depth cache's key
        self._writable = True
        self._full_losses = 0   # readings dropped or refused by the caps in this full spell
        self._full = False
        self._last_error = ""
        self._watch = FileWatch()   # the file as opened (see _check_file_locked); the null watch until then
        self._gone = ""             # why the name no longer leads to the open file; "" while it does
        self._put_back_due = 0.0    # monotonic time of the next try to write it anew
        self._put_back_failed = ""  # why writing it anew failed (logged once an episode); "" when it did not
        self._db: sqlite3.Connection
        with self._lock:
            try:
                # Before SQLite opens it: on opening, SQLite would silently drop what a damaged -wal frame hides,
                # and the first write would start the log over it.
                lost = wal_commits_unread(str(self._path))
                if lost:
                    self._set_aside_locked(lost)
                else:
                    self._open_locked()
                    bad = [r[0] for r in self._db.execute("PRAGMA quick_check").fetchall()]
                    if bad != ["ok"]:
                        self._set_aside_locked("quick_check: " + "; ".join(str(b) for b in bad[:3]))
            except sqlite3.DatabaseError as exc:
                if _classify(exc) != "corrupt":
                    raise type(exc)(f"cannot open the outbox {self._path}: {exc}{_space_note(self._path)}") from exc
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
        if int(db.execute("PRAGMA user_version").fetchone()[0]) < _SCHEMA_VERSION:
            self._migrate_to_sinks_locked()
        db.executescript(_INDEXES)
        self._register_sinks_locked()
        row = db.execute("SELECT elapsed_s FROM outbox_clock WHERE id = 0").fetchone()
        self._clock_base_s = float(row[0]) if row else 0.0
        self._clock_base_mono = self._mono()
        self._clock_saved_mono = self._clock_base_mono
        # Rows of an older file have only the wall clock: their age so far counts once, never negative.
        db.execute("UPDATE outbox SET born_s = ? - MAX(0.0, ? - created_at) WHERE born_s IS NULL",
                   (self._now_s(), self._clock()))
        self._seqs = {cam: int(n) for cam, n in db.execute("SELECT camera, last_seq FROM camera_seq")}
        self._recount_locked()
        self._watch = FileWatch(self._path)

    def _migrate_to_sinks_locked(self) -> None:
        """Version 1 -> 2 in one transaction: queued rows are owed to mqtt (their failures kept), dead letters
        are mqtt's. A crash in between leaves version 1, and the next open does it again."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            dead_cols = {r[1] for r in db.execute("PRAGMA table_info(dead_letters)")}
            if "sink" not in dead_cols:
                db.execute("ALTER TABLE dead_letters RENAME TO dead_letters_v1")
                db.execute(_DEAD_LETTERS_TABLE)
                db.execute("INSERT INTO dead_letters (id, sink, camera, topic, msg_id, payload, created_at, failures, "
                           "reason, dead_at) SELECT id, ?, camera, topic, msg_id, payload, created_at, failures, "
                           "reason, dead_at FROM dead_letters_v1", (DEFAULT_SINK,))
                db.execute("DROP TABLE dead_letters_v1")
            moved = db.execute("INSERT OR IGNORE INTO deliveries (sink, row_id, failures) "
                               "SELECT ?, id, COALESCE(failures, 0) FROM outbox", (DEFAULT_SINK,)).rowcount
            db.execute("INSERT OR IGNORE INTO sinks (name, added_at) VALUES (?, ?)", (DEFAULT_SINK, self._clock()))
            db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            self._rollback_quietly()
            raise
        if moved:
            log.info("outbox %s: migrated to schema %d (%d queued results owed to %s)", self._path,
                     _SCHEMA_VERSION, moved, DEFAULT_SINK)

    def _register_sinks_locked(self) -> None:
        """Makes the file's sinks the configured ones: a new one owes the rows stored from now on, one no longer
        configured is dropped with its lines (rows nobody owes any more leave; its dead letters stay)."""
        db = self._db
        have = [r[0] for r in db.execute("SELECT name FROM sinks ORDER BY added_at, name")]
        want = self._want_sinks if self._want_sinks is not None else (tuple(have) or (DEFAULT_SINK,))
        gone = [n for n in have if n not in want]
        new = [n for n in want if n not in have]
        if gone or new:
            db.execute("BEGIN IMMEDIATE")
            try:
                for name in gone:
                    n = db.execute("DELETE FROM deliveries WHERE sink = ?", (name,)).rowcount
                    db.execute("DELETE FROM sinks WHERE name = ?", (name,))
                    if n:
                        log.warning("outbox: sink %s is no longer configured; %d results it had not delivered are "
                                    "dropped for it (the other sinks keep theirs)", name, n)
                db.execute("DELETE FROM outbox WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.row_id = outbox.id)")
                db.executemany("INSERT OR IGNORE INTO sinks (name, added_at) VALUES (?, ?)",
                               [(n, self._clock()) for n in new])
                db.execute("COMMIT")
            except BaseException:
                self._rollback_quietly()
                raise
        self._sinks = tuple(want)

    @property
    def sinks(self) -> tuple[str, ...]:
        """The outputs new rows are owed to; the first is the default sink of the methods' sink=None."""
        return self._sinks

    def for_sink(self, sink: str) -> "SinkQueue":
        """One sink's view: pending, get, delete_many, record_failure, dead_letter, depth, health for it."""
        if sink not in self._sinks:
            raise ValueError(f"sink {sink!r} is not among this outbox's sinks {self._sinks}")
        return SinkQueue(self, sink)

    def _sink(self, sink: Optional[str]) -> str:
        return self._sinks[0] if sink is None else sink

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
        self._failing: dict[str, set[int]] = {n: set() for n in self._sinks}   # sink -> rows it failed on
        for sink, row_id in db.execute("SELECT sink, row_id FROM deliveries WHERE failures > 0"):
            self._failing.setdefault(sink, set()).add(int(row_id))
        self._data_version = db.execute("PRAGMA data_version").fetchone()[0]
        self._gen += 1

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
        if self._gone:   # the write reached the open copy only: nothing is stored for the next start
            return
        if not self._writable:
            log.warning("outbox: writes succeed again; storing readings")
        self._writable = True
        self._last_error = ""

    # ------------------------------------------------------------ writer side (pipeline thread)

    def set_admission(self, admit: Optional[Callable[[str, bytes], Optional[str]]],
                      sink: Optional[str] = None) -> None:
        """admit(topic, payload) -> None to store, or the reason a row can never be delivered by this sink (it
        then goes to this sink's dead letters at put(); the other sinks still get it). The MQTT publisher installs
        one checking mqtt.max_payload_bytes and the broker's Maximum Packet Size; it is called under the outbox
        lock and must not call back into the outbox."""
        sink = self._sink(sink)
        if admit is None:
            self._admit.pop(sink, None)
        else:
            self._admit[sink] = admit

    def _failing_of(self, sink: str) -> set[int]:
        return self._failing.setdefault(sink, set())

    def _forget_failing(self, row_ids) -> None:
        ids = set(row_ids)
        for failing in self._failing.values():
            failing.difference_update(ids)

    def _all_protected(self) -> frozenset[int]:
        return frozenset().union(*self._protected.values()) if self._protected else frozenset()

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

    def last_seqs(self) -> dict[str, int]:
        """Each camera's last sequence number handed out."""
        with self._lock:
            return dict(self._seqs)

    def carry_seqs(self, seqs: dict[str, int]) -> None:
        """Another outbox's last numbers (a reload moving outbox.path): seq and result_id go on from them, never
        back to 1. Raises on a write error (the caller's reload is rejected)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO camera_seq (camera, last_seq) VALUES (?, ?) ON CONFLICT (camera) "
                    "DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)", list(seqs.items()))
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback_quietly()
                raise
            for camera, seq in seqs.items():
                self._seqs[camera] = max(self._seqs.get(camera, 0), seq)

    def put(self, camera: str, topic: str, msg_id: str, payload: bytes) -> PutResult:
        """Stores one message; durable when the result is truthy. Never raises for SQLite errors: a full or
        failing disk, a locked or corrupt database come back as a falsy PutResult (see its reason)."""
        with self._lock:
            if not self._check_file_locked():   # it would be stored in a file nobody will open again
                return self._refused_locked("io_error", self._last_error)
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
        self.counters.add("put_failed_disk_full" if kind == "disk_full" else "put_failed_io_error")
        return PutResult(kind, detail)

    def _put_locked(self, camera: str, topic: str, msg_id: str, payload: bytes) -> PutResult:
        size = len(payload)
        cfg = self._cfg
        self._sync_external_locked()
        if size > cfg.max_bytes:   # could never fit, whatever the policy
            self.counters.add("refused_new")
            log.warning("outbox: result %s of %d bytes is above max_bytes=%d; dropped", msg_id, size, cfg.max_bytes)
            return PutResult("too_large", f"{size} bytes above outbox.max_bytes={cfg.max_bytes}")
        refused = {}   # sink -> why it can never deliver this row as it is
        for sink in self._sinks:
            admit = self._admit.get(sink)
            why = admit(topic, payload) if admit is not None else None
            if why:
                refused[sink] = why
        takers = [n for n in self._sinks if n not in refused]
        if not takers:   # never deliverable as it is: kept in the dead letters (replayable), not queued
            self._db.execute("BEGIN IMMEDIATE")
            row_id = self._db.execute(
                "INSERT INTO outbox (camera, topic, msg_id, payload, created_at, born_s) VALUES (?, ?, ?, ?, ?, ?) "
                "RETURNING id", (camera, topic, msg_id, sqlite3.Binary(payload), self._clock(), self._now_s())
            ).fetchall()[0][0]
            self._insert_dead_sql(row_id, refused)
            self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
            self._db.execute("COMMIT")
            self._write_ok_locked()
            self._dead += len(refused)
            self._gen += 1
            self.counters.add("dead_lettered", len(refused))
            why = "; ".join(refused.values())
            log.warning("outbox: result %s goes to the dead letters: %s", msg_id, why)
            return PutResult("dead_letter", why)
        full = self._rows + 1 > cfg.max_rows or self._bytes + size > cfg.max_bytes
        self._note_full_locked(full)
        if full and cfg.full_policy == "refuse_new":   # a loss only if nothing offers it again (unstored.py)
            self.counters.add("put_refused_full")
            self._full_losses += 1
            return PutResult("refused_new", "outbox full")
        self._db.execute("BEGIN IMMEDIATE")
        dropped, dropped_bytes, dropped_ids = self._drop_oldest_locked(size) if full else (0, 0, [])
        row_id = self._db.execute(
            "INSERT INTO outbox (camera, topic, msg_id, payload, created_at, born_s) VALUES (?, ?, ?, ?, ?, ?) "
            "RETURNING id", (camera, topic, msg_id, sqlite3.Binary(payload), self._clock(), self._now_s())
        ).fetchall()[0][0]
        self._db.executemany("INSERT INTO deliveries (sink, row_id) VALUES (?, ?)", [(n, row_id) for n in takers])
        if refused:   # a sink that can never take it (e.g. above the MQTT size limit): its dead letter, theirs
            self._insert_dead_sql(row_id, refused)
        self._save_clock_sql()
        if camera in self._seqs:   # a number handed out while the disk was full is written now
            self._db.execute("INSERT INTO camera_seq (camera, last_seq) VALUES (?, ?) ON CONFLICT (camera) "
                             "DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)", (camera, self._seqs[camera]))
        self._db.execute("COMMIT")
        self._write_ok_locked()
        self._rows += 1 - dropped
        self._bytes += size - dropped_bytes
        self._gen += 1
        self._forget_failing(dropped_ids)
        if dropped:
            self.counters.add("dropped_oldest", dropped)
            self._full_losses += dropped
        if refused:
            self._dead += len(refused)
            self.counters.add("dead_lettered", len(refused))
            log.warning("outbox: result %s goes to the dead letters of %s: %s", msg_id, ", ".join(refused),
                        "; ".join(refused.values()))
        return PutResult("stored")

    def _note_full_locked(self, full: bool) -> None:
        """Logs the start and the end of a spell in which the caps drop or refuse readings (once each, not per
        reading; the counters have every one)."""
        if full == self._full:
            return
        self._full = full
        cfg = self._cfg
        if full:
            what = ("the oldest queued readings are dropped" if cfg.full_policy == "drop_oldest"
                    else "new readings are refused (held in memory and offered again while there is room)")
            log.warning("outbox: full (%d rows, %d bytes; max_rows=%d, max_bytes=%d): %s until deliveries make room",
                        self._rows, self._bytes, cfg.max_rows, cfg.max_bytes, what)
        else:
            log.warning("outbox: room again; %d reading(s) were %s while it was full", self._full_losses,
                        "dropped" if cfg.full_policy == "drop_oldest" else "refused")
            self._full_losses = 0

    def _insert_dead_sql(self, row_id: int, reasons: dict[str, str]) -> None:
        """Copies a row into the dead letters of each sink in reasons, with no failures; inside a transaction."""
        self._db.executemany(
            "INSERT OR REPLACE INTO dead_letters (id, sink, camera, topic, msg_id, payload, created_at, failures, "
            "reason, dead_at) SELECT id, ?, camera, topic, msg_id, payload, created_at, 0, ?, ? FROM outbox "
            "WHERE id = ?", [(sink, why, self._clock(), row_id) for sink, why in reasons.items()])

    def _drop_oldest_locked(self, incoming_bytes: int) -> tuple[int, int, list[int]]:
        """Deletes the oldest rows not in flight until one more row of incoming_bytes fits; inside the caller's
        transaction. Rows in flight stay (they are about to be acknowledged): the cap may be exceeded by them."""
        need_rows = self._rows + 1 - self._cfg.max_rows
        need_bytes = self._bytes + incoming_bytes - self._cfg.max_bytes
        dropped = dropped_bytes = 0
        cursor = self._db.execute("SELECT id, LENGTH(payload) FROM outbox ORDER BY id")
        protected = self._all_protected()
        victims = []
        for row_id, nbytes in cursor:
            if dropped >= need_rows and dropped_bytes >= need_bytes:
                break
            if row_id in protected:
                continue
            victims.append(row_id)
            dropped += 1
            dropped_bytes += nbytes
        cursor.close()
        self._db.executemany("DELETE FROM outbox WHERE id = ?", [(v,) for v in victims])
        self._db.executemany("DELETE FROM deliveries WHERE row_id = ?", [(v,) for v in victims])
        return dropped, dropped_bytes, victims

    # ------------------------------------------------------------ sender side (MQTT thread)

    def pending(self, limit: int, exclude_ids: Collection[int] = (),
                exclude_cameras: Collection[str] = (), sink: Optional[str] = None) -> list[OutboxRow]:
        """The sink's oldest rows first, skipping the given ids (in flight) and cameras (blocked behind a failed
        row); failures are this sink's. Deletes rows older than ttl_s first (counted in counters.expired), never
        one in flight for any sink. The ids excluded and returned count as in flight for this sink (safe from
        caps and TTL) until its next call."""
        sink = self._sink(sink)
        with self._lock:
            self._check_file_locked()   # an idle daemon notices a deleted file too (delivery goes on regardless)
            self._sync_external_locked()
            exclude_ids = frozenset(exclude_ids)
            if self._cfg.ttl_s > 0:
                try:
                    others = [ids for n, ids in self._protected.items() if n != sink]
                    self._expire_locked(self._now_s() - self._cfg.ttl_s, exclude_ids.union(*others))
                except sqlite3.DatabaseError as exc:
                    self._write_failed_locked(exc, "expiring old rows")
            elif self._mono() - self._clock_saved_mono > _CLOCK_PERSIST_S:
                self._save_clock_quietly_locked()
            sql = f"SELECT {_SINK_ROW_COLUMNS} FROM deliveries d JOIN outbox o ON o.id = d.row_id"
            where, args = ["d.sink = ?"], [sink]
            if exclude_ids:
                where.append(f"d.row_id NOT IN ({','.join('?' * len(exclude_ids))})")
                args.extend(exclude_ids)
            if exclude_cameras:
                where.append(f"o.camera NOT IN ({','.join('?' * len(exclude_cameras))})")
                args.extend(exclude_cameras)
            sql += " WHERE " + " AND ".join(where)
            sql += " ORDER BY d.row_id LIMIT ?"
            args.append(int(limit))
            try:
                rows = [self._row(r) for r in self._db.execute(sql, args).fetchall()]
            except sqlite3.DatabaseError as exc:
                if self._write_failed_locked(exc, "reading pending rows") == "corrupt":
                    return []   # set aside and salvaged: the next call reads the fresh file
                raise
            self._protected[sink] = exclude_ids | {r.id for r in rows}
            return rows

    @staticmethod
    def _row(r) -> OutboxRow:
        return OutboxRow(int(r[0]), r[1], r[2], r[3], bytes(r[4]), float(r[5]), int(r[7] or 0))

    def get(self, row_id: int, sink: Optional[str] = None) -> Optional[OutboxRow]:
        """One row the sink still owes, by id, or None when it left (acknowledged, dropped, expired,
        dead-lettered)."""
        with self._lock:
            r = self._db.execute(f"SELECT {_SINK_ROW_COLUMNS} FROM deliveries d JOIN outbox o ON o.id = d.row_id "
                                 f"WHERE d.sink = ? AND d.row_id = ?", (self._sink(sink), row_id)).fetchone()
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
        self._db.executemany("DELETE FROM deliveries WHERE row_id = ?", [(i,) for i, _ in victims])
        self._save_clock_sql()
        self._db.execute("COMMIT")
        self._write_ok_locked()
        if not victims:
            return
        self._rows -= len(victims)
        self._bytes -= sum(n for _, n in victims)
        self._gen += 1
        self._forget_failing(i for i, _ in victims)
        self.counters.add("expired", len(victims))
        log.warning("outbox: %d results older than ttl_s=%.0f dropped unpublished", len(victims), self._cfg.ttl_s)

    def delete(self, row_id: int, sink: Optional[str] = None) -> None:
        """Removes an acknowledged row; a row already gone (dropped or expired meanwhile) is not an error."""
        self.delete_many([row_id], sink)

    def delete_many(self, row_ids: Collection[int], sink: Optional[str] = None) -> None:
        """Marks rows delivered by the sink, in one transaction: one fsync instead of one per row; a row leaves
        the outbox with the last sink that owed it. Raises sqlite3.Error when the write fails (disk full,
        locked): the caller keeps the ids and tries again later."""
        if not row_ids:
            return
        sink = self._sink(sink)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                gone = []
                for row_id in row_ids:
                    self._db.execute("DELETE FROM deliveries WHERE sink = ? AND row_id = ?", (sink, row_id))
                    gone += self._delete_if_done_sql(row_id)
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                self._write_failed_locked(exc, "deleting acknowledged rows")
                raise
            self._write_ok_locked()
            self._rows -= len(gone)
            self._bytes -= sum(int(g[0]) for g in gone)
            self._gen += 1
            self._failing_of(sink).difference_update(row_ids)

    def _delete_if_done_sql(self, row_id: int) -> list:
        """Deletes the row when no sink owes it any more; [(payload length,)] when it did. Inside a transaction."""
        return self._db.execute("DELETE FROM outbox WHERE id = ? AND NOT EXISTS (SELECT 1 FROM deliveries "
                                "WHERE row_id = ?) RETURNING LENGTH(payload)", (row_id, row_id)).fetchall()

    def record_failure(self, row_id: int, reason: str, sink: Optional[str] = None) -> str:
        """One failed delivery of a row by the sink: "retry", "dead_letter" (the dead_letter_after_failures-th
        failure moved it to the sink's dead letters), or "gone" (the row left meanwhile). Raises sqlite3.Error
        when the write fails."""
        sink = self._sink(sink)
        with self._lock:
            try:
                r = self._db.execute("UPDATE deliveries SET failures = failures + 1 WHERE sink = ? AND row_id = ? "
                                     "RETURNING failures", (sink, row_id)).fetchall()
            except sqlite3.DatabaseError as exc:
                self._write_failed_locked(exc, "counting a failed delivery")
                raise
            if not r:
                return "gone"
            self._failing_of(sink).add(row_id)
            if int(r[0][0]) < self._cfg.dead_letter_after_failures:
                return "retry"
            self._dead_letter_locked(row_id, reason, sink)
            return "dead_letter"

    def dead_letter(self, row_id: int, reason: str, sink: Optional[str] = None) -> bool:
        """Moves a queued row to the sink's dead letters at once (e.g. above the broker's Maximum Packet Size);
        the other sinks still deliver it. False when the row had left already. Raises sqlite3.Error when the
        write fails."""
        with self._lock:
            return self._dead_letter_locked(row_id, reason, self._sink(sink))

    def _dead_letter_locked(self, row_id: int, reason: str, sink: str) -> bool:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            moved = self._db.execute(
                "INSERT OR REPLACE INTO dead_letters (id, sink, camera, topic, msg_id, payload, created_at, failures, "
                "reason, dead_at) SELECT o.id, d.sink, o.camera, o.topic, o.msg_id, o.payload, o.created_at, "
                "d.failures, ?, ? FROM deliveries d JOIN outbox o ON o.id = d.row_id WHERE d.sink = ? AND d.row_id = ? "
                "RETURNING msg_id, LENGTH(payload), failures", (reason, self._clock(), sink, row_id)).fetchall()
            self._db.execute("DELETE FROM deliveries WHERE sink = ? AND row_id = ?", (sink, row_id))
            gone = self._delete_if_done_sql(row_id)
            self._db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self._write_failed_locked(exc, "moving a row to the dead letters")
            raise
        self._write_ok_locked()
        self._failing_of(sink).discard(row_id)
        if not moved:
            return False
        msg_id, nbytes, failures = moved[0]
        self._rows -= len(gone)
        self._bytes -= sum(int(g[0]) for g in gone)
        self._dead += 1
        self._gen += 1
        self.counters.add("dead_lettered")
        log.warning("outbox: result %s moved to the dead letters%s after %d failed deliveries: %s",
                    msg_id, "" if len(self._sinks) == 1 else f" of {sink}", failures, reason)
        return True

    # ------------------------------------------------------------ dead letters (CLI, stats)

    def dead_letters(self, limit: int = 1000, sink: Optional[str] = None) -> list[DeadLetter]:
        """Oldest first; every sink's when sink is None."""
        where, args = ("", []) if sink is None else (" WHERE sink = ?", [sink])
        with self._lock:
            return [DeadLetter(int(r[0]), r[1], r[2], r[3], bytes(r[4]), float(r[5]), int(r[6]), r[7], float(r[8]),
                               r[9])
                    for r in self._db.execute(f"SELECT {_DEAD_COLUMNS} FROM dead_letters{where} ORDER BY id, sink "
                                              f"LIMIT ?", (*args, int(limit))).fetchall()]

    def replay_dead_letters(self, ids: Optional[Collection[int]] = None) -> int:
        """Moves dead letters back into the outbox (all of them when ids is None) with their old id, a fresh
        TTL age and no failures, owed again to the sink that gave up on each; returns how many moved. Dead
        letters of a sink no longer configured stay. A running daemon picks them up by itself."""
        with self._lock:
            where = f" WHERE sink IN ({','.join('?' * len(self._sinks))})"
            args: list = list(self._sinks)
            if ids is not None:
                if not ids:
                    return 0
                where += f" AND id IN ({','.join('?' * len(ids))})"
                args += [int(i) for i in ids]
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # A row another sink still owes is in the outbox already: it keeps its place and gains a line.
                back = self._db.execute(
                    f"INSERT OR IGNORE INTO outbox (id, camera, topic, msg_id, payload, created_at, born_s, failures) "
                    f"SELECT id, camera, topic, msg_id, payload, created_at, ?, 0 FROM dead_letters{where} "
                    f"GROUP BY id RETURNING LENGTH(payload)", [self._now_s(), *args]).fetchall()
                moved = self._db.execute(
                    f"INSERT OR IGNORE INTO deliveries (sink, row_id, failures) SELECT sink, id, 0 "
                    f"FROM dead_letters{where}", args).rowcount
                self._db.execute(f"DELETE FROM dead_letters{where}", args)
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                self._write_failed_locked(exc, "replaying dead letters")
                raise
            self._rows += len(back)
            self._bytes += sum(int(m[0]) for m in back)
            self._dead = int(self._db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])
            self._gen += 1
            self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]
        self.counters.add("replayed", moved)
        return moved

    # ------------------------------------------------------------ health

    def depth(self, sink: Optional[str] = None) -> tuple[int, int]:
        """(rows, payload bytes) waiting to be published: by any sink when sink is None, else that sink's
        backlog (the same numbers while there is one sink)."""
        with self._lock:
            try:
                self._sync_external_locked()
            except sqlite3.Error:
                pass
            if sink is None or self._sinks == (sink,):
                return self._rows, self._bytes
            return self._sink_depth_locked(sink)

    def _sink_depth_locked(self, sink: str) -> tuple[int, int]:
        key = (self._gen, self._data_version)
        cached = self._depth_cache.get(sink)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            rows, nbytes = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(o.payload)), 0) FROM deliveries d JOIN outbox o "
                "ON o.id = d.row_id WHERE d.sink = ?", (sink,)).fetchone()
        except sqlite3.Error:
            return cached[1] if cached is not None else (0, 0)
        self._depth_cache[sink] = (key, (int(rows), int(nbytes)))
        return int(rows), int(nbytes)

    def dead_letter_count(self, sink: Optional[str] = None) -> int:
        """Every sink's dead letters when sink is None."""
        if sink is None:
            return self._dead
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM dead_letters WHERE sink = ?", (sink,)).fetchone()[0])

    def health(self, wait_s: float = 0.5, sink: Optional[str] = None) -> OutboxHealth:
        """Never raises; waits at most wait_s for the lock (a wedged database reports responsive=False).
        With a sink (of several): rows, age, failing rows and dead letters are that sink's."""
        single = sink is None or self._sinks == (sink,)
        if not self._lock.acquire(timeout=wait_s):
            return OutboxHealth(writable=self._writable, responsive=False, rows=self._rows,
                                oldest_undelivered_age_s=None, failing_rows=self._failing_count(sink),
                                dead_letters=self._dead, last_error=self._last_error or "outbox lock held")
        try:
            oldest = None
            self._check_file_locked()
            rows, dead = self._rows, self._dead
            try:
                self._sync_external_locked()
                rows = self._rows
                if single:
                    born = self._db.execute("SELECT MIN(born_s) FROM outbox").fetchone()[0]
                else:
                    born = self._db.execute("SELECT MIN(o.born_s) FROM deliveries d JOIN outbox o "
                                            "ON o.id = d.row_id WHERE d.sink = ?", (sink,)).fetchone()[0]
                    rows = self._sink_depth_locked(sink)[0]
                    dead = int(self._db.execute("SELECT COUNT(*) FROM dead_letters WHERE sink = ?",
                                                (sink,)).fetchone()[0])
                oldest = None if born is None else max(0.0, self._now_s() - float(born))
            except sqlite3.Error as exc:
                self._last_error = f"reading the outbox: {exc}"
            return OutboxHealth(writable=self._writable, responsive=True, rows=rows,
                                oldest_undelivered_age_s=oldest, failing_rows=self._failing_count(sink),
                                dead_letters=dead, last_error=self._last_error)
        finally:
            self._lock.release()

    def _failing_count(self, sink: Optional[str]) -> int:
        """Rows with a failed delivery (by the sink, or by any); read without the lock when it is held."""
        try:
            if sink is None:
                return len(set().union(*list(self._failing.values())))
            return len(self._failing.get(sink, ()))
        except RuntimeError:   # changed while read (lock not held): a report, not a decision
            return 0

    def close(self) -> bool:
        """True when the file at the configured path holds every row for the next start; False when it was
        deleted or replaced and could not be written anew (logged: those rows are lost with this process)."""
        with self._lock:
            self._put_back_due = 0.0   # one last try, whenever the previous one was
            kept = self._check_file_locked()
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._save_clock_sql()
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._rollback_quietly()
            self._db.close()
            if not kept:
                log.error("outbox: %d results and %d dead letters are NOT kept: %s is gone (%s) and could not be "
                          "written anew (%s)", self._rows, self._dead, self._path, self._gone, self._put_back_failed)
            return kept

    # ------------------------------------------------------------ a deleted or replaced file

    def _check_file_locked(self) -> bool:
        """True while the configured path leads to the open database. When it no longer does (the file, its
        -wal or its directory deleted, or another file renamed over it), the open database, which SQLite still
        reads and writes without a name, is written back under the name with every row, dead letter, sequence
        number and sink. False while that fails: health says so, put() refuses (a folder file stays where it
        is), delivery goes on from the open copy, and it is tried again every _PUT_BACK_RETRY_S."""
        if not self._gone:
            self._gone = self._watch.lost()
            if not self._gone:
                return True
        if self._mono() < self._put_back_due:
            return False
        try:   # the TTL clock into the open copy, so it comes along
            self._db.execute("BEGIN IMMEDIATE")
            self._save_clock_sql()
            self._db.execute("COMMIT")
        except sqlite3.Error:
            self._rollback_quietly()
        seqs, rows, dead, now_s = dict(self._seqs), self._rows, self._dead, self._now_s()
        try:
            aside = put_back(self._db, self._path, self._watch)
        except (OSError, sqlite3.Error) as exc:
            self._put_back_due = self._mono() + _PUT_BACK_RETRY_S
            self._last_error = (f"the outbox file {self._path} is gone ({self._gone}) and cannot be written anew "
                                f"({exc}): {rows} results and {dead} dead letters are held by this process only "
                                f"and are lost when it stops; new readings are not stored")
            self._writable = False
            if not self._put_back_failed:
                log.error("outbox: %s", self._last_error)
            self._put_back_failed = str(exc)
            return False
        try:
            self._db.close()
        except sqlite3.Error:
            pass
        self._open_locked()
        self._clock_base_s, self._clock_base_mono = now_s, self._mono()
        for cam, seq in seqs.items():   # numbers handed out while the disk refused them are kept
            self._seqs[cam] = max(seq, self._seqs.get(cam, 0))
        self.counters.add("recreated")
        what = (f"{self._gone}: the outbox file {self._path} was written anew with the {self._rows} results and "
                f"{self._dead} dead letters the open one held" + (f"; the file found there moved to {aside}" if aside
                                                                   else ""))
        log.error("outbox: %s", what)
        self._gone, self._put_back_due, self._put_back_failed, self._writable = "", 0.0, "", True
        self._last_error = what   # until the next good write
        return True

    # ------------------------------------------------------------ a damaged file

    def _set_aside_locked(self, why: str) -> None:
        """Moves the damaged file (and its -wal, -shm) aside, opens a fresh one, re-queues what can be read."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        base = f"{self._path}.corrupt-{stamp}"
        target, n = base, 0
        while os.path.exists(target):
            n += 1
            target = f"{base}.{n}"
        wal = f"{self._path}-wal"
        try:   # closing deletes a -wal that SQLite reads as empty (a frame with a bad checksum ends it for SQLite);
            os.link(wal, target + "-wal")   # the page salvage still reads the frames after that one
        except OSError:
            pass
        try:
            self._db.close()
        except (sqlite3.Error, AttributeError):
            pass
        for suffix in ("", "-wal", "-shm"):   # names kept in step, so the old file opens with its own WAL
            src = f"{self._path}{suffix}"
            if not os.path.exists(src):
                continue
            if suffix == "-wal" and os.path.exists(target + suffix) and os.path.samefile(src, target + suffix):
                os.unlink(src)   # linked above (a rename onto another name of the same file would do nothing)
            else:
                os.replace(src, target + suffix)
        self.counters.add("corrupt_set_aside")
        salvage = salvage_file(target)
        self._open_locked()
        now_s = self._now_s()
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany(
            "INSERT OR IGNORE INTO outbox (id, camera, topic, msg_id, payload, created_at, born_s, failures) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [(*r[:6], now_s, r[7] or 0) for r in salvage.rows])
        owed: dict[int, list] = {}
        for sink, row_id, failures in salvage.deliveries:
            if sink in self._sinks:
                owed.setdefault(int(row_id), []).append((sink, int(row_id), int(failures or 0)))
        lines = []
        for r in salvage.rows:   # a row whose lines are unreadable is owed to every sink: sent twice, never lost
            lines += owed.get(r[0]) or [(sink, r[0], r[7] or 0) for sink in self._sinks]
        self._db.executemany("INSERT OR IGNORE INTO deliveries (sink, row_id, failures) VALUES (?, ?, ?)", lines)
        self._db.executemany(
            f"INSERT OR IGNORE INTO dead_letters ({_DEAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", salvage.dead)
        self._db.executemany(
            "INSERT INTO camera_seq (camera, last_seq) VALUES (?, ?) ON CONFLICT (camera) "
            "DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)", list(salvage.seqs.items()))
        top = max([r[0] for r in salvage.rows] + [d[0] for d in salvage.dead] + [salvage.max_id], default=0)
        if top:   # ids never repeat, not even across a set-aside
            self._db.execute("INSERT OR REPLACE INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)", (top,))
        self._db.execute("COMMIT")
        self._seqs = {cam: int(s) for cam, s in self._db.execute("SELECT camera, last_seq FROM camera_seq")}
        self._recount_locked()
        self._protected = {}
        self.counters.add("salvaged_rows", len(salvage.rows) + len(salvage.dead))
        self._last_error = f"corrupt outbox set aside as {target}: {why}"
        log.error("outbox: %s is damaged (%s); moved to %s, started a fresh one and re-queued the %d results and "
                  "%d dead letters still readable (%d of them read from its pages only)", self._path, why, target,
                  len(salvage.rows), len(salvage.dead), salvage.from_pages)


class SinkQueue:
    """One sink's view of the outbox (Outbox.for_sink): the methods a sink calls, bound to its name, so a sink
    (the MQTT publisher included) reads the same whether the outbox feeds one output or four."""

    def __init__(self, outbox: Outbox, sink: str):
        self._outbox = outbox
        self.sink = sink
        self.counters = outbox.counters

    def set_admission(self, admit: Optional[Callable[[str, bytes], Optional[str]]]) -> None:
        self._outbox.set_admission(admit, self.sink)

    def pending(self, limit: int, exclude_ids: Collection[int] = (),
                exclude_cameras: Collection[str] = ()) -> list[OutboxRow]:
        return self._outbox.pending(limit, exclude_ids, exclude_cameras, sink=self.sink)

    def get(self, row_id: int) -> Optional[OutboxRow]:
        return self._outbox.get(row_id, self.sink)

    def delete(self, row_id: int) -> None:
        self._outbox.delete_many([row_id], self.sink)

    def delete_many(self, row_ids: Collection[int]) -> None:
        self._outbox.delete_many(row_ids, self.sink)

    def record_failure(self, row_id: int, reason: str) -> str:
        return self._outbox.record_failure(row_id, reason, self.sink)

    def dead_letter(self, row_id: int, reason: str) -> bool:
        return self._outbox.dead_letter(row_id, reason, self.sink)

    def depth(self) -> tuple[int, int]:
        return self._outbox.depth(self.sink)

    def dead_letter_count(self) -> int:
        return self._outbox.dead_letter_count(self.sink)

    def health(self, wait_s: float = 0.5) -> OutboxHealth:
        return self._outbox.health(wait_s, sink=self.sink)
