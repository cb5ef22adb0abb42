"""Cameras read through OpenCV's VideoCapture: V4L2 devices, GStreamer pipelines, RTSP streams, video files.

GStreamer (Jetson CSI cameras). The pipeline string must end in an appsink that hands BGR frames; for a CSI
sensor on a Jetson::

    nvarguscamerasrc name=dock1 sensor-id=0 ! video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1 !
    nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR !
    appsink drop=true max-buffers=1

(one line in config.yaml; ``drop=true max-buffers=1`` keeps only the newest frame, as the hub does; ``name=``, the
camera's name, is what GStreamer's errors on stderr name: docs/cameras.md).
The opencv-python wheel from PyPI is built without GStreamer; JetPack's system OpenCV (apt
``python3-opencv`` / ``nvidia-opencv``) has it: run the daemon with that OpenCV (a venv created with
``--system-site-packages`` and no opencv-python wheel in it).

A live camera that fails a few reads in a row is treated as gone and reopened with backoff; a single
failed read is a corrupt frame. A video file ends (idle, or rewound with ``loop: true``); if the file
disappears, the source reconnects until it is back.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from typing import Optional
from urllib.parse import urlsplit

import cv2

from daemon.config import CameraConfig
from daemon.sources.base import CorruptFrame, Frame, Reader, SourceError
from daemon.sources.redact import redact_uri

log = logging.getLogger(__name__)

FAILED_READS_BEFORE_RECONNECT = 5   # a USB camera returns a few empty buffers while it settles
OPEN_TIMEOUT_MS = 10_000            # RTSP: bound FFmpeg's open and read so the watchdog sees a dead stream
READ_TIMEOUT_MS = 5_000
PROBE_TIMEOUT_S = 2.0               # a camera that did not open: how long to wait for its host to answer
FILE_CHECK_PERIOD_S = 1.0           # how often a playing file is checked for still being there


def why_not_opened(cfg: CameraConfig) -> str:
    """What a camera that OpenCV could not open most likely lacks. OpenCV only says "not opened" (the cause goes to
    the libraries' own stderr, without the camera's name), so the usual causes are looked at directly: a device
    that is not there, a host that does not resolve or answer; what is left is said as what it may be."""
    if cfg.kind == "v4l2":
        target = _v4l2_target(cfg.uri)
        path = f"/dev/video{target}" if isinstance(target, int) else str(target)
        if not os.path.exists(path):
            return f"{path} does not exist (is the camera plugged in?)"
        if not os.access(path, os.R_OK | os.W_OK):
            return f"{path} cannot be opened by this user (the video group?)"
        return f"{path} is there but did not open (another process using it, or not a capture device)"
    if cfg.kind == "rtsp":
        parts = urlsplit(cfg.uri)
        host, port = parts.hostname, _port_of(parts, 554)
        if not host:
            return "the URI names no host"
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            return f"the host {host!r} does not resolve ({exc})"
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
        except OSError as exc:
            return f"nothing answers on {host}:{port} ({exc.strerror or exc})"
        return (f"{host}:{port} answers but the stream did not open: a wrong path, user or password, or a codec "
                f"this OpenCV lacks")
    if cfg.kind == "gstreamer":
        return "the pipeline did not start: try it with gst-launch-1.0 (an element missing, or caps that do not link)"
    return "OpenCV could not open it"


def _port_of(parts, default: int) -> int:
    try:
        return parts.port or default
    except ValueError:   # a port that is not a number
        return default


def gstreamer_available() -> bool:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


def _v4l2_target(uri: str) -> int | str:
    return int(uri) if uri.isdigit() else uri


class VideoCaptureReader(Reader):
    def __init__(self, cfg: CameraConfig):
        self.cfg = cfg
        self._failed_reads = 0
        self._is_file = cfg.kind == "file"
        self._period_s = 0.0
        self._next_due = 0.0
        self._ended = False
        self._last_check = time.monotonic()
        self._index = 0   # video file: the index in the file of the next frame read (0 again after a rewind)
        self._cap = self._open()

    def _open(self) -> "cv2.VideoCapture":
        cfg = self.cfg
        if cfg.kind == "gstreamer":
            if not gstreamer_available():
                raise SourceError(
                    "this OpenCV has no GStreamer support (cv2.getBuildInformation() says GStreamer: NO); "
                    "the opencv-python wheel from PyPI lacks it, JetPack's system OpenCV has it: run the daemon "
                    "with the system OpenCV: `sudo systemd/install.sh --gpu` builds such a venv (systemd/make-venv.sh --gpu)")
            cap = cv2.VideoCapture(cfg.uri, cv2.CAP_GSTREAMER)
        elif cfg.kind == "v4l2":
            cap = cv2.VideoCapture(_v4l2_target(cfg.uri), cv2.CAP_V4L2)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)   # the newest frame, not one queued seconds ago
        elif cfg.kind == "rtsp":
            cap = cv2.VideoCapture(cfg.uri, cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS,
                                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS])
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        elif cfg.kind == "file":
            if not os.path.isfile(cfg.uri):
                raise SourceError(f"video file {cfg.uri!r} does not exist")
            cap = cv2.VideoCapture(cfg.uri)
            fps = cap.get(cv2.CAP_PROP_FPS)
            # Play a file at its own rate (a camera stand-in); max_fps may slow it further.
            self._period_s = 1.0 / fps if 1.0 <= fps <= 240.0 else 0.0
        else:
            raise SourceError(f"kind {cfg.kind!r} is not read through VideoCapture")
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {cfg.kind} source {redact_uri(cfg.uri)!r}: {why_not_opened(cfg)}")
        return cap

    def read(self) -> Optional[Frame]:
        if self._is_file:
            return self._read_file()
        ok, image = self._cap.read()
        if not ok or image is None:
            self._failed_reads += 1
            if self._failed_reads >= FAILED_READS_BEFORE_RECONNECT:
                raise SourceError(f"{self._failed_reads} failed reads in a row from {redact_uri(self.cfg.uri)!r}")
            raise CorruptFrame("the device returned no image")
        self._failed_reads = 0
        return Frame(camera=self.cfg.name, image=image, captured_at=time.time())

    def _read_file(self) -> Optional[Frame]:
        now = time.monotonic()
        if now - self._last_check >= FILE_CHECK_PERIOD_S:
            self._last_check = now
            # An open descriptor keeps reading a deleted file: look at the path itself.
            if not os.path.isfile(self.cfg.uri):
                raise SourceError(f"video file {self.cfg.uri!r} disappeared")
        if self._ended:
            return None
        if self._period_s and now < self._next_due and not self.pause(self._next_due - now):
            return None   # stopped: the capture thread ends without another driver call
        self._next_due = max(self._next_due, time.monotonic()) + self._period_s
        ok, image = self._cap.read()
        if ok and image is not None:
            return self._file_frame(image)
        if not self.cfg.loop:
            log.info("camera %s: end of %s", self.cfg.name, self.cfg.uri)
            self._ended = True
            return None
        # Reopen rather than seek: some containers cannot seek, and a replaced file must be read anew.
        self._cap.release()
        self._cap = self._open()
        self._index = 0
        ok, image = self._cap.read()
        if not ok or image is None:
            raise SourceError(f"video file {self.cfg.uri!r} yields no frame")
        return self._file_frame(image)

    def _file_frame(self, image) -> Frame:
        """A frame of the video file, named by its index so a subscriber can find it in the file."""
        frame = Frame(camera=self.cfg.name, image=image, captured_at=time.time(),
                      source={"kind": "file", "frame": self._index})
        self._index += 1
        return frame

    def close(self) -> None:
        self._cap.release()


def open_capture(cfg: CameraConfig) -> Reader:
    return VideoCaptureReader(cfg)
