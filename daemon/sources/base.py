"""What every camera source shares: the Frame, the hand-off to the inference thread, and the capture thread.

A source kind only says how to open a device and read one image (a ``Reader``); ``CaptureSource`` owns the
thread around it: frame-rate cap, ROI, reconnect with exponential backoff and jitter, a watchdog that starts
a fresh reader when no frame came for ``watchdog_s``, and counters. A reader that hangs inside a driver call
cannot be interrupted from Python, so a watchdog restart starts a new thread (a new "generation"); the old
one exits as soon as its call returns and sees it is stale.

Each frame carries its own acknowledgement (``Frame.ack``, a ``FrameAck``): the image folder attaches one that
finishes or releases its file; live cameras carry ``NO_ACK``. Whoever holds the frame (the hub, the service,
a stale capture thread) acknowledges through it and never looks the source up. Every text shown (log lines,
errors in ``SourceHealth``) goes through ``redact_uri``: a URI's password never reaches the journal.
"""
from __future__ import annotations

import logging
import random
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from daemon.backoff import backoff_delay_s
from daemon.config import CameraConfig
from daemon.sources.redact import redact_uri

log = logging.getLogger(__name__)



class SourceError(RuntimeError):
    """The device cannot be opened or has gone away; the capture thread reconnects with backoff."""


class CorruptFrame(RuntimeError):
    """One unreadable frame or image: counted and skipped, never fatal."""


class FrameTooLarge(CorruptFrame):
    """An image over the decode limits (max_file_bytes, max_frame_pixels), set aside unread; counted as
    corrupt and as too_large."""


class NotRegularFile(CorruptFrame):
    """A folder entry named like an image that is a symlink, FIFO, directory or device: never opened, set aside;
    counted as corrupt and as not_regular."""


class FrameAck:
    """What a frame's source must hear about its result; this one hears nothing (live cameras, samples).

    The service calls these and never looks the source up: ``reserve(seq)`` before the result is stored (so a
    second pass after a crash reuses seq and with it the message id), then exactly one of ``done()`` (the
    result is durable in the outbox, or the frame needs none: let the file go), ``release()`` (not stored:
    hand it again later) or ``reject(why)`` (it can never be handled: set it aside)."""

    def reserve(self, seq: int) -> None:
        pass

    def done(self) -> None:
        pass

    def release(self) -> None:
        pass

    def reject(self, why: str) -> None:
        pass


NO_ACK = FrameAck()


@dataclass
class Frame:
    camera: str
    image: np.ndarray            # BGR uint8, ROI applied
    captured_at: float           # epoch seconds
    path: Optional[str] = None   # folder source: the image file, acknowledged once its result is stored
    mtime_ns: int = 0            # folder source: the file's mtime when it was read
    seq: Optional[int] = None    # folder source: the result seq reserved for this file by an earlier pass
    ack: FrameAck = NO_ACK       # the frame's own acknowledgement handle
    # What the payload names as the reading's origin: {"kind": ..., "file": name} for a folder,
    # {"kind": "file", "frame": index} for a video file, {"kind": ...} for live cameras.
    source: dict = field(default_factory=dict)
    # What the detector looks for lines in instead of image (cameras[].equalize_detection: an equalized copy, of
    # image's size); None: image. The recognizer, the print grade and the code reader read image.
    detect_image: Optional[np.ndarray] = None


@dataclass
class SourceCounters:
    frames: int = 0          # handed to the hub
    corrupt: int = 0         # unreadable frames or images, skipped
    reconnects: int = 0      # successful re-opens after the first open
    open_failures: int = 0
    watchdog_restarts: int = 0
    rate_limited: int = 0    # frames read but skipped by max_fps
    too_large: int = 0       # images over the decode limits, set aside unread (also counted in corrupt)
    not_regular: int = 0     # folder entries named like images that are no regular file, set aside (also corrupt)


@dataclass(frozen=True)
class SourceHealth:
    # streaming: frames arrive; idle: open and polling, nothing to read by design (an empty folder);
    # connecting: opening or waiting to reconnect; stopped.
    state: str
    last_frame_at: float      # epoch s, 0 = never
    heartbeat_at: float       # epoch s of the capture thread's last sign of life
    error: str = ""

    @property
    def down_because(self) -> str:
        """Why a camera that is connecting is not streaming (redacted, as the log says it); "" otherwise."""
        return self.error if self.state == "connecting" else ""


