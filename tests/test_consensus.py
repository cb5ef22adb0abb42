"""One consensus reading per label (daemon/consensus.py): tracking and voting, pure, with an injected clock."""
from __future__ import annotations

from daemon.codes.reader import Code
from daemon.consensus import LabelTracker, group_labels, vote_line
from daemon.ocr.results import TextLine


def box(x: float, y: float, w: float = 200.0, h: float = 30.0):
    return ((x, y), (x + w, y), (x + w, y + h), (x, y + h))


def line(text: str, x: float = 100.0, y: float = 100.0, conf: float = 0.9) -> TextLine:
    return TextLine(text, conf, box(x, y))


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


def test_a_label_unseen_for_leave_after_s_is_published_between_frames():
    t = LabelTracker(leave_after_frames=100, leave_after_s=1.0, max_wait_s=60.0)
    t.observe(0.0, [line("SF1234567890")])
    assert t.due(0.5) == []
    assert [f.lines[0].text for f in t.due(1.0)] == ["SF1234567890"]


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
    from daemon.results_filter import FilterRules, ResultFilter
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
