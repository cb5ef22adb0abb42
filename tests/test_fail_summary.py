"""Why a result failed (daemon/readings/fail_summary.py): what the page shows under a fail and the evidence store
keeps beside its frame, from real verifications; compact, bounded, in plain words, the camera's text as it is."""
import json

from daemon.ocr.results import CharCandidate, TextLine
from daemon.readings.fail_summary import MAX_CHARS, MAX_TEXT, fail_summary
from daemon.readings.verify import Expectation, verify
from readings_support import line

LOT = "LOT 4711A"


def graded(text, over):
    plain = line(text)
    return TextLine(text, plain.confidence, plain.box,
                    tuple(over.get(i, CharCandidate(ch, 0.99)) for i, ch in enumerate(text)))


def why(expected, lines, codes=(), status=None, note=None, **rules):
    v = verify(Expectation(text=expected) if isinstance(expected, str) else expected, lines, codes, **rules)
    cycle = {"status": status or ("good_read" if v.passed else v.verdict), "verification": v.to_json()}
    if note:
        cycle["note"] = note
    return fail_summary(cycle)


def test_a_wrong_character_names_its_place_what_was_read_and_what_was_expected():
    s = why(LOT, [line("LOT 4711B")])
    assert s["words"] == "expected LOT 4711A · read LOT 4711B · char 9: B instead of A"
    assert (s["status"], s["verdict"], s["kind"], s["expected"], s["read"], s["more"]) == (
        "mismatch", "mismatch", "text", LOT, "LOT 4711B", 0)
    assert s["chars"] == [{"at": 8, "status": "mismatch", "expected": "A", "read": "B"}]


def test_print_faults_name_the_character_and_its_value():
    smudged = why(LOT, [graded(LOT, {5: CharCandidate("7", 0.99, blot=2.4)})])
    assert smudged["words"] == "expected LOT 4711A · read LOT 4711A · char 6 '7' smudged (blot 2.4)"
    assert smudged["chars"] == [{"at": 5, "status": "smudged", "expected": "7", "read": "7", "p": 0.99, "blot": 2.4}]
    faint = why(LOT, [graded(LOT, {4: CharCandidate("4", 0.99, contrast=0.31)})])
    assert faint["words"].endswith("char 5 '4' faint (contrast 0.31)")
    confused = why(LOT, [graded(LOT, {4: CharCandidate("4", 0.6, alt="A", alt_p=0.4)})])
    assert confused["words"].endswith("char 5 '4' could be 'A' (0.60 vs 0.40)")
    assert confused["chars"][0]["alt"] == "A" and confused["chars"][0]["alt_p"] == 0.4


def test_missing_and_extra_characters_and_a_line_not_found():
    assert why(LOT, [line("LT 4711A")])["words"].endswith("char 2 'O' missing")
    assert why(LOT, [line("LOT 47711A")])["words"].endswith("extra '7' before char 6")
    assert why(LOT, [line("LOT 4711AX")])["words"].endswith("extra 'X' at the end")
    two = why(f"{LOT}\nEXP 2027-01", [line(LOT)])   # a line of the print not there: one entry, not eleven
    assert two["words"] == "expected LOT 4711A / EXP 2027-01 · read LOT 4711A · chars 11-21 'EXP 2027-01' missing"
    assert two["chars"] == [{"at": 10, "to": 20, "status": "missing", "expected": "EXP 2027-01"}]
    gone = why(LOT, [], note="interrupted by a daemon restart before its result was stored")
    assert gone["words"] == ("expected LOT 4711A · not found · interrupted by a daemon restart before its result "
                             "was stored")
    assert gone["chars"] == [{"at": 0, "to": 8, "status": "missing", "expected": LOT}]


def test_a_code_a_pattern_and_the_statuses_without_a_verification():
    class Code:
        text, gs1 = "999", None

    assert why(Expectation(text=LOT, code="0123"), [line(LOT)], [Code()])["words"] == (
        "expected LOT 4711A · read LOT 4711A · code 0123 expected, read 999")
    assert why(Expectation(regex=r"LOT \d{4}[A-Z]"), [line("LOT 47I1A")])["words"] == (
        r"expected a line matching LOT \d{4}[A-Z] · no line read matches")
    assert fail_summary({"status": "no_label", "verification": None}) == {"status": "no_label",
                                                                          "words": "nothing in view"}
    assert fail_summary({"status": "multiple", "verification": None})["words"] == (
        "more than one label read where one was expected")
    assert why(LOT, [line(LOT), line(LOT, y=300.0)], status="multiple")["words"] == (
        "expected LOT 4711A · read LOT 4711A · the expected print in view twice")
    assert fail_summary({"status": "no_read", "verification": None})["words"] == (
        "something in view, nothing of it accepted")
    assert why(LOT, [line(LOT)]) is None and fail_summary(None) is None   # a good read has nothing to explain


def test_the_summary_is_bounded_and_keeps_the_cameras_text_as_it_is():
    many = why("QW" * 80, [line("QQ" * 80)])
    assert len(many["chars"]) == MAX_CHARS and many["more"] == 80 - MAX_CHARS
    assert many["words"].endswith(f"and {80 - MAX_CHARS} more")
    assert len(many["expected"]) == len(many["read"]) == MAX_TEXT and many["expected"].endswith("…")
    assert len(json.dumps(many, ensure_ascii=False)) < 1200
    hostile = why("<b>LOT</b>", [line("<img src=x onerror=alert(1)>")])
    assert "<b>LOT</b>" in hostile["words"]   # plain text: the page sets it as text, never as HTML
    spaced = why(Expectation(text="A B", ignore_spaces=False), [line("A\tB")])
    assert spaced["words"].endswith("char 2: U+0009 instead of U+0020")
