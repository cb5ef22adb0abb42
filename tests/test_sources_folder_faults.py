"""The folder camera broken on purpose, on real files: a scan written slowly, a done_dir on another file
system or equal to the folder, a symlink swapped in after the listing, a decompression bomb, a done action
that keeps failing. Every wait is bounded by a deadline; no assertion depends on how fast the box is."""
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from daemon import config
from daemon.config import CameraConfig, ConfigError
from daemon.imageio import DecodeLimits, ImageTooLarge, read_image_file
from daemon.sources import FrameHub, SourceError, make_source
from daemon.sources.base import NotRegularFile
from daemon.sources import folder as folder_mod
from daemon.sources.folder import Claims, FolderReader

ROOT = Path(__file__).resolve().parent.parent


def png_bytes(value=200, size=(30, 20)):
    import io

    buf = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def reader(folder, claims=None, **kw):
    kw.setdefault("name", "scan")
    cfg = CameraConfig(kind="folder", uri=str(folder), **kw)
    return FolderReader(cfg, claims or Claims(), settle_s=0.0)


def wait_for(pred, timeout_s=20.0, step_s=0.02):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(step_s)
    return pred()


def read_one(r, timeout_s=10.0):
    return wait_for(r.read, timeout_s)


# ------------------------------------------------------------ 6: a scan still being written

