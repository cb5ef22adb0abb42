"""Hostile file names in a folder camera, on a real file system with names made of raw bytes: a Windows share's
Latin-1 (`caf\\xe9.png`), bytes no encoding decodes, a newline that would forge a log line, and entries named like
images that are no file (a FIFO, a directory, a symlink to a secret). The daemon reads every image, keeps running,
writes valid UTF-8 payloads and one log line per record, and sets the odd entries aside with a reason and a counter.
Bounded by deadlines, no timing assertions."""
import json
import os
import signal
import sqlite3

import pytest

from broker import wait_until
from daemon.printable import printable
from service_support import Daemon, render_label, small_ocr, waybill, write_config

LATIN1 = b"caf\xe9.png"
UNDECODABLE = b"lab_\xff\xfe.png"
FORGER = b"evil\n2026-12-06 00:00:00,000 ERROR daemon.service: forged.png"


def test_printable_spells_bytes_and_controls_and_keeps_utf8():
    assert printable(os.fsdecode(LATIN1)) == "caf\\xe9.png"
    assert printable(os.fsdecode(UNDECODABLE)) == "lab_\\xff\\xfe.png"
    assert printable("a\nb\r\tc\x00\x7f\u2028") == "a\\nb\\r\\tc\\x00\\x7f\\u2028"
    assert printable("café 中文.png") == "café 中文.png"
    assert printable("\ud800") == "\\ud800"    # a lone surrogate that is no escaped byte
    for name in (LATIN1, UNDECODABLE, FORGER):
        out = printable(os.fsdecode(name))
        out.encode("utf-8")                      # valid UTF-8, always
        assert "\n" not in out and out == printable(os.fsdecode(name))


def _raw(folder, name: bytes) -> bytes:
    return os.path.join(os.fsencode(str(folder)), name)


def test_undecodable_and_newline_file_names_are_read_and_never_stop_the_daemon(tmp_path):
    scans, done = tmp_path / "scans", tmp_path / "scans" / "done"
    scans.mkdir()
    texts = {}
    for i, name in enumerate((LATIN1, UNDECODABLE, FORGER, b"zz_plain.png")):
        render_label(tmp_path / "tmp.png", waybill(i))
        os.rename(str(tmp_path / "tmp.png"), _raw(scans, name))
        texts[printable(os.fsdecode(name))] = waybill(i)
    os.mkfifo(_raw(scans, b"fifo.png"))
    os.mkdir(_raw(scans, b"folder.jpg"))
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    os.symlink(secret, _raw(scans, b"link.png"))
    outbox = tmp_path / "outbox.sqlite3"
    cfg = write_config(tmp_path / "config.yaml", {
        "device_id": "dock", "backend": "onnxruntime", "ocr": small_ocr(),
        "cameras": [{"name": "scan", "kind": "folder", "uri": str(scans), "watchdog_s": 0}],
        "mqtt": {"enabled": False}, "metrics": {"enabled": False}, "web": {"enabled": False},
        "outbox": {"path": str(outbox)}})
    log_path = tmp_path / "daemon.log"
    daemon = Daemon(cfg, log_path).start()
    try:
        assert wait_until(lambda: len(os.listdir(os.fsencode(str(done)))) == 4 if done.exists() else False, 180), \
            log_path.read_text(errors="replace")
        assert daemon.alive()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(60) == 0
    finally:
        daemon.kill9()
    log = log_path.read_bytes()
    assert b"Traceback" not in log
    log.decode("utf-8")   # one encoding for the journal
    # Every record is one line: the forged one only ever appears escaped, inside the daemon's own line.
    assert not any(line.startswith(b"2026-12-06 00:00:00,000") for line in log.splitlines())
    db = sqlite3.connect(str(outbox))
    payloads = [json.loads(p) for (p,) in db.execute("SELECT payload FROM outbox")]
    db.close()
    got = {p["source"]["file"]: "".join(t["text"] for t in p["texts"]).replace(" ", "") for p in payloads}
    assert got == texts
    # The odd entries: renamed aside (never opened or followed), one log line each, counted.
    left = sorted(os.listdir(os.fsencode(str(scans))))
    assert b"fifo.png.bad" in left and b"folder.jpg.bad" in left and b"link.png.bad" in left
    assert os.readlink(_raw(scans, b"link.png.bad")) == os.fsencode(str(secret))
    for what in (b"fifo.png is a FIFO", b"folder.jpg is a directory", b"link.png is a symlink"):
        assert what in log


def test_folder_entries_that_are_no_file_are_counted(tmp_path):
    from daemon.config import CameraConfig
    from daemon.sources import FrameHub, make_source

    scans = tmp_path / "scans"
    scans.mkdir()
    os.mkfifo(scans / "a.png")
    os.mkdir(scans / "b.tif")
    hub = FrameHub()
    src = make_source(CameraConfig(name="scan", kind="folder", uri=str(scans), watchdog_s=0), hub)
    src.start()
    try:
        assert wait_until(lambda: src.counters.not_regular == 2, 30)
        assert src.counters.corrupt == 2 and src.counters.frames == 0
        assert sorted(os.listdir(scans)) == [".ocr-daemon", "a.png.bad", "b.tif.bad", "done"]
    finally:
        src.stop()


def test_names_too_long_for_a_suffix_are_set_aside_once_and_keep_their_reservation(tmp_path):
    # A 255-byte name has no room for ".bad" or ".seq": the junk file came round and was logged every few seconds
    # for ever, and a good image could not keep its message id across a SIGKILL.
    import time

    import cv2

    from daemon.config import CameraConfig
    from daemon.samples.render import render_label as render
    from daemon.sources import FrameHub, make_source

    scans = tmp_path / "scans"
    scans.mkdir()
    junk, good = "Z" * 251 + ".png", "G" * 248 + ".png"
    (scans / junk).write_bytes(b"not an image")
    cv2.imwrite(str(scans / good), render(1, width=320, height=240).image)
    hub = FrameHub()
    src = make_source(CameraConfig(name="scan", kind="folder", uri=str(scans), watchdog_s=0,
                                   unreadable_after_s=0.5), hub)
    src.start()
    try:
        frames = []
        assert wait_until(lambda: bool(frames or frames.extend(hub.take(1, 0.1, 0.0))), 30)
        assert wait_until(lambda: src.counters.corrupt >= 1, 30)
        time.sleep(2.0)                                    # four retries' worth: the junk is not seen again
        assert src.counters.corrupt == 1
        [aside] = [n for n in os.listdir(scans / "done") if n.endswith(".bad")]
        assert aside.startswith("Z" * 200) and len(aside.encode()) <= 255
        [frame] = frames
        frame.ack.reserve(7)
        [side] = os.listdir(scans / ".ocr-daemon")
        assert json.loads((scans / ".ocr-daemon" / side).read_text())["name"] == good
        from daemon.sources.folder import FolderReader
        FolderReader(CameraConfig(name="scan", kind="folder", uri=str(scans)))   # a restart prunes; its image is
        assert os.listdir(scans / ".ocr-daemon") == [side]                         # still there: kept
        frame.ack.done()
        assert good in os.listdir(scans / "done") and os.listdir(scans / ".ocr-daemon") == []
    finally:
        src.stop()
