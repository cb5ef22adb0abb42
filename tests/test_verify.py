"""Verification (OCV): a reading against what was expected, per character. Pure: made-up lines and candidates."""
import datetime
import json
from types import SimpleNamespace

import pytest

from daemon.formats import s10_check_digit
from daemon.ocr.results import CharCandidate, TextLine
from daemon.readings.verify import (CONFUSED, EXTRA, MISMATCH, MISSING, NO_READ, OK, PASS, Expectation,
                                    ExpectationError, align, expected_text, render_template, verify)

BOX = ((0.0, 0.0), (100.0, 0.0), (100.0, 20.0), (0.0, 20.0))
TODAY = datetime.date(2026, 12, 6)


def line(text, alts=None, p=0.98, y=0.0):
    """A recognized line with candidates: alts maps a character index to (runner-up, its probability)."""
    alts = alts or {}
    chars = tuple(CharCandidate(ch, p, *alts.get(i, ("", 0.0))) if i in alts else CharCandidate(ch, p, "X", 0.01)
                  for i, ch in enumerate(text))
    box = tuple((x, yy + y) for x, yy in BOX)
    return TextLine(text, p, box, chars)


def statuses(v):
    return [(c.status, c.expected, c.read) for c in v.chars]


def test_exact_text_read_as_printed_passes_with_every_character_ok():
    v = verify(Expectation(text="LOT A12B-3456"), [line("LOT A12B-3456")])
    assert v.verdict == PASS and v.passed
    assert {c.status for c in v.chars} == {OK} and len(v.chars) == 12      # the space is not judged
    assert v.read == "LOT A12B-3456" and v.lines[0].text == "LOT A12B-3456"


def test_wrong_digit_is_a_mismatch_that_says_what_was_read():
    v = verify(Expectation(text="EXP 2026-12"), [line("EXP 2026-13")])
    assert v.verdict == MISMATCH
    bad = [c for c in v.chars if c.status != OK]
    assert [(c.status, c.at, c.expected, c.read) for c in bad] == [(MISMATCH, 10, "2", "3")]


def test_missing_character_is_missing_at_its_place():
    v = verify(Expectation(text="LOT 4721"), [line("LOT 471")])
    assert v.verdict == MISMATCH
    assert [(c.status, c.at, c.expected) for c in v.chars if c.status != OK] == [(MISSING, 6, "2")]


def test_doubled_character_is_an_extra_one():
    v = verify(Expectation(text="P/N 12345"), [line("P/N 123345")])
    assert v.verdict == MISMATCH
    extra = [c for c in v.chars if c.status != OK]
    assert len(extra) == 1 and extra[0].status == EXTRA and extra[0].read == "3" and extra[0].expected == ""


def test_right_character_with_a_close_runner_up_is_confused_and_fails():
    printed = line("LOT 8812", alts={4: ("B", 0.45)}, p=0.55)
    v = verify(Expectation(text="LOT 8812"), [printed], confused_margin=0.2)
    assert v.verdict == MISMATCH
    confused = [c for c in v.chars if c.status == CONFUSED]
    assert [(c.at, c.read, c.alt) for c in confused] == [(4, "8", "B")]
    assert confused[0].alt_p == pytest.approx(0.45)


def test_runner_up_outside_the_margin_is_ok():
    printed = line("LOT 8812", alts={4: ("B", 0.45)}, p=0.55)
    assert verify(Expectation(text="LOT 8812"), [printed], confused_margin=0.05).verdict == PASS
    assert verify(Expectation(text="LOT 8812"), [printed], confused_margin=0.0).verdict == PASS


def test_runner_up_that_is_the_same_character_folded_is_no_confusion():
    printed = line("A:1", alts={1: ("：", 0.49)}, p=0.51)
    assert verify(Expectation(text="A:1"), [printed], confused_margin=0.5).verdict == PASS


def test_a_line_without_candidates_is_never_confused():
    voted = TextLine("LOT 8812", 0.6, BOX)        # a voted line carries no recognizer outputs
    assert verify(Expectation(text="LOT 8812"), [voted], confused_margin=1.0).verdict == PASS


def test_nothing_read_is_no_read():
    v = verify(Expectation(text="LOT 4711"), [])
    assert v.verdict == NO_READ and [c.status for c in v.chars] == [MISSING] * 7
    assert verify(Expectation(text="LOT 4711"), [line("   ")]).verdict == NO_READ


