"""Records read from a SQLite file's raw pages, for a file that SQL can no longer read (the outbox's salvage).

SQL reads a table by walking its b-tree from the root named on page 1: a zeroed first page, one bad interior
page or a truncated file hides every row below them, although the leaf pages holding the rows are intact. This
reads what the salvage needs of the file format (https://www.sqlite.org/fileformat2.html) straight from the
bytes: the page size, the WAL's frames (the newest copy of a page wins, as it would for SQLite), the free-page
list (freed pages keep their old rows: never read), table and index b-tree leaf pages, their cells with
overflow chains, and records (varints, serial types). Every length and offset is checked against the page; a
cell that does not parse is skipped, never guessed at.

Pure: a file's bytes in, records out; it knows nothing of the outbox's tables (daemon/publish/outbox_salvage.py
matches records to them).
"""
from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from typing import Iterator, Optional

_MAGIC = b"SQLite format 3\x00"
_DB_HEADER = 100
_WAL_MAGICS = (0x377F0682, 0x377F0683)
_WAL_HEADER, _FRAME_HEADER = 32, 24
_PAGE_SIZES = (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512)   # SQLite's default first
_TABLE_LEAF, _INDEX_LEAF, _TABLE_INTERIOR, _INDEX_INTERIOR = 13, 10, 5, 2


def wal_commits_unread(path: str) -> Optional[str]:
    """Why SQLite will not read committed transactions in the -wal beside the database at path, or None when it
    reads every one. SQLite replays the WAL up to the first frame whose checksum fails and drops the rest without
    a word: right for a write torn by a crash (it was never committed), but a damaged frame in the middle hides
    every commit after it. So: frames are checked as SQLite checks them (salts, cumulative checksums); past the
    first that fails, a frame of the same generation that ends a transaction (a commit) means rows were lost.
    And a database file cut short before its header (emptied) beside a -wal with commits: SQLite would take it for
    a new database and start the log over them."""
    try:
        with open(path + "-wal", "rb") as f:   # mapped, not read: a WAL a starved checkpoint let grow stays on disk
            if os.fstat(f.fileno()).st_size < _WAL_HEADER:
                return None
            wal = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    try:
        damage, commits = _wal_damage(wal)
    finally:
        wal.close()
    if damage or not commits:
        return damage
    try:
        size = os.stat(path).st_size
    except OSError:
        return None   # no database file: SQLite makes one and reads the log into it
    if size < _DB_HEADER:   # a WAL-mode database always has its first page, header and all
        return (f"the database file holds {size} bytes (no header) beside a -wal with {commits} committed "
                f"transaction(s), which SQLite would drop")
    return None


def _wal_damage(wal) -> tuple[Optional[str], int]:
    """(Why commits after a damaged frame would be dropped, or None; the commits SQLite reads.)"""
    magic, _, page_size = struct.unpack(">III", wal[:12])
    if magic not in _WAL_MAGICS or page_size not in _PAGE_SIZES:
        return None, 0   # no WAL SQLite would read: nothing it reads is lost (the salvage reads such frames)
    order = "<" if magic == 0x377F0682 else ">"
    s0, s1 = _wal_checksum(order, wal[:24], 0, 0)
    if (s0, s1) != struct.unpack(">II", wal[24:32]):
        return None, 0   # a header SQLite does not take: it starts the log afresh (nothing of it was ever read)
    salts = wal[16:24]
    frame = _FRAME_HEADER + page_size
    off, n, bad, commits = _WAL_HEADER, 0, None, 0
    while off + frame <= len(wal):
        n += 1
        head = wal[off:off + _FRAME_HEADER]
        if head[8:16] != salts:
            if bad is None:
                return None, commits   # an older generation's frame: where SQLite's log ends
            off += frame
            continue
        is_commit = struct.unpack(">I", head[4:8])[0] > 0   # the database size after a commit: a commit frame
        if bad is None:
            s0, s1 = _wal_checksum(order, head[:8] + wal[off + _FRAME_HEADER:off + frame], s0, s1)
            if (s0, s1) != struct.unpack(">II", head[16:24]):
                bad = n
            elif is_commit:
                commits += 1
        elif is_commit:
            return (f"WAL frame {bad} is damaged and a transaction committed after it (frame {n}) "
                    f"would be dropped by SQLite"), commits
        off += frame
    return None, commits


