"""The outbox under faults, on real SQLite: a full disk (a tiny tmpfs, and a file-size limit), corrupt files
(garbled header, damage in the middle, truncated, damage found by a later put), wall-clock steps, rows in flight
under caps and TTL, dead letters and their replay."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daemon.config import OutboxConfig
from daemon.publish.outbox import Outbox
from publish_support import FakeClock

ROOT = Path(__file__).resolve().parent.parent



def _put(ob: Outbox, camera: str, i: int, size: int = 10):
    return ob.put(camera, f"ocr/dev/{camera}/text", f"{camera}:{i}", bytes([65 + i % 26]) * size)


# ---------------------------------------------------------------- disk full

def _fill(path: Path) -> None:
    """Takes every byte left on the file system of path."""
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0" * 512)
                f.flush()
        except OSError:
            pass


def test_disk_full_put_refuses_typed_stays_usable_and_resumes_when_space_returns(tiny_fs):
    ob = Outbox(OutboxConfig(path=str(tiny_fs / "outbox.sqlite3")))
    for i in range(5):
        assert _put(ob, "cam", i, size=2000)
    filler = tiny_fs / "filler"
    _fill(filler)
    results = [_put(ob, "cam", 100 + i, size=2000) for i in range(60)]
    refused = [r for r in results if not r]
    assert refused, "the disk never filled"
    assert {r.reason for r in refused} == {"disk_full"}
    assert ob.counters.put_failed_disk_full == len(refused) and ob.counters.disk_full == 0   # refused, not lost
    health = ob.health()
    assert not health.writable and health.responsive and "full" in health.last_error
    seq = ob.next_seq("cam")   # never raises on a full disk; the number is kept in memory
    # the sender side keeps working: rows can be read; a failing delete raises for the caller to retry
    rows = ob.pending(100)
    assert len(rows) == 5 + len(results) - len(refused)
    filler.unlink()
    assert _put(ob, "cam", 999, size=2000).reason == "stored"
    assert ob.health().writable and ob.health().last_error == ""
    assert ob.next_seq("cam") == seq + 1
    ob.delete_many([r.id for r in rows])
    assert ob.depth() == (1, 2000)
    ob.close()
    ob = Outbox(OutboxConfig(path=str(tiny_fs / "outbox.sqlite3")))   # nothing damaged by the episode
    assert [r.msg_id for r in ob.pending(10)] == ["cam:999"] and ob.next_seq("cam") == seq + 2
    ob.close()


def test_an_outbox_that_cannot_be_opened_on_a_full_disk_says_the_disk_is_full(tiny_fs):
    """Found from outside: a start on a full disk said only "disk I/O error"."""
    import sqlite3

    import pytest

    ob = Outbox(OutboxConfig(path=str(tiny_fs / "outbox.sqlite3")))
    for i in range(3):
        assert _put(ob, "cam", i, size=2000)
    ob.close()                                   # a clean stop: no -wal left
    _fill(tiny_fs / "filler")
    try:
        with pytest.raises(sqlite3.Error) as err:
            Outbox(OutboxConfig(path=str(tiny_fs / "outbox.sqlite3")))
        assert "cannot open the outbox" in str(err.value) and "its file system is full" in str(err.value)
    finally:
        (tiny_fs / "filler").unlink()
    ob = Outbox(OutboxConfig(path=str(tiny_fs / "outbox.sqlite3")))   # room again: it opens, rows and all
    assert [r.msg_id for r in ob.pending(10)] == ["cam:0", "cam:1", "cam:2"]
    ob.close()


_FSIZE_WRITER = textwrap.dedent("""
    import resource, sys
    sys.path.insert(0, {root!r})
    from daemon.config import OutboxConfig
    from daemon.publish.outbox import Outbox
    ob = Outbox(OutboxConfig(path={path!r}))
    ob.put("cam", "t", "before", b"x" * 100)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))   # files may not grow past 200 kB
    reasons = [ob.put("cam", "t", f"m{{i}}", b"y" * 5000).reason for i in range(100)]
    print("refused", sorted(set(r for r in reasons if r != "stored")), "writable", ob.health().writable)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    print("after", ob.put("cam", "t", "after", b"z" * 5000).reason, "writable", ob.health().writable)
    ob.close()
