"""The outbox with several sinks: each sink owes its own rows, fails and dead-letters on its own, and keeps what it
owes across a reopen, a SIGKILL, a migration from a version-1 file and a corrupt file set aside (real SQLite)."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from daemon.config import OutboxConfig
from daemon.publish.outbox import Outbox

ROOT = Path(__file__).resolve().parent.parent
SINKS = ("mqtt", "opcua", "sparkplug")


def _open(path, sinks=SINKS, **kw) -> Outbox:
    return Outbox(OutboxConfig(path=str(path), **kw), sinks=sinks)


def _put(ob: Outbox, i: int, camera: str = "cam", size: int = 10):
    return ob.put(camera, f"ocr/dev/{camera}/text", f"{camera}:{i}", bytes([65 + i % 26]) * size)


def _ids(q) -> list[int]:
    return [r.id for r in q.pending(100_000)]


def test_a_row_leaves_only_when_every_sink_delivered_it(tmp_path):
    ob = _open(tmp_path / "o.sqlite3")
    for i in range(5):
        assert _put(ob, i)
    mqtt, opcua, spb = (ob.for_sink(n) for n in SINKS)
    mqtt.delete_many(_ids(mqtt)[:3])
    assert len(_ids(mqtt)) == 2 and len(_ids(opcua)) == 5 and len(_ids(spb)) == 5
    assert mqtt.depth()[0] == 2 and opcua.depth() == (5, 50) and ob.depth() == (5, 50)
    opcua.delete_many(_ids(opcua))
    spb.delete_many(_ids(spb)[:1])   # row 1 is now delivered everywhere
    assert ob.depth() == (4, 40) and spb.depth()[0] == 4 and opcua.depth()[0] == 0
    ob.close()


def test_a_dead_sink_keeps_its_backlog_while_the_others_flow_and_across_reopen(tmp_path):
    path = tmp_path / "o.sqlite3"
    ob = _open(path)
    for i in range(100):
        _put(ob, i)
        for name in ("mqtt", "sparkplug"):   # opcua is "down": never delivers
            q = ob.for_sink(name)
            q.delete_many(_ids(q))
    assert ob.for_sink("opcua").depth()[0] == 100 and ob.for_sink("mqtt").depth()[0] == 0
    ob.close()
    ob = _open(path)
    assert [r.msg_id for r in ob.for_sink("opcua").pending(1000)] == [f"cam:{i}" for i in range(100)]
    assert ob.for_sink("mqtt").pending(1000) == []
    ob.close()


def test_failures_and_dead_letters_are_per_sink_and_a_replay_gives_the_row_back_to_that_sink_only(tmp_path):
    ob = _open(tmp_path / "o.sqlite3", dead_letter_after_failures=2)
    _put(ob, 1)
    mqtt, opcua = ob.for_sink("mqtt"), ob.for_sink("opcua")
    [row] = mqtt.pending(10)
    assert mqtt.record_failure(row.id, "PUBACK refused") == "retry"
    assert mqtt.health().failing_rows == 1 and opcua.health().failing_rows == 0
    assert opcua.pending(10)[0].failures == 0 and mqtt.pending(10)[0].failures == 1
    assert mqtt.record_failure(row.id, "PUBACK refused") == "dead_letter"
    assert mqtt.pending(10) == [] and [r.id for r in opcua.pending(10)] == [row.id]
    [dead] = ob.dead_letters()
    assert (dead.id, dead.sink, dead.failures) == (row.id, "mqtt", 2)
    assert mqtt.dead_letter_count() == 1 and opcua.dead_letter_count() == 0
    opcua.delete_many([row.id])
    ob.for_sink("sparkplug").delete_many([row.id])
    assert ob.depth() == (0, 0)   # delivered by the sinks that still owed it
    assert ob.replay_dead_letters() == 1
    assert [r.id for r in mqtt.pending(10)] == [row.id] and opcua.pending(10) == []
    ob.close()


def test_a_sink_that_refuses_a_row_at_put_dead_letters_it_and_the_others_still_get_it(tmp_path):
    ob = _open(tmp_path / "o.sqlite3")
    ob.for_sink("mqtt").set_admission(lambda topic, payload: "too large" if len(payload) > 50 else None)
    assert _put(ob, 1, size=100).reason == "stored"
    assert ob.for_sink("mqtt").pending(10) == [] and len(ob.for_sink("opcua").pending(10)) == 1
    assert [(d.sink, d.reason) for d in ob.dead_letters()] == [("mqtt", "too large")]
    for name in SINKS[1:]:
        ob.for_sink(name).set_admission(lambda topic, payload: "no")
    assert _put(ob, 2, size=100).reason == "dead_letter"   # nobody can take it: kept as three dead letters
    assert sorted(d.sink for d in ob.dead_letters() if d.msg_id == "cam:2") == sorted(SINKS)
    ob.close()


def test_caps_and_ttl_count_rows_not_deliveries_and_drop_them_for_every_sink(tmp_path):
    ob = _open(tmp_path / "o.sqlite3", max_rows=3, full_policy="drop_oldest")
    for i in range(5):
        _put(ob, i)
    assert ob.depth()[0] == 3 and ob.counters.dropped_oldest == 2
    for name in SINKS:
        assert [r.msg_id for r in ob.for_sink(name).pending(10)] == ["cam:2", "cam:3", "cam:4"]
    ob.close()


def test_a_new_sink_owes_rows_stored_from_then_on_and_a_removed_one_is_forgotten(tmp_path):
    path = tmp_path / "o.sqlite3"
    ob = _open(path, sinks=("mqtt",))
    _put(ob, 1)
    ob.close()
    ob = _open(path, sinks=("mqtt", "opcua"))
    _put(ob, 2)
    assert [r.msg_id for r in ob.for_sink("opcua").pending(10)] == ["cam:2"]
    assert len(ob.for_sink("mqtt").pending(10)) == 2
    ob.for_sink("opcua").delete_many([r.id for r in ob.for_sink("opcua").pending(10)])
    ob.close()
    ob = Outbox(OutboxConfig(path=str(path)))   # sinks=None (the CLI): keeps the file's sinks
    assert ob.sinks == ("mqtt", "opcua")
    ob.close()
    ob = _open(path, sinks=("opcua",))   # mqtt dropped: its two rows are owed by nobody and leave
    assert ob.depth() == (0, 0) and ob.sinks == ("opcua",)
    ob.close()


_V1_SCHEMA = """
CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, camera TEXT NOT NULL, topic TEXT NOT NULL,
    msg_id TEXT NOT NULL, payload BLOB NOT NULL, created_at REAL NOT NULL, born_s REAL,
    failures INTEGER NOT NULL DEFAULT 0);
