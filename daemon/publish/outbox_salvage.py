"""What can still be read from a damaged outbox file that was set aside: rows, their delivery lines, dead
letters, sequence numbers and the highest id.

Two readers, one after the other, their findings joined:
- the pages (daemon/publish/sqlite_pages.py): every leaf cell of the file and its -wal, the newest copy of each
  page, whatever the damage above it (a zeroed first page, a bad interior page, a truncated file); a row counts
  only when its record has the outbox's shape and its payload is the JSON message its msg_id names, so stray
  bytes never become a reading. Read first, because SQL's close checkpoints the -wal away.
- SQL, forward until the damage, then backward from the end until it: what SQLite itself still reads.
Rows are joined by id, and a msg_id seen twice is queued once. Sequence numbers come from the camera_seq table
where readable and from the recovered messages' own "seq". Rows on pages SQLite had freed are not read while the
free list is readable (page 1); when it is not, a row delivered long ago can come back and be sent again under
its own message id (at least once: a duplicate, never a loss). So can a row acknowledged after a damaged -wal
frame: SQL reads the file as it was before that frame.

The Outbox calls salvage() under its lock with the file already set aside; pure file reading, no logging.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from numbers import Real

from daemon.publish.sqlite_pages import Cell, PageFile

_V1_SINK = "mqtt"   # a version-1 file had one output, MQTT: its dead letters are MQTT's
# A dead letter as the Outbox inserts it (its column order, not the table's).
DEAD_COLUMNS = "id, camera, topic, msg_id, payload, created_at, failures, reason, dead_at, sink"


@dataclass
class Salvage:
    rows: list = field(default_factory=list)         # (id, camera, topic, msg_id, payload, created_at, None, failures)
    deliveries: list = field(default_factory=list)   # (sink, row_id, failures); empty for a version-1 file
    dead: list = field(default_factory=list)         # in DEAD_COLUMNS order
    seqs: dict = field(default_factory=dict)         # camera -> highest sequence number seen
    max_id: int = 0
    from_pages: int = 0                              # rows and dead letters only the page reader found


def salvage(path: str) -> Salvage:
    pages = _from_pages(path)
    sql = _from_sql(path)
    out = Salvage(deliveries=list({(d[0], d[1]): d for d in pages.deliveries + sql.deliveries}.values()),
                  seqs=dict(sql.seqs), max_id=max(sql.max_id, pages.max_id))
    rows = {r[0]: r for r in sql.rows}
    msg_ids = {r[3] for r in sql.rows}
    for r in pages.rows:
        if r[0] not in rows and r[3] not in msg_ids:
            rows[r[0]] = r
            msg_ids.add(r[3])
            out.from_pages += 1
    out.rows = [rows[k] for k in sorted(rows)]
    dead = {(d[0], d[9]): d for d in sql.dead}
    for d in pages.dead:
        if (d[0], d[9]) not in dead:
            dead[(d[0], d[9])] = d
            out.from_pages += 1
    out.dead = [dead[k] for k in sorted(dead)]
    for r in out.rows + [(d[0], d[1], d[2], d[3], d[4]) for d in out.dead]:
        cam_seq = _message_seq(bytes(r[4]))
        if cam_seq is not None and cam_seq[0] == r[1]:
            out.seqs[r[1]] = max(cam_seq[1], out.seqs.get(r[1], 0))
    return out


# ---------------------------------------------------------------- the pages

def _from_pages(path: str) -> Salvage:
    out = Salvage()
    try:
        pages = PageFile(path)
    except (OSError, ValueError):
        return out
    rows: dict[int, tuple] = {}
    try:
        for cell in pages.leaf_cells():
            row = _outbox_row(cell)
            if row is not None:
                rows[row[0]] = row
                continue
            dead = _dead_letter(cell)
            if dead is not None:
                out.dead.append(dead)
                continue
            line = _delivery(cell)
            if line is not None:
                out.deliveries.append(line)
    finally:
        pages.close()
    out.rows = [rows[k] for k in sorted(rows)]
    out.max_id = max([r[0] for r in out.rows] + [d[0] for d in out.dead], default=0)
    return out


def _is_num(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def _message(payload, msg_id: str) -> bool:
    """Whether payload is the JSON message msg_id names: a reading's own id, or "<its id>/<kind>" (review)."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return False
    own = doc.get("id") if isinstance(doc, dict) else None
    return isinstance(own, str) and bool(own) and (msg_id == own or msg_id.startswith(own + "/"))


