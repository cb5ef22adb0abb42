"""cameras[].codes_settle: a voting camera leaves out the code search of a frame whose labels all have their codes,
but for one frame in CODE_WATCH_EVERY. The rule on the tracker's own terms, then a lane with real zxing-cpp and
label outlines on rendered belt frames: the same label codes as a camera that searches every frame, fewer searches,
and a label coming into view searched at once."""
from __future__ import annotations

import numpy as np
import pytest

from daemon import config
from daemon.codes.reader import Code
from daemon.ocr.results import OcrResult, TextLine
from daemon.readings.consensus import LabelTracker, label_outlines
from daemon.readings.lane import CODE_WATCH_EVERY, Lane
from daemon.readings.settle import SettledLabels, all_settled
from daemon.samples.codes import code_label
from daemon.sources import Frame

_BELT = np.clip(np.random.default_rng(11).normal((70, 95, 120), 6, (960, 1280, 3)), 0, 255).astype(np.uint8)


def _box(x, y, w, h):
    return ((x, y), (x + w, y), (x + w, y + h), (x, y + h))


def _belt(*labels: tuple[int, int, np.ndarray]) -> np.ndarray:
    frame = _BELT.copy()
    for x, y, patch in labels:
        frame[y:y + patch.shape[0], x:x + patch.shape[1]] = patch
    return frame


def _tracker() -> LabelTracker:
    return LabelTracker(leave_after_frames=3, leave_after_s=60.0, max_wait_s=60.0)


def _plain(x: int, y: int, w: int = 420, h: int = 300) -> tuple[int, int, np.ndarray]:
    return x, y, np.full((h, w, 3), 235, np.uint8)


def test_a_label_with_its_code_searched_twice_is_settled_where_its_motion_puts_it():
    t = _tracker()
    key = "EE123456785CN"
    for i in range(2):   # two frames, searched, the code read in the first only
        x = 100 + 40 * i
        codes = [Code("Code128", key, _box(x + 250, 120, 120, 60))] if i == 0 else []
        t.observe(float(i), [TextLine(key, 0.9, _box(x + 20, 120, 200, 30))], codes,
                  image=_belt(_plain(x, 100)))
    (settled,) = t.settled()
    assert (settled.vx, settled.vy, settled.codes) == (40.0, 0.0, True)   # its velocity per frame
    # The frame two steps on (the look runs a frame behind): its one outline is the settled label.
    assert all_settled(label_outlines(_belt(_plain(180, 100))), t.settled())
    # Another label coming into view beside it is not settled: the frame is searched.
    assert not all_settled(label_outlines(_belt(_plain(180, 100), _plain(760, 500))), t.settled())
    # No outlines to judge by: a gray frame (no single background), an empty belt.
    assert not all_settled(label_outlines(np.full((960, 1280, 3), 128, np.uint8)), t.settled())
    assert not all_settled(label_outlines(_belt()), t.settled())


def test_a_label_is_not_settled_before_two_searches_nor_without_a_code_nor_by_frames_left_unsearched():
    key = "EE123456785CN"
    code = Code("Code128", key, _box(350, 120, 120, 60))
    once = _tracker()
    once.observe(0.0, [TextLine(key, 0.9, _box(120, 120, 200, 30))], [code], image=_belt(_plain(100, 100)))
    assert once.settled() == ()                            # read once: not yet (neither codes nor text)
    unsearched = _tracker()
    unsearched.observe(0.0, [TextLine(key, 0.9, _box(120, 120, 200, 30))], [code], image=_belt(_plain(100, 100)))
    unsearched.observe(1.0, [TextLine(key, 0.9, _box(120, 120, 200, 30))], [], image=_belt(_plain(100, 100)),
                       searched=False)
    assert [s.codes for s in unsearched.settled()] == [False]   # a frame left unsearched does not count
    no_code = _tracker()
    for i in range(4):
        no_code.observe(float(i), [TextLine(key, 0.9, _box(120, 120, 200, 30))], image=_belt(_plain(100, 100)))
    assert [s.codes for s in no_code.settled()] == [False]   # text only: every frame is searched


def test_a_parked_label_once_published_is_settled_without_a_code():
    t = LabelTracker(leave_after_frames=3, leave_after_s=60.0, max_wait_s=1.0)
    for i in range(3):
        t.observe(float(i), [TextLine("PARKED 42", 0.9, _box(120, 120, 200, 30))], image=_belt(_plain(100, 100)))
    assert [s.codes for s in t.settled()] == [True]        # published by max_wait, kept as a placeholder


def test_settled_frames_are_searched_one_in_watch_every():
    t = _tracker()
    key = "EE123456785CN"
    for i in range(2):
        t.observe(float(i), [TextLine(key, 0.9, _box(120, 120, 200, 30))],
                  [Code("Code128", key, _box(350, 120, 120, 60))], image=_belt(_plain(100, 100)))
    settle = SettledLabels(code_watch=3)
    outlines = label_outlines(_belt(_plain(100, 100)))

    def skip(outlines) -> bool:
        assert settle.read(outlines)                       # text_settle off: every frame is read
        return not settle.search(outlines)

    assert [skip(outlines) for _ in range(7)] == [False] * 7   # nothing settled known yet
    settle.update(t)
    assert [skip(outlines) for _ in range(7)] == [True, True, False, True, True, False, True]
    assert skip(label_outlines(_belt(_plain(100, 100), _plain(760, 500)))) is False   # a new label
    assert skip(outlines) is True                          # the count starts again after a search


