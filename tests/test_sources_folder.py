"""Image-folder source: oldest first, finished only after the frame's ack says the result is stored, never lost,
the seq reserved beside the file, unreadable files set aside, half-written files left alone."""
import os
import time

import numpy as np
import pytest
from PIL import Image

from daemon.config import CameraConfig
from daemon.sources import FrameHub, make_source
from daemon.sources.folder import STATE_DIR, Claims, FolderReader, inflight_name, list_ready, parse_inflight


def png(path, value=200, mtime=None):
    Image.fromarray(np.full((20, 30, 3), value, np.uint8)).save(path, format="PNG")
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def reader(folder, **kw):
    cfg = CameraConfig(name="scan", kind="folder", uri=str(folder), **kw)
    return FolderReader(cfg, Claims(), settle_s=0.0)


def read_all(r, n):
    out = []
    for _ in range(50):
        f = r.read()
        if f is not None:
            out.append(f)
        if len(out) == n:
            break
        time.sleep(0.01)
    return out


def test_oldest_first_and_not_handed_twice_while_in_flight(tmp_path):
    now = time.time()
    for name, age in (("b.png", 30), ("a.png", 10), ("c.jpg", 20)):
        png(tmp_path / name, mtime=now - age)
    (tmp_path / "notes.txt").write_text("not an image")
    r = reader(tmp_path)
    frames = read_all(r, 3)
    assert [os.path.basename(f.path) for f in frames] == ["b.png", "c.jpg", "a.png"]
    assert frames[0].image.shape == (20, 30, 3) and frames[0].captured_at == pytest.approx(now - 30, abs=1e-3)
    time.sleep(0.25)
    assert r.read() is None            # all three are claimed: nothing is handed again


@pytest.mark.parametrize("action", ["move", "delete", "mark"])
def test_done_actions(tmp_path, action):
    png(tmp_path / "a.png", mtime=time.time() - 5)
    done_dir = tmp_path / "finished"
    r = reader(tmp_path, done_action=action, done_dir=str(done_dir))
    [f] = read_all(r, 1)
    assert (tmp_path / "a.png").exists()             # nothing happens before the result is stored
    f.ack.done()
    assert not (tmp_path / "a.png").exists()
    if action == "move":
        assert (done_dir / "a.png").exists()
    elif action == "mark":
        assert (tmp_path / "a.png.done").exists()
    time.sleep(0.25)
    assert r.read() is None                          # a .done file is not an image to read


def test_a_done_dir_removed_while_running_is_made_again_and_the_file_is_not_read_twice(tmp_path):
    """Found from outside: with done_dir removed by hand, every scan was read and published again and again (23
    messages for one file in 30 s), as if it had been taken away."""
    import shutil

    done_dir = tmp_path / "done"
    r = reader(tmp_path, done_action="move", done_dir=str(done_dir))
    png(tmp_path / "a.png", mtime=time.time() - 5)
    [f] = read_all(r, 1)
    f.ack.done()
    shutil.rmtree(done_dir)
    png(tmp_path / "b.png", mtime=time.time() - 5)
    [g] = read_all(r, 1)
    g.ack.done()
    assert (done_dir / "b.png").exists() and not (tmp_path / "b.png").exists()
    time.sleep(0.25)
    assert r.read() is None                          # finished: not handed again


def test_released_file_is_handed_again(tmp_path):
    png(tmp_path / "a.png", mtime=time.time() - 5)
    r = reader(tmp_path)
    [f] = read_all(r, 1)
    f.ack.release()
    time.sleep(0.25)
    [again] = read_all(r, 1)
    assert again.path == f.path


