"""The evidence store: frame and line crops per reading, bounded by size and age (oldest out first, counted), never
blocking the caller, never writing on a nearly full disk, fetched by message id only."""
import dataclasses
import os
import threading
from collections import OrderedDict

import cv2
import numpy as np
import pytest

from daemon.config import EvidenceConfig
from daemon.evidence import EvidenceStore, _Entry, crop_rect, oldest_to_evict, scaled_size, valid_id

BOX = ((20.0, 30.0), (220.0, 30.0), (220.0, 70.0), (20.0, 70.0))


def frame(seed: int = 0, w: int = 640, h: int = 480) -> np.ndarray:
    """Noise: JPEG cannot squeeze it, so sizes are predictable (~100 KB at quality 80)."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def store(tmp_path, clock=None, free=None, **over) -> EvidenceStore:
    over.setdefault("min_free_bytes", 0)
    cfg = dataclasses.replace(EvidenceConfig(), dir=str(tmp_path / "ev"), **over)
    return EvidenceStore(cfg, **({"clock": clock} if clock else {}), **({"free_bytes": free} if free else {}))


def mid(i: int) -> str:
    return f"box1:dock:{i}:{1796160000000 + i}"


# ---------------------------------------------------------------- pure geometry and ids

def test_scaled_size_keeps_aspect_and_never_enlarges():
    assert scaled_size(2560, 1440, 1280) == (1280, 720)
    assert scaled_size(960, 1280, 640) == (480, 640)
    assert scaled_size(800, 600, 1280) == (800, 600)
    assert scaled_size(4000, 3000, 0) == (4000, 3000)


def test_crop_rect_is_the_box_plus_margin_clipped_to_the_image():
    assert crop_rect(BOX, 640, 480) == (16, 26, 224, 74)
    assert crop_rect(((-10, -5), (30, -5), (30, 12), (-10, 12)), 640, 480) == (0, 0, 34, 16)
    assert crop_rect(((700, 500), (720, 500), (720, 520), (700, 520)), 640, 480) is None


def test_ids_that_could_leave_the_folder_are_refused():
    assert valid_id("box1:dock:12:1796160000000")
    for bad in ("../etc/passwd", "box1:dock:1:2/../../x", "box1/dock:1:2", "", "a:b:c:d", "box1:dock:1:2\n"):
        assert not valid_id(bad), bad


def test_oldest_first_ttl_before_size():
    entries = OrderedDict((mid(i), _Entry(created_at=100.0 + i, nbytes=10)) for i in range(5))
    # 50 bytes, cap 30: the two oldest go for room; with a TTL of 2.5 s at t=104, ids 0 and 1 are expired first.
    assert oldest_to_evict(entries, 50, 30, now=104.0, ttl_s=0) == [(mid(0), "size"), (mid(1), "size")]
    assert oldest_to_evict(entries, 50, 1000, now=104.0, ttl_s=2.5) == [(mid(0), "ttl"), (mid(1), "ttl")]
    assert oldest_to_evict(entries, 50, 25, now=104.0, ttl_s=3.5) == [(mid(0), "ttl"), (mid(1), "size"),
                                                                        (mid(2), "size")]


# ---------------------------------------------------------------- the store on a real folder

def test_a_reading_is_kept_as_a_scaled_frame_and_full_size_crops(tmp_path):
    s = store(tmp_path, frame_max_side_px=320, jpeg_quality=70)
    image = frame(1)
    assert s.write(mid(1), image, [BOX, ((300, 300), (400, 300), (400, 340), (300, 340))])
    path = s.path(mid(1))
    assert path is not None and path.parent == tmp_path / "ev"
    decoded = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (240, 320, 3)                       # 640x480 scaled to the longest side 320
    crop = cv2.imdecode(np.fromfile(s.path(mid(1), 0), np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape == (48, 208, 3)                           # the box plus 4 px, at full resolution
    assert len(s.crops(mid(1))) == 2 and s.path(mid(1), 2) is None and s.path(mid(2)) is None
    snap = s.snapshot()
    assert snap["written"] == 1 and snap["readings"] == 1
    assert snap["bytes"] == sum(f.stat().st_size for f in (tmp_path / "ev").iterdir())


def test_crops_keep_their_line_numbers_when_a_box_is_off_the_image(tmp_path):
    s = store(tmp_path)
    off = ((900.0, 900.0), (990.0, 900.0), (990.0, 950.0), (900.0, 950.0))
    assert s.write(mid(1), frame(1), [BOX, off, ((300, 300), (400, 300), (400, 340), (300, 340))])
    # only the crops there are count (the page shows an image for those alone)
    assert len(s.crops(mid(1))) == 2 and s.crops(mid(1)) == (0, 2) and s.path(mid(1), 1) is None
    crop = cv2.imdecode(np.fromfile(s.path(mid(1), 2), np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape == (48, 108, 3)                            # line 2's own box, not line 1's


def test_a_line_without_a_box_has_no_crop_counted_before_or_after_a_restart(tmp_path):
    """Found from outside: a read cycle's lines with no box in the kept frame were counted as crops, and the page
    drew a broken image for each (GET /evidence/<id>/line0.jpg: 404)."""
    s = store(tmp_path)
    assert s.write(mid(1), frame(1), [None, BOX, None])
    assert s.crops(mid(1)) == (1,) and len(s.crops(mid(1))) == 1
    assert s.path(mid(1), 0) is None and s.path(mid(1), 1) is not None and s.path(mid(1), 2) is None
    assert sorted(f.name for f in (tmp_path / "ev").iterdir()) == [f"{mid(1)}.jpg", f"{mid(1)}.line1.jpg"]
    again = store(tmp_path)                      # a restart indexes the files there are, not up to the highest k
    assert again.crops(mid(1)) == (1,) and len(again.crops(mid(1))) == 1 and again.path(mid(1), 0) is None


def test_a_fails_summary_is_kept_beside_its_frame_counted_and_evicted_with_it(tmp_path):
    import json
    import time

    now = [time.time()]   # a restart dates the files by their mtimes
    s = store(tmp_path, clock=lambda: now[0], ttl_s=60.0)
    why = {"status": "mismatch", "expected": "LOT 4711A", "read": "LOT 4711B",
           "words": "expected LOT 4711A · read LOT 4711B · char 9: B instead of A"}
    assert s.write(mid(1), frame(1), [BOX], why)
    kept = tmp_path / "ev" / f"{mid(1)}.json"
    assert json.loads(kept.read_text(encoding="utf-8")) == why
    assert s.snapshot()["bytes"] == sum(f.stat().st_size for f in (tmp_path / "ev").iterdir())
    assert s.crops(mid(1)) == (0,)                                # the summary is no crop
    assert s.why_path(mid(1)) == kept and s.why_path("../x") is None
    assert s.write(mid(2), frame(2), [BOX]) and s.why_path(mid(2)) is None   # a good read has none
    again = store(tmp_path, clock=lambda: now[0], ttl_s=60.0)    # a restart finds it as part of the reading
    assert again.why_path(mid(1)) == kept
    assert again.snapshot()["bytes"] == s.snapshot()["bytes"] and again.snapshot()["readings"] == 2
    now[0] += 100
    again._evict()
    assert list((tmp_path / "ev").iterdir()) == []


def test_size_cap_deletes_the_oldest_readings_first_and_counts_them(tmp_path):
    s = store(tmp_path, max_bytes=1024 * 1024, crops=False)
    for i in range(30):
        assert s.write(mid(i), frame(i), [BOX])
    snap = s.snapshot()
    total = sum(f.stat().st_size for f in (tmp_path / "ev").iterdir())
    assert total <= 1024 * 1024 and snap["bytes"] == total
    kept = sorted(int(f.name.split(":")[2]) for f in (tmp_path / "ev").iterdir())
    assert kept == list(range(30 - len(kept), 30)) and len(kept) >= 5   # a contiguous run of the newest
    assert snap["evicted_size"] == 30 - len(kept) and snap["evicted_ttl"] == 0
    assert s.path(mid(0)) is None and s.path(mid(29)) is not None


def test_ttl_deletes_old_readings_on_the_next_write_or_idle_check(tmp_path):
    now = [1000.0]
    s = store(tmp_path, clock=lambda: now[0], ttl_s=60.0)
    s.write(mid(1), frame(1), [BOX])
    now[0] += 30
    s.write(mid(2), frame(2), [BOX])
    now[0] += 45                                # mid 1 is 75 s old, mid 2 45 s
    s.write(mid(3), frame(3), [BOX])
    assert s.path(mid(1)) is None and s.path(mid(2)) is not None
    assert not any(f.name.startswith(mid(1)) for f in (tmp_path / "ev").iterdir())   # its crop too
    now[0] += 100
    s._evict()                                  # what the idle writer does once a minute
    assert s.snapshot()["readings"] == 0 and s.snapshot()["evicted_ttl"] == 3
    assert list((tmp_path / "ev").iterdir()) == []


def test_nothing_is_written_while_the_disk_is_nearly_full(tmp_path):
    free = [10 * 1024 ** 3]
    s = store(tmp_path, free=lambda path: free[0], min_free_bytes=1024 ** 3)
    assert s.write(mid(1), frame(1))
    free[0] = 512 * 1024 ** 2
    assert not s.write(mid(2), frame(2))
    assert s.path(mid(2)) is None and s.snapshot()["dropped_disk_low"] == 1
    assert s.path(mid(1)) is not None


def test_a_full_queue_drops_and_counts_instead_of_blocking_the_caller(tmp_path):
    s = store(tmp_path, queue_size=2)
    gate = threading.Event()
    real_write = s.write
    s.write = lambda *a, **k: (gate.wait(10), real_write(*a, **k))[1]   # a writer stuck on a slow disk
    s.start()
    image = frame(1)
    results = [s.submit(mid(i), image, [BOX]) for i in range(6)]
    # one taken by the writer, two queued; the rest dropped at once
    assert results.count(True) <= 3 and results[:2] == [True, True]
    assert s.snapshot()["dropped_queue_full"] == results.count(False) >= 3
    gate.set()
    s.stop()
    assert s.snapshot()["written"] == results.count(True)


def test_a_restart_finds_the_evidence_again_and_removes_partial_files(tmp_path):
    s = store(tmp_path)
    s.write(mid(1), frame(1), [BOX])
    s.write(mid(2), frame(2), [BOX])
    (tmp_path / "ev" / f".{mid(3)}.jpg.tmp").write_bytes(b"half a jpeg")
    (tmp_path / "ev" / "notes.txt").write_text("not ours")
    again = store(tmp_path)
    assert len(again.crops(mid(1))) == 1 and again.path(mid(2)) is not None
    assert again.snapshot()["bytes"] == s.snapshot()["bytes"]
    assert not (tmp_path / "ev" / f".{mid(3)}.jpg.tmp").exists()
    assert (tmp_path / "ev" / "notes.txt").exists()


def test_a_write_error_is_counted_and_leaves_no_partial_reading(tmp_path, monkeypatch):
    import daemon.evidence as ev
    s = store(tmp_path)
    real, calls = ev._write_file, []

    def second_file_fails(path, data):   # the frame is written, then the disk is full at the first crop
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(ev, "_write_file", second_file_fails)
    assert not s.write(mid(1), frame(1), [BOX])
    assert s.snapshot()["write_errors"] == 1 and s.path(mid(1)) is None
    assert os.listdir(tmp_path / "ev") == []


@pytest.mark.parametrize("key, value", [("max_bytes", 10), ("jpeg_quality", 0), ("queue_size", 0),
                                         ("review_below_confidence", 1.5), ("ttl_s", -1.0)])
def test_config_errors_name_the_key_and_value(key, value):
    from daemon.config import ConfigError, from_dict
    with pytest.raises(ConfigError) as e:
        from_dict({"device_id": "box1", "evidence": {key: value}})
    assert e.value.key == f"evidence.{key}" and repr(value) in str(e.value)


def test_evidence_counters_are_exported_to_prometheus(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from daemon.metrics import Metrics
    s = store(tmp_path, max_bytes=1024 * 1024, crops=False)
    for i in range(20):
        s.write(mid(i), frame(i))
    text = Metrics(lambda: {"evidence": s.snapshot()}).exposition().decode()
    samples = {(smp.name, tuple(sorted(smp.labels.items()))): smp.value
               for fam in text_string_to_metric_families(text) for smp in fam.samples}
    snap = s.snapshot()
    assert snap["evicted_size"] > 0
    assert samples[("ocr_evidence_written_total", ())] == snap["written"] == 20
    assert samples[("ocr_evidence_evicted_total", (("reason", "size"),))] == snap["evicted_size"]
    assert samples[("ocr_evidence_dropped_total", (("reason", "queue_full"),))] == 0
    assert samples[("ocr_evidence_bytes", ())] == snap["bytes"]
    assert samples[("ocr_evidence_readings", ())] == snap["readings"]
    assert "ocr_evidence" not in Metrics(lambda: {"evidence": {"enabled": False}}).exposition().decode()


def test_a_folder_removed_while_running_is_made_again_and_its_readings_forgotten(tmp_path, caplog):
    """Found from outside: with the folder removed every reading logged an ERROR with a traceback, nothing was kept
    until a restart, and the counts and the page still listed files that were gone."""
    import shutil

    s = store(tmp_path)
    assert s.write(mid(1), frame(1), [BOX])
    shutil.rmtree(tmp_path / "ev")
    assert s.write(mid(2), frame(2), [BOX])
    assert s.path(mid(2)) is not None and s.path(mid(1)) is None
    snap = s.snapshot()
    assert snap["readings"] == 1 and snap["bytes"] == sum(f.stat().st_size for f in (tmp_path / "ev").iterdir())
    assert "made again (1 reading(s) it held are forgotten)" in caplog.text and "Traceback" not in caplog.text


def test_a_write_that_fails_removes_only_what_it_made(tmp_path, monkeypatch, caplog):
    """Found from outside: a read-only folder logged a 'cannot delete' line for every frame and crop name the write
    never made (12 lines a reading)."""
    import daemon.evidence as evidence

    s = store(tmp_path)

    def refuse(path, blob):
        raise OSError(30, "Read-only file system")
    monkeypatch.setattr(evidence, "_write_file", refuse)
    assert not s.write(mid(1), frame(1), [BOX, BOX, BOX])
    assert "cannot delete" not in caplog.text and s.snapshot()["write_errors"] == 1
