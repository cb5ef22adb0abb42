"""Image folder: a scanner drops files in, each is read once (oldest first) and finished after its result is stored.

A file stays in the folder until the service reports its result durably in the outbox (``done``); only then
is it moved to ``done_dir``, deleted, or renamed to ``<name>.done`` (``done_action``). A daemon killed in
between finds the file again on restart and processes it again: at-least-once, never lost. So that the
second pass publishes under the same message id, the service reserves the result's sequence number in the
file name before it stores the result (``reserve``: ``<name>.seq<N>.inflight``); a file found under that
name is processed again with that number. A file is
picked up only when its mtime is ``SETTLE_S`` old, so a scanner still writing it is not read half-written.
An unreadable image is set aside as ``<name>.bad`` (in ``done_dir`` for ``move``, in place otherwise)
and counted, so it is not retried forever and can be inspected.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import deque
from typing import Optional

from daemon.config import CameraConfig
from daemon.sources.base import CorruptFrame, Frame, Reader, SourceError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
SETTLE_S = 0.5          # scanners write in chunks; a file untouched this long is complete
RESCAN_PERIOD_S = 0.2   # listing a folder of a few thousand entries costs well under a millisecond each
_INFLIGHT = re.compile(r"^(?P<name>.+)\.seq(?P<seq>\d+)\.inflight$")


def inflight_name(path: str, seq: int) -> str:
    return f"{path}.seq{seq}.inflight"


def parse_inflight(path: str) -> tuple[str, Optional[int]]:
    """(original path, reserved seq) of a file; seq is None for a file not yet reserved."""
    m = _INFLIGHT.match(path)
    return (m.group("name"), int(m.group("seq"))) if m else (path, None)


def done_dir_of(cfg: CameraConfig) -> str:
    return cfg.done_dir or os.path.join(cfg.uri, "done")


def list_ready(folder: str, now_s: float, settle_s: float, exclude: set[str]) -> list[tuple[int, str]]:
    """(mtime_ns, path) of the image files ready for reading, oldest first (then by name)."""
    ready = []
    with os.scandir(folder) as entries:
        for e in entries:
            original, _ = parse_inflight(e.name)
            if e.name.startswith(".") or not original.lower().endswith(IMAGE_SUFFIXES) or e.path in exclude:
                continue
            try:
                if not e.is_file(follow_symlinks=False):
                    continue
                st = e.stat(follow_symlinks=False)
            except OSError:   # removed between listing and stat
                continue
            if now_s - st.st_mtime >= settle_s:
                ready.append((st.st_mtime_ns, e.path))
    ready.sort()
    return ready


def _free_name(path: str) -> str:
    """path, or path with a counter when taken: a scanner that reuses file names must not overwrite old ones."""
    if not os.path.exists(path):
        return path
    stem, ext = os.path.splitext(path)
    n = 1
    while os.path.exists(f"{stem}.{n}{ext}"):
        n += 1
    return f"{stem}.{n}{ext}"


class Claims:
    """Paths handed out and not yet done or released; shared by the successive readers of one camera, so a
    reader reopened after an error does not hand again a file that is still in the pipeline."""

    def __init__(self) -> None:
        self._paths: set[str] = set()
        self._lock = threading.Lock()

    def add(self, path: str) -> None:
        with self._lock:
            self._paths.add(path)

    def discard(self, path: Optional[str]) -> None:
        with self._lock:
            self._paths.discard(path)

    def snapshot(self) -> set[str]:
        with self._lock:
            return set(self._paths)


class FolderReader(Reader):
    lossless = True
    wait_for_rate = True

    def __init__(self, cfg: CameraConfig, claims: Optional[Claims] = None, settle_s: float = SETTLE_S):
        self.cfg = cfg
        self.folder = cfg.uri
        self.done_dir = done_dir_of(cfg)
        self.settle_s = settle_s
        if not os.path.isdir(self.folder):
            raise SourceError(f"image folder {self.folder!r} does not exist")
        if not os.access(self.folder, os.R_OK | os.W_OK | os.X_OK):
            raise SourceError(f"image folder {self.folder!r} is not readable and writable by this user")
        if cfg.done_action == "move":
            try:
                os.makedirs(self.done_dir, exist_ok=True)
            except OSError as exc:
                raise SourceError(f"cannot create done_dir {self.done_dir!r} ({exc.strerror})") from None
        self._queue: deque[tuple[int, str]] = deque()
        self._claims = claims if claims is not None else Claims()
        self._last_scan = 0.0

    def read(self) -> Optional[Frame]:
        from daemon.imageio import ImageError, read_image

        if not self._queue and time.monotonic() - self._last_scan >= RESCAN_PERIOD_S:
            self._last_scan = time.monotonic()
            try:
                self._queue.extend(list_ready(self.folder, time.time(), self.settle_s, self._claims.snapshot()))
            except OSError as exc:
                raise SourceError(f"cannot list image folder {self.folder!r} ({exc.strerror})") from None
        if not self._queue:
            return None
        mtime_ns, path = self._queue.popleft()
        # The file's mtime is when the scanner took the picture; renames keep it, so a file processed again
        # after a restart has the same captured_at (and, with its reserved seq, the same message id).
        frame = Frame(camera=self.cfg.name, image=None, captured_at=mtime_ns / 1e9, path=path, mtime_ns=mtime_ns,
                      seq=parse_inflight(path)[1])
        try:
            frame.image = read_image(path)
        except ImageError as exc:
            if not os.path.exists(path):
                return None   # taken away by someone else meanwhile
            self.reject(frame, str(exc))
            raise CorruptFrame(str(exc)) from None
        self._claims.add(path)
        return frame

    def reserve(self, frame: Frame, seq: int) -> None:
        path = frame.path
        if path is None or frame.seq is not None:
            return
        target = inflight_name(path, seq)
        try:
            os.replace(path, target)
        except OSError as exc:
            # Still stored and published; only a crash before done() would now give it a second id.
            log.error("camera %s: cannot reserve seq %d in %s (%s)", self.cfg.name, seq, path, exc.strerror)
            return
        self._claims.add(target)
        self._claims.discard(path)
        frame.path, frame.seq = target, seq

    def done(self, frame: Frame) -> None:
        path = frame.path
        if path is None:
            return
        original, _ = parse_inflight(path)
        try:
            action = self.cfg.done_action
            if action == "delete":
                os.unlink(path)
            elif action == "mark":
                os.replace(path, _free_name(original + ".done"))
            else:
                os.replace(path, _free_name(os.path.join(self.done_dir, os.path.basename(original))))
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error("camera %s: cannot %s %s (%s); it will be processed again", self.cfg.name,
                      self.cfg.done_action, path, exc.strerror)
        finally:
            self._claims.discard(path)

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
            os.replace(path, target)
            log.warning("camera %s: %s is unreadable (%s); set aside as %s", self.cfg.name, path, why, target)
        except OSError as exc:
            log.error("camera %s: cannot set aside unreadable %s (%s)", self.cfg.name, path, exc.strerror)
        self._claims.discard(path)