@pytest.fixture(scope="module")
def labels():
    return [code_label(f"LABEL {i}", key, fmt, width=560) for i, (fmt, key) in
            enumerate((("Code128", "RR123456785CH"), ("QRCode", "YT0852453935048")))]


def _lane(settle: bool) -> Lane:
    cfg = config.from_dict({"backend": "onnxruntime", "cameras": [{
        "name": "belt", "kind": "rtsp", "uri": "rtsp://cam/belt", "codes": ["Code128", "QRCode"],
        "publish_mode": "consensus", "codes_settle": settle, "text_settle": False, "leave_after_frames": 2}]})
    return Lane(cfg.cameras[0])


def _run(lane: Lane, frames: list[tuple[np.ndarray, list[TextLine]]]):
    """Each frame looked at (codes, outlines) and then voted, as the work loop does; the finished labels' codes
    and whether each frame was searched."""
    searched, labels = [], []
    for i, (image, lines) in enumerate(frames):
        frame = Frame(camera="belt", image=image, captured_at=float(i))
        look = lane.look(image)
        searched.append(look.searched)
        readings = lane.readings(frame, OcrResult(lines, {}), look.codes, look.codes_ms, look.outlines, look.searched)
        labels += [sorted((c.format, c.text) for c in r.decision.codes) for r in readings]
    labels += [sorted((c.format, c.text) for c in r.decision.codes) for r in lane.flush()]
    return labels, searched


def _sequence(labels) -> list[tuple[np.ndarray, list[TextLine]]]:
    """Label 0 crossing the view 30 px a frame for 9 frames; label 1 comes into view below it from frame 6 on."""
    out = []
    for i in range(12):
        x = 80 + 30 * i
        placed, lines = [], []
        if i < 9:
            placed.append((x, 60, labels[0]))
            lines.append(TextLine("LABEL 0", 0.95, _box(x + 20, 84, 160, 36)))
        if i >= 6:
            x1 = 80 + 30 * (i - 6)
            placed.append((x1, 560, labels[1]))
            lines.append(TextLine("LABEL 1", 0.95, _box(x1 + 20, 584, 160, 36)))
        out.append((_belt(*placed), lines))
    return out


def test_a_settling_lane_reads_the_same_label_codes_with_fewer_searches(labels):
    frames = _sequence(labels)
    every_labels, every = _run(_lane(False), frames)
    settle_labels, settled = _run(_lane(True), frames)
    assert all(every)
    assert every_labels == settle_labels == [[("Code128", "RR123456785CH")], [("QRCode", "YT0852453935048")]]
    # Label 0 alone: searched in its first two frames, then one frame in CODE_WATCH_EVERY; label 1 comes into
    # view in frame 6 and is searched at once, and in the next frame (its second search).
    assert CODE_WATCH_EVERY == 3
    assert settled[:6] == [True, True, False, False, True, False]
    assert settled[6:8] == [True, True]
    assert 0 < settled.count(False) < len(frames) - 4


def test_in_the_service_the_page_shows_only_frames_searched_for_codes_and_each_label_keeps_its_code(tmp_path):
    """The real daemon loop, the real models and zxing-cpp on a video of a label with a Code 128 crossing the belt
    and one without a code: the stored label carries its code, frames of the first label were left unsearched,
    and the page never showed one of those (it would show the label without its code)."""
    from broker import wait_until
    from service_support import work_loop
    from test_service_consensus import S10, _belt_video, _config, _stored

    from daemon.service import Service

    clip = tmp_path / "belt.avi"
    total = _belt_video(clip)
    raw = _config(tmp_path, clip, codes=["Code128"])
    raw["ocr"]["det_input_size"] = [320, 640]
    cfg = config.from_dict(raw)
    service = Service(cfg, str(tmp_path / "unused.yaml"))
    service.start()
    lane = service.lanes["belt"]
    looked, shown = [], []
    look, show = lane.look, service.live.frame
    lane.look = lambda image, first=None: looked.append(look(image, first)) or looked[-1]
    unread, left_out = [], lane.unread
    lane.unread = lambda outlines: unread.append(left_out(outlines)) or unread[-1]
    service.live.frame = lambda camera, image, *rest: shown.append(image) or show(camera, image, *rest)
    with work_loop(service):
        assert wait_until(lambda: service.snapshot()["cameras"]["belt"]["frames"]
                          + service.hub.dropped.get("belt", 0) >= total, 120)
        assert wait_until(lambda: service.outbox.depth()[0] >= 1, 30)
    docs = _stored(cfg)
    assert [(c["format"], c["text"]) for c in docs[0]["codes"]] == [("Code128", S10)]
    unsearched = sum(not lk.searched for lk in looked)
    assert unsearched >= 1, [lk.searched for lk in looked]     # the first label settled within its six frames
    # ... and never one left unread (text_settle); both asked once a frame, in order
    assert len(unread) == len(looked) and len(shown) == sum(lk.searched and not u for lk, u in zip(looked, unread))
