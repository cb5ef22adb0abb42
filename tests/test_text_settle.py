"""cameras[].text_settle: a voting camera leaves a frame unread (no post-processing, crops or recognizer) when every
label in it is a followed one whose text settled (each line read alike twice and in most of its readings); one frame
in TEXT_WATCH_EVERY is read all the same, and codes found in a frame left unread join the label they lie on. The
rule on the tracker's own terms, then a lane with real zxing-cpp and label outlines on rendered belt frames, then the
real daemon loop with the real models: the same labels, fewer frames read."""
from __future__ import annotations

import numpy as np
import pytest

from daemon import config
from daemon.codes.reader import Code
from daemon.ocr.results import OcrResult, TextLine
from daemon.readings.consensus import LabelTracker, label_outlines
from daemon.readings.lane import TEXT_WATCH_EVERY, Lane
from daemon.readings.settle import SettledLabels
from daemon.sources import Frame
from test_codes_settle import _belt, _box, _plain, _sequence, labels  # noqa: F401  (labels: a fixture)

KEY = "EE123456785CN"


def _tracker(**kw) -> LabelTracker:
    return LabelTracker(**{"leave_after_frames": 3, "leave_after_s": 60.0, "max_wait_s": 60.0, **kw})


def _lines(x: int, town: str = "PARIS 75001") -> list[TextLine]:
    return [TextLine(KEY, 0.9, _box(x + 20, 120, 200, 30)), TextLine(town, 0.8, _box(x + 20, 300, 180, 30))]


def test_a_label_whose_lines_each_read_alike_twice_and_mostly_is_text_settled():
    t = _tracker()
    t.observe(0.0, _lines(100), image=_belt(_plain(100, 100)))
    assert t.settled() == ()                                     # read once
    t.observe(1.0, _lines(130, "PARIS  75001"), image=_belt(_plain(130, 100)))
    (s,) = t.settled()
    assert (s.text, s.codes, s.vx) == (True, False, 30.0)        # alike twice (whitespace aside): settled; no code
    t.observe(2.0, _lines(160, "PAR1S 75001"), image=_belt(_plain(160, 100)))
    assert [s.text for s in t.settled()] == [True]               # two of three readings alike: still
    t.observe(3.0, _lines(190, "PAR1S 75001"), image=_belt(_plain(190, 100)))
    assert t.settled() == ()                                     # two against two: read again
    parked = _tracker(max_wait_s=1.0)
    for i in range(3):
        parked.observe(float(i), _lines(100, f"TOWN {i}"), image=_belt(_plain(100, 100)))
    assert [s.text for s in parked.settled()] == [True]          # published by max_wait: a silent placeholder


def test_frames_left_unread_keep_the_label_in_view_by_its_outline_and_its_votes_are_the_frames_read():
    t = _tracker()
    for i in range(2):
        x = 100 + 40 * i
        t.observe(float(i), _lines(x), image=_belt(_plain(x, 100)))
    for i in range(2, 6):   # four frames unread: without them seen, three would have finished the label
        x = 100 + 40 * i
        outlines = label_outlines(_belt(_plain(x, 100)))
        assert t.observe(float(i), [], outlines=outlines, searched=False, read=False) == []
        (s,) = t.settled()
        assert abs(s.rect[0] - x) <= 8 and s.vx == pytest.approx(40.0, abs=8)   # follows the outline
    x = 100 + 40 * 6
    town_missed = [TextLine(KEY, 0.9, _box(x + 20, 120, 200, 30))]
    assert t.observe(6.0, town_missed, image=_belt(_plain(x, 100))) == []   # read again: the same label
    (label,) = t.flush()
    assert label.frames == 7
    # The town, read in two of the three frames read (not two of seven), is kept.
    assert [line.text for line in label.lines] == [KEY, "PARIS 75001"]


def test_an_unread_frame_with_a_label_nowhere_predicted_misses_the_followed_one():
    t = _tracker(leave_after_frames=2)
    for i in range(2):
        t.observe(float(i), _lines(100), image=_belt(_plain(100, 100)))
    elsewhere = label_outlines(_belt(_plain(760, 560)))
    assert t.observe(2.0, [], outlines=elsewhere, searched=False, read=False) == []
    (label,) = t.observe(3.0, [], outlines=elsewhere, searched=False, read=False)   # missed twice: it left
    assert label.reason == "left" and label.frames == 2


