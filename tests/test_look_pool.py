"""The look pool reads each frame's codes (and label outlines) beside its OCR and gives the loop exactly what the
lane reads inline: real zxing-cpp on rendered labels with a Code 128 or a QR code, and on a frame with none."""
import numpy as np
import pytest

from daemon import config
from daemon.readings import consensus
from daemon.readings.look_pool import LookPool
from daemon.readings.consensus import label_outlines
from daemon.readings.lane import FrameLook, Lane
from daemon.samples.codes import code_label
from daemon.sources import Frame


def _lane(codes=("Code128", "QRCode")) -> Lane:
    cfg = config.from_dict({"backend": "onnxruntime",
                            "cameras": [{"name": "belt", "kind": "sample", "codes": list(codes)}]})
    return Lane(cfg.cameras[0])


@pytest.fixture(params=[False, True], ids=["outlines on the loop", "outlines on their own thread"])
def outline_thread(request):
    """Both ways the pool finds a voting lane's outlines (on the loop, the default; or a thread of their own)."""
    return request.param


@pytest.fixture(scope="module")
def frames():
    images = [code_label(f"LABEL {i}", content, fmt) for i, (fmt, content) in
              enumerate((("Code128", "RR123456785CH"), ("QRCode", "YT0852453935048"), ("Code128", "JD014600006812")))]
    images.append(np.full((480, 640, 3), 200, dtype=np.uint8))        # no code at all
    return [Frame(camera="belt", image=im, captured_at=0.0) for im in images]


def test_codes_started_at_submit_are_what_the_lane_reads_inline(frames, outline_thread):
    lane = _lane()
    pool = LookPool(outline_thread=outline_thread)
    try:
        pool.start(frames, {"belt": lane})
        got = [pool.result(lane, f) for f in frames]
    finally:
        pool.close()
    want = [lane.read_codes(f.image) for f in frames]
    assert [look.codes for look in got] == [codes for codes, _ in want]
    assert sum(len(look.codes) for look in got) >= 3          # the three labels' codes were read
    assert all(look.codes_ms is not None and look.codes_ms >= 0 for look in got)


def test_a_frame_not_started_or_of_a_camera_without_codes_is_read_inline(frames, outline_thread):
    lane, no_codes = _lane(), _lane(codes=())
    pool = LookPool(outline_thread=outline_thread)
    try:
        pool.start(frames[:1], {"belt": no_codes})            # nothing to start: that camera reads no codes
        assert pool.result(no_codes, frames[0]) == FrameLook([], None)
        assert pool.result(lane, frames[1]).codes == lane.read_codes(frames[1].image)[0]   # never started
        pool.start(frames[2:3], {"other camera": lane})        # a camera removed by a reload: not started
        assert pool.result(lane, frames[2]).codes == lane.read_codes(frames[2].image)[0]
    finally:
        pool.close()


def test_codes_nobody_took_are_dropped_two_starts_later_and_a_dropped_frame_is_still_read(frames, outline_thread):
    """A frame whose OCR failed never has its codes taken: the start after next drops them (the loop has taken every
    batch's codes but the last one's by then); asked for after all, its codes are read inline."""
    lane = _lane()
    pool = LookPool(outline_thread=outline_thread)
    try:
        failed, overlapping, next_one = ([Frame(camera="belt", image=frames[i].image, captured_at=float(i))]
                                         for i in range(3))
        pool.start(failed, {"belt": lane})
        pool.start(overlapping, {"belt": lane})    # with overlap, this batch is handled after the next submit
        pool.start(next_one, {"belt": lane})       # drops the failed frame's read, keeps the overlapping one's
        for batch, image in ((failed, frames[0].image), (overlapping, frames[1].image), (next_one, frames[2].image)):
            assert pool.result(lane, batch[0]).codes == lane.read_codes(image)[0]
    finally:
        pool.close()


def test_a_voting_lane_s_label_outlines_are_found_beside_the_ocr_as_its_tracker_finds_them(outline_thread):
    cfg = config.from_dict({"backend": "onnxruntime", "cameras": [
        {"name": "belt", "kind": "sample", "publish_mode": "consensus", "codes": ["Code128"]},
        {"name": "plain", "kind": "sample", "publish_mode": "first", "codes": []}]})
    voting, plain = Lane(cfg.cameras[0]), Lane(cfg.cameras[1])
    belt = np.full((960, 1280, 3), (60, 70, 65), dtype=np.uint8)      # a label on a dark belt
    label = code_label("LABEL 7", "RR123456785CH")
    belt[200:200 + label.shape[0], 300:300 + label.shape[1]] = label
    frame, other = Frame(camera="belt", image=belt, captured_at=0.0), Frame(camera="plain", image=belt, captured_at=0.0)
    pool = LookPool(outline_thread=outline_thread)
    try:
        pool.start([frame, other], {"belt": voting, "plain": plain})
        look = pool.result(voting, frame)
        assert pool.result(plain, other) == FrameLook([], None)      # a first-mode lane without codes: nothing
    finally:
        pool.close()
    want = label_outlines(belt)
    assert look.outlines is not None and look.outlines.rects == want.rects
    assert np.array_equal(look.outlines.ids, want.ids)
    assert [c.text for c in look.codes] == ["RR123456785CH"]