def test_reserved_seq_survives_a_crash_and_keeps_capture_time(tmp_path):
    png(tmp_path / "a.png", mtime=1_700_000_000.25)
    r = reader(tmp_path)
    [f] = read_all(r, 1)
    assert f.seq is None and f.source == {"kind": "folder", "file": "a.png"}
    f.ack.reserve(42)
    # The operator's file keeps its name; the reservation is a hidden side file.
    assert f.seq == 42 and f.path == str(tmp_path / "a.png")
    assert sorted(os.listdir(tmp_path)) == [STATE_DIR, "a.png", "done"]
    # The daemon dies here (result stored or not); a fresh reader finds the file with its seq.
    r2 = reader(tmp_path, done_action="mark")
    [g] = read_all(r2, 1)
    assert g.seq == 42 and g.captured_at == f.captured_at and g.path == f.path
    g.ack.done()
    assert sorted(os.listdir(tmp_path)) == [STATE_DIR, "a.png.done", "done"]   # done/ was made by the first reader
    assert os.listdir(tmp_path / STATE_DIR) == []                               # the reservation is gone too


def test_reservation_of_an_older_scan_under_the_same_name_is_ignored(tmp_path):
    png(tmp_path / "a.png", mtime=1_700_000_000)
    r = reader(tmp_path, done_action="delete")
    [f] = read_all(r, 1)
    f.ack.reserve(7)
    f.ack.release()
    png(tmp_path / "a.png", value=90, mtime=1_700_000_100)   # the scanner reuses the name for a new page
    [g] = read_all(reader(tmp_path), 1)
    assert g.seq is None


def test_files_reserved_by_earlier_versions_keep_their_seq(tmp_path):
    legacy = inflight_name(str(tmp_path / "a.png"), 5)
    png(legacy, mtime=time.time() - 5)
    r = reader(tmp_path, done_action="mark")
    [f] = read_all(r, 1)
    assert f.seq == 5 and parse_inflight(f.path) == (str(tmp_path / "a.png"), 5)
    assert f.source["file"] == "a.png"
    f.ack.done()
    assert (tmp_path / "a.png.done").exists()


def test_unreadable_image_is_counted_and_set_aside(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    png(tmp_path / "good.png", mtime=time.time() - 1)
    os.utime(tmp_path / "broken.png", (time.time() - 9, time.time() - 9))
    hub = FrameHub()
    src = make_source(CameraConfig(name="scan", kind="folder", uri=str(tmp_path), done_action="mark",
                                   watchdog_s=0, unreadable_after_s=0), hub)
    src.start()
    try:
        frames = []
        end = time.monotonic() + 5
        while not frames and time.monotonic() < end:
            frames = hub.take(1, 0.1, 0)
    finally:
        src.stop()
    assert [os.path.basename(f.path) for f in frames] == ["good.png"]
    assert src.counters.corrupt == 1
    assert (tmp_path / "broken.png.bad").exists() and not (tmp_path / "broken.png").exists()


def test_file_still_being_written_waits_until_it_settles(tmp_path):
    png(tmp_path / "fresh.png")                      # mtime: now
    assert list_ready(str(tmp_path), time.time(), 0.5, set()) == []
    assert len(list_ready(str(tmp_path), time.time() + 0.6, 0.5, set())) == 1


def test_folder_frames_are_never_overwritten_in_the_hub(tmp_path):
    now = time.time()
    for i in range(5):
        png(tmp_path / f"{i}.png", value=i * 40, mtime=now - 10 + i)
    hub = FrameHub()
    src = make_source(CameraConfig(name="scan", kind="folder", uri=str(tmp_path), watchdog_s=0), hub)
    src.start()
    try:
        time.sleep(1.0)                              # the source is far ahead of a slow consumer
        got = []
        end = time.monotonic() + 5
        while len(got) < 5 and time.monotonic() < end:
            for f in hub.take(1, 0.2, 0):
                got.append(os.path.basename(f.path))
                f.ack.done()
    finally:
        src.stop()
    assert got == [f"{i}.png" for i in range(5)]
    assert hub.dropped.get("scan", 0) == 0


def test_empty_folder_is_idle_and_missing_folder_reconnects(tmp_path):
    hub = FrameHub()
    missing = tmp_path / "later"
    src = make_source(CameraConfig(name="scan", kind="folder", uri=str(missing), watchdog_s=0,
                                   reconnect_initial_s=0.1, reconnect_max_s=0.2), hub)
    src.start()
    try:
        time.sleep(0.3)
        assert src.health().state == "connecting" and "does not exist" in src.health().error
        missing.mkdir()
        time.sleep(0.6)
        assert src.health().state == "idle"
    finally:
        src.stop()