def test_other_print_only_is_no_read_and_a_half_read_print_is_a_mismatch():
    assert verify(Expectation(text="EXP 2027-01"), [line("BEST BEFORE")]).verdict == NO_READ
    assert verify(Expectation(text="EXP 2027-01"), [line("EXP 2027")]).verdict == MISMATCH


def test_an_expected_text_that_resolves_to_nothing_is_refused():
    with pytest.raises(ExpectationError, match="no characters"):
        verify(Expectation(template="{lot}"), [line("A")], fields={"lot": " "})


def test_the_best_matching_line_of_the_reading_is_judged():
    lines = [line("ACME FOODS"), line("LOT A12B-3457", y=30), line("NET 500 g", y=60)]
    v = verify(Expectation(text="LOT A12B-3456"), lines)
    assert v.read == "LOT A12B-3457" and v.verdict == MISMATCH
    assert [(c.expected, c.read) for c in v.chars if c.status == MISMATCH] == [("6", "7")]


def test_lines_of_a_multi_line_print_go_to_their_own_lines_in_reading_order():
    lines = [line("LOT A12B"), line("ACME", y=30), line("EXP 2027-01", y=60)]
    v = verify(Expectation(text="LOT A12B\nEXP 2027-01"), lines)
    assert v.verdict == PASS and [l.text for l in v.lines] == ["LOT A12B", "EXP 2027-01"]
    assert v.read == "LOT A12B\nEXP 2027-01"
    assert v.chars[-1].at == len("LOT A12B\nEXP 2027-01") - 1


def test_a_missing_second_line_is_all_missing():
    v = verify(Expectation(text="LOT A12B\nEXP 2027-01"), [line("LOT A12B"), line("ACME", y=30)])
    assert v.verdict == MISMATCH
    assert [c.status for c in v.chars[:7]] == [OK] * 7
    assert [c.status for c in v.chars[7:]] == [MISSING] * 10


def test_lines_read_in_another_order_still_go_to_their_expected_lines():
    # a tilted print: its short second line's centre lies higher than the first line's
    lines = [line("L08835B"), line("BEST BEFORE 19.02.2027", y=8)]
    v = verify(Expectation(text="BEST BEFORE 19.02.2027\nL08835B"), lines)
    assert v.verdict == PASS and [l.text for l in v.lines] == ["BEST BEFORE 19.02.2027", "L08835B"]


def test_one_line_read_is_not_used_for_two_expected_lines():
    v = verify(Expectation(text="LOT 1\nLOT 1"), [line("LOT 1")])
    assert v.verdict == MISMATCH and len(v.lines) == 1


def at_x(text, x, y=0.0, **kwargs):
    l = line(text, y=y, **kwargs)
    return TextLine(l.text, l.confidence, tuple((px + x, py) for px, py in l.box), l.chars)


def test_a_printed_line_the_detector_cut_in_two_boxes_of_one_row_is_read_as_one():
    lines = [line("ACME", y=-60), at_x("EXP 01/2027", 0), at_x("LOT 63290N", 150, y=2)]
    v = verify(Expectation(text="EXP 01/2027  LOT 63290N"), lines)
    assert v.verdict == PASS and v.read == "EXP 01/2027 LOT 63290N"
    assert [l.text for l in v.lines] == ["EXP 01/2027", "LOT 63290N"]       # the lines as read, for the payload
    assert verify(Expectation(regex=r"EXP \d\d/\d{4} LOT \w+"), lines).verdict == PASS


def tilted(text, x, y, degrees=10.0, width=100.0, height=20.0, **kwargs):
    import math
    l = line(text, **kwargs)
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    corners = ((0, 0), (width, 0), (width, height), (0, height))
    return TextLine(l.text, l.confidence, tuple((x + px * c - py * s, y + px * s + py * c) for px, py in corners),
                    l.chars)


def test_boxes_of_one_tilted_row_are_joined_along_the_row():
    # 10 degrees: the second box's centre lies 24 px lower, more than half a line height, yet on the same row
    first = tilted("EXP 06/2028", 0, 0)
    second = tilted("LOT N07H-6810", 140 * 0.985, 140 * 0.174)
    assert verify(Expectation(text="EXP 06/2028  LOT N07H-6810"), [second, first]).verdict == PASS


def test_boxes_on_different_rows_are_not_joined():
    lines = [at_x("EXP 01/2027", 0), at_x("LOT 63290N", 150, y=40)]
    v = verify(Expectation(text="EXP 01/2027  LOT 63290N"), lines)
    assert v.verdict == MISMATCH and [c.status for c in v.chars].count(MISSING) == 9


