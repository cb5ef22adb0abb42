"""A continuous consensus camera's labels as results with a status (cameras[].label_status): each label seen is
one message, good_read when something of it was accepted, no_read (no texts, its frame kept as evidence) when it
was seen and nothing accepted; a duplicate of a label just published is no message; label_status false keeps the
old messages. The real Lane, LabelTracker, Recorder and outbox; messages checked against ocr-result/5."""
from __future__ import annotations

import json
import time

import numpy as np

from daemon import config
from daemon.publish.outbox import Outbox
from daemon.publish.unstored import UnstoredReadings
from daemon.readings import Lane, Recorder
from daemon.readings.lane import label_status
from daemon.readings.results_filter import Decision
from daemon.sources import Frame
from daemon.status import Counters
from daemon.web.live import NoLive
from publish_support import VALIDATOR
from readings_support import Result, line


class Kept:
    """An evidence store that keeps what it is given (the real one writes JPEGs on a thread)."""

    def __init__(self):
        self.ids = []

    def submit(self, msg_id, image, boxes, why=None):
        self.ids.append(msg_id)


def lane_and_recorder(tmp_path, **cam):
    cfg = config.from_dict({"device_id": "st1", "mqtt": {"enabled": False},
                            "cameras": [{"name": "belt", "kind": "sample", "publish_mode": "consensus",
                                         "leave_after_frames": 2, "dedup_window_s": 60, "codes": [], **cam}],
                            "outbox": {"path": str(tmp_path / "outbox.sqlite3")}})
    outbox = Outbox(cfg.outbox)
    kept = Kept()
    recorder = Recorder(cfg, outbox, Counters(), UnstoredReadings(lambda: outbox.counters),
                        engine=lambda: {"backend": "test"}, evidence=lambda: kept, page=NoLive, wake=lambda: None)
    return Lane(cfg.cameras[0]), recorder, outbox, kept


def feed(lane, recorder, frames_lines, t0):
    """Each entry one frame's lines; an empty frame between labels lets the previous one leave."""
    for i, lines in enumerate(frames_lines):
        frame = Frame("belt", np.zeros((240, 320, 3), np.uint8), t0 + 0.05 * i, source={"kind": "sample"})
        for reading in lane.readings(frame, Result(lines), [], None):
            recorder.record(lane, reading)
    for reading in lane.flush():
        recorder.record(lane, reading)


def messages(outbox):
    docs = [json.loads(r.payload) for r in outbox.pending(100)]
    for d in docs:
        VALIDATOR.validate(d)
    return docs


def test_every_label_seen_is_one_message_and_a_label_not_read_is_a_no_read_with_its_frame(tmp_path):
    lane, recorder, outbox, kept = lane_and_recorder(tmp_path, min_confidence=0.5)
    t0 = time.time()
    read = [line("PARCEL 0001")]
    faint = [line("P?RC#L", confidence=0.2)]             # seen, below min_confidence in every frame
    feed(lane, recorder, [read, read, [], [], faint, faint, [], [], read, read], t0)
    docs = messages(outbox)
    assert [(d["schema"], d["status"], [t["text"] for t in d["texts"]]) for d in docs] == [
        ("ocr-result/5", "good_read", ["PARCEL 0001"]), ("ocr-result/5", "no_read", [])]   # the third: a duplicate
    assert [d["result_id"] for d in docs] == [d["seq"] for d in docs] == [1, 2]
    assert all(d["trigger_source"] is None and d["trigger_id"] is None for d in docs)
    assert kept.ids == [d["id"] for d in docs]           # the no-read's frame is kept, as the read's


def test_label_status_false_keeps_the_old_messages(tmp_path):
    lane, recorder, outbox, _ = lane_and_recorder(tmp_path, min_confidence=0.5, label_status=False)
    feed(lane, recorder, [[line("PARCEL 0001")], [line("PARCEL 0001")], [], [],
                          [line("P?RC#L", confidence=0.2)], [line("P?RC#L", confidence=0.2)]], time.time())
    docs = messages(outbox)
    assert [(d["schema"], [t["text"] for t in d["texts"]]) for d in docs] == [("ocr-result/4", ["PARCEL 0001"])]


def test_the_status_of_a_decision():
    seen = Decision(False, [], key=frozenset())
    assert label_status(seen, seen=True) == "no_read"
    assert label_status(seen, seen=False) is None                                      # nothing was there
    assert label_status(Decision(True, [line("A")], key=frozenset({"A"})), True) == "good_read"
    assert label_status(Decision(True, [], key=frozenset({"code:QRCode:x"})), True) == "good_read"   # a code
    assert label_status(Decision(False, [line("A")], key=frozenset({"A"})), True) is None           # duplicate


def test_a_no_read_says_what_was_read_of_the_label_and_why_it_was_refused(tmp_path):
    """Found from outside: a no_read's message and evidence said only "something in view", which left the person
    coding the parcel by hand nothing to start from."""
    lane, recorder, outbox, _ = lane_and_recorder(tmp_path, min_confidence=0.5, accept_patterns=[r"SF\d{13}"])
    feed(lane, recorder, [[line("P IS DI")]] * 2, time.time())
    [doc] = messages(outbox)
    assert doc["status"] == "no_read" and doc["texts"] == []
    assert doc["note"] == "read, not accepted (no_pattern_match 1): P IS DI"
