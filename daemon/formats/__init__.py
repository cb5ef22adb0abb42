"""Identifier formats with check digits (UPU S10, GS1 SSCC and GTIN, ISO 6346) and look-alike correction.

Pure functions of strings. ``check_line(text, names)`` says whether a text line has the shape of one of the
named formats and, if so, whether its check digit holds:

- ``Checked(format, text)``: valid as read;
- ``Checked(format, text, corrected_from=original)``: the read failed, and exactly one look-alike substitution
  (O/0, I/1, S/5, B/8, Z/2, G/6, ...) in a position where the format wants the other class (a letter where a
  digit belongs, or the reverse) makes it valid; ``text`` is the read with that one character replaced;
- ``CHECK_DIGIT``: it has the shape (look-alikes allowed) but no single substitution makes it valid;
- ``None``: it has no format's shape (the caller's regexes decide).

Shape: spaces are ignored ("CSQU 305438 3" is ISO 6346; hyphens too there: "MSKU 907032-3"), and a GS1 AI in
brackets in front ("(00) 3401...") is dropped for SSCC and GTIN. Hyphens elsewhere are kept, so a date
"2026-11-23" is not read as a GTIN-8.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from stdnum import ean, iso6346

CHECK_DIGIT = "check_digit"   # the rejection reason

# A letter read where a digit belongs, and the reverse; one reading each, so a fix is never a guess
# between two characters.
LETTER_TO_DIGIT = {"O": "0", "D": "0", "Q": "0", "I": "1", "L": "1", "S": "5", "B": "8", "Z": "2", "G": "6",
                   "T": "7", "A": "4"}
DIGIT_TO_LETTER = {"0": "O", "1": "I", "5": "S", "8": "B", "2": "Z", "6": "G", "7": "T", "4": "A"}

_AI_PREFIX = re.compile(r"^\(([0-9]{2})\)")


def _digits(value: str) -> bool:
    """ASCII digits only: str.isdigit() takes fullwidth and superscript digits, which no identifier carries."""
    return bool(value) and all("0" <= ch <= "9" for ch in value)


def s10_check_digit(serial8: str) -> str:
    """UPU S10 check digit of the 8-digit serial number: weights 8 6 4 2 3 5 9 7, 11 - sum mod 11,
    where 10 -> 0 and 11 -> 5."""
    total = sum(int(d) * w for d, w in zip(serial8, (8, 6, 4, 2, 3, 5, 9, 7)))
    check = 11 - total % 11
    return "0" if check == 10 else "5" if check == 11 else str(check)


def s10_is_valid(value: str) -> bool:
    return bool(re.fullmatch(r"[A-Z]{2}[0-9]{9}[A-Z]{2}", value)) and s10_check_digit(value[2:10]) == value[10]


def gs1_mod10_is_valid(value: str) -> bool:
    """GS1 mod 10 (GTIN-8/12/13/14, SSCC): the last digit checks the others."""
    return _digits(value) and len(value) >= 2 and ean.calc_check_digit(value[:-1]) == value[-1]


def iso6346_is_valid(value: str) -> bool:
    return bool(re.fullmatch(r"[A-Z]{3}[UJZR][0-9]{7}", value)) and iso6346.is_valid(value)


@dataclass(frozen=True)
class Format:
    name: str
    templates: tuple[str, ...]             # per position: L = a letter, D = a digit
    is_valid: Callable[[str], bool]
    gs1_ai: Optional[str] = None           # an "(AI)" in front of the number is dropped
    ignored: str = " \t"                   # separators printed inside the number


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("s10", ("LL" + "D" * 9 + "LL",), s10_is_valid),
    Format("sscc", ("D" * 18,), gs1_mod10_is_valid, gs1_ai="00"),
    Format("gtin", tuple("D" * n for n in (14, 13, 12, 8)), gs1_mod10_is_valid, gs1_ai="01"),
    Format("iso6346", ("LLLL" + "D" * 7,), iso6346_is_valid, ignored=" \t-"),
)}


@dataclass(frozen=True)
class Checked:
    format: str
    text: str                              # as read, or with the one look-alike replaced
    corrected_from: Optional[str] = None   # the text as read, when corrected


def _fits(ch: str, cls: str) -> bool:
    return ("0" <= ch <= "9") if cls == "D" else ("A" <= ch <= "Z")


def _lookalike(ch: str, cls: str) -> Optional[str]:
    return LETTER_TO_DIGIT.get(ch) if cls == "D" else DIGIT_TO_LETTER.get(ch)


def _significant(text: str, fmt: Format) -> tuple[str, list[int]]:
    """The characters that make the number (upper-cased) and their indices in ``text``."""
    start = 0
    stripped = text.lstrip()
    m = _AI_PREFIX.match(stripped)
    if fmt.gs1_ai and m and m.group(1) == fmt.gs1_ai:
        start = len(text) - len(stripped) + m.end()
    chars, where = [], []
    for i in range(start, len(text)):
        if text[i] not in fmt.ignored:
            chars.append(text[i].upper())
            where.append(i)
    return "".join(chars), where


def _check_one(text: str, fmt: Format) -> Optional[Checked | str]:
    value, where = _significant(text, fmt)
    for template in fmt.templates:
        if len(value) != len(template):
            continue
        wrong = [i for i, (ch, cls) in enumerate(zip(value, template)) if not _fits(ch, cls)]
        if any(_lookalike(value[i], template[i]) is None for i in wrong):
            continue                                   # not this shape, even with look-alikes
        if not wrong and fmt.is_valid(value):
            return Checked(fmt.name, text)
        fixes = []
        for i in wrong if len(wrong) == 1 else []:     # exactly one substitution, where the class is wrong
            candidate = value[:i] + _lookalike(value[i], template[i]) + value[i + 1:]
            if fmt.is_valid(candidate):
                fixes.append(i)
        if len(fixes) == 1:
            i = fixes[0]
            pos = where[i]
            fixed = text[:pos] + _lookalike(value[i], template[i]) + text[pos + 1:]
            return Checked(fmt.name, fixed, corrected_from=text)
        return CHECK_DIGIT
    return None


def check_line(text: str, names: Sequence[str]) -> Optional[Checked | str]:
    """The first named format whose shape the text has decides (see the module docstring)."""
    for name in names:
        outcome = _check_one(text, FORMATS[name])
        if outcome is not None:
            return outcome
    return None