CREATE TABLE camera_seq (camera TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, camera TEXT NOT NULL, topic TEXT NOT NULL, msg_id TEXT NOT NULL,
    payload BLOB NOT NULL, created_at REAL NOT NULL, failures INTEGER NOT NULL, reason TEXT NOT NULL,
    dead_at REAL NOT NULL);
CREATE TABLE outbox_clock (id INTEGER PRIMARY KEY CHECK (id = 0), elapsed_s REAL NOT NULL);
"""


def test_a_version_1_file_is_migrated_without_losing_a_row_a_failure_count_or_a_dead_letter(tmp_path):
    path = tmp_path / "o.sqlite3"
    db = sqlite3.connect(str(path))
    db.executescript(_V1_SCHEMA)
    now = time.time()
    for i in range(1, 201):
        db.execute("INSERT INTO outbox (camera, topic, msg_id, payload, created_at, born_s, failures) "
                   "VALUES ('cam', 't', ?, ?, ?, 0, ?)", (f"cam:{i}", b"x" * i, now, 1 if i == 7 else 0))
    db.execute("INSERT INTO dead_letters VALUES (500, 'cam', 't', 'cam:500', x'00', ?, 5, 'refused', ?)", (now, now))
    db.execute("INSERT INTO camera_seq VALUES ('cam', 500)")
    db.commit()
    db.close()

    ob = _open(path, sinks=("mqtt", "opcua"))
    mqtt = ob.for_sink("mqtt")
    rows = mqtt.pending(1000)
    assert [r.msg_id for r in rows] == [f"cam:{i}" for i in range(1, 201)]
    assert [r.payload for r in rows] == [b"x" * i for i in range(1, 201)]
    assert [r.id for r in rows if r.failures] == [7] and mqtt.health().failing_rows == 1
    assert ob.for_sink("opcua").pending(1000) == []   # configured after these rows were stored
    [dead] = ob.dead_letters()
    assert (dead.id, dead.sink, dead.failures, dead.reason) == (500, "mqtt", 5, "refused")
    assert ob.next_seq("cam") == 501
    _put(ob, 600)
    assert ob.pending(1000, sink="mqtt")[-1].id > 200   # ids continue after the old rows
    ob.close()
    db = sqlite3.connect(str(path))
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


_WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from daemon.config import OutboxConfig
    from daemon.publish.outbox import Outbox
    ob = Outbox(OutboxConfig(path={path!r}), sinks=("mqtt", "opcua"))
    mqtt = ob.for_sink("mqtt")
    i = 0
    while True:
        if ob.put("cam", "t", "m%d" % i, b"x" * 200):
            print("put m%d" % i, flush=True)
        if i % 3 == 0:   # mqtt delivers now and then; opcua never
            rows = mqtt.pending(50)
            for r in rows:   # said before the delete: a kill between the two must not look like a loss
                print("mqtt " + r.msg_id, flush=True)
            mqtt.delete_many([r.id for r in rows])
        i += 1
""")