def test_spaces_are_ignored_unless_asked():
    assert verify(Expectation(text="LOT A12B"), [line("LOTA12B")]).verdict == PASS
    assert verify(Expectation(text="LOTA12B"), [line("LOT  A12B")]).verdict == PASS
    v = verify(Expectation(text="LOT A12B", ignore_spaces=False), [line("LOTA12B")])
    assert v.verdict == MISMATCH and [c.status for c in v.chars if c.status != OK] == [MISSING]


def test_o_and_zero_count_as_one_unless_strict():
    assert verify(Expectation(text="LOT 10O"), [line("L0T 1O0")]).verdict == PASS
    v = verify(Expectation(text="LOT 10O", lookalikes=()), [line("L0T 1O0")])
    assert [(c.expected, c.read) for c in v.chars if c.status == MISMATCH] == [("O", "0"), ("0", "O"), ("O", "0")]
    unsure = line("LOT 1", alts={1: ("0", 0.45)}, p=0.55)       # O or 0: the same to this expectation
    assert verify(Expectation(text="LOT 1"), [unsure], confused_margin=0.5).verdict == PASS
    v = verify(Expectation(text="LOT 5", lookalikes=("O0", "S5")), [line("LOT S")])
    assert v.verdict == PASS


def test_full_width_and_ascii_forms_compare_equal_but_case_counts():
    assert verify(Expectation(text="重量:5"), [line("重量：5")]).verdict == PASS
    assert verify(Expectation(text="Lot 1"), [line("LOT 1")]).verdict == MISMATCH


def test_template_fields_and_dates_counted_from_today():
    exp = Expectation(template="LOT {lot}\nEXP {date:%Y-%m}  {day:%d.%m.%y}")
    fields = {"lot": "A12B", "date": "today+30", "day": datetime.date(2027, 3, 4)}
    assert expected_text(exp, fields, TODAY) == "LOT A12B\nEXP 2027-01  04.03.27"
    v = verify(exp, [line("LOT A12B"), line("EXP 2027-01 04.03.27", y=30)], fields=fields, today=TODAY)
    assert v.verdict == PASS and v.expected == "LOT A12B\nEXP 2027-01  04.03.27"


@pytest.mark.parametrize("value, printed", [
    ("today", "06/12/2026"), ("today - 6 days", "30/11/2026"), ("TODAY+1d", "07/12/2026"),
    ("2027-02-28", "28/02/2027"), (datetime.datetime(2027, 1, 2, 13, 0), "02/01/2027"),
])
def test_date_field_values(value, printed):
    assert render_template("{d:%d/%m/%Y}", {"d": value}, TODAY) == printed


def test_template_with_python_specs_and_braces():
    assert render_template("{{{n:05d}}}", {"n": 42}) == "{00042}"


@pytest.mark.parametrize("template, fields, today, says", [
    ("LOT {lot}", {}, TODAY, "field lot has no value"),
    ("EXP {d:%Y-%m}", {"d": "today+30"}, None, "no today"),
    ("EXP {d:%Y-%m}", {"d": "soon"}, TODAY, "not a date"),
    ("N {n:05d}", {"n": "x"}, TODAY, "does not take the format"),
])
def test_a_template_that_cannot_be_resolved_says_which_field(template, fields, today, says):
    with pytest.raises(ExpectationError, match=says):
        verify(Expectation(template=template), [line("whatever")], fields=fields, today=today)


def test_regex_expectation_passes_on_a_fully_matching_line():
    exp = Expectation(regex=r"EXP \d{4}-\d{2}")
    v = verify(exp, [line("ACME"), line("EXP 2027-01", y=30)])
    assert v.verdict == PASS and v.read == "EXP 2027-01" and {c.status for c in v.chars} == {OK}
    assert verify(exp, [line("EXP 2027-1")]).verdict == MISMATCH
    assert verify(exp, []).verdict == NO_READ


def test_regex_confusion_counts_only_where_the_runner_up_would_not_match():
    exp = Expectation(regex=r"EXP \d{4}-\d{2}")
    digit_for_digit = line("EXP 2027-01", alts={7: ("9", 0.48)}, p=0.52)     # 7 or 9: both match
    assert verify(exp, [digit_for_digit], confused_margin=0.2).verdict == PASS
    letter_for_digit = line("EXP 2027-01", alts={9: ("O", 0.48)}, p=0.52)    # 0 or O: O would not
    v = verify(exp, [letter_for_digit], confused_margin=0.2)
    assert v.verdict == MISMATCH
    assert [(c.at, c.read, c.alt) for c in v.chars if c.status == CONFUSED] == [(9, "0", "O")]


