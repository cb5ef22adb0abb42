"""Video-file sources through OpenCV: frames with ROI, the frame-rate cap, looping, and reconnecting when the
file disappears and comes back; and where FFmpeg's and OpenCV's own stderr lines land beside the camera's."""
import os
import random
import shutil
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from broker import free_port
from daemon.config import CameraConfig
from daemon.sources import FrameHub, make_source
from daemon.sources.capture import gstreamer_available, VideoCaptureReader
from daemon.sources.base import SourceError
from service_support import ROOT


def write_video(path, n_frames=20, fps=50, size=(160, 120)):
    w, h = size
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert vw.isOpened()
    for i in range(n_frames):
        img = np.full((h, w, 3), i * 10 % 256, np.uint8)
        cv2.putText(img, str(i), (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 2)
        vw.write(img)
    vw.release()


def collect(hub, seconds, max_frames=1):
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        out += hub.take(max_frames, 0.05, 0)
    return out


def test_file_frames_have_roi_applied_and_the_rate_cap(tmp_path):
    video = tmp_path / "v.avi"
    write_video(video, n_frames=200, fps=100)
    hub = FrameHub()
    cam = CameraConfig(name="c1", kind="file", uri=str(video), roi=(10, 20, 100, 50), max_fps=10.0)
    src = make_source(cam, hub)
    src.start()
    try:
        frames = collect(hub, 1.5)
    finally:
        src.stop()
    assert frames and all(f.image.shape == (50, 100, 3) and f.image.dtype == np.uint8 for f in frames)
    assert all(f.camera == "c1" and f.path is None for f in frames)
    # 10 fps cap over 1.5 s: about 15 frames, not the 100 fps the file plays at.
    assert 5 <= len(frames) <= 18, len(frames)
    assert src.counters.rate_limited > 0


def test_file_ends_idle_without_loop_and_replays_with_loop(tmp_path):
    video = tmp_path / "v.avi"
    write_video(video, n_frames=10, fps=100)
    for loop, check in ((False, lambda n: n == 10), (True, lambda n: n > 10)):
        hub = FrameHub()
        src = make_source(CameraConfig(name="c", kind="file", uri=str(video), loop=loop), hub)
        src.start()
        try:
            # Take every frame (no overwrite): the file plays at 100 fps, we poll faster.
            n = len(collect(hub, 0.6))
            state = src.health().state
        finally:
            src.stop()
        assert check(n), (loop, n)
        if not loop:
            assert state == "idle"


def test_a_stop_ends_the_capture_thread_of_a_slow_file_at_once_not_a_frame_period_later(tmp_path):
    """A file at 1 fps waits a second between frames: a stop must end that wait, or the thread outlives the stop's
    join and, at the process's exit, wakes inside OpenCV (an abort, exit code 134)."""
    video = tmp_path / "slow.avi"
    write_video(video, n_frames=5, fps=1)
    hub = FrameHub()
    src = make_source(CameraConfig(name="c", kind="file", uri=str(video), watchdog_s=0), hub)
    src.start()
    try:
        end = time.monotonic() + 10.0
        while not hub.take(1, 0.05, 0):      # the first frame; the reader then waits a second for the next one
            assert time.monotonic() < end
    finally:
        src.stop(join_timeout_s=0.5)
    assert not src._thread.is_alive()


def test_camera_file_disappears_and_comes_back_source_reconnects(tmp_path):
    video, backup = tmp_path / "cam.avi", tmp_path / "backup.avi"
    write_video(backup, n_frames=30, fps=50)
    shutil.copy(backup, video)
    hub = FrameHub()
    cam = CameraConfig(name="c", kind="file", uri=str(video), loop=True,
                       reconnect_initial_s=0.1, reconnect_max_s=0.4)
    src = make_source(cam, hub, rng=random.Random(1))
    src.start()
    try:
        assert collect(hub, 0.5)
        os.unlink(video)
        time.sleep(1.6)                       # the file check runs every second
        assert src.health().state == "connecting"
        assert "disappeared" in src.health().error or "does not exist" in src.health().error
        hub.take(1, 0, 0)                     # forget a frame from before the cut
        assert not collect(hub, 0.3)
        shutil.copy(backup, video)
        time.sleep(0.8)                       # backoff is at most 0.4 s +-20 %
        frames = collect(hub, 0.5)
    finally:
        src.stop()
    assert frames, "no frames after the file came back"
    assert src.counters.reconnects >= 1 and src.counters.open_failures >= 1
    assert src.health().state in ("streaming", "stopped")


def test_missing_file_is_a_source_error_naming_it(tmp_path):
    with pytest.raises(SourceError, match="nope.avi"):
        VideoCaptureReader(CameraConfig(name="c", kind="file", uri=str(tmp_path / "nope.avi")))


def test_gstreamer_without_support_names_the_jetpack_opencv(tmp_path):
    if gstreamer_available():
        pytest.skip("this OpenCV has GStreamer; the error path cannot be shown")
    with pytest.raises(SourceError, match="JetPack"):
        VideoCaptureReader(CameraConfig(name="c", kind="gstreamer", uri="videotestsrc ! appsink"))


def test_video_file_frames_carry_their_index_in_the_file(tmp_path):
    # The payload's source names the frame, so a subscriber can find the reading in the clip.
    video = tmp_path / "v.avi"
    write_video(video, n_frames=6, fps=100)
    r = VideoCaptureReader(CameraConfig(name="c", kind="file", uri=str(video), loop=True))
    try:
        frames = []
        while len(frames) < 9:
            f = r.read()
            if f is not None:
                frames.append(f)
    finally:
        r.close()
    assert [f.source for f in frames] == [{"kind": "file", "frame": i % 6} for i in range(9)]   # 0 again after a loop
    assert abs(int(frames[2].image[5, 5, 0]) - 20) <= 4       # frame 2 as written (grey level i * 10, MJPEG)


OPEN_ONE_CAMERA = """
import sys, time
from daemon.cli import setup_logging
from daemon.config import CameraConfig
from daemon.sources import CaptureSource, FrameHub
from daemon.sources.capture import VideoCaptureReader

setup_logging("INFO")   # the daemon's own log format, on stderr as under systemd
cam = CameraConfig(name="dock-7", kind="rtsp", uri=sys.argv[1], reconnect_initial_s=30.0, reconnect_max_s=30.0)
src = CaptureSource(cam, VideoCaptureReader, FrameHub())
src.start()
end = time.monotonic() + 60
while src.counters.open_failures < 1 and time.monotonic() < end:
    time.sleep(0.05)
src.stop()
"""


@pytest.mark.skipif(not any(line.strip().startswith("FFMPEG:") and "YES" in line
                            for line in cv2.getBuildInformation().splitlines()),
                    reason="this OpenCV has no FFmpeg backend to read rtsp://")
def test_what_ffmpeg_and_opencv_print_of_an_open_lies_between_the_cameras_own_lines(tmp_path):
    # The libraries write to fd 2 themselves, without the camera's name: a real process shows where their lines land.
    port = free_port()   # nothing listens there: FFmpeg says the connection was refused
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}   # the libraries' default levels
    out = subprocess.run([sys.executable, "-c", OPEN_ONE_CAMERA, f"rtsp://ocr:pw-42@127.0.0.1:{port}/label"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    opening = [i for i, t in enumerate(lines)
               if f"camera dock-7: opening (rtsp rtsp://ocr:***@127.0.0.1:{port}/label)" in t]
    retrying = [i for i, t in enumerate(lines) if "camera dock-7: cannot open rtsp source" in t and "retrying" in t]
    library = [i for i, t in enumerate(lines) if t.startswith("[")]   # "[tcp @ 0x...]", "[ WARN:0@0.01]"
    assert len(opening) == 1 and len(retrying) == 1, out.stderr
    assert library and all(opening[0] < i < retrying[0] for i in library), out.stderr
