"""One path for every reading (daemon/readings): a camera's Lane and the Recorder, with a made-up OCR result and a
real outbox on tmp_path. No models, no broker, no subprocess: each test runs in milliseconds."""
import json

import numpy as np

from daemon import config
from daemon.evidence import NoEvidence
from daemon.publish.outbox import Outbox
from daemon.publish.unstored import UnstoredReadings
from daemon.readings import Lane, Recorder
from daemon.sources import Frame, FrameAck
from daemon.status import Counters
from daemon.web.live import LiveView
from readings_support import Result, line

WAYBILL = "SF1234567890123"


class RecordingAck(FrameAck):
    """A folder image's acknowledgement as the tests see it: every call in order, and whether the outbox held
    the reading when done() came."""

    def __init__(self, outbox=None):
        self.calls, self.outbox, self.rows_at_done = [], outbox, None

    def reserve(self, seq):
        self.calls.append(("reserve", seq))

    def done(self):
        self.calls.append(("done",))
        if self.outbox is not None:
            self.rows_at_done = self.outbox.depth()[0]

    def release(self):
        self.calls.append(("release",))

    def reject(self, why):
        self.calls.append(("reject", why))


def setup(tmp_path, **camera):
    cfg = config.from_dict({"device_id": "dock", "mqtt": {"enabled": False},
                            "cameras": [{"name": "belt", "kind": "sample", **camera}],
                            "evidence": {"review_below_confidence": 0.9},
                            "outbox": {"path": str(tmp_path / "outbox.sqlite3")}})
    outbox = Outbox(cfg.outbox)
    counters, live, woken = Counters(), LiveView(), []
    recorder = Recorder(cfg, outbox, counters, UnstoredReadings(lambda: outbox.counters),
                        engine=lambda: {"backend": "test"}, evidence=NoEvidence, page=lambda: live,
                        wake=lambda: woken.append(1))
    return Lane(cfg.cameras[0]), recorder, outbox, counters, live, woken


def frame(at, ack=None, image=None):
    return Frame("belt", image if image is not None else np.zeros((120, 400, 3), np.uint8), at,
                 ack=ack or FrameAck(), source={"kind": "sample"})


def record(lane, recorder, f, lines):
    return [recorder.record(lane, r) for r in lane.readings(f, Result(lines), [], None)]


def test_first_mode_reserves_stores_then_acks_the_folder_image(tmp_path):
    lane, recorder, outbox, counters, live, woken = setup(tmp_path)
    ack = RecordingAck(outbox)
    assert record(lane, recorder, frame(100.0, ack), [line(WAYBILL)]) == [True]
    assert ack.calls == [("reserve", 1), ("done",)]
    assert ack.rows_at_done == 1          # durable in the outbox before the image may go
    [row] = outbox.pending(10)
    doc = json.loads(row.payload)
    assert doc["seq"] == 1 and [t["text"] for t in doc["texts"]] == [WAYBILL] and "frames" not in doc
    assert woken == [1] and counters.cameras({}, {})["belt"]["stored"] == 1
    assert live.camera_view("belt")["readings"][0]["texts"][0]["text"] == WAYBILL
    outbox.close()


def test_a_duplicate_within_the_window_is_not_stored_and_its_frame_is_done(tmp_path):
    lane, recorder, outbox, counters, live, _ = setup(tmp_path, dedup_window_s=5.0)
    assert record(lane, recorder, frame(100.0), [line(WAYBILL)]) == [True]
    ack = RecordingAck()
    assert record(lane, recorder, frame(101.0, ack), [line(WAYBILL)]) == [False]
    assert ack.calls == [("done",)]       # nothing to store: the image may go at once
    assert outbox.depth()[0] == 1
    assert counters.cameras({}, {})["belt"]["rejected"] == {"duplicate": 1}
    assert record(lane, recorder, frame(106.0), [line(WAYBILL)]) == [True]   # the window has passed
    outbox.close()