def apply_roi(image: np.ndarray, roi: tuple[int, ...]) -> np.ndarray:
    """Crops [x, y, width, height], clipped to the frame; an ROI outside the frame is a CorruptFrame."""
    if not roi:
        return image
    x, y, w, h = roi
    height, width = image.shape[:2]
    x1, y1 = min(x + w, width), min(y + h, height)
    if x >= width or y >= height or x1 <= x or y1 <= y:
        raise CorruptFrame(f"roi {list(roi)} lies outside the {width}x{height} frame")
    # A copy, so the latest-frame slot does not pin the whole frame buffer of the driver.
    return np.ascontiguousarray(image[y:y1, x:x1])


def as_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """Normalizes what a driver returns (grey, BGRA, 16-bit) to BGR uint8."""
    import cv2

    if image is None or not isinstance(image, np.ndarray) or image.size == 0:
        raise CorruptFrame("empty frame")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise CorruptFrame(f"unsupported frame dtype {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise CorruptFrame(f"unsupported frame shape {image.shape}")


class Reader:
    """One opened device. ``read`` returns a frame, None when there is nothing yet (idle, poll again),
    raises CorruptFrame for one bad frame and SourceError when the device is gone."""

    # Folder readers hand every image once: the hub must not overwrite their frames.
    lossless = False
    # Folders and samples are paced by waiting for max_fps; cameras and video files (which play at their
    # own frame rate) are read at their own rate and the surplus skipped, so no driver buffer fills with
    # stale frames.
    wait_for_rate = False
    # The source's stop, set by its capture thread: a reader that paces its own frames waits on it, so a stop (and
    # the process's exit after it) never waits out a frame period, nor finds the thread back in a driver call.
    stopping: Optional[threading.Event] = None

    def read(self) -> Optional[Frame]:
        raise NotImplementedError

    def pause(self, seconds: float) -> bool:
        """Waits `seconds` between two frames; False when the source was stopped meanwhile."""
        if self.stopping is None:
            time.sleep(seconds)
            return True
        return not self.stopping.wait(seconds)

    def close(self) -> None:
        pass


class FrameSink:
    """Where a capture thread hands frames (daemon.sources.hub.FrameHub implements it)."""

    def put(self, frame: Frame, lossless: bool, stop: threading.Event) -> None:
        raise NotImplementedError


@dataclass
class _State:
    state: str = "connecting"   # connecting, opened, idle, stopped
    opened_at: float = 0.0
    last_frame_at: float = 0.0    # a frame came out of the device (even one skipped by max_fps)
    heartbeat_at: float = field(default_factory=time.time)
    error: str = ""


class CaptureSource:
    """One camera: a capture thread reading through ``open_reader`` into ``sink``."""

    IDLE_POLL_S = 0.2   # how often an idle reader (empty folder) is polled

    def __init__(self, cfg: CameraConfig, open_reader: Callable[[CameraConfig], Reader], sink: FrameSink,
                 rng: Optional[random.Random] = None):
        self.cfg = cfg
        self.name = cfg.name
        self.counters = SourceCounters()
        self._open_reader = open_reader
        self._sink = sink
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._generation = 0
        self._stop = threading.Event()
        self._st = _State()
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------ control (any thread)

    def start(self) -> None:
        self._stop.clear()
        self._spawn()

    def stop(self, join_timeout_s: float = 2.0) -> None:
        self._stop.set()
        with self._lock:
            self._generation += 1
            self._st.state = "stopped"
        if self._thread is not None:
            self._thread.join(join_timeout_s)   # a thread stuck in a driver call is a daemon thread: abandoned

    def check_watchdog(self, now: Optional[float] = None) -> bool:
        """Restarts the reader when no frame came for watchdog_s while it was not idle; True if it did."""
        wd = self.cfg.watchdog_s
        if wd <= 0 or self._stop.is_set():
            return False
        now = time.time() if now is None else now
        with self._lock:
            st = self._st
            # An idle reader (empty folder) has nothing to deliver; a connecting one is in its backoff.
            if st.state != "opened" or now - max(st.last_frame_at, st.opened_at) < wd:
                return False
        log.warning("camera %s: no frame for %.0f s, restarting its source", self.name, wd)
        self.counters.watchdog_restarts += 1
        self._spawn()
        return True

    def health(self) -> SourceHealth:
        with self._lock:
            st = self._st
            state = "streaming" if st.state == "opened" else st.state
            return SourceHealth(state=state, last_frame_at=st.last_frame_at, heartbeat_at=st.heartbeat_at,
                                error=st.error)

    # ------------------------------------------------------------ the capture thread

    def _spawn(self) -> None:
        with self._lock:
            self._generation += 1
            gen = self._generation
            self._st.state = "connecting"
            self._st.heartbeat_at = time.time()
        self._thread = threading.Thread(target=self._run, args=(gen,), name=f"capture-{self.name}", daemon=True)
        self._thread.start()

    def _current(self, gen: int) -> bool:
        return gen == self._generation and not self._stop.is_set()

    def _set(self, gen: int, **changes) -> None:
        with self._lock:
            if gen != self._generation:
                return
            for k, v in changes.items():
                setattr(self._st, k, v)
            self._st.heartbeat_at = time.time()

    def _run(self, gen: int) -> None:
        attempt = 0
        opened_before = False
        what = f"{self.cfg.kind} {redact_uri(self.cfg.uri) or 'bundled samples'}"
        while self._current(gen):
            # FFmpeg, GStreamer and OpenCV print on stderr themselves, without the camera's name: this line and the
            # "opened" or "retrying" one after it bracket what they print about this attempt (docs/cameras.md).
            log.info("camera %s: opening (%s)", self.name, what)
            try:
                reader = self._open_reader(self.cfg)
            except Exception as exc:   # SourceError, or a driver's own exception: retried the same way
                self.counters.open_failures += 1
                delay = backoff_delay_s(attempt, self.cfg.reconnect_initial_s, self.cfg.reconnect_max_s, self._rng)
                attempt += 1
                self._set(gen, state="connecting", error=redact_uri(str(exc)))
                log.warning("camera %s: %s; retrying in %.1f s", self.name, redact_uri(str(exc)), delay)
                self._stop.wait(delay)
                continue
            if not self._current(gen):
                reader.close()
                return
            reader.stopping = self._stop
            if opened_before:
                self.counters.reconnects += 1
            opened_before = True
            frames_before = self.counters.frames
            self._set(gen, state="opened", opened_at=time.time(), error="")
            log.info("camera %s: opened (%s)", self.name, what)
            try:
                self._read_loop(gen, reader)
            except Exception as exc:   # SourceError, or a driver bug: neither may kill the camera for good
                known = isinstance(exc, SourceError)
                self._set(gen, state="connecting", error=redact_uri(str(exc) if known else repr(exc)))
                # A driver's traceback may quote the URI too: formatted here, redacted, never by logging.
                log.warning("camera %s: %s; reconnecting%s", self.name, redact_uri(str(exc)),
                            "" if known else "\n" + redact_uri("".join(traceback.format_exception(exc))).rstrip())
                # Back off from scratch only after a device that delivered; one that opens and fails at once
                # (a half-dead USB camera) keeps backing off further.
                attempt = 0 if self.counters.frames > frames_before else attempt + 1
                self._stop.wait(backoff_delay_s(max(0, attempt - 1), self.cfg.reconnect_initial_s,
                                                self.cfg.reconnect_max_s, self._rng))
            finally:
                reader.close()
        log.debug("camera %s: capture thread of generation %d ends", self.name, gen)

    def _read_loop(self, gen: int, reader: Reader) -> None:
        min_period_s = 1.0 / self.cfg.max_fps if self.cfg.max_fps > 0 else 0.0
        next_due = 0.0
        while self._current(gen):
            if min_period_s and reader.wait_for_rate:
                # A reader that can wait is read when its frame is due, not read and then held: a frame held
                # for the rate after it was read reached the loop a frame period older than its captured_at said.
                self._stop.wait(max(0.0, next_due - time.monotonic()))
                if not self._current(gen):
                    return
            try:
                frame = reader.read()
            except CorruptFrame as exc:
                self.counters.corrupt += 1
                if isinstance(exc, FrameTooLarge):
                    self.counters.too_large += 1
                if isinstance(exc, NotRegularFile):
                    self.counters.not_regular += 1
                self._set(gen)
                log.warning("camera %s: skipped an unreadable frame (%s)", self.name, redact_uri(str(exc)))
                continue
            if not self._current(gen):
                if frame is not None:
                    frame.ack.release()
                return
            if frame is None:
                self._set(gen, state="idle")
                self._stop.wait(self.IDLE_POLL_S)
                continue
            if min_period_s and time.monotonic() < next_due and not reader.wait_for_rate:
                self.counters.rate_limited += 1
                self._set(gen, state="opened", last_frame_at=time.time())
                continue
            next_due = max(next_due, time.monotonic()) + min_period_s if min_period_s else 0.0
            try:
                frame.image = apply_roi(as_bgr_uint8(frame.image), self.cfg.roi)
            except CorruptFrame as exc:
                self.counters.corrupt += 1
                self._set(gen)
                frame.ack.reject(str(exc))
                log.warning("camera %s: skipped an unusable frame (%s)", self.name, exc)
                continue
            frame.source.setdefault("kind", self.cfg.kind)
            self._set(gen, state="opened", last_frame_at=time.time())
            self.counters.frames += 1
            self._sink.put(frame, reader.lossless, self._stop)
            if reader.lossless:
                # A folder frame may wait for its slot while the pipeline is busy: that is not a silent device.
                self._set(gen, last_frame_at=time.time())