""")


def test_file_size_limit_refuses_as_io_error_without_killing_the_process(tmp_path):
    """RLIMIT_FSIZE (works without root): SQLite reports SQLITE_IOERR_WRITE, and the explicit ROLLBACK it used
    to follow with raised "cannot rollback - no transaction is active"."""
    path = str(tmp_path / "outbox.sqlite3")
    out = subprocess.run([sys.executable, "-c", _FSIZE_WRITER.format(root=str(ROOT), path=path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "refused ['io_error'] writable False" in out.stdout, out.stdout
    assert "after stored writable True" in out.stdout, out.stdout
    ob = Outbox(OutboxConfig(path=path))
    ids = [r.msg_id for r in ob.pending(1000)]
    assert ids[0] == "before" and ids[-1] == "after" and ob.counters.corrupt_set_aside == 0
    ob.close()


# ---------------------------------------------------------------- corrupt files

def _filled(path: Path, n: int = 600, size: int = 400) -> dict[int, tuple[str, bytes]]:
    ob = Outbox(OutboxConfig(path=str(path)))
    for i in range(n):
        ob.next_seq("cam")
        assert ob.put("cam", "ocr/dev/cam/text", f"cam:{i}", os.urandom(size))
    rows = {r.id: (r.msg_id, r.payload) for r in ob.pending(100_000)}
    ob.close()   # the last connection checkpoints the WAL into the main file
    assert not Path(str(path) + "-wal").exists() or Path(str(path) + "-wal").stat().st_size == 0
    return rows


def _set_aside_files(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.iterdir() if ".corrupt-" in p.name)


def test_garbled_header_is_set_aside_and_a_fresh_outbox_starts(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    _filled(path, n=20)
    with open(path, "r+b") as f:
        f.write(os.urandom(100))   # the 16-byte magic and the header: "file is not a database"
    ob = Outbox(OutboxConfig(path=str(path)))
    assert ob.counters.corrupt_set_aside == 1 and ob.depth() == (0, 0)
    [aside] = _set_aside_files(path)
    assert aside.name.startswith("outbox.sqlite3.corrupt-") and aside.stat().st_size > 0
    assert "set aside" in ob.health().last_error   # until the next good write
    assert _put(ob, "cam", 1)
    assert ob.next_seq("cam") == 1   # nothing readable: numbering restarts (ids carry the capture time)
    ob.close()


def test_damage_in_the_middle_is_found_at_open_and_the_readable_rows_are_requeued(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    rows = _filled(path)
    pages = path.stat().st_size // 4096
    with open(path, "r+b") as f:   # garbage over a few pages in the middle of the table
        f.seek(4096 * (pages // 2))
        f.write(os.urandom(3 * 4096))
    ob = Outbox(OutboxConfig(path=str(path)))
    assert ob.counters.corrupt_set_aside == 1
    got = {r.id: (r.msg_id, r.payload) for r in ob.pending(100_000)}
    assert got and all(rows[i] == v for i, v in got.items())   # ids, message ids and payloads kept
    assert len(got) >= len(rows) // 2, (len(got), len(rows))   # rows on both sides of the damage
    assert max(got) > max(rows) * 3 // 4 and min(got) == min(rows)
    assert ob.counters.salvaged_rows == len(got)
    assert ob.next_seq("cam") == 601   # the sequence table survived
    assert _put(ob, "cam", 1).reason == "stored" and ob.pending(100_000)[-1].id > max(rows)   # ids never repeat
    ob.close()
    assert sqlite3.connect(str(path)).execute("PRAGMA quick_check").fetchone()[0] == "ok"


def test_truncated_file_is_set_aside_and_what_remains_is_requeued(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    rows = _filled(path)
    os.truncate(path, path.stat().st_size // 2)
    ob = Outbox(OutboxConfig(path=str(path)))
    assert ob.counters.corrupt_set_aside == 1
    got = {r.id: (r.msg_id, r.payload) for r in ob.pending(100_000)}
    assert all(rows[i] == v for i, v in got.items())
    assert ob.health().writable and _put(ob, "cam", 1)
    ob.close()


def test_damage_found_by_a_later_put_sets_the_file_aside_instead_of_raising(tmp_path):
    """quick_check passed at open; the damage appears while running (a failing SD card). drop_oldest reads the
    oldest pages, past SQLite's page cache."""
    path = tmp_path / "outbox.sqlite3"
    rows = _filled(path, n=3000, size=1000)   # ~4 MB: more than SQLite's 2 MB page cache
    ob = Outbox(OutboxConfig(path=str(path), max_rows=3000, full_policy="drop_oldest"))
    assert ob.counters.corrupt_set_aside == 0
    with open(path, "r+b") as f:
        f.seek(4096 * 3)
        f.write(os.urandom(40 * 4096))
    result = _put(ob, "cam", 1)
    assert result.reason == "stored"   # into the fresh file
    assert ob.counters.corrupt_set_aside == 1 and len(_set_aside_files(path)) >= 1
    got = {r.id: r.payload for r in ob.pending(100_000)}
    assert len(got) > len(rows) // 2 and all(rows[i][1] == p for i, p in got.items() if i in rows)
    ob.close()


# ---------------------------------------------------------------- the TTL clock

def test_a_wall_clock_step_expires_nothing_and_age_counts_across_restarts(tmp_path):
    wall, mono = FakeClock(), FakeClock(50.0)
    cfg = OutboxConfig(path=str(tmp_path / "o.sqlite3"), ttl_s=60.0)
    ob = Outbox(cfg, clock=wall, monotonic=mono)
    _put(ob, "c", 0)
    wall.t += 365 * 86400   # NTP steps a box without a clock battery forward by a year
    assert len(ob.pending(10)) == 1 and ob.counters.expired == 0
    wall.t -= 2 * 365 * 86400   # and back
    mono.t += 40
    assert len(ob.pending(10)) == 1
    ob.close()
    # reboot: monotonic time starts again near 0, the wall clock says anything; 40 s of age were kept
    mono2 = FakeClock(3.0)
    ob = Outbox(cfg, clock=FakeClock(5.0), monotonic=mono2)
    mono2.t += 15
    assert len(ob.pending(10)) == 1 and ob.health().oldest_undelivered_age_s == pytest.approx(55.0)
    mono2.t += 6
    assert ob.pending(10) == [] and ob.counters.expired == 1
    ob.close()