def _s10(serial="12345678"):
    return f"EE{serial}{s10_check_digit(serial)}CN"


def test_format_expectation_needs_a_valid_check_digit_as_read():
    good = _s10()
    assert verify(Expectation(format="s10"), [line(good)]).verdict == PASS
    wrong = good[:5] + ("0" if good[5] != "0" else "1") + good[6:]
    assert verify(Expectation(format="s10"), [line(wrong)]).verdict == MISMATCH
    lookalike = good[:2] + good[2:10].replace("5", "S") + good[10:]        # valid only once corrected
    assert verify(Expectation(format="s10"), [line(lookalike)]).verdict == MISMATCH
    assert verify(Expectation(format="s10"), []).verdict == NO_READ


def _code(text, gs1=None):
    return SimpleNamespace(text=text, gs1=gs1)


def test_expected_code_value_against_the_codes_read():
    exp = Expectation(code="09501101530003")
    assert verify(exp, [], [_code("(01)09501101530003", {"01": "09501101530003"})]).verdict == PASS
    assert verify(exp, [], [_code("0950-1101 5300 03")]).verdict == PASS
    v = verify(exp, [], [_code("09501101530010")])
    assert v.verdict == MISMATCH and v.code.status == MISMATCH and v.code.read == ("09501101530010",)
    v = verify(exp, [line("ACME")], [])
    assert v.verdict == NO_READ and v.code.status == MISSING


def test_text_and_code_both_count():
    exp = Expectation(text="LOT A12B", code="A12B")
    assert verify(exp, [line("LOT A12B")], [_code("A12B")]).verdict == PASS
    assert verify(exp, [line("LOT A12B")], [_code("A12C")]).verdict == MISMATCH
    assert verify(exp, [line("LOT A12B")], []).verdict == MISMATCH      # the code missing fails the part
    assert verify(exp, [], []).verdict == NO_READ


@pytest.mark.parametrize("kwargs, says", [
    ({}, "needs text, template, regex, format or code"),
    ({"text": "A", "regex": "A"}, "not text and regex"),
    ({"text": "  "}, "text is empty"),
    ({"regex": "(unclosed"}, "does not compile"),
    ({"format": "isbn"}, "is not one of"),
    ({"template": "LOT {lot"}, "template"),
    ({"template": "LOT {0}"}, "not a plain name"),
    ({"text": "A", "lookalikes": ("O",)}, "lookalikes"),
])
def test_a_bad_expectation_is_refused_with_a_reason(kwargs, says):
    with pytest.raises(ExpectationError, match=says):
        Expectation(**kwargs)


def test_alignment_pairs_with_substitutions_first():
    edits, pairs = align("ABC", "AXC")
    assert edits == 1 and pairs == [(0, 0), (1, 1), (2, 2)]
    edits, pairs = align("ABC", "AC")
    assert edits == 1 and pairs == [(0, 0), (1, None), (2, 1)]
    edits, pairs = align("AC", "ABC")
    assert edits == 1 and pairs == [(0, 0), (None, 1), (1, 2)]
    assert align("", "") == (0, [])


def test_verification_is_json_ready_and_the_line_payload_is_unchanged():
    printed = line("LOT 8812", alts={4: ("B", 0.45)}, p=0.55)
    v = verify(Expectation(text="LOT 8813", code="X"), [printed], [_code("Y")], confused_margin=0.2)
    doc = json.loads(json.dumps(v.to_json()))
    assert doc["verdict"] == "mismatch" and doc["kind"] == "text" and doc["expected"] == "LOT 8813"
    assert doc["counts"] == {"ok": 5, "confused": 1, "mismatch": 1}
    assert doc["chars"][3] == {"at": 4, "status": "confused", "expected": "8", "read": "8", "p": 0.55,
                               "alt": "B", "alt_p": 0.45}
    assert doc["code"] == {"expected": "X", "status": "mismatch", "read": ["Y"]}
    assert doc["lines"] == [printed.to_json()] and set(printed.to_json()) == {"text", "confidence", "box"}


def test_the_letter_x_and_the_multiplication_sign_count_as_one_unless_strict():
    assert verify(Expectation(text="6 x 1.5L"), [line("6 × 1.5L")]).verdict == PASS
    v = verify(Expectation(text="6 x 1.5L", lookalikes=("O0",)), [line("6 × 1.5L")])
    assert [(c.expected, c.read) for c in v.chars if c.status == MISMATCH] == [("x", "×")]
    assert verify(Expectation(text="6 x 1.5L"), [line("6 X 1.5L")]).verdict == MISMATCH   # case still counts
