"""The outbox file deleted or replaced while the daemon has it open (issue 28 item 3), on real SQLite files:
`rm -rf` of its directory, another file renamed over it, its -wal deleted, and a directory that cannot be made
again. Every reading stays, and is delivered once a broker appears; when it cannot stay, health and the stop
say so."""
from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from broker import Recorder, wait_until
from daemon.config import OutboxConfig
from daemon.publish.mqtt_client import Publisher
from daemon.publish.outbox import Outbox
from publish_support import DEVICE, FakeClock, check_delivery, mqtt_cfg, put_result


def _ids(ob: Outbox) -> list[str]:
    return [r.msg_id for r in ob.pending(100_000)]


def test_directory_removed_while_open_keeps_every_reading_and_delivers_them_once_a_broker_appears(
        tmp_path, make_broker, caplog):
    state = tmp_path / "var"
    path = state / "outbox.sqlite3"
    ob = Outbox(OutboxConfig(path=str(path)))
    broker = make_broker(start=False)   # not running yet: every reading waits in the outbox
    port = broker.port
    pub = Publisher(mqtt_cfg(port, reconnect_min_s=0.05, reconnect_max_s=0.2), DEVICE, ob)
    pub.start()
    before = [put_result(ob, cam) for cam in ("gate", "belt") for _ in range(20)]
    ob.record_failure(ob.pending(1)[0].id, "refused")   # a failure count to carry over
    assert ob.dead_letter(ob.pending(2)[1].id, "too large for the broker")   # and a dead letter
    with caplog.at_level(logging.ERROR, logger="daemon.publish.outbox"):
        shutil.rmtree(state)                           # the operator's "clean up"
        after = [put_result(ob, cam) for cam in ("gate", "belt") for _ in range(5)]
    assert all(stored for _, stored in before + after)
    assert path.exists(), "the first put after the removal writes the file anew"
    assert ob.counters.recreated == 1
    [logged] = [r.getMessage() for r in caplog.records if "written anew" in r.getMessage()]
    assert "was removed" in logged and "the 39 results and 1 dead letters" in logged, logged
    assert ob.health().writable
    pub.stop(0.0)
    assert ob.close() is True

    ob = Outbox(OutboxConfig(path=str(path)))         # the restart
    waiting = _ids(ob)
    assert len(waiting) == 49 and ob.dead_letter_count() == 1
    assert {m for m, _ in before + after} - set(waiting) == {ob.dead_letters()[0].msg_id}
    assert ob.next_seq("gate") == 26                   # sequence numbers came along
    assert max(r.failures for r in ob.pending(100)) == 1
    broker.start()                                     # the broker appears
    rec = Recorder(port, topic="ocr/#", client_id="rec-gone")
    rec.wait_subscribed()
    pub = Publisher(mqtt_cfg(port), DEVICE, ob)
    pub.start()
    try:
        assert wait_until(lambda: ob.depth()[0] == 0, 20), ob.depth()
        assert wait_until(lambda: len(check_delivery(rec.results()).unique) == 49, 10)
        assert set(check_delivery(rec.results()).unique) == set(waiting)
    finally:
        pub.stop(1.0)
        rec.close()
        ob.close()