def test_rows_from_a_file_without_the_outbox_clock_age_from_their_wall_clock_once(tmp_path):
    path = tmp_path / "o.sqlite3"
    db = sqlite3.connect(str(path))
    db.executescript("""
        CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, camera TEXT NOT NULL, topic TEXT NOT NULL,
                             msg_id TEXT NOT NULL, payload BLOB NOT NULL, created_at REAL NOT NULL);
        CREATE INDEX outbox_created_at ON outbox (created_at);
        CREATE TABLE camera_seq (camera TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
    """)
    db.execute("INSERT INTO outbox (camera, topic, msg_id, payload, created_at) VALUES ('c','t','old',x'01',?)",
               (1000.0 - 50,))
    db.execute("INSERT INTO outbox (camera, topic, msg_id, payload, created_at) VALUES ('c','t','new',x'01',?)",
               (1000.0 - 5,))
    db.commit()
    db.close()
    mono = FakeClock(0.0)
    ob = Outbox(OutboxConfig(path=str(path), ttl_s=60.0), clock=FakeClock(1000.0), monotonic=mono)
    mono.t += 20
    assert [r.msg_id for r in ob.pending(10)] == ["new"] and ob.counters.expired == 1


# ---------------------------------------------------------------- rows in flight

def test_rows_in_flight_are_not_removed_by_caps_or_ttl(tmp_path):
    mono = FakeClock(0.0)
    ob = Outbox(OutboxConfig(path=str(tmp_path / "o.sqlite3"), max_rows=4, ttl_s=60.0), monotonic=mono)
    for i in range(4):
        _put(ob, "c", i)
    inflight = ob.pending(2)   # the sender hands these to paho
    assert [r.msg_id for r in inflight] == ["c:0", "c:1"]
    assert _put(ob, "c", 4)   # full: drops the oldest row that is not in flight
    assert [r.msg_id for r in ob.pending(10, exclude_ids={r.id for r in inflight})] == ["c:3", "c:4"]
    assert ob.counters.dropped_oldest == 1
    mono.t += 61
    # everything is past the TTL, but the rows in flight arrive: not expired, not counted as lost
    left = ob.pending(10, exclude_ids={r.id for r in inflight})
    assert left == [] and ob.counters.expired == 2 and ob.depth()[0] == 2
    ob.delete_many([r.id for r in inflight])   # their PUBACKs
    assert ob.depth() == (0, 0) and ob.counters.dropped_oldest + ob.counters.expired == 3


# ---------------------------------------------------------------- dead letters

def test_dead_letters_keep_reason_and_failures_and_replay_restores_them(tmp_path):
    cfg = OutboxConfig(path=str(tmp_path / "o.sqlite3"), dead_letter_after_failures=3)
    ob = Outbox(cfg)
    ob.set_admission(lambda topic, payload: "too large for the broker" if len(payload) > 100 else None)
    big = _put(ob, "c", 0, size=500)
    assert big and big.reason == "dead_letter" and ob.depth() == (0, 0) and ob.dead_letter_count() == 1
    for i in range(1, 4):
        assert _put(ob, "c", i).reason == "stored"
    first = ob.pending(1)[0]
    assert [ob.record_failure(first.id, "PUBACK Not authorized (0x87)") for _ in range(3)] == \
        ["retry", "retry", "dead_letter"]
    assert ob.record_failure(first.id, "again") == "gone"
    assert ob.depth() == (2, 20) and ob.counters.dead_lettered == 2
    health = ob.health()
    assert health.dead_letters == 2 and health.failing_rows == 0
    dead = ob.dead_letters()
    assert [(d.msg_id, d.failures, d.reason) for d in dead] == [
        ("c:0", 0, "too large for the broker"), ("c:1", 3, "PUBACK Not authorized (0x87)")]
    # replay from another process (the CLI) while the daemon's outbox is open: the daemon sees the rows
    other = Outbox(cfg)
    assert other.replay_dead_letters([dead[1].id]) == 1
    other.close()
    assert ob.depth() == (3, 30) and ob.dead_letter_count() == 1
    rows = ob.pending(10)
    assert [(r.id, r.msg_id, r.failures) for r in rows][0] == (dead[1].id, "c:1", 0)   # its old place, first
    ob.set_admission(None)
    assert ob.replay_dead_letters() == 1 and ob.dead_letters() == [] and ob.counters.replayed == 1
    assert [r.msg_id for r in ob.pending(10)] == ["c:0", "c:1", "c:2", "c:3"]
    assert _put(ob, "c", 9).reason == "stored" and ob.pending(10)[-1].id > max(d.id for d in dead)
    ob.close()
