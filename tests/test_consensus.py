"""One consensus reading per label (daemon/consensus.py): grouping, tracking and voting, pure, with an injected
clock; the frames are numpy arrays drawn here (white labels on a dark belt)."""
from __future__ import annotations

import numpy as np
import pytest

from daemon.codes.reader import Code
from daemon.readings import consensus
from daemon.readings.consensus import LabelTracker, group_labels, label_outlines, vote_line
from daemon.ocr.results import TextLine
from daemon.readings.results_filter import FilterRules, ResultFilter


def box(x: float, y: float, w: float = 200.0, h: float = 30.0):
    return ((x, y), (x + w, y), (x + w, y + h), (x, y + h))


def line(text: str, x: float = 100.0, y: float = 100.0, conf: float = 0.9) -> TextLine:
    return TextLine(text, conf, box(x, y))


_BELT = np.clip(np.random.default_rng(7).normal((70, 95, 120), 6, (960, 1280, 3)), 0, 255).astype(np.uint8)


def belt(*labels) -> np.ndarray:
    """A 1280x960 dark, slightly textured belt (BGR) with a white label at each (x0, y0, x1, y1)."""
    frame = _BELT.copy()
    for x0, y0, x1, y1 in labels:
        frame[y0:y1, x0:x1] = 235
    return frame


def waybill_label(x: float, y: float, key: str = "EE123456785CN", conf: float = 0.9):
    """A 440x300 label's elements at (x, y): the key top left, a code of it top right, two lines far below."""
    lines = [TextLine(key, conf, box(x + 20, y + 20, 260, 36)),
             TextLine("PARIS 75001", 0.9, box(x + 20, y + 150, 200, 24)),
             TextLine("1.2 kg", 0.9, box(x + 20, y + 240, 90, 20))]
    return lines, [Code("Code128", key, box(x + 300, y + 15, 120, 60))]


def test_readings_that_disagree_in_one_character_vote_to_the_right_text():
    voted = vote_line([line("EMS726938093443", conf=0.9), line("EMS726938993443", conf=0.8),
                       line("EMS726938093443", conf=0.85)])
    assert voted.text == "EMS726938093443"
    assert 0.5 < voted.confidence < 0.9


def test_each_character_is_voted_where_no_reading_is_right_on_its_own():
    voted = vote_line([line("AB1X"), line("XB12"), line("A812")])
    assert voted.text == "AB12"


def test_a_reading_of_another_length_loses_to_the_confidence_weighted_majority():
    voted = vote_line([line("SF1234", conf=0.9), line("SF12345", conf=0.95), line("SF1234", conf=0.7)])
    assert voted.text == "SF1234"


def test_a_label_moving_through_the_view_is_published_once_when_it_leaves():
    t = LabelTracker(leave_after_frames=2, leave_after_s=10.0, max_wait_s=60.0)
    readings = ["EMS726938093443", "EMS726938993443", "EMS726938093443", "EMS726938O93443"]
    finished = []
    for i, text in enumerate(readings):   # moving right 20 px a frame
        finished += t.observe(float(i), [line(text, x=100 + 20 * i), line("PARIS", x=100 + 20 * i, y=135)],
                              context=i)
    assert finished == [] and t.pending == 1
    finished += t.observe(4.0, [])
    assert finished == []
    finished += t.observe(5.0, [])
    assert len(finished) == 1
    label = finished[0]
    assert [ln.text for ln in label.lines] == ["EMS726938093443", "PARIS"]
    assert label.frames == 4 and label.first_context == 0 and label.reason == "left"
    assert t.observe(6.0, []) == [] and t.flush() == []


def test_a_label_missing_from_a_frame_and_unseen_for_leave_after_s_is_published_between_frames():
    t = LabelTracker(leave_after_frames=100, leave_after_s=1.0, max_wait_s=60.0)
    t.observe(0.0, [line("SF1234567890")])
    assert t.observe(0.4, []) == [] and t.due(0.5) == []
    assert [f.lines[0].text for f in t.due(1.0)] == ["SF1234567890"]


def test_a_label_parked_in_front_of_a_camera_slower_than_leave_after_s_is_published_once():
    # max_fps 0.5 (or a loaded box): no frame comes between two seconds apart, and time alone is no sign the label
    # left. Before, each frame started the label anew and it was published again every few seconds.
    t = LabelTracker(leave_after_frames=5, leave_after_s=1.0, max_wait_s=3.0)
    out = []
    for i in range(12):                       # one frame every 2 s, the label in every one
        out += t.observe(i * 2.0, [line("SF1234567890")])
        out += t.due(i * 2.0 + 1.5)           # the service asks between frames too
    assert [(f.reason, f.lines[0].text) for f in out] == [("max_wait", "SF1234567890")]


