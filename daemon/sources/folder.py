"""Image folder: a scanner drops files in, each is read once (oldest first) and finished after its result is stored.

Every frame carries its acknowledgement (``FolderAck``): the service calls ``reserve(seq)``, then ``done()``
once the result is durably in the outbox (or needs none), ``release()`` when it could not be stored. Only
``done`` lets the file go: moved to ``done_dir``, deleted, or renamed to ``<name>.done`` (``done_action``).
A daemon killed in between finds the file again on restart and processes it again: at-least-once, never
lost.

The reservation. So that a second pass publishes under the same message id, the seq is recorded before the
result is stored, in a side file ``<folder>/.ocr-daemon/<name>.seq`` (JSON: seq and the image's mtime),
written to a temporary name, fsynced, renamed and the directory fsynced: a power cut cannot lose it and
hand seq N to another reading. The operator's file keeps its name. A side file whose mtime does not match
the image (a new scan under an old name) is ignored. Files named ``<name>.seq<N>.inflight`` by earlier
versions are still read with their seq.

What is read. A file is picked up when its mtime is ``SETTLE_S`` old. It is opened with O_NOFOLLOW: a
symlink swapped in after the listing is never followed. A file that fails to decode is not set aside at once
(a stalled upload, a file created empty and filled later): it is retried with backoff while it changes,
and set aside as ``<name>.bad`` (in ``done_dir`` for ``move``, in place otherwise) only once it has been
unreadable and unchanged (size, mtime) for ``unreadable_after_s``. An image over the decode limits
(``max_file_bytes``, ``max_frame_pixels``, checked before decoding) is set aside at once and counted.

Moving. ``done_dir`` on another file system (EXDEV) is copied, fsynced, renamed into place, then the
original is unlinked. A file whose done action fails otherwise stays claimed (it is not OCR'd again) and
the action is retried with backoff.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Optional

from daemon.config import CameraConfig
from daemon.imageio import IMAGE_SUFFIXES
from daemon.sources.base import (CorruptFrame, Frame, FrameAck, FrameTooLarge, NotRegularFile, Reader,
                                 SourceError)

log = logging.getLogger(__name__)

SETTLE_S = 0.5          # scanners write in chunks; a file untouched this long is worth a first try
RESCAN_PERIOD_S = 0.2   # listing a folder of a few thousand entries costs well under a millisecond each
RETRY_INITIAL_S = 0.5   # an undecodable file, or a done action that failed, is tried again after this ...
RETRY_MAX_S = 10.0      # ... doubling up to this
STATE_DIR = ".ocr-daemon"   # hidden in the watched folder: the reservations
_INFLIGHT = re.compile(r"^(?P<name>.+)\.seq(?P<seq>\d+)\.inflight$")


def inflight_name(path: str, seq: int) -> str:
    """The name earlier versions reserved a seq under (still recognized when found)."""
    return f"{path}.seq{seq}.inflight"


def parse_inflight(path: str) -> tuple[str, Optional[int]]:
    """(original path, reserved seq) of a file; seq is None for a file not reserved in its name."""
    m = _INFLIGHT.match(path)
    return (m.group("name"), int(m.group("seq"))) if m else (path, None)


def done_dir_of(cfg: CameraConfig) -> str:
    return cfg.done_dir or os.path.join(cfg.uri, "done")


@dataclass(frozen=True)
class Listing:
    ready: list[tuple[int, str]]   # (mtime_ns, path) of the image files ready for reading, oldest first
    not_files: list[tuple[str, str]]   # (path, what) of entries named like images that are no regular file


def scan_folder(folder: str, now_s: float, settle_s: float, exclude: set[str]) -> Listing:
    """One listing of the folder: the image files ready for reading, and the symlinks, FIFOs, directories and
    devices named like images (never opened or followed; the reader sets them aside so they are seen)."""
    ready, not_files = [], []
    with os.scandir(folder) as entries:
        for e in entries:
            original, _ = parse_inflight(e.name)
            if e.name.startswith(".") or not original.lower().endswith(IMAGE_SUFFIXES) or e.path in exclude:
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:   # removed between listing and stat
                continue
            if not stat.S_ISREG(st.st_mode):
                not_files.append((e.path, _kind_of(st.st_mode)))
            elif now_s - st.st_mtime >= settle_s:
                ready.append((st.st_mtime_ns, e.path))
    ready.sort()
    return Listing(ready, not_files)


def list_ready(folder: str, now_s: float, settle_s: float, exclude: set[str]) -> list[tuple[int, str]]:
    """(mtime_ns, path) of the image files ready for reading, oldest first (then by name)."""
    return scan_folder(folder, now_s, settle_s, exclude).ready


def _kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return name
    return "not a regular file"


NAME_MAX = 255       # bytes in one file name (Linux file systems)
_COUNTER_ROOM = 8    # bytes kept free in a name for _free_name's ".N"


def fitted_name(path: str, room: int = _COUNTER_ROOM) -> str:
    """path with its file name shortened, where it is too long, to leave `room` bytes of NAME_MAX free: its start,
    "~" and 8 hex digits of a hash of the whole name, and its extension. A scanner's name of 250 bytes plus ".bad"
    or ".seq" cannot be made otherwise, and a file that cannot be set aside comes round again for ever."""
    head, name = os.path.split(path)
    raw = os.fsencode(name)
    if len(raw) <= NAME_MAX - room:
        return path
    stem, ext = os.path.splitext(raw)
    ext = ext if len(ext) <= 16 else b""
    digest = hashlib.sha1(raw).hexdigest()[:8].encode()
    keep = NAME_MAX - room - len(ext) - 1 - len(digest)
    return os.path.join(head, os.fsdecode(stem[:keep] + b"~" + digest + ext))


def _free_name(path: str) -> str:
    """path, or path with a counter when taken: a scanner that reuses file names must not overwrite old ones. A
    name too long for the counter (or at all) is shortened first (fitted_name)."""
    if len(os.fsencode(os.path.basename(path))) <= NAME_MAX and not os.path.lexists(path):
        return path
    path = fitted_name(path)
    if not os.path.lexists(path):
        return path
    stem, ext = os.path.splitext(path)
    n = 1
    while os.path.lexists(f"{stem}.{n}{ext}"):
        n += 1
    return f"{stem}.{n}{ext}"


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move_file(src: str, dst: str) -> None:
    """Renames src to dst; across file systems (EXDEV) copies to a hidden name beside dst, fsyncs it,
    renames it into place, fsyncs dst's directory, then unlinks src: dst is whole before src is gone."""
    try:
        os.replace(src, dst)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    dst_dir, base = os.path.split(dst)
    tmp = os.path.join(dst_dir, f".{base}.{os.getpid()}.copy")
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
        shutil.copystat(src, tmp)   # the mtime is the capture time: kept
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(dst_dir or ".")
    os.unlink(src)