def test_file_created_empty_and_filled_later_is_read_not_set_aside(tmp_path, monkeypatch):
    monkeypatch.setattr(folder_mod, "RETRY_INITIAL_S", 0.05)
    monkeypatch.setattr(folder_mod, "RETRY_MAX_S", 0.2)
    data = png_bytes(90)
    path = tmp_path / "scan.png"
    path.write_bytes(b"")                                   # the scanner creates the file ...
    old = time.time() - 60
    os.utime(path, (old, old))                              # ... and its mtime passes the settle check
    claims = Claims()
    hub = FrameHub()
    cfg = CameraConfig(name="scan", kind="folder", uri=str(tmp_path), watchdog_s=0, done_action="mark")
    src = make_source(cfg, hub)
    src._open_reader = lambda c: FolderReader(c, claims, settle_s=0.0)
    src.start()
    try:
        # The first decode fails (empty file): the file waits for a retry instead of going to .bad.
        assert wait_for(lambda: str(path) in claims.retry)
        with open(path, "ab") as f:                         # a stalled upload: half the bytes ...
            f.write(data[: len(data) // 2])
            f.flush()
            os.utime(path, (old + 1, old + 1))
        attempts = claims.retry[str(path)].attempts
        assert wait_for(lambda: claims.retry.get(str(path)) is not None
                        and claims.retry[str(path)].attempts > attempts)   # tried again, still unreadable
        assert path.exists() and not list(tmp_path.glob("*.bad"))
        with open(path, "ab") as f:                         # ... then the rest
            f.write(data[len(data) // 2:])
            os.utime(path, (old + 2, old + 2))
        frames = wait_for(lambda: hub.take(1, 0.1, 0))
    finally:
        src.stop()
    assert frames and frames[0].path == str(path)
    assert int(frames[0].image[0, 0, 0]) == 90
    assert frames[0].captured_at == pytest.approx(old + 2)   # the mtime of what was read
    assert src.counters.corrupt == 0 and not list(tmp_path.glob("*.bad"))


def test_file_unreadable_and_unchanged_is_set_aside_after_the_configured_time(tmp_path, monkeypatch):
    monkeypatch.setattr(folder_mod, "RETRY_INITIAL_S", 0.05)
    monkeypatch.setattr(folder_mod, "RETRY_MAX_S", 0.1)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    os.utime(bad, (time.time() - 60, time.time() - 60))
    claims = Claims()
    r = reader(tmp_path, claims, done_action="mark", unreadable_after_s=0.3)
    assert r.read() is None and bad.exists()                # first failure: kept for a retry
    first = claims.retry[str(bad)].stable_since
    with pytest.raises(folder_mod.CorruptFrame):
        end = time.monotonic() + 20
        while time.monotonic() < end:
            r.read()
            time.sleep(0.02)
    assert time.monotonic() - first >= 0.3                  # not before it was unchanged that long
    assert (tmp_path / "broken.png.bad").exists() and not bad.exists()


# ------------------------------------------------------------ 7: done_dir elsewhere, or the folder itself

def _other_file_system(tmp_path):
    """A directory on another file system than tmp_path: /dev/shm, else a tmpfs mounted here (root)."""
    here = os.stat(tmp_path).st_dev
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) and os.stat("/dev/shm").st_dev != here:
        d = tempfile.mkdtemp(prefix="ocr-done-", dir="/dev/shm")
        return d, lambda: subprocess.run(["rm", "-rf", d], check=False)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)]
    if os.geteuid() == 0 and subprocess.run(mount, capture_output=True).returncode == 0:
        return str(mnt), lambda: subprocess.run(["umount", str(mnt)], check=False)
    pytest.skip("no second file system: /dev/shm is on the same device and mounting a tmpfs needs root")


def test_done_dir_on_another_file_system_is_copied_then_unlinked(tmp_path):
    other, cleanup = _other_file_system(tmp_path)
    try:
        assert os.stat(other).st_dev != os.stat(tmp_path).st_dev
        # The fault itself: rename across file systems fails with EXDEV.
        probe = tmp_path / "probe"
        probe.write_bytes(b"x")
        with pytest.raises(OSError) as exc:
            os.rename(probe, os.path.join(other, "probe"))
        assert exc.value.errno == 18   # EXDEV
        data = png_bytes(140)
        src = tmp_path / "a.png"
        src.write_bytes(data)
        mtime = time.time() - 30
        os.utime(src, (mtime, mtime))
        r = reader(tmp_path, done_dir=other)
        f = read_one(r)
        f.ack.reserve(3)
        f.ack.done()
        moved = Path(other) / "a.png"
        assert moved.read_bytes() == data and os.stat(moved).st_mtime == pytest.approx(mtime)
        assert not src.exists() and sorted(os.listdir(other)) == ["a.png"]   # no copy left behind
        time.sleep(folder_mod.RESCAN_PERIOD_S * 2)
        assert r.read() is None                              # not handed out again
    finally:
        cleanup()


def test_done_action_that_keeps_failing_is_retried_without_ocr_again(tmp_path, monkeypatch):
    monkeypatch.setattr(folder_mod, "RETRY_INITIAL_S", 0.02)
    monkeypatch.setattr(folder_mod, "RETRY_MAX_S", 0.05)
    done_dir = tmp_path / "done_elsewhere"
    r = reader(tmp_path, done_dir=str(done_dir))
    (tmp_path / "a.png").write_bytes(png_bytes())
    os.utime(tmp_path / "a.png", (time.time() - 5, time.time() - 5))
    f = read_one(r)
    done_dir.rmdir()
    done_dir.write_text("a file where the directory was")  # every move fails (ENOTDIR), even for root
    f.ack.done()
    assert (tmp_path / "a.png").exists()
    for _ in range(20):                                     # many passes: never handed out for OCR again
        assert r.read() is None
        time.sleep(0.02)
    done_dir.unlink()
    done_dir.mkdir()
    wait_for(lambda: (r.read(), (done_dir / "a.png").exists())[1])
    assert (done_dir / "a.png").exists() and not (tmp_path / "a.png").exists()


def test_done_dir_equal_to_the_folder_is_refused(tmp_path):
    with pytest.raises(SourceError, match="watched folder itself"):
        reader(tmp_path, done_dir=str(tmp_path))
    with pytest.raises(ConfigError) as exc:
        config.from_dict({"cameras": [{"name": "scan", "kind": "folder", "uri": str(tmp_path),
                                       "done_dir": str(tmp_path / "x" / "..")}]})
    assert exc.value.args and "cameras[0].done_dir" in str(exc.value) and str(tmp_path) in str(exc.value)
    # mark and delete keep nothing in done_dir: no conflict
    config.from_dict({"cameras": [{"name": "scan", "kind": "folder", "uri": str(tmp_path),
                                   "done_action": "delete", "done_dir": str(tmp_path)}]})


def test_two_folder_cameras_on_one_folder_are_refused(tmp_path):
    (tmp_path / "scans").mkdir()
    os.symlink(tmp_path / "scans", tmp_path / "alias")
    with pytest.raises(ConfigError) as exc:
        config.from_dict({"cameras": [{"name": "a", "kind": "folder", "uri": str(tmp_path / "scans")},
                                      {"name": "b", "kind": "folder", "uri": str(tmp_path / "alias")}]})
    assert "cameras[1].uri" in str(exc.value) and "alias" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        config.from_dict({"cameras": [
            {"name": "a", "kind": "folder", "uri": str(tmp_path / "scans"), "done_dir": str(tmp_path / "b")},
            {"name": "b", "kind": "folder", "uri": str(tmp_path / "b")}]})
    assert "cameras[0].done_dir" in str(exc.value)


def test_check_config_reports_the_key_and_value(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"cameras:\n  - name: scan\n    kind: folder\n    uri: {tmp_path}\n    done_dir: {tmp_path}\n")
    out = subprocess.run([sys.executable, "-m", "daemon", "check-config", str(cfg)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "cameras[0].done_dir" in out.stdout + out.stderr


# ------------------------------------------------------------ 14: symlinks, reservations

def test_symlink_swapped_in_after_the_listing_is_not_followed(tmp_path):
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    secret = secret_dir / "other.png"
    secret.write_bytes(png_bytes(7))
    scans = tmp_path / "scans"
    scans.mkdir()
    now = time.time()
    for i, name in enumerate(("a.png", "b.png")):
        (scans / name).write_bytes(png_bytes(100 + i))
        os.utime(scans / name, (now - 20 + i, now - 20 + i))
    r = reader(scans, done_action="mark")
    first = read_one(r)
    assert first.source["file"] == "a.png"                  # b.png is listed, waiting in the queue
    os.unlink(scans / "b.png")
    os.symlink(secret, scans / "b.png")                     # swapped in after the listing
    assert r.read() is None                                 # not read through the link
    first.ack.done()
    time.sleep(folder_mod.RESCAN_PERIOD_S * 2)
    with pytest.raises(NotRegularFile, match="b.png is a symlink"):   # the next listing sets it aside, said once
        r.read()
    assert r.read() is None
    assert os.path.islink(scans / "b.png.bad") and secret.read_bytes() == png_bytes(7)


def test_reservation_is_durable_and_the_operators_file_keeps_its_name(tmp_path, monkeypatch):
    synced = []
    real_fsync_dir = folder_mod.fsync_dir
    monkeypatch.setattr(folder_mod, "fsync_dir", lambda p: (synced.append(p), real_fsync_dir(p)))
    (tmp_path / "a.png").write_bytes(png_bytes())
    os.utime(tmp_path / "a.png", (time.time() - 5, time.time() - 5))
    r = reader(tmp_path, done_action="delete")
    f = read_one(r)
    f.ack.reserve(9)
    state = tmp_path / folder_mod.STATE_DIR
    assert str(state) in synced                              # the directory entry of the reservation is fsynced
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder_mod.STATE_DIR, "a.png"]   # no rename
    assert (state / "a.png.seq").exists()
    f.ack.release()
    again = read_one(reader(tmp_path, done_action="delete"))
    assert again.seq == 9


# ------------------------------------------------------------ 10: decode limits

def _bomb_png(path: Path, side: int = 12000) -> None:
    """A valid grey PNG of side x side pixels, all black: about 0.2 MB on disk, side*side bytes decoded."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)   # filter byte + pixels
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_decompression_bomb_is_refused_from_its_header(tmp_path):
    bomb = tmp_path / "bomb.png"
    _bomb_png(bomb)
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(ImageTooLarge, match="12000x12000"):
        read_image_file(bomb, DecodeLimits(max_pixels=40_000_000))
    # Measured in a fresh process: the refusal costs no decoding (the decode would need 144 MB grey + 432 MB RGB).
    # VmHWM (peak RSS of this process image), not ru_maxrss, which on Linux starts from the parent's at fork.
    probe = ("import re, sys; from daemon.imageio import DecodeLimits, ImageTooLarge, read_image_file\n"
             "try:\n    read_image_file(sys.argv[1], DecodeLimits(max_pixels=40_000_000))\n"
             "except ImageTooLarge:\n"
             "    print(re.search(r'VmHWM:\\s*(\\d+) kB', open('/proc/self/status').read()).group(1))\n")
    out = subprocess.run([sys.executable, "-c", probe, str(bomb)], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) < 140_000   # KiB: below the 144 MB the grey pixels alone would take
    with pytest.raises(ImageTooLarge, match="max_file_bytes"):
        read_image_file(bomb, DecodeLimits(max_bytes=1000))


def test_folder_sets_a_bomb_aside_at_once_and_counts_it(tmp_path):
    _bomb_png(tmp_path / "bomb.png")
    (tmp_path / "good.png").write_bytes(png_bytes())
    now = time.time()
    os.utime(tmp_path / "bomb.png", (now - 20, now - 20))
    os.utime(tmp_path / "good.png", (now - 10, now - 10))
    hub = FrameHub()
    src = make_source(CameraConfig(name="scan", kind="folder", uri=str(tmp_path), done_action="mark", watchdog_s=0,
                                   max_frame_pixels=40_000_000), hub)
    src.start()
    try:
        frames = wait_for(lambda: hub.take(1, 0.1, 0))
    finally:
        src.stop()
    assert [f.source["file"] for f in frames] == ["good.png"]
    assert (tmp_path / "bomb.png.bad").exists() and not (tmp_path / "bomb.png").exists()
    assert src.counters.too_large == 1 and src.counters.corrupt == 1


def test_decode_limits_are_validated():
    for key, value in (("max_frame_pixels", -1), ("max_file_bytes", -5), ("unreadable_after_s", -1.0)):
        with pytest.raises(ConfigError, match=rf"cameras\[0\]\.{key}"):
            config.from_dict({"cameras": [{"name": "scan", "kind": "folder", "uri": "/tmp", key: value}]})
