"""The SQLite outbox on its own: order, caps and policies, TTL, sequence numbers, threads, and SIGKILL."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from daemon.config import OutboxConfig
from daemon.publish.outbox import Outbox
from publish_support import FakeClock

ROOT = Path(__file__).resolve().parent.parent



def _open(tmp_path, **kw) -> Outbox:
    return Outbox(OutboxConfig(path=str(tmp_path / "ob" / "outbox.sqlite3"), **kw))


def _put(ob: Outbox, camera: str, i: int, size: int = 10) -> bool:
    return bool(ob.put(camera, f"ocr/dev/{camera}/text", f"{camera}:{i}", bytes([65 + i % 26]) * size))


def test_rows_come_back_oldest_first_and_leave_only_when_deleted(tmp_path):
    ob = _open(tmp_path)
    for i in range(5):
        assert _put(ob, "a" if i % 2 else "b", i)
    assert ob.depth() == (5, 50)
    rows = ob.pending(10)
    assert [r.msg_id for r in rows] == ["b:0", "a:1", "b:2", "a:3", "b:4"]
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    assert rows[0].topic == "ocr/dev/b/text" and rows[0].payload == b"A" * 10
    assert [r.msg_id for r in ob.pending(2, exclude_ids={rows[0].id})] == ["a:1", "b:2"]
    assert [r.msg_id for r in ob.pending(10, exclude_cameras={"b"})] == ["a:1", "a:3"]
    ob.delete(rows[1].id)
    ob.delete(rows[1].id)   # already gone: no error, no double count
    ob.delete_many([rows[0].id, rows[4].id])
    assert ob.depth() == (2, 20)
    assert [r.msg_id for r in ob.pending(10)] == ["b:2", "a:3"]
    ob.close()


def test_rows_and_sequence_numbers_survive_reopen(tmp_path):
    ob = _open(tmp_path)
    assert [ob.next_seq("cam1") for _ in range(3)] == [1, 2, 3]
    assert ob.next_seq("cam2") == 1
    _put(ob, "cam1", 1)
    ob.close()
    ob = _open(tmp_path)
    assert ob.next_seq("cam1") == 4 and ob.next_seq("cam2") == 2
    assert ob.depth() == (1, 10)
    # ids never repeat, even after the newest row is deleted (AUTOINCREMENT): "oldest first" stays "lowest id"
    first = ob.pending(1)[0].id
    ob.delete(first)
    _put(ob, "cam1", 2)
    assert ob.pending(1)[0].id > first
    ob.close()


def test_row_cap_drop_oldest_keeps_newest_and_counts(tmp_path):
    ob = _open(tmp_path, max_rows=5, full_policy="drop_oldest")
    for i in range(8):
        assert _put(ob, "c", i)
    assert ob.depth() == (5, 50)
    assert [r.msg_id for r in ob.pending(10)] == [f"c:{i}" for i in range(3, 8)]
    assert ob.counters.dropped_oldest == 3 and ob.counters.refused_new == 0


def test_row_cap_refuse_new_keeps_oldest_and_counts(tmp_path):
    ob = _open(tmp_path, max_rows=5, full_policy="refuse_new")
    results = [_put(ob, "c", i) for i in range(8)]
    assert results == [True] * 5 + [False] * 3
    assert [r.msg_id for r in ob.pending(10)] == [f"c:{i}" for i in range(5)]
    assert ob.counters.put_refused_full == 3 and ob.counters.dropped_oldest == 0   # losses only if never stored


def test_byte_cap_drops_as_many_oldest_rows_as_needed(tmp_path):
    ob = _open(tmp_path, max_bytes=5000, full_policy="drop_oldest")
    for i in range(4):
        assert _put(ob, "c", i, size=1000)
    assert _put(ob, "c", 4, size=2500)   # 4000 + 2500 > 5000: the two oldest go
    assert ob.depth() == (3, 4500)
    assert [r.msg_id for r in ob.pending(10)] == ["c:2", "c:3", "c:4"]
    assert ob.counters.dropped_oldest == 2
    assert not _put(ob, "c", 5, size=6000)   # can never fit: refused under either policy
    assert ob.counters.refused_new == 1 and ob.depth() == (3, 4500)


def test_byte_cap_refuse_new(tmp_path):
    ob = _open(tmp_path, max_bytes=5000, full_policy="refuse_new")
    assert all(_put(ob, "c", i, size=1000) for i in range(5))
    assert not _put(ob, "c", 5, size=1)
    assert ob.counters.put_refused_full == 1 and ob.depth() == (5, 5000)


def test_ttl_expired_rows_are_dropped_and_counted(tmp_path):
    clock = FakeClock()   # the TTL runs on the monotonic outbox clock
    ob = Outbox(OutboxConfig(path=str(tmp_path / "o.sqlite3"), ttl_s=60.0), monotonic=clock)
    _put(ob, "c", 0)
    clock.t += 30
    _put(ob, "c", 1)
    clock.t += 31   # row 0 is 61 s old, row 1 31 s
    assert [r.msg_id for r in ob.pending(10)] == ["c:1"]
    assert ob.counters.expired == 1 and ob.depth() == (1, 10)
    clock.t += 100
    assert ob.pending(10) == [] and ob.counters.expired == 2 and ob.depth() == (0, 0)


def test_ttl_zero_keeps_rows_forever(tmp_path):
    clock = FakeClock()
    ob = Outbox(OutboxConfig(path=str(tmp_path / "o.sqlite3"), ttl_s=0.0), monotonic=clock)
    _put(ob, "c", 0)
    clock.t += 10 * 365 * 86400
    assert len(ob.pending(10)) == 1 and ob.counters.expired == 0


def test_concurrent_writer_and_sender_lose_nothing(tmp_path):
    ob = _open(tmp_path)
    n = 400
    done = threading.Event()
    seen: list[str] = []

    def writer():
        for i in range(n):
            assert _put(ob, f"cam{i % 3}", i)
        done.set()

    def sender():
        while True:
            rows = ob.pending(7)
            if not rows and done.is_set() and not ob.pending(1):
                return
            ob.delete_many([r.id for r in rows[::2]])
            for r in rows[1::2]:
                ob.delete(r.id)
            seen.extend(r.msg_id for r in rows)

    threads = [threading.Thread(target=writer), threading.Thread(target=sender)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(seen) == sorted(f"cam{i % 3}:{i}" for i in range(n))
    assert ob.depth() == (0, 0)


_WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from daemon.config import OutboxConfig
    from daemon.publish.outbox import Outbox
    ob = Outbox(OutboxConfig(path={path!r}))
    i = 0
    while True:
        seq = ob.next_seq("cam")
        msg_id = f"dev:cam:{{seq}}"
        if ob.put("cam", "ocr/dev/cam/text", msg_id, (msg_id + "|").encode() * 20):
            print(msg_id, flush=True)   # reported only once put() returned: it must be on disk
        if i % 7 == 0:   # the sender side deletes some rows meanwhile, as the MQTT thread would
            rows = ob.pending(3)
            if rows:
                print("deleted", rows[0].msg_id, flush=True)   # said before it happens: a kill may fall between
                ob.delete(rows[0].id)
        i += 1
""")