@dataclass
class _Retry:
    size: int
    mtime_ns: int
    stable_since: float     # monotonic: when it was first seen unreadable at this size and mtime
    attempts: int = 0
    next_try: float = 0.0


class Claims:
    """What one camera's successive readers share, so a reader reopened after an error does not hand again a
    file still in the pipeline: the paths handed out and not yet done or released, the undecodable files
    waiting for a retry, and the files whose done action failed (stored; only the move is retried)."""

    def __init__(self) -> None:
        self._paths: set[str] = set()
        self._lock = threading.Lock()
        self.retry: dict[str, _Retry] = {}   # only the capture thread touches it
        self._unmoved: dict[str, tuple[float, int]] = {}   # path -> (monotonic next try, attempts)

    def unmoved(self) -> dict[str, tuple[float, int]]:
        with self._lock:
            return dict(self._unmoved)

    def set_unmoved(self, path: str, entry: Optional[tuple[float, int]]) -> None:
        with self._lock:
            if entry is None:
                self._unmoved.pop(path, None)
            else:
                self._unmoved[path] = entry

    def add(self, path: str) -> None:
        with self._lock:
            self._paths.add(path)

    def discard(self, path: Optional[str]) -> None:
        with self._lock:
            self._paths.discard(path)

    def snapshot(self) -> set[str]:
        with self._lock:
            return set(self._paths)