def test_every_sink_keeps_what_it_owes_across_a_sigkill_of_the_writer(tmp_path):
    path = str(tmp_path / "o.sqlite3")
    proc = subprocess.Popen([sys.executable, "-c", _WRITER.format(root=str(ROOT), path=path)],
                            stdout=subprocess.PIPE, text=True)
    put, mqtt_done = [], set()
    deadline = time.monotonic() + 30
    while len(put) < 300 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        kind, msg = line.split()
        (put.append(msg) if kind == "put" else mqtt_done.add(msg))
    proc.kill()   # SIGKILL, mid-write
    proc.wait()
    mqtt_done.update(line.split()[1] for line in proc.stdout.read().splitlines() if line.startswith("mqtt "))
    assert len(put) >= 300, "the writer did not get going"
    ob = _open(path, sinks=("mqtt", "opcua"))
    opcua = {r.msg_id for r in ob.for_sink("opcua").pending(100_000)}
    mqtt = {r.msg_id for r in ob.for_sink("mqtt").pending(100_000)}
    assert [m for m in put if m not in opcua] == []                      # opcua delivered nothing: it has all
    assert [m for m in put if m not in mqtt and m not in mqtt_done] == []   # mqtt: all it did not deliver
    assert not (mqtt & mqtt_done)
    ob.close()


def test_a_corrupt_file_set_aside_keeps_each_sinks_rows(tmp_path):
    path = tmp_path / "o.sqlite3"
    ob = _open(path, sinks=("mqtt", "opcua"))
    for i in range(10):
        _put(ob, i)
    mqtt = ob.for_sink("mqtt")
    mqtt.delete_many(_ids(mqtt)[:4])
    with ob._lock:   # what a corrupt file found later leads to: set aside, the readable rows salvaged
        ob._set_aside_locked("test")
    assert ob.counters.corrupt_set_aside == 1
    assert len(ob.for_sink("opcua").pending(100)) == 10 and len(ob.for_sink("mqtt").pending(100)) == 6
    ob.close()