def test_codes_found_in_a_frame_left_unread_join_the_label_they_lie_on_and_others_start_their_own():
    t = _tracker()
    for i in range(2):
        t.observe(float(i), _lines(100), image=_belt(_plain(100, 100)))
    on_label = Code("Code128", KEY, _box(350, 160, 120, 60))
    elsewhere = Code("QRCode", "BIN 7", _box(1000, 700, 80, 80))   # on the belt, on no outline
    outlines = label_outlines(_belt(_plain(100, 100)))
    t.observe(2.0, [], [on_label, elsewhere], outlines=outlines, searched=True, read=False)
    # The label has its code now (its frames searched thrice); the code on the belt is a label of its own.
    assert [(s.codes, s.text) for s in t.settled()] == [(True, True)]
    label, other = t.flush()
    assert [(c.format, c.text) for c in label.codes] == [("Code128", KEY)] and label.frames == 3
    assert [(c.format, c.text) for c in other.codes] == [("QRCode", "BIN 7")] and other.lines == []


def _look(settle: SettledLabels, outlines) -> tuple[bool, bool]:
    """(searched, read): the look's question, then the work loop's, as for a frame."""
    return settle.search(outlines), settle.read(outlines)


def _settled_tracker(code: bool) -> LabelTracker:
    t = _tracker()
    for i in range(2):
        codes = [Code("Code128", KEY, _box(350, 160, 120, 60))] if code else []
        t.observe(float(i), _lines(100), codes, image=_belt(_plain(100, 100)))
    return t


def test_codes_and_text_settle_apart():
    outlines = label_outlines(_belt(_plain(100, 100)))
    settle = SettledLabels(3, 3, codes=True, text=True)
    settle.update(_settled_tracker(code=True))
    assert [_look(settle, outlines) for _ in range(4)] == [(False, False), (False, False), (True, True), (False, False)]
    without_code = SettledLabels(3, 3, codes=True, text=True)
    without_code.update(_settled_tracker(code=False))
    # Its text settled, not its codes: searched in every frame, read in one of three.
    assert [_look(without_code, outlines) for _ in range(3)] == [(True, False), (True, False), (True, True)]
    # A camera without codes: the text alone decides (searched means nothing there).
    text_only = SettledLabels(3, 3, codes=False, text=True)
    text_only.update(_settled_tracker(code=False))
    assert [_look(text_only, outlines)[1] for _ in range(3)] == [False, False, True]
    # codes_settle alone: searched less, every frame read.
    codes_only = SettledLabels(3, 3, codes=True, text=False)
    codes_only.update(_settled_tracker(code=True))
    assert [_look(codes_only, outlines) for _ in range(3)] == [(False, True), (False, True), (True, True)]


def test_another_label_taking_a_settled_ones_place_is_read_where_the_code_search_alone_would_be_left_out():
    t = _tracker()
    for i in range(2):   # settled, moving 40 px a frame: predicted at x = 180 next
        x = 100 + 40 * i
        t.observe(float(i), _lines(x), [Code("Code128", KEY, _box(x + 250, 160, 120, 60))],
                  image=_belt(_plain(x, 100)))
    settle = SettledLabels(3, 3, codes=True, text=True)
    settle.update(t)
    # The next label, 100 px behind where the settled one should be (IoU about 0.6): the codes rule takes it for
    # the settled label, the text rule does not.
    assert _look(settle, label_outlines(_belt(_plain(80, 100)))) == (False, True)
    assert _look(settle, label_outlines(_belt(_plain(220, 100)))) == (False, False)   # where it should be


def test_a_label_coming_into_view_or_beside_a_new_one_is_read_and_one_leaving_view_is_not():
    settle = SettledLabels(3, 3, codes=False, text=True)
    t = _tracker()
    for i in range(2):   # a label standing at the left edge: it may still come into view
        t.observe(float(i), _lines(0), image=_belt(_plain(0, 100)))
    settle.update(t)
    assert _look(settle, label_outlines(_belt(_plain(0, 100))))[1] is True
    t = _tracker()
    for i in range(2):   # moving right, at the left edge: coming in
        t.observe(float(i), _lines(40 * i - 200), image=_belt(_plain(0, 100, w=220 + 40 * i)))
    settle.update(t)
    assert _look(settle, label_outlines(_belt(_plain(0, 100, w=300))))[1] is True
    t = _tracker()
    for i in range(2):   # moving right, at the right edge: leaving (its lines only go)
        x = 800 + 40 * i
        t.observe(float(i), _lines(x), image=_belt(_plain(x, 100, w=1280 - x)))
    settle.update(t)
    assert _look(settle, label_outlines(_belt(_plain(880, 100, w=400))))[1] is False
    settle.update(_settled_tracker(code=False))
    assert _look(settle, label_outlines(_belt(_plain(100, 100), _plain(760, 560))))[1] is True