def _message_seq(payload) -> "tuple[str, int] | None":
    """(camera, seq) of a result message; None for anything else."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError, TypeError):
        return None
    if isinstance(doc, dict) and isinstance(doc.get("camera"), str) and isinstance(doc.get("seq"), int):
        return doc["camera"], doc["seq"]
    return None


def _outbox_row(cell: Cell):
    """The outbox table's row: (id, camera, topic, msg_id, payload, created_at, born_s[, failures]), the id
    being the rowid (its column holds NULL); columns added later may be missing in an older file's rows."""
    v = cell.values
    if cell.rowid is None or cell.rowid <= 0 or not 6 <= len(v) <= 8 or v[0] is not None:
        return None
    if not (isinstance(v[1], str) and isinstance(v[2], str) and isinstance(v[3], str)
            and isinstance(v[4], (bytes, str)) and _is_num(v[5])):
        return None
    if any(x is not None and not _is_num(x) for x in v[6:]):
        return None
    if not _message(v[4], v[3]):
        return None
    payload = v[4] if isinstance(v[4], bytes) else v[4].encode()
    failures = int(v[7]) if len(v) > 7 and v[7] is not None else 0
    return cell.rowid, v[1], v[2], v[3], sqlite3.Binary(payload), float(v[5]), None, failures


def _dead_letter(cell: Cell):
    """A dead_letters row in DEAD_COLUMNS order: version 2 (id, sink, camera, ...) or version 1 (no sink)."""
    v = cell.values
    if cell.rowid is None:
        return None
    if len(v) == 10:
        row_id, sink, rest = v[0], v[1], v[2:]
    elif len(v) == 9:
        row_id, sink, rest = (cell.rowid if v[0] is None else v[0]), _V1_SINK, v[1:]
    else:
        return None
    camera, topic, msg_id, payload, created_at, failures, reason, dead_at = rest
    if not (isinstance(row_id, int) and row_id > 0 and isinstance(sink, str) and isinstance(camera, str)
            and isinstance(topic, str) and isinstance(msg_id, str) and isinstance(payload, (bytes, str))
            and _is_num(created_at) and isinstance(failures, int) and isinstance(reason, str) and _is_num(dead_at)):
        return None
    if not _message(payload, msg_id):
        return None
    payload = payload if isinstance(payload, bytes) else payload.encode()
    return (row_id, camera, topic, msg_id, sqlite3.Binary(payload), float(created_at), failures, reason,
            float(dead_at), sink)


def _delivery(cell: Cell):
    """A deliveries line (sink, row_id, failures): a WITHOUT ROWID table, so an index cell."""
    v = cell.values
    if cell.rowid is None and len(v) == 3 and isinstance(v[0], str) and isinstance(v[1], int) and v[1] > 0 \
            and isinstance(v[2], int) and v[2] >= 0:
        return v
    return None


# ---------------------------------------------------------------- SQL

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


def _from_sql(path: str) -> Salvage:
    out = Salvage()
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
        dcols = "id, camera, topic, msg_id, payload, created_at, failures, reason, dead_at, '" + _V1_SINK + "'"
        try:
            if "sink" in {r[1] for r in db.execute("PRAGMA table_info(dead_letters)")}:
                dcols = DEAD_COLUMNS
        except sqlite3.DatabaseError:
            pass
        # keyed by (id, sink): two sinks' dead letters of one row are two entries
        out.dead = [r[1:] for r in _scan(db, f"SELECT id || '/' || {dcols.split(', ')[-1]}, {dcols} FROM dead_letters "
                                             f"ORDER BY id", f"SELECT id || '/' || {dcols.split(', ')[-1]}, {dcols} "
                                             f"FROM dead_letters ORDER BY id DESC")]
        try:   # a version-1 file has no deliveries table: its rows are owed to every sink
            out.deliveries = [r[1:] for r in _scan(
                db, "SELECT sink || '/' || row_id, sink, row_id, failures FROM deliveries ORDER BY sink, row_id",
                "SELECT sink || '/' || row_id, sink, row_id, failures FROM deliveries ORDER BY sink DESC, row_id DESC")]
        except sqlite3.DatabaseError:
            out.deliveries = []
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
