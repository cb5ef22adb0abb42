"""The evidence behind every stored reading: its frame and line crops as JPEGs in a bounded folder.

The work loop hands a reading over with ``submit()``: a ``put_nowait`` of references onto a bounded queue
(a frame's array is never written after capture), so the OCR loop never waits for a disk; with the queue full
the reading's evidence is dropped and counted. One writer thread scales, encodes and writes each reading, then
deletes the oldest readings' files until the folder is under ``max_bytes`` and those older than ``ttl_s`` (also
once a minute while idle). It writes nothing while the file system has less than ``min_free_bytes`` free, so the
evidence never fills the disk the outbox lives on.

Layout, one reading per message id (``device:camera:seq:ms``, see daemon/publish/payload.py):
``<dir>/<id>.jpg`` (the frame, longest side at most ``frame_max_side_px``), ``<id>.line<k>.jpg`` (line k's
crop at full resolution, k in reading order; a line with no box in the frame, or none on the image, has none, and
the index lists only the crops there are) and, for a failed result, ``<id>.json`` (why it failed: the compact
summary daemon/readings/fail_summary.py makes, a few hundred bytes), each written under a temporary name and
renamed, so a reader sees a whole file or none. A restart re-indexes the folder from the file names and mtimes.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from daemon.config import EvidenceConfig

log = logging.getLogger(__name__)

# A message id as daemon/publish/payload.message_id makes it: no '/', so it can never leave the folder.
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9_.-]{1,64}:\d{1,20}:\d{1,20}")
_FILE = re.compile(r"(?P<id>.+?)(?:(?:\.line(?P<k>\d{1,4}))?\.jpg|(?P<why>\.json))")
CROP_MARGIN_PX = 4          # around a line's box, so the crop shows the characters' edges
IDLE_EXPIRY_S = 60.0        # the writer checks the TTL at least this often while no reading comes
_STOP = object()


def valid_id(msg_id: str) -> bool:
    return bool(_ID.fullmatch(msg_id or ""))


@dataclass
class EvidenceCounters:
    written: int = 0              # readings whose files were written
    dropped_queue_full: int = 0   # the writer was behind: the reading's evidence was not kept
    dropped_disk_low: int = 0     # the file system had less than min_free_bytes free
    write_errors: int = 0         # encoding or writing failed (ENOSPC, EIO, ...)
    evicted_size: int = 0         # readings deleted to stay under max_bytes (oldest first)
    evicted_ttl: int = 0          # readings deleted for being older than ttl_s


@dataclass
class _Entry:
    created_at: float             # epoch s: the newest file's mtime
    nbytes: int = 0
    crops: tuple = ()             # the lines k with a crop file, ascending (a line without a box has none)
    why: bool = False             # <id>.json: why the result failed


@dataclass(frozen=True)
class _Job:
    msg_id: str
    image: np.ndarray
    boxes: tuple = ()
    submitted_at: float = field(default=0.0)
    why: Optional[dict] = None


# ---------------------------------------------------------------- pure geometry

def scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled so the longer side is at most max_side (aspect kept); unchanged when it fits or 0."""
    longest = max(width, height)
    if max_side <= 0 or longest <= max_side:
        return width, height
    f = max_side / float(longest)
    return max(1, int(round(width * f))), max(1, int(round(height * f)))


def crop_rect(box: Sequence[Sequence[float]], width: int, height: int,
              margin: int = CROP_MARGIN_PX) -> Optional[tuple[int, int, int, int]]:
    """The axis-aligned [x0, y0, x1, y1) around a line's quadrilateral plus margin, clipped to the image;
    None when nothing of it lies inside."""
    xs = [float(p[0]) for p in box]
    ys = [float(p[1]) for p in box]
    x0, y0 = max(0, int(np.floor(min(xs))) - margin), max(0, int(np.floor(min(ys))) - margin)
    x1, y1 = min(width, int(np.ceil(max(xs))) + margin), min(height, int(np.ceil(max(ys))) + margin)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def oldest_to_evict(entries: "OrderedDict[str, _Entry]", total_bytes: int, max_bytes: int,
                    now: float, ttl_s: float) -> list[tuple[str, str]]:
    """(id, "ttl" | "size") for the readings to delete, oldest first: every one past ttl_s (0 = no TTL),
    then more until the rest fit under max_bytes. Pure: the entries are in creation order."""
    out: list[tuple[str, str]] = []
    left = total_bytes
    for msg_id, e in entries.items():
        if ttl_s > 0 and now - e.created_at > ttl_s:
            out.append((msg_id, "ttl"))
        elif left > max_bytes:
            out.append((msg_id, "size"))
        else:
            break
        left -= e.nbytes
    return out


# ---------------------------------------------------------------- the store