def _wal_checksum(order: str, data: bytes, s0: int, s1: int) -> tuple[int, int]:
    """SQLite's WAL checksum over data (a multiple of 8 bytes), continuing from (s0, s1)."""
    words = struct.unpack(f"{order}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


@dataclass(frozen=True)
class Cell:
    """One leaf cell's record: a table row (rowid set) or an index entry, which is also how a WITHOUT ROWID
    table keeps its rows (rowid None)."""
    page: int
    rowid: Optional[int]
    values: tuple


def varint(buf, i: int) -> tuple[int, int]:
    """(value, offset after it); IndexError past the end of buf."""
    value = 0
    for k in range(8):
        b = buf[i + k]
        value = (value << 7) | (b & 0x7F)
        if b < 0x80:
            return value, i + k + 1
    return (value << 8) | buf[i + 8], i + 9


def decode_record(payload: bytes) -> Optional[tuple]:
    """A record's values (None, int, float, str, bytes), or None when the bytes are not exactly one record."""
    try:
        header_len, i = varint(payload, 0)
        if header_len < 1 or header_len > len(payload):
            return None
        types = []
        while i < header_len:
            t, i = varint(payload, i)
            types.append(t)
        if i != header_len:
            return None
        values, pos = [], header_len
        for t in types:
            if t == 0:
                values.append(None)
            elif 1 <= t <= 6:
                n = (1, 2, 3, 4, 6, 8)[t - 1]
                values.append(int.from_bytes(payload[pos:pos + n], "big", signed=True))
                pos += n
            elif t == 7:
                values.append(struct.unpack(">d", payload[pos:pos + 8])[0])
                pos += 8
            elif t in (8, 9):
                values.append(t - 8)
            elif t >= 12:
                n = (t - 12) // 2
                raw = bytes(payload[pos:pos + n])
                if len(raw) != n:
                    return None
                values.append(raw if t % 2 == 0 else raw.decode("utf-8"))
                pos += n
            else:   # 10, 11: reserved, never written
                return None
            if pos > len(payload):
                return None
        return tuple(values) if pos == len(payload) else None
    except (IndexError, struct.error, UnicodeDecodeError):
        return None


class PageFile:
    """A database file and its -wal as pages, the newest copy of each (a WAL frame of the current WAL
    generation over the main file's). Read through mmap: the file is not loaded whole."""

    def __init__(self, path: str):
        self._maps: list = []
        self.main = self._map(path)
        wal = self._map(path + "-wal")
        header = self.main[:100] if len(self.main) >= 100 else b""
        page_size = 0
        if header[:16] == _MAGIC:
            page_size = struct.unpack(">H", header[16:18])[0]
            page_size = 65536 if page_size == 1 else page_size
        wal_page_size = struct.unpack(">I", wal[8:12])[0] if len(wal) >= _WAL_HEADER else 0
        if page_size not in _PAGE_SIZES:
            page_size = wal_page_size if wal_page_size in _PAGE_SIZES else self._guess_page_size()
        self.page_size = page_size
        reserved = header[20] if header[:16] == _MAGIC else 0
        self.usable = page_size - reserved
        self._frames: dict[int, int] = {}   # page number -> offset of its newest copy in the WAL
        self._wal = wal
        if wal_page_size == page_size:
            self._read_wal()
        self.page_count = max([len(self.main) // page_size, *self._frames])
        self.free = self._free_pages()

    @staticmethod
    def _map(path: str):
        try:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_size == 0:
                    return b""
                return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return b""

    def close(self) -> None:
        for m in (self.main, self._wal):
            if isinstance(m, mmap.mmap):
                m.close()

    def _guess_page_size(self) -> int:
        """The page size, when the header that says it is gone: the smallest size at whose multiples b-tree
        pages are about as dense as at the densest size. Counting hits alone is not enough: every multiple of the
        true size is also a multiple of each smaller size, so a smaller size always finds as many pages, plus
        whatever bytes inside the pages happen to look like a page header (and which do depends on the data)."""
        main = self.main

        def density(size: int) -> float:   # share of the first 4096 multiples that look like a b-tree page
            offsets = range(size, min(len(main), size * 4097) - size + 1, size)
            n = 0
            for off in offsets:
                kind = main[off]
                head = 8 if kind in (_TABLE_LEAF, _INDEX_LEAF) else 12
                n += kind in (_TABLE_LEAF, _INDEX_LEAF, _TABLE_INTERIOR, _INDEX_INTERIOR) and \
                    head + 2 * struct.unpack(">H", main[off + 3:off + 5])[0] <= size
            return n / len(offsets) if len(offsets) else 0.0

        dense = {size: density(size) for size in _PAGE_SIZES}
        best = max(dense.values())
        if best == 0.0:
            return 4096   # nothing looks like a page: the outbox's own size
        return min(size for size in _PAGE_SIZES if dense[size] >= 0.75 * best)

    def _read_wal(self) -> None:
        """Frames of the current generation (their salts match the header's, or the first frame's when the
        header is damaged); the last copy of each page wins. Checksums are not required: a damaged frame is
        read like a damaged page, cell by cell."""
        wal, size = self._wal, self.page_size
        if len(wal) < _WAL_HEADER + _FRAME_HEADER:
            return
        if struct.unpack(">I", wal[:4])[0] in _WAL_MAGICS:
            salts = bytes(wal[16:24])
        else:
            salts = bytes(wal[_WAL_HEADER + 8:_WAL_HEADER + 16])
        off = _WAL_HEADER
        while off + _FRAME_HEADER + size <= len(wal):
            pgno = struct.unpack(">I", wal[off:off + 4])[0]
            if bytes(wal[off + 8:off + 16]) == salts and pgno > 0:
                self._frames[pgno] = off + _FRAME_HEADER
            off += _FRAME_HEADER + size

    def page(self, pgno: int) -> bytes:
        """The newest copy of page pgno (1-based); b"" past the end."""
        size = self.page_size
        off = self._frames.get(pgno)
        if off is not None:
            return self._wal[off:off + size]
        return self.main[(pgno - 1) * size:pgno * size]

    def _free_pages(self) -> frozenset[int]:
        """Pages on the free list (trunks and leaves), from page 1's header when it is readable."""
        first = self.page(1)
        if first[:16] != _MAGIC:
            return frozenset()
        trunk, count = struct.unpack(">II", first[32:40])
        free: set[int] = set()
        per_trunk = self.usable // 4 - 2
        while 0 < trunk <= self.page_count and trunk not in free and len(free) <= count:
            free.add(trunk)
            body = self.page(trunk)
            if len(body) < 8:
                break
            nxt, n = struct.unpack(">II", body[:8])
            if n > per_trunk:
                break
            free.update(p for p in struct.unpack(f">{n}I", body[8:8 + 4 * n]) if 0 < p <= self.page_count)
            trunk = nxt
        return frozenset(free)

    def leaf_cells(self) -> Iterator[Cell]:
        """Every parseable cell of every table or index leaf page not on the free list."""
        for pgno in range(1, self.page_count + 1):
            if pgno in self.free:
                continue
            body = self.page(pgno)
            start = 100 if pgno == 1 else 0
            head = _btree_header(body, start, self.usable)
            if head is None or head[0] not in (_TABLE_LEAF, _INDEX_LEAF):
                continue
            kind, pointers = head
            for ptr in pointers:
                cell = self._cell(pgno, body, ptr, kind == _TABLE_LEAF)
                if cell is not None:
                    yield cell

    def _cell(self, pgno: int, body: bytes, off: int, table: bool) -> Optional[Cell]:
        u = self.usable
        try:
            size, i = varint(body, off)
            rowid = None
            if table:
                rowid, i = varint(body, i)
                if rowid >= 1 << 63:
                    rowid -= 1 << 64
            max_local = u - 35 if table else (u - 12) * 64 // 255 - 23
            min_local = (u - 12) * 32 // 255 - 23
            if size <= max_local:
                local = size
            else:
                k = min_local + (size - min_local) % (u - 4)
                local = k if k <= max_local else min_local
            if i + local > u:
                return None
            payload = bytearray(body[i:i + local])
            if local < size:
                payload += self._overflow(struct.unpack(">I", body[i + local:i + local + 4])[0], size - local)
            if len(payload) != size:
                return None
        except (IndexError, struct.error):
            return None
        values = decode_record(bytes(payload))
        return None if values is None else Cell(pgno, rowid, values)

    def _overflow(self, pgno: int, need: int) -> bytes:
        """The rest of a payload from its overflow chain; shorter when the chain is broken."""
        out, seen = bytearray(), set()
        while need > 0 and 0 < pgno <= self.page_count and pgno not in seen:
            seen.add(pgno)
            body = self.page(pgno)
            if len(body) < 4:
                break
            take = min(need, self.usable - 4)
            out += body[4:4 + take]
            need -= take
            pgno = struct.unpack(">I", body[:4])[0]
        return bytes(out)


def _btree_header(body: bytes, start: int, usable: int) -> Optional[tuple[int, list[int]]]:
    """(page type, cell offsets) when body looks like a b-tree page: a known type, a cell pointer array and
    cell offsets that all lie inside the page; else None."""
    if len(body) < start + 8:
        return None
    kind = body[start]
    if kind not in (_TABLE_LEAF, _INDEX_LEAF, _TABLE_INTERIOR, _INDEX_INTERIOR):
        return None
    head = 8 if kind in (_TABLE_LEAF, _INDEX_LEAF) else 12
    ncells, content = struct.unpack(">HH", body[start + 3:start + 7])
    content = content or 65536
    array_end = start + head + 2 * ncells
    if array_end > usable or (ncells and content < array_end) or body[start + 7] > 60:
        return None
    pointers = list(struct.unpack(f">{ncells}H", body[start + head:array_end]))
    if any(p < array_end or p >= usable for p in pointers):
        return None
    return kind, pointers