def test_a_camera_that_sends_nothing_for_three_of_its_intervals_is_an_outage_and_its_labels_leave():
    t = LabelTracker(leave_after_frames=5, leave_after_s=1.0, max_wait_s=60.0)
    for i in range(6):                                   # 10 frames a second, the label in each
        t.observe(i * 0.1, [line("SF1234567890")])
    assert t.due(2.0) == []                              # 1.5 s without a frame: not yet (3 x leave_after_s)
    [left] = t.due(3.6)                                  # the camera is out: the label is published as left
    assert left.reason == "left" and left.frames == 6
    t.observe(10.0, [line("SF1234567890")])              # back after a reconnect, the same label in view:
    assert t.pending == 1                                # a new reading of it


def test_max_wait_publishes_a_label_that_never_leaves_and_only_once():
    t = LabelTracker(leave_after_frames=3, leave_after_s=5.0, max_wait_s=2.0)
    out = []
    for i in range(10):   # parked in view, 0.5 s a frame
        out += t.observe(i * 0.5, [line("SF1234567890")])
    assert len(out) == 1 and out[0].reason == "max_wait" and out[0].frames == 5
    assert t.pending == 0 and t.flush() == []


def test_two_labels_side_by_side_are_tracked_apart():
    t = LabelTracker(leave_after_frames=1, leave_after_s=10.0, max_wait_s=60.0)
    for i in range(3):
        t.observe(float(i), [line("EMS726938093443", x=50 + 10 * i), line("EMS111111111111", x=700 + 10 * i)])
    done = t.observe(3.0, [])
    assert sorted(ln.text for f in done for ln in f.lines) == ["EMS111111111111", "EMS726938093443"]
    assert [f.frames for f in done] == [3, 3]


def test_lines_of_one_label_group_together_and_a_code_joins_its_label():
    code = Code("Code128", "EMS726938093443", box(100, 170, 240, 60))
    views = group_labels([line("EMS726938093443"), line("PARIS", y=135), line("OTHER", x=900)], [code])
    assert [[ln.text for ln in v.lines] for v in views] == [["EMS726938093443", "PARIS"], ["OTHER"]]
    assert views[0].codes == (code,) and views[1].codes == ()


def test_a_code_seen_in_any_frame_is_kept_with_the_label():
    t = LabelTracker(leave_after_frames=1, leave_after_s=10.0, max_wait_s=60.0)
    code = Code("Code128", "EMS726938093443", box(100, 140, 240, 60))
    t.observe(0.0, [line("EMS726938093443")], [code])
    t.observe(1.0, [line("EMS726938093443")])
    (label,) = t.observe(2.0, [])
    assert label.codes == [code] and label.frames == 2


def test_flicker_line_seen_once_in_many_frames_is_dropped_and_flush_finishes_the_rest():
    t = LabelTracker(leave_after_frames=3, leave_after_s=10.0, max_wait_s=60.0)
    for i in range(6):
        extra = [line("~;", y=135, conf=0.3)] if i == 2 else []
        t.observe(float(i), [line("SF1234567890"), *extra])
    (label,) = t.flush()
    assert [ln.text for ln in label.lines] == ["SF1234567890"] and label.reason == "flush"
    assert t.pending == 0


def test_the_best_frame_is_the_most_confident_one():
    t = LabelTracker()
    for i, conf in enumerate([0.6, 0.95, 0.7]):
        t.observe(float(i), [line("SF1234567890", conf=conf)], context=f"frame{i}")
    (label,) = t.flush()
    assert label.best_context == "frame1" and label.first_context == "frame0"


def test_the_voted_reading_is_checked_by_the_filter_and_confirmed_by_a_code_of_another_frame():
    t = LabelTracker(leave_after_frames=1, leave_after_s=10.0, max_wait_s=60.0)
    code = Code("Code128", "EE123456785CN", box(100, 140, 240, 60))
    t.observe(0.0, [line("EE123456786CN", conf=0.7)], [code])   # one misread character, and the code
    t.observe(1.0, [line("EE123456785CN", conf=0.9)])
    t.observe(2.0, [line("EE123456785CN", conf=0.8)])
    (label,) = t.observe(3.0, [])
    decision = ResultFilter(FilterRules(accept_formats=("s10",))).decide(label.lines, label.first_seen, label.codes)
    assert decision.publish
    [published] = decision.lines
    assert published.text == "EE123456785CN" and published.format == "s10" and published.confirmed_by == "code"