def test_another_file_renamed_over_it_is_moved_aside_and_the_rows_stay(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    ob = Outbox(OutboxConfig(path=str(path)))
    mine = [put_result(ob, "gate")[0] for _ in range(10)]
    other_path = tmp_path / "other.sqlite3"
    other = Outbox(OutboxConfig(path=str(other_path)))
    theirs = [put_result(other, "dock")[0] for _ in range(3)]
    assert other.close()
    os.replace(other_path, path)                       # a script "restores" a file over the live one
    health = ob.health()                               # noticed by the next look: written anew at once
    assert health.writable and ob.counters.recreated == 1 and "moved to" in health.last_error
    [aside] = [p for p in tmp_path.iterdir() if ".replaced-" in p.name and not p.name.endswith(("-wal", "-shm"))]
    assert put_result(ob, "gate")[1] and ob.health().last_error == ""   # a note until the next good write
    assert ob.close()
    ob = Outbox(OutboxConfig(path=str(path)))
    assert _ids(ob)[:10] == mine and len(_ids(ob)) == 11
    ob.close()
    moved = Outbox(OutboxConfig(path=str(aside)))      # the other file is kept as it was
    assert _ids(moved) == theirs
    moved.close()


def test_deleted_wal_brings_its_commits_back_before_the_next_start(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    ob = Outbox(OutboxConfig(path=str(path)))
    ids = [put_result(ob, "gate")[0] for _ in range(30)]   # in the -wal only: nothing checkpointed yet
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    os.unlink(f"{path}-wal")
    health = ob.health()
    assert health.writable and ob.counters.recreated == 1 and "-wal was deleted" in health.last_error
    ids.append(put_result(ob, "gate")[0])
    assert ob.close()
    ob = Outbox(OutboxConfig(path=str(path)))
    assert _ids(ob) == ids
    ob.close()


def test_a_directory_that_cannot_be_made_again_is_unhealthy_and_the_stop_does_not_claim_the_rows(
        tmp_path, caplog):
    state = tmp_path / "var"
    path = state / "outbox.sqlite3"
    mono = FakeClock(100.0)
    ob = Outbox(OutboxConfig(path=str(path)), monotonic=mono)
    ids = [put_result(ob, "gate")[0] for _ in range(8)]
    shutil.rmtree(state)
    state.write_text("not a directory")                # mkdir fails, even for root
    with caplog.at_level(logging.ERROR, logger="daemon.publish.outbox"):
        health = ob.health()
        assert not health.writable and health.rows == 8
        assert "is gone" in health.last_error and "lost when it stops" in health.last_error
        msg_id, stored = put_result(ob, "gate")
        assert not stored                              # a folder file stays in its folder
        assert ob.counters.put_failed_io_error == 1 and ob.counters.io_errors == 0   # refused, not (yet) lost
        assert [r.id for r in ob.pending(100)] and len(_ids(ob)) == 8   # delivery goes on from the open copy
        ob.delete_many([ob.pending(1)[0].id])          # an acknowledgement does not make it healthy
        assert not ob.health().writable
    assert len([r for r in caplog.records if "cannot be written anew" in r.getMessage()]) == 1   # once
    state.unlink()                                     # the way is free again: the next try (5 s on) succeeds
    assert not ob.health().writable
    mono.t += 6.0
    assert ob.health().writable and ob.counters.recreated == 1
    assert _ids(ob) == ids[1:]
    shutil.rmtree(state)
    state.write_text("not a directory")
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="daemon.publish.outbox"):
        assert ob.close() is False
    assert any("7 results and 0 dead letters are NOT kept" in r.getMessage() for r in caplog.records)


def test_closing_one_outbox_leaves_another_on_the_same_file_its_locks(tmp_path):
    """A reload opens the new outbox before it closes the old one. The watch holds no descriptor of its own:
    closing one would drop every POSIX lock of the process on the file, and the next `ocr-daemon outbox`
    command to close would then take the -wal from under the open outbox."""
    path = tmp_path / "outbox.sqlite3"
    old = Outbox(OutboxConfig(path=str(path)))
    new = Outbox(OutboxConfig(path=str(path)))
    assert old.close()
    assert put_result(new, "gate")[1]
    cli = subprocess.run([sys.executable, "-c", f"import sqlite3; db = sqlite3.connect({str(path)!r}); "
                                                 f"db.execute('SELECT COUNT(*) FROM outbox').fetchall(); db.close()"],
                         capture_output=True, text=True, timeout=30)
    assert cli.returncode == 0, cli.stderr
    assert Path(f"{path}-wal").exists()
    assert new.health().last_error == "" and new.counters.recreated == 0
    assert new.close()
