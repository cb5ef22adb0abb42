"""Result filtering: confidence floor, accept patterns, per-camera de-duplication window."""
from daemon.config import CameraConfig
from daemon.ocr.results import TextLine
from daemon.readings.results_filter import (DUPLICATE, EMPTY, LOW_CONFIDENCE, NO_PATTERN_MATCH, FilterRules, ResultFilter,
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


# ---------------------------------------------------------------- formats with check digits, codes against text

def _code(text, gs1=None):
    from daemon.codes.reader import Code
    return Code("Code128", text, BOX, gs1)


def test_accept_formats_publish_valid_numbers_correct_one_look_alike_and_reject_bad_check_digits():
    from daemon.readings.results_filter import CHECK_DIGIT_FAILED, CORRECTED
    f = ResultFilter(rules(accept_formats=("s10", "iso6346"), accept_patterns=(r"\d{4}-\d{2}-\d{2}",)))
    d = f.apply([line("EE123456785CN"), line("EE12345678SCN "), line("RR473124828GB"), line("CSQU3054383"),
                 line("2026-11-23"), line("上海市浦东新区")], 1.0)
    texts = [l.to_json() for l in d.lines]
    assert [t["text"] for t in texts] == ["EE123456785CN", "EE123456785CN", "CSQU3054383", "2026-11-23"]
    assert texts[0]["format"] == "s10" and "corrected_from" not in texts[0]
    assert texts[1]["corrected_from"] == "EE12345678SCN " and texts[1]["format"] == "s10"
    assert texts[2]["format"] == "iso6346" and "format" not in texts[3]
    assert d.rejected == {CHECK_DIGIT_FAILED: 1, NO_PATTERN_MATCH: 1}
    assert d.noted == {CORRECTED: 1}


def test_a_bad_check_digit_is_rejected_even_where_a_pattern_would_take_it():
    f = ResultFilter(rules(accept_formats=("s10",), accept_patterns=(r"[A-Z]{2}\d{9}[A-Z]{2}",)))
    d = f.apply([line("EE123456784CN")], 1.0)
    assert not d.publish and d.rejected["check_digit"] == 1


def test_a_line_the_code_confirms_and_one_it_contradicts():
    f = ResultFilter(rules())
    d = f.apply([line("运单号：SF7300000000"), line("No. EE123456785CN"), line("Shanghai")], 1.0,
                codes=[_code("SF7300000000"), _code("EE123456786CN")])
    texts = [l.to_json() for l in d.lines]
    assert texts[0]["confirmed_by"] == "code" and "code_value" not in texts[0]
    assert texts[1]["code_value"] == "EE123456786CN" and "confirmed_by" not in texts[1]
    assert set(texts[2]) == {"text", "confidence", "box"}
    assert d.noted == {"code_confirmed": 1, "code_mismatch": 1}
    assert [c.text for c in d.codes] == ["SF7300000000", "EE123456786CN"]


def test_a_gs1_code_confirms_the_printed_sscc():
    f = ResultFilter(rules(accept_formats=("sscc",)))
    d = f.apply([line("(00) 340123451234567895")], 1.0,
                codes=[_code("(00)340123451234567895(17)261130", gs1={"00": "340123451234567895", "17": "2026-11-30"})])
    assert d.lines[0].to_json()["confirmed_by"] == "code" and d.lines[0].format == "sscc"


def test_a_frame_that_gains_a_code_is_published_again_and_codes_alone_publish():
    f = ResultFilter(rules())
    assert f.apply([line("SF7300000000")], 1.0).publish
    assert f.apply([line("SF7300000000")], 1.1, codes=[_code("SF7300000000")]).publish
    assert not f.apply([line("SF7300000000")], 1.2).publish          # a subset of what was published
    d = ResultFilter(rules()).apply([], 1.0, codes=[_code("SF7300000000")])
    assert d.publish and d.lines == []


def test_with_the_same_texts_only_a_label_reading_fewer_of_the_last_ones_texts_is_news():
    """Found from outside (consensus labels): a parcel whose only readable line was the hub it shared with the last
    parcel was dropped as a duplicate of it, with no message at all."""
    f = ResultFilter(FilterRules(dedup_window_s=10.0, dedup_same_only=True))
    first = f.decide([line("PARCEL 0041"), line("DEST HUB X3")], 100.0)
    f.commit(first)
    assert f.decide([line("DEST HUB X3")], 101.0).publish                        # another parcel
    assert not f.decide([line("DEST HUB X3"), line("PARCEL 0041")], 102.0).publish   # the same texts