def test_outlines_looked_for_and_not_found_are_not_looked_for_again_on_the_loop(monkeypatch):
    cfg = config.from_dict({"backend": "onnxruntime", "cameras": [
        {"name": "belt", "kind": "sample", "publish_mode": "consensus", "codes": []}]})
    lane = Lane(cfg.cameras[0])
    # a label filling the view: its border is no single background, so there are no outlines to group by
    full = np.zeros((480, 640, 3), dtype=np.uint8)
    full[:, :, :] = np.linspace(0, 255, 640, dtype=np.uint8)[None, :, None]
    look = lane.look(full)
    assert look.outlines is None and label_outlines(full) is None
    calls = []
    monkeypatch.setattr(consensus, "label_outlines", lambda image: calls.append(image) or None)
    lane.readings(Frame(camera="belt", image=full, captured_at=0.0), _Result(), look.codes, look.codes_ms,
                  look.outlines)
    assert calls == []                       # the look's answer stands: no second search on the work loop
    lane.readings(Frame(camera="belt", image=full, captured_at=0.1), _Result(), [], None)
    assert len(calls) == 1                   # a caller that did not look: the tracker looks


class _Result:
    lines: list = []
    timing_ms: dict = {}


def test_a_voting_lane_s_outlines_come_first_and_a_frame_left_unsearched_waits_for_no_code_search(outline_thread):
    """The loop asks whether a frame is left unread from its outlines alone; a frame whose code search was left out
    (codes_settle) gives its look without waiting for the code pool's queue, and each lane call is made once."""
    cfg = config.from_dict({"backend": "onnxruntime", "cameras": [
        {"name": "belt", "kind": "sample", "publish_mode": "consensus", "codes": ["Code128"]}]})
    lane = Lane(cfg.cameras[0])
    belt = np.full((960, 1280, 3), (60, 70, 65), dtype=np.uint8)
    label = code_label("LABEL 7", "RR123456785CH")
    belt[200:200 + label.shape[0], 300:300 + label.shape[1]] = label
    asked, looked = [], []
    unread, look = lane.unread, lane.look
    lane.unread = lambda outlines: asked.append(outlines) or unread(outlines)
    lane.look = lambda image, first=None: looked.append(first) or look(image, first)
    lane.settle.search = lambda outlines: False          # as for a frame whose labels all have their codes
    frame = Frame(camera="belt", image=belt, captured_at=0.0)
    pool = LookPool(outline_thread=outline_thread)
    try:
        pool.start([frame], {"belt": lane})
        assert pool.unread(lane, frame) is False           # nothing settled in the tracker yet: read
        got = pool.result(lane, frame)
    finally:
        pool.close()
    assert len(asked) == 1 and asked[0].rects == label_outlines(belt).rects
    assert len(looked) == 1 and looked[0] is not None and looked[0].searched is False
    assert got.searched is False and got.codes == [] and got.codes_ms == 0.0


def test_outlines_that_fail_on_the_loop_leave_the_frame_read_and_its_failure_its_own(outline_thread):
    """The outlines are found on the loop's thread when the frame is submitted; where that fails, the batch's OCR goes
    on, the frame is read (not left unread on no evidence), and the failure comes back when its look is taken."""
    cfg = config.from_dict({"backend": "onnxruntime", "cameras": [
        {"name": "belt", "kind": "sample", "publish_mode": "consensus", "codes": ["Code128"]}]})
    lane = Lane(cfg.cameras[0])

    def broken(image):
        raise ValueError("outlines failed")
    lane.outline = broken
    frame = Frame(camera="belt", image=np.full((480, 640, 3), 200, dtype=np.uint8), captured_at=0.0)
    pool = LookPool(outline_thread=outline_thread)
    try:
        pool.start([frame], {"belt": lane})                 # does not raise: the other frames' OCR is not lost
        assert pool.unread(lane, frame) is False
        with pytest.raises(ValueError, match="outlines failed"):
            pool.result(lane, frame)
    finally:
        pool.close()


def test_the_outlines_stay_on_the_loop_by_default_and_have_their_own_thread_when_asked(monkeypatch):
    from daemon.readings import look_pool

    def threaded(pool: LookPool) -> bool:
        try:
            return pool._outlines is not None
        finally:
            pool.close()
    # RESULTS.md section 57: on 2 to 16 cores, no core count where the thread paid for certain
    assert look_pool.OUTLINE_THREAD is False and not threaded(LookPool())
    monkeypatch.setattr(look_pool, "OUTLINE_THREAD", True)   # what bench/cpu_ceiling.py --outline-thread on sets
    assert threaded(LookPool()) and not threaded(LookPool(outline_thread=False))   # a pool's own word wins