def test_a_labels_lines_far_apart_are_one_label_on_its_outline():
    lines, codes = waybill_label(100, 100)
    assert len(group_labels(lines, codes)) > 1   # by the layout alone its lines are too far apart
    (view,) = group_labels(lines, codes, label_outlines(belt((100, 100, 540, 400))))
    assert [ln.text for ln in view.lines] == ["EE123456785CN", "PARIS 75001", "1.2 kg"] and view.codes == tuple(codes)


def test_two_labels_side_by_side_stay_two_tracks():
    # 30 px of belt between them: the layout alone would join them (the gap is under GROUP_GAP line heights).
    t = LabelTracker(leave_after_frames=1, leave_after_s=10.0, max_wait_s=60.0)
    for i in range(4):
        x = 40 + 25 * i
        left, left_codes = waybill_label(x, 100, "EE123456785CN")
        right, right_codes = waybill_label(x + 470, 100, "RR987654328DE")
        t.observe(float(i), left + right, left_codes + right_codes, context=i,
                  image=belt((x, 100, x + 440, 400), (x + 470, 100, x + 910, 400)))
    done = t.observe(4.0, [], image=belt())
    assert [[ln.text for ln in f.lines] for f in done] == [["EE123456785CN", "PARIS 75001", "1.2 kg"],
                                                           ["RR987654328DE", "PARIS 75001", "1.2 kg"]]
    assert [[c.text for c in f.codes] for f in done] == [["EE123456785CN"], ["RR987654328DE"]]
    assert [f.frames for f in done] == [4, 4]


def test_label_with_code_and_text_is_one_message_confirmed_by_code():
    t = LabelTracker(leave_after_frames=2, leave_after_s=10.0, max_wait_s=60.0)
    out = []
    for i in range(5):   # crossing the view 150 px a frame; the code is read in two of the five frames
        x = 60 + 150 * i
        lines, codes = waybill_label(x, 300, conf=0.8 + 0.02 * i)
        out += t.observe(float(i), lines, codes if i in (1, 3) else [], context=i,
                         image=belt((x, 300, x + 440, 600)))
    out += t.observe(5.0, [], image=belt()) + t.observe(6.0, [], image=belt())
    (label,) = out
    assert label.frames == 5 and label.reason == "left" and len(label.codes) == 1
    decision = ResultFilter(FilterRules()).decide(label.lines, label.first_seen, label.codes)
    assert decision.publish
    key, *rest = decision.lines
    assert key.text == "EE123456785CN" and key.confirmed_by == "code"
    assert [ln.text for ln in rest] == ["PARIS 75001", "1.2 kg"]


def test_a_fast_label_is_followed_where_its_motion_puts_it():
    # 500 px a frame: its box never overlaps the last one, and one frame reads its lines badly.
    t = LabelTracker(leave_after_frames=1, leave_after_s=10.0, max_wait_s=60.0)
    keys = ["SF1234567890", "SF1234567890", "5F12345G789O", "SF1234567890"]
    for i, key in enumerate(keys):
        x = 20 + 250 * i
        t.observe(float(i), [TextLine(key, 0.9, box(x, 100, 220, 30)), TextLine("LYON", 0.9, box(x, 135, 80, 30))],
                  image=belt((x - 10, 90, x + 230, 175)))
    (label,) = t.observe(4.0, [], image=belt())
    assert label.frames == 4 and [ln.text for ln in label.lines] == ["SF1234567890", "LYON"]


def test_the_next_label_where_the_last_one_was_is_a_new_label():
    # Same template, same place (the belt brought the next parcel), another key and another code.
    t = LabelTracker(leave_after_frames=1, leave_after_s=10.0, max_wait_s=60.0)
    first, first_codes = waybill_label(100, 100, "EE123456785CN")
    second, second_codes = waybill_label(110, 100, "EE123456799CN")
    image = belt((100, 100, 540, 400))
    t.observe(0.0, first, first_codes, context="first", image=image)
    done = t.observe(1.0, second, second_codes, context="second", image=image)
    done += t.observe(2.0, [], image=belt())
    assert [(f.first_context, [c.text for c in f.codes]) for f in done] == [
        ("first", ["EE123456785CN"]), ("second", ["EE123456799CN"])]