def test_rows_reported_as_put_survive_sigkill_of_the_writer(tmp_path):
    path = str(tmp_path / "outbox.sqlite3")
    proc = subprocess.Popen([sys.executable, "-c", _WRITER.format(root=str(ROOT), path=path)],
                            stdout=subprocess.PIPE, text=True)
    put, deleted = [], set()
    deadline = time.monotonic() + 30
    while len(put) < 300 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("deleted "):
            deleted.add(line.split()[1])
        else:
            put.append(line.strip())
    proc.kill()   # SIGKILL, mid-write
    proc.wait()
    # The writer went on after we stopped reading: its later deletions may remove rows counted above.
    deleted.update(line.split()[1] for line in proc.stdout.read().splitlines() if line.startswith("deleted "))
    assert len(put) >= 300, "the writer did not get going"

    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    ob = Outbox(OutboxConfig(path=path))
    stored = {r.msg_id for r in ob.pending(100_000)}
    missing = [m for m in put if m not in stored and m not in deleted]
    assert missing == []
    # the sequence continues past everything the killed writer handed out
    last = max(int(m.rsplit(":", 1)[1]) for m in put)
    assert ob.next_seq("cam") > last
    assert ob.depth()[0] == len(stored)


@pytest.mark.parametrize("policy", ["drop_oldest", "refuse_new"])
def test_caps_hold_across_reopen(tmp_path, policy):
    ob = _open(tmp_path, max_rows=3, full_policy=policy)
    for i in range(3):
        _put(ob, "c", i)
    ob.close()
    ob = _open(tmp_path, max_rows=3, full_policy=policy)
    ok = _put(ob, "c", 3)
    assert ob.depth()[0] == 3
    assert ok == (policy == "drop_oldest")


def test_a_full_spell_is_logged_once_when_it_starts_and_once_when_it_ends(tmp_path, caplog):
    """Found from outside: the caps dropped or refused readings without a line in the log."""
    for policy, word in (("refuse_new", "refused"), ("drop_oldest", "dropped")):
        caplog.clear()
        ob = _open(tmp_path / policy, max_rows=3, full_policy=policy)
        for i in range(7):
            _put(ob, "c", i)
        full = [r.getMessage() for r in caplog.records if "outbox: full" in r.getMessage()]
        assert len(full) == 1 and "max_rows=3" in full[0] and word in full[0]
        for row in ob.pending(10):
            ob.delete(row.id)
        _put(ob, "c", 99)
        room = [r.getMessage() for r in caplog.records if "room again" in r.getMessage()]
        assert room == [f"outbox: room again; 4 reading(s) were {word} while it was full"]
        ob.close()
