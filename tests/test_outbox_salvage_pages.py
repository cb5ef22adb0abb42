"""Salvage from a damaged outbox's pages (issue 28 item 7), on real SQLite files damaged the way disks and
people damage them: the first page zeroed, interior b-tree pages zeroed, the file truncated, garbage in the
middle, rows only in the -wal, payloads on overflow pages. Every row whose page is intact comes back, and
nothing comes back that was not stored (deleted rows, garbage)."""
from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daemon.config import OutboxConfig
from daemon.publish.outbox import Outbox
from daemon.publish.sqlite_pages import decode_record, varint
from publish_support import put_result

ROOT = Path(__file__).resolve().parent.parent
PAGE = 4096   # SQLite's default page size, which the outbox uses


def _stored(path: Path, n: int, text_len: int = 300, dead: int = 0) -> dict[str, bytes]:
    """An outbox of n real result messages (and `dead` of them dead-lettered), closed (checkpointed); their
    payloads by msg_id."""
    ob = Outbox(OutboxConfig(path=str(path)))
    for i in range(n):
        put_result(ob, ("gate", "belt")[i % 2], text=f"{i:06d}-" + "W" * text_len)
    rows = {r.msg_id: r.payload for r in ob.pending(100_000)}
    for r in ob.pending(dead):
        assert ob.dead_letter(r.id, "refused by the broker")
    ob.close()
    assert not Path(f"{path}-wal").exists()
    return rows


def _root_pages(path: Path) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        return {name: int(root) for name, root in db.execute("SELECT name, rootpage FROM sqlite_schema")
                if root}
    finally:
        db.close()


def _intact(before: bytes, after: bytes, payloads: dict[str, bytes]) -> set[str]:
    """Rows whose whole page (the one holding their payload) is byte-for-byte what it was."""
    keep = set()
    for msg_id, payload in payloads.items():
        off = before.find(payload)
        assert off >= 0, "payload not in one piece in the file (overflow?)"
        start = off // PAGE * PAGE
        if after[start:start + PAGE] == before[start:start + PAGE] and off + len(payload) <= start + PAGE:
            keep.add(msg_id)
    return keep


def _salvaged(path: Path) -> tuple[Outbox, dict[str, bytes]]:
    ob = Outbox(OutboxConfig(path=str(path)))
    assert ob.counters.corrupt_set_aside == 1
    return ob, {r.msg_id: r.payload for r in ob.pending(100_000)}


def _damage(path: Path, edit) -> tuple[bytes, bytes]:
    before = path.read_bytes()
    after = bytearray(before)
    edit(after)
    path.write_bytes(bytes(after))
    return before, bytes(after)


def _check(path: Path, payloads: dict[str, bytes], before: bytes, after: bytes) -> dict[str, bytes]:
    ob, got = _salvaged(path)
    try:
        intact = _intact(before, after, payloads)
        assert intact <= set(got), f"{len(intact - set(got))} rows with intact pages were not recovered"
        assert all(payloads.get(m) == p for m, p in got.items()), "a recovered row was never stored as such"
        assert ob.counters.salvaged_rows == len(got) + ob.dead_letter_count()
    finally:
        ob.close()
    return got


def test_zeroed_first_page_every_row_and_dead_letter_comes_back(tmp_path):
    """SQL reads nothing here ("file is not a database"): every row used to be lost."""
    path = tmp_path / "outbox.sqlite3"
    payloads = _stored(path, 400, dead=5)

    def zero_first(b):
        b[:PAGE] = bytes(PAGE)
    before, after = _damage(path, zero_first)
    ob, got = _salvaged(path)
    try:
        assert len(got) == 395 and ob.dead_letter_count() == 5
        assert {d.msg_id for d in ob.dead_letters()} | set(got) == set(payloads)
        assert all(payloads[m] == p for m, p in got.items())
        assert ob.next_seq("gate") == 201   # numbering goes on from the recovered messages' own seq
    finally:
        ob.close()