def test_each_reading_joins_the_line_at_its_place_on_the_label():
    # Two lines that read alike; in one frame the lower one is misread: it still joins the lower line.
    t = LabelTracker(leave_after_frames=1, leave_after_s=10.0, max_wait_s=60.0)
    for i, lower in enumerate(["TO: ANNA KOWALSKA", "T0: ANHA KOWAL5KA", "TO: ANNA KOWALSKA"]):
        x = 100 + 40 * i
        t.observe(float(i), [TextLine("FROM: ANNA KOWALCZYK", 0.9, box(x, 100, 300, 30)),
                             TextLine(lower, 0.7, box(x, 200, 300, 30))], image=belt((x - 20, 80, x + 340, 260)))
    (label,) = t.observe(3.0, [], image=belt())
    assert [ln.text for ln in label.lines] == ["FROM: ANNA KOWALCZYK", "TO: ANNA KOWALSKA"]


def test_a_label_filling_the_view_is_grouped_by_its_layout():
    lines = [line("EMS726938093443"), line("PARIS", y=135), line("OTHER", x=900)]
    paper = np.full((960, 1280, 3), 235, np.uint8)   # all label: its paper is the background, no blob
    most = belt((0, 0, 1280, 900))                    # the paper is most of the border: the belt is the blob
    half = belt((0, 0, 640, 960))                     # half paper, half belt: no background to trust
    assert label_outlines(half) is None
    for image in (paper, most, half):
        views = group_labels(lines, outlines=label_outlines(image))
        assert [[ln.text for ln in v.lines] for v in views] == [["EMS726938093443", "PARIS"], ["OTHER"]]


def test_outlines_of_a_gray_frame_and_of_a_frame_without_labels():
    outlines = label_outlines(belt((100, 100, 540, 400))[..., 1])
    (rect,) = outlines.rects.values()   # the blur widens it by a map pixel or two
    assert all(abs(a - b) <= 2 * outlines.scale for a, b in zip(rect, (100, 100, 540, 400)))
    assert label_outlines(belt()).rects == {}


def test_two_labels_whose_outlines_touch_in_one_frame_stay_two_tracks():
    # Followed apart for two frames; in the third they touch (one blob): each element goes where its label was going.
    t = LabelTracker(leave_after_frames=1, leave_after_s=10.0, max_wait_s=60.0)
    for i in range(4):
        x = 40 + 25 * i
        left, left_codes = waybill_label(x, 100, "EE123456785CN")
        right, right_codes = waybill_label(x + 470, 100, "RR987654328DE")
        apart = belt((x, 100, x + 440, 400), (x + 470, 100, x + 910, 400))
        touching = belt((x, 100, x + 910, 400))
        t.observe(float(i), left + right, left_codes + right_codes, image=touching if i == 2 else apart)
    done = t.observe(4.0, [], image=belt())
    assert [[c.text for c in f.codes] for f in done] == [["EE123456785CN"], ["RR987654328DE"]]
    assert [f.frames for f in done] == [4, 4]
    assert [[ln.text for ln in f.lines] for f in done] == [["EE123456785CN", "PARIS 75001", "1.2 kg"],
                                                           ["RR987654328DE", "PARIS 75001", "1.2 kg"]]


def test_a_frame_that_read_a_label_badly_still_joins_it_where_it_is():
    t = LabelTracker(leave_after_frames=1, leave_after_s=10.0, max_wait_s=60.0)
    for i in range(5):
        x = 100 + 30 * i
        lines, codes = waybill_label(x, 100)
        if i == 2:   # a blurred frame: one line, misread beyond recognition
            lines = [TextLine("~I;:.", 0.3, box(x + 20, 250, 200, 24))]
        t.observe(float(i), lines, codes if i != 2 else [], image=belt((x, 100, x + 440, 400)))
    (label,) = t.observe(5.0, [], image=belt())
    assert label.frames == 5 and [ln.text for ln in label.lines] == ["EE123456785CN", "PARIS 75001", "1.2 kg"]


