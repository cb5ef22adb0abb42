"""Result filtering: confidence floor, accept patterns, per-camera de-duplication window."""
from daemon.config import CameraConfig
from daemon.ocr.results import TextLine
from daemon.results_filter import (DUPLICATE, EMPTY, LOW_CONFIDENCE, NO_PATTERN_MATCH, FilterRules, ResultFilter,
                                   accept_lines)

BOX = ((0.0, 0.0), (10.0, 0.0), (10.0, 5.0), (0.0, 5.0))


def line(text, confidence=0.95):
    return TextLine(text, confidence, BOX)


def rules(**kw):
    return FilterRules.from_camera(CameraConfig(name="cam", **kw))


def test_low_confidence_lines_are_rejected_and_counted():
    kept, rejected = accept_lines([line("A1", 0.9), line("B2", 0.3), line("C3", 0.49)], rules(min_confidence=0.5))
    assert [l.text for l in kept] == ["A1"]
    assert rejected == {LOW_CONFIDENCE: 2}


def test_accept_patterns_must_match_the_whole_line():
    r = rules(accept_patterns=(r"SF\d{12}", r"\d{4}-\d{2}-\d{2}"))
    kept, rejected = accept_lines([line("SF123456789012"), line("xSF123456789012"), line("2026-11-23"),
                                   line("Shanghai")], r)
    assert [l.text for l in kept] == ["SF123456789012", "2026-11-23"]
    assert rejected == {NO_PATTERN_MATCH: 2}


def test_label_in_view_is_published_once_per_window():
    f = ResultFilter(rules(dedup_window_s=10.0))
    frames = [[line("SF123"), line("Beijing")]] * 30          # 30 frames at 10 fps: 3 s in view
    published = [f.apply(ls, 100.0 + i * 0.1).publish for i, ls in enumerate(frames)]
    assert published == [True] + [False] * 29
    # Still in view after the window: published again, once.
    assert f.apply(frames[0], 110.5).publish is True
    assert f.apply(frames[0], 110.6).publish is False


def test_a_frame_missing_one_line_is_a_duplicate_but_a_new_line_is_news():
    f = ResultFilter(rules(dedup_window_s=10.0))
    assert f.apply([line("SF123"), line("Beijing")], 1.0).publish
    d = f.apply([line("SF123")], 1.1)                       # flicker: the address missed on one frame
    assert not d.publish and d.rejected == {DUPLICATE: 1}
    assert f.apply([line("SF123"), line("Beijing"), line("2026-11-23")], 1.2).publish
    assert f.apply([line("SF999")], 1.3).publish          # the next parcel


def test_cameras_have_their_own_windows_and_zero_window_publishes_every_frame():
    a, b = ResultFilter(rules(dedup_window_s=5.0)), ResultFilter(rules(dedup_window_s=5.0))
    assert a.apply([line("X1")], 0.0).publish and b.apply([line("X1")], 0.0).publish
    every = ResultFilter(rules(dedup_window_s=0.0))
    assert all(every.apply([line("X1")], t).publish for t in (0.0, 0.1, 0.2))


def test_low_confidence_lines_do_not_make_a_frame_new():
    f = ResultFilter(rules(dedup_window_s=10.0, min_confidence=0.6))
    assert f.apply([line("SF123")], 0.0).publish
    d = f.apply([line("SF123"), line("noise", 0.2)], 0.1)
    assert not d.publish and d.rejected == {LOW_CONFIDENCE: 1, DUPLICATE: 1}


def test_empty_frames_are_counted_unless_publish_empty():
    d = ResultFilter(rules()).apply([line("x", 0.1)], 0.0)
    assert not d.publish and d.rejected == {LOW_CONFIDENCE: 1, EMPTY: 1}
    d = ResultFilter(rules(publish_empty=True)).apply([], 0.0)
    assert d.publish and d.lines == []