def test_zeroed_interior_pages_the_leaves_below_them_come_back(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    payloads = _stored(path, 600)
    roots = _root_pages(path)
    assert len(path.read_bytes()) // PAGE > 60   # big enough that the outbox's root is an interior page

    def zero_roots(b):
        for name in ("outbox", "deliveries"):
            off = (roots[name] - 1) * PAGE
            assert b[off] in (0x05, 0x02), f"{name}'s root is not an interior page"
            b[off:off + PAGE] = bytes(PAGE)
    before, after = _damage(path, zero_roots)
    got = _check(path, payloads, before, after)
    assert len(got) == 600


def test_truncated_file_rows_on_the_pages_left_come_back(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    payloads = _stored(path, 600)

    def truncate(b):
        del b[len(b) * 6 // 10:]
    before, after = _damage(path, truncate)
    got = _check(path, payloads, before, after)
    assert len(got) >= 300


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_garbage_in_the_middle_and_in_the_header_only_the_hit_pages_are_lost(tmp_path, seed):
    path = tmp_path / "outbox.sqlite3"
    payloads = _stored(path, 600)
    size = len(path.read_bytes())
    rnd = random.Random(seed)

    def garble(b):
        b[:100] = rnd.randbytes(100)
        for _ in range(3):
            page = rnd.randrange(2, size // PAGE)
            start = (page - 1) * PAGE + rnd.randrange(0, PAGE // 2)
            n = rnd.randrange(64, PAGE)
            b[start:start + n] = rnd.randbytes(n)
        del b[size:]
    before, after = _damage(path, garble)
    got = _check(path, payloads, before, after)
    assert len(got) >= 560


def test_payloads_on_overflow_pages_come_back(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    ob = Outbox(OutboxConfig(path=str(path)))
    for i in range(12):
        put_result(ob, "gate", text=f"{i:03d}-" + "L" * 9000)   # about 9 kB a message: two overflow pages
    payloads = {r.msg_id: r.payload for r in ob.pending(100)}
    ob.close()
    with open(path, "r+b") as f:
        f.write(bytes(PAGE))
    ob, got = _salvaged(path)
    try:
        assert got == payloads
    finally:
        ob.close()


_WAL_WRITER = textwrap.dedent("""
    import os, sys
    sys.path[:0] = [{root!r}, {tests!r}]
    from daemon.config import OutboxConfig
    from daemon.publish.outbox import Outbox
    from publish_support import put_result
    ob = Outbox(OutboxConfig(path={path!r}))
    for i in range(60):
        put_result(ob, "gate", text=f"{{i:04d}}-" + "V" * 400)
    rows = ob.pending(1000)
    ob.delete_many([r.id for r in rows[10:30]])   # acknowledged: these must not come back
    print(",".join(r.msg_id for r in rows[:10] + rows[30:]))
    os._exit(0)   # killed: nothing checkpointed, every row is in the -wal only
""")


def _wal_only_outbox(path: Path) -> list[str]:
    """_WAL_WRITER's outbox at path (killed: every row in the -wal); the msg_ids of its 40 live rows."""
    out = subprocess.run([sys.executable, "-c", _WAL_WRITER.format(root=str(ROOT), tests=str(ROOT / "tests"),
                                                                   path=str(path))],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(",")


def test_rows_only_in_the_wal_come_back_and_the_newest_copy_of_a_page_wins(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    out = subprocess.run([sys.executable, "-c", _WAL_WRITER.format(root=str(ROOT), tests=str(ROOT / "tests"),
                                                                   path=str(path))],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    live = set(out.stdout.strip().split(","))
    wal = Path(f"{path}-wal")
    assert wal.stat().st_size > 20 * PAGE and path.stat().st_size <= 8 * PAGE
    # The schema (page 1 below its 100-byte header) zeroed in the main file and in every copy in the -wal:
    # SQL finds no table; the header's free-page list stays readable.
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(bytes(PAGE - 100))
    data = bytearray(wal.read_bytes())
    copies = 0
    for off in range(32, len(data) - 24 - PAGE + 1, 24 + PAGE):
        if int.from_bytes(data[off:off + 4], "big") == 1:
            data[off + 24 + 100:off + 24 + PAGE] = bytes(PAGE - 100)
            copies += 1
    assert copies
    wal.write_bytes(bytes(data))
    ob, got = _salvaged(path)
    try:
        assert set(got) == live   # all 40, and none of the 20 deleted in a later frame of the same pages
    finally:
        ob.close()


def test_record_decoding_rejects_bytes_that_are_not_exactly_one_record():
    assert varint(bytes([0x81, 0x00]), 0) == (128, 2)
    assert varint(bytes([0xFF] * 8 + [0x01]), 0) == ((1 << 64) - 255, 9)
    rec = bytes([4, 0x17, 0x01, 0x07]) + b"abcde" + bytes([42]) + bytes(8)   # text(5), int8, float
    assert decode_record(rec) == ("abcde", 42, 0.0)
    assert decode_record(rec[:-1]) is None          # short
    assert decode_record(rec + b"x") is None        # long
    assert decode_record(bytes([2, 10])) is None    # a reserved serial type
    assert decode_record(bytes([3, 0x0F, 0xC3]) + b"\xff") is None   # text that is not UTF-8


def test_the_page_size_is_guessed_from_density_not_from_hits(tmp_path):
    """Every 4096-byte page start is also a 512-byte one, so counting hits favoured 512 whenever bytes inside a page
    happened to look like a page header (which depends on the data: a salvage that found 0 rows now and then)."""
    from daemon.publish.sqlite_pages import PageFile

    body = bytearray(4096 * 40)
    for k in range(1, 40):
        body[k * 4096] = 0x0D                              # a table leaf with one cell
        body[k * 4096 + 3:k * 4096 + 5] = (1).to_bytes(2, "big")
    for k in range(1, 10):                                 # nine bytes mid-page that look like a leaf too
        body[k * 4096 + 2048] = 0x0D
    path = tmp_path / "pages"
    path.write_bytes(bytes(body))
    pages = PageFile(str(path))
    try:
        assert pages.page_size == 4096
    finally:
        pages.close()


def test_a_damaged_frame_in_the_middle_of_the_wal_is_noticed_and_the_commits_after_it_come_back(tmp_path, caplog):
    # SQLite replays a -wal up to the first frame whose checksum fails and drops every commit after it without a
    # word: a damaged frame in the middle (a bad sector) would lose the results stored after it.
    path = tmp_path / "outbox.sqlite3"
    live = _wal_only_outbox(path)
    wal = Path(f"{path}-wal")
    data = bytearray(wal.read_bytes())
    frames = (len(data) - 32) // (24 + PAGE)
    hit = 32 + (frames // 3) * (24 + PAGE) + 24 + PAGE // 2     # the middle of one frame's page, a third of the way
    data[hit:hit + 64] = os.urandom(64)
    wal.write_bytes(bytes(data))
    ob = Outbox(OutboxConfig(path=str(path)))
    try:
        assert ob.counters.corrupt_set_aside == 1
        assert "WAL frame" in ob.health().last_error and "WAL frame" in caplog.text
        got = {r.msg_id: r.payload for r in ob.pending(100_000)}
        assert len(set(live) - set(got)) <= 8          # at most the rows on the one damaged page
        assert live[-1] in got                         # the newest rows, committed after the damage, are back
        # SQL reads the file as it was before the damaged frame, so rows acknowledged after it may come back:
        # sent twice under their own id, never lost, never made up.
        assert all(m.startswith("dev:gate:") and json.loads(p)["id"] == m for m, p in got.items())
    finally:
        ob.close()


def test_a_write_torn_at_the_end_of_the_wal_is_not_damage(tmp_path):
    # A crash in the middle of a commit leaves its last frames half written: SQLite rightly drops that transaction
    # (it was never committed) and the outbox opens as it is.
    path = tmp_path / "outbox.sqlite3"
    live = _wal_only_outbox(path)
    wal = Path(f"{path}-wal")
    data = bytearray(wal.read_bytes())
    data[-PAGE // 2:] = os.urandom(PAGE // 2)       # the last frame: the last commit (the 20 acknowledged), torn
    wal.write_bytes(bytes(data))
    ob = Outbox(OutboxConfig(path=str(path)))
    try:
        assert ob.counters.corrupt_set_aside == 0 and not ob.health().last_error
        got = [r.msg_id for r in ob.pending(100_000)]
        assert len(got) == 60 and set(live) <= set(got)   # as before that commit: the 60 rows, none acknowledged
    finally:
        ob.close()


def test_a_database_file_emptied_beside_its_wal_is_set_aside_and_the_rows_in_the_wal_come_back(tmp_path, caplog):
    """Found from outside: `: > outbox.sqlite3` with the readings still in the -wal lost all of them silently
    (SQLite took the empty file for a new database and started the log over them), and seq began again at 1."""
    path = tmp_path / "outbox.sqlite3"
    live = _wal_only_outbox(path)
    path.write_bytes(b"")
    ob = Outbox(OutboxConfig(path=str(path)))
    try:
        assert ob.counters.corrupt_set_aside == 1 and "no header" in ob.health().last_error
        got = {r.msg_id for r in ob.pending(100_000)}
        assert set(live) <= got
        assert ob.next_seq("gate") > 1
    finally:
        ob.close()