def test_a_new_label_in_the_place_of_the_last_one_is_a_new_label_without_codes_too():
    t = LabelTracker(leave_after_frames=1, leave_after_s=10.0, max_wait_s=60.0)
    for i in range(3):
        x = 100 + 16 * i
        t.observe(float(i), [TextLine("EE123456785CN", 0.9, box(x, 100, 260, 36)),
                             TextLine("PARIS 75001", 0.9, box(x, 220, 200, 30))],
                  image=belt((x - 20, 80, x + 380, 290)))
    done = t.observe(3.0, [TextLine("SF7300000000", 0.9, box(100, 100, 240, 36)),
                           TextLine("LYON 69002", 0.9, box(100, 220, 190, 30))], image=belt((80, 80, 480, 290)))
    done += t.observe(4.0, [], image=belt())
    assert [[ln.text for ln in f.lines] for f in done] == [["EE123456785CN", "PARIS 75001"],
                                                           ["SF7300000000", "LYON 69002"]]


def test_a_text_printed_twice_on_a_label_is_published_once():
    t = LabelTracker(leave_after_frames=1, leave_after_s=10.0, max_wait_s=60.0)
    for i in range(3):
        x = 100 + 30 * i
        t.observe(float(i), [TextLine("FRAGILE", 0.9, box(x, 100, 120, 30)), TextLine("SF1234567890", 0.9, box(x, 150)),
                             TextLine("FRAGILE", 0.8, box(x, 260, 120, 30))], image=belt((x - 20, 80, x + 260, 310)))
    (label,) = t.observe(3.0, [], image=belt())
    assert [ln.text for ln in label.lines] == ["FRAGILE", "SF1234567890"] and label.lines[0].confidence > 0.85


def test_voted_lines_carry_each_characters_runner_up_for_verification():
    from daemon.ocr.results import CharCandidate

    box = ((0.0, 0.0), (100.0, 0.0), (100.0, 20.0), (0.0, 20.0))
    own = tuple(CharCandidate(c, 0.99, "8" if c == "B" else "", 0.6 if c == "B" else 0.0) for c in "AB1")
    agreed = vote_line([TextLine("AB1", 0.9, box, own), TextLine("AB1", 0.8, box)])
    assert agreed.chars == own                             # the frames agreed: the recognizer's own runner-up
    split = vote_line([TextLine("AB1", 0.9, box, own), TextLine("AB7", 0.9, box), TextLine("AB1", 0.9, box)])
    assert split.text == "AB1" and split.chars[2].alt == "7"
    assert abs(split.chars[2].p - 2 / 3) < 1e-9 and abs(split.chars[2].alt_p - 1 / 3) < 1e-9
    assert vote_line([TextLine("X", 0.9, box), TextLine("X", 0.8, box)]).chars == ()   # nothing known


def test_the_shared_characters_bound_counts_what_a_counter_intersection_counts():
    """The tracker's cheap bound, computed without building the intersection, is the same number to the bit."""
    import random
    from collections import Counter

    from daemon.readings.consensus import _shared_bound

    rng = random.Random(31)
    texts = ["", "A", "AAAB", "BAAA"] + ["".join(rng.choice("AB01 -ZX") for _ in range(rng.randint(1, 40)))
                                        for _ in range(60)]
    for t in texts:
        for u in texts:
            want = 2.0 * sum((Counter(t) & Counter(u)).values()) / ((len(t) + len(u)) or 1)
            assert _shared_bound(t, u) == want, (t, u)


@pytest.mark.parametrize("shape, step", [((960, 1280, 3), 8), ((1080, 1920, 3), 12), ((963, 1281, 3), 8),
                                          ((480, 640), 4), ((100, 150, 3), 1), ((1200, 1600, 3), 10)])
