"""Hand-off and capture-thread machinery: latest frame wins (drops counted), batches across cameras,
backoff with jitter, the watchdog restarting a source whose device hangs."""
import logging
import random
import threading
import time

import numpy as np
import pytest

from daemon.config import CameraConfig
from daemon.sources import CaptureSource, Frame, FrameHub
from daemon.backoff import backoff_delay_s
from daemon.sources.base import CorruptFrame, Reader, SourceError, apply_roi, as_bgr_uint8


def frame(cam, i=0):
    return Frame(camera=cam, image=np.full((4, 4, 3), i, np.uint8), captured_at=float(i))


def test_latest_frame_wins_and_overwrites_are_counted():
    hub, stop = FrameHub(), threading.Event()
    for i in range(5):
        hub.put(frame("a", i), False, stop)
    [f] = hub.take(4, 0.0, 0.0)
    assert f.captured_at == 4.0 and hub.dropped == {"a": 4}


def test_take_batches_ready_cameras_and_waits_briefly_for_stragglers():
    hub, stop = FrameHub(), threading.Event()
    hub.put(frame("a"), False, stop)
    threading.Timer(0.02, lambda: hub.put(frame("b"), False, stop)).start()
    t0 = time.monotonic()
    got = hub.take(2, 1.0, 0.5)
    assert [f.camera for f in got] == ["a", "b"] and time.monotonic() - t0 < 0.4
    hub.put(frame("c"), False, stop)
    t0 = time.monotonic()
    assert [f.camera for f in hub.take(2, 1.0, 0.05)] == ["c"]      # nobody else came: after batch_wait
    assert 0.04 <= time.monotonic() - t0 < 0.5
    assert hub.take(1, 0.05, 0.0) == []


def test_a_camera_in_a_read_cycle_goes_first_and_the_others_keep_their_order():
    hub, stop = FrameHub(), threading.Event()
    for cam, i in (("conveyor", 1), ("dock", 2), ("station", 3)):
        hub.put(frame(cam, i), False, stop)
    assert hub.captured_at("station") == 3.0 and hub.captured_at("nobody") is None
    assert [f.camera for f in hub.take(1, 0.0, 0.0, frozenset({"station"}))] == ["station"]
    assert hub.captured_at("station") is None
    assert [f.camera for f in hub.take(2, 0.0, 0.0, frozenset({"station"}))] == ["conveyor", "dock"]


def test_backoff_doubles_caps_and_jitters_over_the_upper_half():
    rng = random.Random(7)
    delays = [[backoff_delay_s(a, 1.0, 30.0, rng) for _ in range(200)] for a in range(8)]
    for attempt, ds in enumerate(delays):
        bound = min(30.0, 2.0 ** attempt)
        assert all(max(1.0, bound / 2) <= d <= bound for d in ds)
        if bound > 1.0:
            assert max(ds) - min(ds) > 0.3 * bound   # really spread, so cameras do not reconnect in lockstep


def test_roi_and_pixel_formats():
    img = np.arange(10 * 20 * 3, dtype=np.uint8).reshape(10, 20, 3)
    assert apply_roi(img, (5, 2, 10, 4)).shape == (4, 10, 3)
    assert apply_roi(img, (15, 8, 100, 100)).shape == (2, 5, 3)      # clipped to the frame
    with pytest.raises(CorruptFrame):
        apply_roi(img, (25, 0, 5, 5))
    assert as_bgr_uint8(np.zeros((5, 6), np.uint8)).shape == (5, 6, 3)
    assert as_bgr_uint8(np.zeros((5, 6, 4), np.uint8)).shape == (5, 6, 3)
    assert as_bgr_uint8(np.full((2, 2), 0xFF00, np.uint16)).max() == 0xFF
    with pytest.raises(CorruptFrame):
        as_bgr_uint8(np.zeros((0, 0, 3), np.uint8))


class HangingCamera(Reader):
    """A device that delivers a few frames, then hangs inside read() (a wedged driver) until released."""

    opened = 0

    def __init__(self, cfg, release: threading.Event, frames_before_hang=3):
        HangingCamera.opened += 1
        self.cfg, self.release, self.left = cfg, release, frames_before_hang

    def read(self):
        if self.left == 0:
            self.release.wait()
            raise SourceError("driver gave up")
        self.left -= 1
        time.sleep(0.01)
        return frame(self.cfg.name, self.left)


class FlakyCamera(Reader):
    """Fails to open twice, then delivers frames; every third frame is corrupt."""

    def __init__(self, cfg, state):
        state["opens"] += 1
        if state["opens"] <= 2:
            raise SourceError("no such device")
        self.cfg, self.n = cfg, 0

    def read(self):
        self.n += 1
        time.sleep(0.005)
        if self.n % 3 == 0:
            raise CorruptFrame("bad JPEG")
        return frame(self.cfg.name, self.n)


def test_watchdog_starts_a_fresh_reader_when_the_device_hangs():
    HangingCamera.opened = 0
    release = threading.Event()
    hub = FrameHub()
    cfg = CameraConfig(name="cam", kind="v4l2", uri="0", watchdog_s=0.3)
    src = CaptureSource(cfg, lambda c: HangingCamera(c, release), hub)
    src.start()
    try:
        time.sleep(0.2)
        assert not src.check_watchdog()              # frames are recent
        time.sleep(0.4)
        assert src.check_watchdog()                  # hung for longer than watchdog_s: restarted
        time.sleep(0.2)
        assert HangingCamera.opened == 2 and src.counters.watchdog_restarts == 1
        assert hub.take(1, 0.0, 0.0)                 # the fresh reader delivers
    finally:
        release.set()
        src.stop()


def test_open_failures_back_off_and_corrupt_frames_are_skipped(caplog):
    caplog.set_level(logging.INFO, logger="daemon.sources.base")
    state = {"opens": 0}
    hub = FrameHub()
    cfg = CameraConfig(name="cam", kind="v4l2", uri="0", reconnect_initial_s=0.05, reconnect_max_s=0.1)
    src = CaptureSource(cfg, lambda c: FlakyCamera(c, state), hub, rng=random.Random(3))
    src.start()
    try:
        got = []
        end = time.monotonic() + 3
        while len(got) < 6 and time.monotonic() < end:
            got += hub.take(1, 0.1, 0)
    finally:
        src.stop()
    assert state["opens"] == 3 and src.counters.open_failures == 2
    assert src.counters.corrupt >= 2
    assert all(f.captured_at % 3 != 0 for f in got)   # no corrupt frame was handed on
    # Each attempt is bracketed by the camera's own lines, so what a library prints during it can be placed.
    said = [r.getMessage().split(": ", 1)[1] for r in caplog.records if r.getMessage().startswith("camera cam: ")]
    steps = ["retrying" if "; retrying in" in m else m.split(" ")[0] for m in said if not m.startswith("skipped")]
    assert steps == ["opening", "retrying", "opening", "retrying", "opening", "opened"], said