def _lane(text_settle: bool) -> Lane:
    cfg = config.from_dict({"backend": "onnxruntime", "cameras": [{
        "name": "belt", "kind": "rtsp", "uri": "rtsp://cam/belt", "codes": ["Code128", "QRCode"],
        "publish_mode": "consensus", "text_settle": text_settle, "leave_after_frames": 2}]})
    return Lane(cfg.cameras[0])


def _run(lane: Lane, frames):
    """Each frame looked at, then read (or left unread, as the work loop does: result None) and voted; the
    finished labels' texts and codes, and which frames were read."""
    read, labels = [], []
    for i, (image, lines) in enumerate(frames):
        frame = Frame(camera="belt", image=image, captured_at=float(i))
        look = lane.look(image)
        read.append(not lane.unread(look.outlines))
        result = OcrResult(lines, {}) if read[-1] else None
        readings = lane.readings(frame, result, look.codes, look.codes_ms, look.outlines, look.searched)
        labels += [_label(r) for r in readings]
    labels += [_label(r) for r in lane.flush()]
    return labels, read


def _label(reading) -> tuple[list, list]:
    return ([line.text for line in reading.decision.lines],
            sorted((c.format, c.text) for c in reading.decision.codes))


def test_a_lane_with_text_settle_gives_the_same_labels_reading_fewer_frames(labels):  # noqa: F811
    frames = _sequence(labels)
    every_labels, every = _run(_lane(False), frames)
    settle_labels, read = _run(_lane(True), frames)
    assert all(every)
    assert settle_labels == every_labels == [(["LABEL 0"], [("Code128", "RR123456785CH")]),
                                             (["LABEL 1"], [("QRCode", "YT0852453935048")])]
    # Label 0 alone: read in its first two frames (the same text twice), then one frame in TEXT_WATCH_EVERY; label 1
    # comes into view in frame 6 and that frame is read at once.
    assert TEXT_WATCH_EVERY == 4
    assert read[:6] == [True, True, False, False, False, True]
    assert read[6] is True
    assert 0 < read.count(False) < len(frames) - 4


def test_in_the_service_frames_left_unread_are_counted_and_the_stored_label_is_the_same(tmp_path):
    """The real daemon loop and models on a video of a label with a Code 128 crossing the belt and one without a
    code, with text_settle on and off: the same stored messages (texts, codes, frames), frames left unread counted
    in the snapshot, and neither the page nor the detector given any of them."""
    from broker import wait_until
    from service_support import work_loop
    from test_service_consensus import _belt_video, _config, _stored

    from daemon.service import Service

    clip = tmp_path / "belt.avi"
    total = _belt_video(clip)
    stored, unread = {}, {}
    for on in (False, True):
        raw = _config(tmp_path / str(on), clip, codes=["Code128"], text_settle=on)
        (tmp_path / str(on)).mkdir()
        raw["ocr"]["det_input_size"] = [320, 640]
        cfg = config.from_dict(raw)
        service = Service(cfg, str(tmp_path / "unused.yaml"))
        service.start()
        shown, detected = [], []
        show, submit = service.live.frame, service.pipeline.submit
        service.live.frame = lambda camera, image, *rest: shown.append(image) or show(camera, image, *rest)
        service.pipeline.submit = lambda frames, *rest: detected.extend(frames) or submit(frames, *rest)
        with work_loop(service):
            assert wait_until(lambda: service.snapshot()["cameras"]["belt"]["frames"]
                              + service.hub.dropped.get("belt", 0) >= total, 120)
            assert wait_until(lambda: service.outbox.depth()[0] >= 1, 30)
        belt = service.snapshot()["cameras"]["belt"]
        unread[on] = belt["frames_unread"]
        assert len(shown) <= belt["frames"] - unread[on]
        # ONNX Runtime's detector does not overlap: a frame left unread is known before detection and skips it
        assert not service.pipeline.overlaps and len(detected) == belt["frames"] - unread[on]
        stored[on] = [([t["text"] for t in d["texts"]], d.get("codes"), d["frames"]) for d in _stored(cfg)]
    assert unread[False] == 0 and unread[True] >= 1, unread
    assert stored[True] == stored[False] and len(stored[True]) == 2, stored