def test_block_centres_are_the_pixels_the_strided_slice_takes(shape, step):
    """OpenCV's exact nearest-neighbour resize where the frame divides into whole blocks, numpy's slice elsewhere: the
    same pixels either way (the label outlines are found in them)."""
    image = np.random.default_rng(7).integers(0, 256, shape, dtype=np.uint8)
    got = consensus.block_centres(image, step)
    want = image[step // 2::step, step // 2::step]
    assert got.shape == want.shape and np.array_equal(got, want) and got.flags["C_CONTIGUOUS"]


def _crossing(texts: list[str], x: float, frame_w: float = 1280.0, char_w: float = 20.0, conf: float = 0.9):
    """A label's lines, each starting at x (one below the other), as a frame of frame_w shows them: cut by the
    border, a line reads only the characters in view (its box ends at the border, as the detector's does), and a
    cut reading is as confident as a whole one (nothing else marks it)."""
    out = []
    for k, text in enumerate(texts):
        x0, x1, y = x, x + char_w * len(text), 300.0 + 60.0 * k
        first = max(0, int(np.ceil(-x0 / char_w)))                   # the characters wholly in view
        last = min(len(text), int((frame_w - x0) // char_w))
        shown = text[first:last]
        if shown.strip():
            bx0, bx1 = max(0.0, x0 + first * char_w), min(frame_w - 1, x0 + last * char_w)
            out.append(TextLine(shown, conf, box(bx0, y, bx1 - bx0, 30.0)))
    return out


def test_a_label_crossing_the_views_border_in_and_out_is_one_label_read_whole():
    """Found from outside (a tunnel's camera): a label entering the view read '6' and leaving it 'P', 'DI', each a
    track of its own, so every label gave two or three messages; and a cut reading as confident as the whole one
    could win the vote. A view at the border joins its label as a part of it, and a cut reading loses."""
    texts = ["PARCEL 0044", "SF1000000348436", "DEST HUB S4"]
    frame = np.zeros((960, 1280, 3), np.uint8)          # a uniform frame: no outlines, the layout groups
    tracker = LabelTracker(leave_after_frames=2, leave_after_s=10.0, max_wait_s=1.0)
    done, t = [], 100.0
    for x in range(-280, 1300, 100):                     # 300 px wide, 100 px a frame: in, across, out
        done += tracker.observe(t, _crossing(texts, float(x)), image=frame)
        t += 0.5
    done += tracker.observe(t, [], image=frame) + tracker.observe(t + 0.5, [], image=frame) + tracker.flush()
    assert len(done) == 1, [[ln.text for ln in d.lines] for d in done]
    assert sorted(ln.text for ln in done[0].lines) == sorted(texts)
    # max_wait_s counts from the first frame that showed it whole: not published half read while it entered
    assert done[0].reason == "max_wait"


def test_a_still_label_cut_by_the_border_keeps_its_cut_line():
    """A camera framed so that a line runs off its edge, the label still: the cut line is all there is of it."""
    frame = np.zeros((960, 1280, 3), np.uint8)
    tracker = LabelTracker(leave_after_frames=2, leave_after_s=10.0, max_wait_s=100.0)
    cut = [TextLine("LOT 47", 0.9, box(1100.0, 300.0, 179.0, 30.0)), line("EXP 2027-01", x=900.0, y=360.0)]
    for k in range(4):
        tracker.observe(100.0 + k, cut, image=frame)
    [label] = tracker.flush()
    assert sorted(ln.text for ln in label.lines) == ["EXP 2027-01", "LOT 47"] and label.fragments == 0


def test_a_whole_label_read_badly_at_the_border_does_not_swallow_the_next_label_there():
    """A view at the border joins a track as a part of it only where it is the smaller: a blurred label's stray
    '1' is not the start of the next label that appears in its place."""
    frame = np.zeros((960, 1280, 3), np.uint8)
    tracker = LabelTracker(leave_after_frames=3, leave_after_s=10.0, max_wait_s=100.0)
    blurred = [TextLine("1", 0.6, box(0.0, 300.0, 600.0, 400.0))]
    tracker.observe(100.0, blurred, image=frame)
    tracker.observe(100.5, [TextLine("PARCEL 0045", 0.95, box(0.0, 320.0, 580.0, 40.0)),
                            TextLine("SF1000000348437", 0.95, box(0.0, 400.0, 600.0, 40.0))], image=frame)
    assert len(tracker.flush()) == 2


def test_a_label_parked_in_view_for_hours_keeps_no_more_readings_than_it_was_published_with():
    """Found by a soak: a label (or any fixed text) in view of a consensus camera kept every reading of every frame
    after it was published, +42 MB an hour in a real daemon."""
    tracker = LabelTracker(leave_after_frames=3, leave_after_s=10.0, max_wait_s=1.0)
    lines = [line("PARCEL 0044", y=100.0), line("SF1000000348436", y=160.0)]
    published = []
    for k in range(3000):
        published += tracker.observe(100.0 + 0.2 * k, lines)
    [track] = tracker._tracks
    assert len(published) == 1 and track.published
    assert max(len(ln.readings) for ln in track.lines) <= 6   # the frames of its first max_wait_s
    assert track.frames == 3000                               # still followed: it has not left