class EvidenceStore:
    """Bounded on-disk evidence: submit() from the work loop, path() from the page, one writer thread."""

    def __init__(self, cfg: EvidenceConfig, clock: Callable[[], float] = time.time,
                 free_bytes: Optional[Callable[[str], int]] = None):
        self.cfg = cfg
        self.dir = Path(os.path.abspath(cfg.dir))   # absolute: the page hands it to send_file
        self.counters = EvidenceCounters()
        self._clock = clock
        self._free_bytes = free_bytes or _free_bytes
        self._lock = threading.Lock()             # the index: the writer changes it, the page reads it
        self._entries: "OrderedDict[str, _Entry]" = OrderedDict()
        self._bytes = 0
        self._gone_logged = False   # the folder gone and not made again: logged once
        self._queue: queue.Queue = queue.Queue(maxsize=cfg.queue_size)
        self._thread: Optional[threading.Thread] = None
        self.dir.mkdir(parents=True, exist_ok=True)
        self._index_folder()

    # ------------------------------------------------------------ the work loop's side

    def submit(self, msg_id: str, image: np.ndarray, boxes: Sequence = (), why: Optional[dict] = None) -> bool:
        """Queues a reading's frame and line boxes (and, for a fail, why: written as <id>.json) for the writer;
        False (counted) when the queue is full. Never blocks: the caller is the OCR loop."""
        if not valid_id(msg_id):
            log.warning("evidence: message id %r cannot name a file; not kept", msg_id)
            return False
        try:
            self._queue.put_nowait(_Job(msg_id, image, tuple(boxes), self._clock(), why))
            return True
        except queue.Full:
            with self._lock:
                self.counters.dropped_queue_full += 1
            return False

    # ------------------------------------------------------------ the page's side

    def path(self, msg_id: str, line: Optional[int] = None) -> Optional[Path]:
        """The frame (line None) or crop file of a kept reading; None when there is none (never outside dir)."""
        if not valid_id(msg_id):
            return None
        with self._lock:
            e = self._entries.get(msg_id)
            if e is None or (line is not None and line not in e.crops):
                return None
        path = self.dir / _name(msg_id, line)
        return path if line is None or path.is_file() else None

    def why_path(self, msg_id: str) -> Optional[Path]:
        """A kept failed result's <id>.json (why it failed); None when there is none (never outside dir)."""
        if not valid_id(msg_id):
            return None
        with self._lock:
            e = self._entries.get(msg_id)
            if e is None or not e.why:
                return None
        path = self.dir / _why_name(msg_id)
        return path if path.is_file() else None

    def crops(self, msg_id: str) -> Optional[tuple]:
        """The lines k of a kept reading that have a crop (line<k>.jpg), ascending; None when the reading has no
        evidence (dropped, evicted)."""
        with self._lock:
            e = self._entries.get(msg_id)
            return None if e is None else e.crops

    def snapshot(self) -> dict:
        """Counters and the folder's size, for stats, /metrics and the page."""
        with self._lock:
            return {"enabled": True, "readings": len(self._entries), "bytes": self._bytes,
                    "max_bytes": self.cfg.max_bytes, "queued": self._queue.qsize(),
                    **dataclasses.asdict(self.counters)}

    # ------------------------------------------------------------ the writer thread

    def start(self) -> "EvidenceStore":
        self._thread = threading.Thread(target=self._run, name="evidence-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Writes what is queued (for at most timeout_s) and stops the writer."""
        if self._thread is None:
            return
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            log.warning("evidence: writer still busy after %.1f s; stopping without the rest", timeout_s)
        self._thread.join(timeout_s)
        self._thread = None

    def _run(self) -> None:
        while True:
            try:
                job = self._queue.get(timeout=IDLE_EXPIRY_S)
            except queue.Empty:
                self._evict()
                continue
            if job is _STOP:
                return
            try:
                self.write(job.msg_id, job.image, job.boxes, job.why)
            except Exception:   # evidence is for looking at; the writer must outlive any one reading
                log.exception("evidence: %s not kept", job.msg_id)
                with self._lock:
                    self.counters.write_errors += 1

    def write(self, msg_id: str, image: np.ndarray, boxes: Sequence = (), why: Optional[dict] = None) -> bool:
        """Encodes and writes one reading now (the writer thread; tests call it directly), then evicts. why: a
        failed result's summary, written beside the frame as <id>.json."""
        import cv2

        if not self._folder_there():
            return False
        if self._free_bytes(str(self.dir)) < self.cfg.min_free_bytes:
            with self._lock:
                self.counters.dropped_disk_low += 1
            self._evict()
            return False
        params = [int(cv2.IMWRITE_JPEG_QUALITY), int(self.cfg.jpeg_quality)]
        h, w = image.shape[:2]
        sw, sh = scaled_size(w, h, self.cfg.frame_max_side_px)
        frame = image if (sw, sh) == (w, h) else cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
        blobs: list[tuple[Optional[int], bytes]] = [(None, _encode(frame, params))]
        if self.cfg.crops:
            for k, box in enumerate(boxes):   # crop k is line k of the reading; a box None or off the image: none
                rect = crop_rect(box, w, h) if box is not None else None
                if rect is not None:
                    x0, y0, x1, y1 = rect
                    blobs.append((k, _encode(image[y0:y1, x0:x1], params)))
        crops = tuple(k for k, _ in blobs if k is not None)
        files = [(_name(msg_id, k), blob) for k, blob in blobs]
        if why is not None:
            files.append((_why_name(msg_id), json.dumps(why, ensure_ascii=False, sort_keys=True).encode()))
        written, made = 0, []
        try:
            for name, blob in files:
                _write_file(self.dir / name, blob)
                made.append(name)
                written += len(blob)
        except OSError as exc:
            log.warning("evidence: %s not kept: %s", msg_id, exc)
            for name in made:   # only what this write made (a read-only folder made none)
                _unlink(self.dir / name)
            with self._lock:
                self.counters.write_errors += 1
            self._evict()
            return False
        with self._lock:
            old = self._entries.pop(msg_id, None)   # the same id again (a folder re-run): replaced
            if old is not None:
                self._bytes -= old.nbytes
            self._entries[msg_id] = _Entry(self._clock(), written, crops, why is not None)
            self._bytes += written
            self.counters.written += 1
        self._evict()
        return True

    def _folder_there(self) -> bool:
        """The folder, made again where it was removed while the daemon ran (its readings went with it: forgotten,
        so the counts and the page tell the truth). False, counted, when it cannot be made."""
        if self.dir.is_dir():
            self._gone_logged = False
            return True
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            with self._lock:
                self.counters.write_errors += 1
            if not self._gone_logged:
                log.error("evidence: the folder %s is gone and cannot be made again (%s); nothing is kept until it "
                          "can", self.dir, exc.strerror)
                self._gone_logged = True
            return False
        with self._lock:
            lost, self._entries, self._bytes = len(self._entries), OrderedDict(), 0
        log.warning("evidence: the folder %s was removed while the daemon ran; made again (%d reading(s) it held "
                    "are forgotten)", self.dir, lost)
        return True

    def _evict(self) -> None:
        with self._lock:
            doomed = oldest_to_evict(self._entries, self._bytes, self.cfg.max_bytes, self._clock(), self.cfg.ttl_s)
            gone = [(msg_id, self._entries.pop(msg_id), why) for msg_id, why in doomed]
            for _, e, why in gone:
                self._bytes -= e.nbytes
                if why == "ttl":
                    self.counters.evicted_ttl += 1
                else:
                    self.counters.evicted_size += 1
        for msg_id, e, _ in gone:   # outside the lock: the page may fetch meanwhile and get a 404
            _unlink(self.dir / _name(msg_id, None))
            for k in e.crops:
                _unlink(self.dir / _name(msg_id, k))
            if e.why:
                _unlink(self.dir / _why_name(msg_id))

    def _index_folder(self) -> None:
        """Rebuilds the index from the folder (a restart keeps the evidence); leftover temporaries go."""
        found: dict[str, _Entry] = {}
        for de in os.scandir(self.dir):
            if de.name.startswith(".") and de.name.endswith(".tmp"):
                _unlink(Path(de.path))
                continue
            m = _FILE.fullmatch(de.name)
            if m is None or not valid_id(m.group("id")) or not de.is_file(follow_symlinks=False):
                continue
            st = de.stat(follow_symlinks=False)
            e = found.setdefault(m.group("id"), _Entry(st.st_mtime))
            e.created_at = max(e.created_at, st.st_mtime)
            e.nbytes += st.st_size
            if m.group("k") is not None:
                e.crops = tuple(sorted({*e.crops, int(m.group("k"))}))
            e.why = e.why or m.group("why") is not None
        with self._lock:
            for msg_id, e in sorted(found.items(), key=lambda kv: kv[1].created_at):
                self._entries[msg_id] = e
                self._bytes += e.nbytes
        self._evict()


class NoEvidence:
    """evidence.enabled false: the same calls, nothing kept."""

    def submit(self, msg_id: str, image, boxes=(), why: Optional[dict] = None) -> bool:
        return False

    def path(self, msg_id: str, line: Optional[int] = None) -> Optional[Path]:
        return None

    def why_path(self, msg_id: str) -> Optional[Path]:
        return None

    def crops(self, msg_id: str) -> Optional[tuple]:
        return None

    def snapshot(self) -> dict:
        return {"enabled": False}

    def stop(self, timeout_s: float = 5.0) -> None:
        pass


def _name(msg_id: str, line: Optional[int]) -> str:
    return f"{msg_id}.jpg" if line is None else f"{msg_id}.line{line}.jpg"


def _why_name(msg_id: str) -> str:
    return f"{msg_id}.json"


def _encode(image: np.ndarray, params: list[int]) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image), params)
    if not ok:
        raise OSError("JPEG encoding failed")
    return buf.tobytes()


def _write_file(path: Path, data: bytes) -> None:
    """A whole file or none under path; no fsync: evidence is a convenience, a power cut may cost the last ones."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("evidence: cannot delete %s: %s", path.name, exc)


def _free_bytes(path: str) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def start_evidence(cfg: EvidenceConfig):
    """The evidence store per the config's evidence section, or NoEvidence when off or when its folder cannot be
    used (evidence is for looking at; the readings matter more: the error is logged and the daemon runs on)."""
    if not cfg.enabled:
        return NoEvidence()
    try:
        return EvidenceStore(cfg).start()
    except OSError as exc:
        log.error("evidence store %s not started: %s", cfg.dir, exc)
        return NoEvidence()
