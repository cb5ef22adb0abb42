"""Cameras read through OpenCV's VideoCapture: V4L2 devices, GStreamer pipelines, RTSP streams, video files.

GStreamer (Jetson CSI cameras). The pipeline string must end in an appsink that hands BGR frames; for a CSI
sensor on a Jetson::

    nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1 !
    nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR !
    appsink drop=true max-buffers=1

(one line in config.yaml; ``drop=true max-buffers=1`` keeps only the newest frame, as the hub does).
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
import time
from typing import Optional

import cv2

from daemon.config import CameraConfig
from daemon.sources.base import CorruptFrame, Frame, Reader, SourceError
from daemon.sources.redact import redact_uri

log = logging.getLogger(__name__)

FAILED_READS_BEFORE_RECONNECT = 5   # a USB camera returns a few empty buffers while it settles
OPEN_TIMEOUT_MS = 10_000            # RTSP: bound FFmpeg's open and read so the watchdog sees a dead stream
READ_TIMEOUT_MS = 5_000
FILE_CHECK_PERIOD_S = 1.0           # how often a playing file is checked for still being there


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
            raise SourceError(f"cannot open {cfg.kind} source {redact_uri(cfg.uri)!r}")
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