class FolderAck(FrameAck):
    """One folder frame's acknowledgement; the first of done/release/reject wins, later calls do nothing."""

    def __init__(self, reader: "FolderReader", frame: Frame):
        self._reader = reader
        self._frame = frame
        self._finished = False

    def reserve(self, seq: int) -> None:
        if not self._finished:
            self._reader.reserve(self._frame, seq)

    def done(self) -> None:
        if not self._finished:
            self._finished = True
            self._reader.done(self._frame)

    def release(self) -> None:
        if not self._finished:
            self._finished = True
            self._reader.release(self._frame)

    def reject(self, why: str) -> None:
        if not self._finished:
            self._finished = True
            self._reader.reject(self._frame, why)


class FolderReader(Reader):
    lossless = True
    wait_for_rate = True

    def __init__(self, cfg: CameraConfig, claims: Optional[Claims] = None, settle_s: float = SETTLE_S):
        from daemon.imageio import DecodeLimits

        self.cfg = cfg
        self.folder = cfg.uri
        self.done_dir = done_dir_of(cfg)
        self.state_dir = os.path.join(self.folder, STATE_DIR)
        self.settle_s = settle_s
        self.limits = DecodeLimits(max_pixels=cfg.max_frame_pixels, max_bytes=cfg.max_file_bytes)
        if not os.path.isdir(self.folder):
            raise SourceError(f"image folder {self.folder!r} does not exist")
        if not os.access(self.folder, os.R_OK | os.W_OK | os.X_OK):
            raise SourceError(f"image folder {self.folder!r} is not readable and writable by this user")
        if cfg.done_action == "move":
            try:
                os.makedirs(self.done_dir, exist_ok=True)
            except OSError as exc:
                raise SourceError(f"cannot create done_dir {self.done_dir!r} ({exc.strerror})") from None
            if os.path.samefile(self.done_dir, self.folder):
                raise SourceError(f"done_dir {self.done_dir!r} is the watched folder itself: every file would be "
                                  "read again; set another done_dir")
        try:
            if not os.path.isdir(self.state_dir):
                os.makedirs(self.state_dir, exist_ok=True)
                fsync_dir(self.folder)
        except OSError as exc:
            raise SourceError(f"cannot create {self.state_dir!r} ({exc.strerror})") from None
        self._queue: deque[tuple[int, str]] = deque()
        self._not_files: deque[NotRegularFile] = deque()   # set aside by the last listing, each reported once
        self._claims = claims if claims is not None else Claims()
        self._last_scan = 0.0
        self._prune_reservations()

    # ------------------------------------------------------------ reading

    def read(self) -> Optional[Frame]:
        if self._not_files:
            raise self._not_files.popleft()
        self._retry_unmoved()
        if not self._queue and time.monotonic() - self._last_scan >= RESCAN_PERIOD_S:
            self._last_scan = time.monotonic()
            try:
                listing = scan_folder(self.folder, time.time(), self.settle_s,
                                      self._claims.snapshot() | set(self._claims.unmoved()))
            except OSError as exc:
                raise SourceError(f"cannot list image folder {self.folder!r} ({exc.strerror})") from None
            self._queue.extend(listing.ready)
            if listing.not_files:
                self._set_aside_not_files(listing.not_files)
                raise self._not_files.popleft()
        now = time.monotonic()
        while self._queue:
            mtime_ns, path = self._queue.popleft()
            waiting = self._claims.retry.get(path)
            if waiting is not None and now < waiting.next_try:
                continue
            frame = self._read_file(path, mtime_ns)
            if frame is not None:
                return frame
        return None

    def _set_aside_not_files(self, entries: list[tuple[str, str]]) -> None:
        """Renames each entry to ``<name>.bad`` beside it (a rename never follows a link nor crosses a file
        system), so it is listed no more; read() raises one NotRegularFile each for the log line and counters."""
        for path, what in entries:
            target = _free_name(path + ".bad")
            try:
                os.rename(path, target)
                outcome = f"set aside as {target}"
            except OSError as exc:   # gone meanwhile, or no permission: said once, then not listed again
                outcome = f"left alone ({exc.strerror})"
                self._claims.add(path)
            self._not_files.append(NotRegularFile(f"{path} is {what}, not an image file: never opened, {outcome}"))

    def _read_file(self, path: str, listed_mtime_ns: int) -> Optional[Frame]:
        from daemon.imageio import ImageError, ImageTooLarge, NotARegularFile, read_image_file

        original, legacy_seq = parse_inflight(path)
        frame = Frame(camera=self.cfg.name, image=None, captured_at=listed_mtime_ns / 1e9, path=path,
                      mtime_ns=listed_mtime_ns, source={"kind": "folder", "file": os.path.basename(original)})
        try:
            frame.image, st = read_image_file(path, self.limits, nofollow=True)
        except NotARegularFile as exc:
            # Swapped in after the listing (the listing skips symlinks): left alone, never followed.
            log.warning("camera %s: %s; left alone", self.cfg.name, exc)
            self._claims.retry.pop(path, None)
            return None
        except ImageTooLarge as exc:
            self._claims.retry.pop(path, None)
            self.reject(frame, str(exc))
            raise FrameTooLarge(str(exc)) from None
        except ImageError as exc:
            return self._unreadable(frame, str(exc))
        self._claims.retry.pop(path, None)
        # The file's mtime is when the scanner took the picture; moves keep it, so a file processed again
        # after a restart has the same captured_at (and, with its reserved seq, the same message id).
        frame.mtime_ns, frame.captured_at = st.st_mtime_ns, st.st_mtime_ns / 1e9
        frame.seq = legacy_seq if legacy_seq is not None else self._reserved_seq(original, st.st_mtime_ns)
        frame.ack = FolderAck(self, frame)
        self._claims.add(path)
        return frame

    def _unreadable(self, frame: Frame, why: str) -> Optional[Frame]:
        """Retries a file that failed to decode while it changes; sets it aside once stable this long."""
        path = frame.path
        try:
            st = os.lstat(path)
        except OSError:
            self._claims.retry.pop(path, None)
            return None   # taken away by someone else meanwhile
        now = time.monotonic()
        r = self._claims.retry.get(path)
        if r is None or (r.size, r.mtime_ns) != (st.st_size, st.st_mtime_ns):
            if r is None:
                log.info("camera %s: %s not readable yet (%s); retrying while it changes, set aside after %.0f s "
                         "unchanged", self.cfg.name, path, why, self.cfg.unreadable_after_s)
            r = _Retry(size=st.st_size, mtime_ns=st.st_mtime_ns, stable_since=now)
            self._claims.retry[path] = r
        if now - r.stable_since >= self.cfg.unreadable_after_s:
            self._claims.retry.pop(path, None)
            self.reject(frame, why)
            raise CorruptFrame(why)
        r.attempts += 1
        r.next_try = now + min(RETRY_MAX_S, RETRY_INITIAL_S * 2.0 ** (r.attempts - 1))
        return None

    # ------------------------------------------------------------ reservations

    def _side_file(self, original: str) -> str:
        return fitted_name(os.path.join(self.state_dir, os.path.basename(original) + ".seq"), room=len(".tmp") + 1)

    def _reserved_seq(self, original: str, mtime_ns: int) -> Optional[int]:
        try:
            with open(self._side_file(original), "rb") as f:
                doc = json.loads(f.read())
            if int(doc["mtime_ns"]) == mtime_ns:
                return int(doc["seq"])
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("camera %s: ignoring an unreadable reservation for %s (%s)", self.cfg.name, original, exc)
        return None

    def _prune_reservations(self) -> None:
        """Side files whose image is gone (a crash between the done action and the side file's unlink)."""
        try:
            names = os.listdir(self.state_dir)
        except OSError:
            return
        for name in names:
            if name.endswith(".seq") and not os.path.lexists(os.path.join(self.folder, name[:-4])) \
                    and not os.path.lexists(os.path.join(self.folder, self._image_of(name))):
                try:
                    os.unlink(os.path.join(self.state_dir, name))
                except OSError:
                    pass

    def _image_of(self, side_name: str) -> str:
        """The image name a side file keeps (a shortened side file's name is not the image's); "" unknown."""
        try:
            with open(os.path.join(self.state_dir, side_name), "rb") as f:
                name = json.loads(f.read(8192)).get("name")
            return name if isinstance(name, str) and name and "/" not in name else ""
        except (OSError, ValueError, AttributeError):
            return ""

    def reserve(self, frame: Frame, seq: int) -> None:
        path = frame.path
        if path is None or frame.seq is not None:
            return
        original, _ = parse_inflight(path)
        side = self._side_file(original)
        tmp = os.path.join(self.state_dir, f".{os.path.basename(side)}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(json.dumps({"seq": int(seq), "mtime_ns": frame.mtime_ns,
                                    "name": os.path.basename(original)}).encode())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, side)
            fsync_dir(self.state_dir)   # a power cut now cannot lose seq and hand it to another reading
        except OSError as exc:
            # Still stored and published; only a crash before done() would now give it a second id.
            log.error("camera %s: cannot reserve seq %d for %s (%s)", self.cfg.name, seq, path, exc.strerror)
            return
        frame.seq = seq

    # ------------------------------------------------------------ acknowledgements (through FolderAck)

    def done(self, frame: Frame) -> None:
        path = frame.path
        if path is None:
            return
        try:
            self._finish_file(path)
        except OSError as exc:
            # Stored already: keep it claimed so it is not OCR'd again, and retry only the action.
            attempts = self._claims.unmoved().get(path, (0.0, 0))[1] + 1
            self._claims.set_unmoved(path, (time.monotonic() + min(RETRY_MAX_S, RETRY_INITIAL_S * 2.0 ** attempts),
                                            attempts))
            if attempts == 1:
                log.error("camera %s: cannot %s %s (%s); its reading is stored, retrying the %s", self.cfg.name,
                          self.cfg.done_action, path, exc.strerror, self.cfg.done_action)
            return
        self._claims.set_unmoved(path, None)
        self._claims.discard(path)

    def _finish_file(self, path: str) -> None:
        original, _ = parse_inflight(path)
        try:
            self._act(path, original)
        except FileNotFoundError:
            if os.path.lexists(path):   # the file is there: what is missing is done_dir (removed by hand)
                if self.cfg.done_action != "move":
                    raise
                log.warning("camera %s: done_dir %s is gone; made again", self.cfg.name, self.done_dir)
                os.makedirs(self.done_dir, exist_ok=True)
                self._act(path, original)   # raises again: the caller keeps it claimed and retries
            # else the file was taken away meanwhile: nothing left to finish
        try:
            os.unlink(self._side_file(original))
        except FileNotFoundError:
            pass
        except OSError as exc:   # a stale side file is ignored by its mtime, and pruned at the next open
            log.warning("camera %s: cannot remove the reservation of %s (%s)", self.cfg.name, path, exc.strerror)

    def _act(self, path: str, original: str) -> None:
        action = self.cfg.done_action
        if action == "delete":
            os.unlink(path)
        elif action == "mark":
            os.replace(path, _free_name(original + ".done"))
        else:
            move_file(path, _free_name(os.path.join(self.done_dir, os.path.basename(original))))
            fsync_dir(self.done_dir)   # the new entry first: a power cut must not keep only the removal
        # The action is on disk before the reservation goes: a power cut cannot leave the file in the folder
        # without its seq.
        fsync_dir(self.folder)

    def _retry_unmoved(self) -> None:
        unmoved = self._claims.unmoved()
        now = time.monotonic()
        for path, (due, _) in unmoved.items():
            if now >= due:
                self.done(Frame(camera=self.cfg.name, image=None, captured_at=0.0, path=path))
                if path not in self._claims.unmoved():
                    log.info("camera %s: %s finished (%s) after a retry", self.cfg.name, path, self.cfg.done_action)

    def release(self, frame: Frame) -> None:
        self._claims.discard(frame.path)

    def reject(self, frame: Frame, why: str) -> None:
        path = frame.path
        if path is None:
            return
        original, _ = parse_inflight(path)
        where = self.done_dir if self.cfg.done_action == "move" else os.path.dirname(path)
        target = _free_name(os.path.join(where, os.path.basename(original) + ".bad"))
        try:
            move_file(path, target)
            log.warning("camera %s: %s is unreadable (%s); set aside as %s", self.cfg.name, path, why, target)
        except OSError as exc:   # kept claimed: not read (nor logged) again until a restart
            log.error("camera %s: cannot set aside unreadable %s (%s); left where it is, not read again until the "
                      "daemon restarts", self.cfg.name, path, exc.strerror)
            self._claims.add(path)
            return
        try:
            os.unlink(self._side_file(original))
        except OSError:
            pass
        self._claims.discard(path)