def test_a_refused_reading_is_released_and_not_remembered_as_published(tmp_path):
    lane, recorder, outbox, counters, _, _ = setup(tmp_path, dedup_window_s=5.0)
    outbox.close()
    cfg = config.from_dict({"device_id": "dock", "mqtt": {"enabled": False},
                            "outbox": {"path": str(tmp_path / "full.sqlite3"), "max_rows": 1,
                                       "full_policy": "refuse_new"}})
    full = Outbox(cfg.outbox)
    assert full.put("other", "t", "dock:other:1:0", b"{}")
    recorder.outbox = full
    ack = RecordingAck()
    assert record(lane, recorder, frame(100.0, ack), [line(WAYBILL)]) == [False]
    assert ack.calls == [("reserve", 1), ("release",)]
    full.delete_many([r.id for r in full.pending(10)])
    assert record(lane, recorder, frame(100.5), [line(WAYBILL)]) == [True]   # no duplicate of itself
    full.close()


def test_the_review_row_follows_its_reading(tmp_path):
    lane, recorder, outbox, counters, live, _ = setup(tmp_path)
    assert record(lane, recorder, frame(100.0), [line(WAYBILL, confidence=0.7)]) == [True]
    reading, review = outbox.pending(10)
    assert json.loads(reading.payload)["schema"] == "ocr-result/4"
    assert review.msg_id == reading.msg_id + "/review" and review.topic.endswith("/belt/review")
    assert counters.cameras({}, {})["belt"]["reviewed"] == 1
    outbox.close()


def test_consensus_lane_votes_until_the_label_leaves_and_flush_records_the_one_in_view(tmp_path):
    lane, recorder, outbox, counters, live, _ = setup(tmp_path, publish_mode="consensus", leave_after_frames=2,
                                                      leave_after_s=600, max_wait_s=600)
    texts = [WAYBILL, "SF12345G7890123", WAYBILL]   # one misread among three frames: the vote fixes it
    for i, text in enumerate(texts):
        ack = RecordingAck()
        assert record(lane, recorder, frame(100.0 + i, ack), [line(text, x=10.0 + 5 * i)]) == []
        assert ack.calls == [("done",)]   # a frame of a voting camera needs no acknowledgement
    assert lane.pending == 1 and outbox.depth()[0] == 0
    other = "SF9876543210987"
    for i in range(2):   # another label: the first one is out of view for two frames, so it finishes
        results = record(lane, recorder, frame(110.0 + i), [line(other, x=300.0, y=80.0)])
    assert results == [True] and lane.pending == 1
    [first] = outbox.pending(10)
    doc = json.loads(first.payload)
    assert [t["text"] for t in doc["texts"]] == [WAYBILL] and doc["frames"] == 3
    # SIGHUP's reload and SIGTERM's drain: the label still in view becomes a reading now.
    assert [recorder.record(lane, r) for r in lane.flush()] == [True]
    assert lane.pending == 0
    assert [json.loads(r.payload)["texts"][0]["text"] for r in outbox.pending(10)] == [WAYBILL, other]
    outbox.close()


def test_consensus_evidence_boxes_are_the_lines_boxes_in_the_best_frame(tmp_path):
    lane, recorder, outbox, _, _, _ = setup(tmp_path, publish_mode="consensus", leave_after_frames=1,
                                            leave_after_s=600, max_wait_s=600)
    # The second frame is the best (most confident); the voted line's evidence box is where that frame read it.
    lane.readings(frame(100.0), Result([line(WAYBILL, x=10.0, confidence=0.80)]), [], None)
    lane.readings(frame(101.0), Result([line(WAYBILL, x=20.0, confidence=0.99)]), [], None)
    [reading] = lane.flush()
    assert reading.frames == 2 and reading.context.captured_at == 101.0 and reading.captured_at == 100.0
    assert reading.evidence_boxes == [line(WAYBILL, x=20.0).box]
    outbox.close()
