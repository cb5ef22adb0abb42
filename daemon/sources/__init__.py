"""Camera sources: one capture thread per camera feeding a FrameHub (see base.py for the shared machinery).

``make_source(cfg, hub)`` picks the reader for ``cfg.kind``: v4l2, gstreamer, rtsp and file share the
OpenCV VideoCapture reader (capture.py, which documents the Jetson CSI GStreamer template); folder and
sample have their own modules.
"""
from __future__ import annotations

import random
from typing import Optional

from daemon.config import CameraConfig
from daemon.sources.base import (NO_ACK, CaptureSource, CorruptFrame, Frame, FrameAck, FrameSink, Reader,
                                 SourceError, SourceHealth)
from daemon.sources.hub import FrameHub

__all__ = ["NO_ACK", "CaptureSource", "CorruptFrame", "Frame", "FrameAck", "FrameHub", "Reader", "SourceError",
           "SourceHealth", "make_source"]


def make_source(cfg: CameraConfig, sink: FrameSink, rng: Optional[random.Random] = None) -> CaptureSource:
    if cfg.kind == "folder":
        from daemon.sources.folder import Claims, FolderReader

        claims = Claims()   # outlives each reader, so a reopened folder does not re-hand files in flight
        return CaptureSource(cfg, lambda c: FolderReader(c, claims), sink, rng)
    if cfg.kind == "sample":
        from daemon.sources.sample import SampleReader

        return CaptureSource(cfg, SampleReader, sink, rng)
    from daemon.sources.capture import VideoCaptureReader

    return CaptureSource(cfg, VideoCaptureReader, sink, rng)
