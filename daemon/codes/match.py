"""Code against text: a line and a code of one frame that carry the same identifier.

Pure. Identifiers are compared after normalizing: upper case, and the runs of letters and digits of a text,
taken once with spaces and hyphens as part of the number ("CSQU 305438-3" -> "CSQU3054383") and once with them
as breaks ("No. EE123456785CN" -> "EE123456785CN"; "运单号：SF7300000000" -> "SF7300000000"). A code offers its
text and, for GS1 codes, each AI value (the SSCC in (00), the GTIN in (01)).

- The same identifier: the line is confirmed (``confirmed_by = "code"``).
- A near miss (both at least MIN_NEAR_CHARS long, same length and at most MAX_MISMATCH_CHARS characters apart,
  or one character inserted or dropped): a disagreement; the line keeps what the OCR read and carries the code's
  value as ``code_value``, the value a subscriber should trust (a code has its own error detection; OCR has none).
- Otherwise the line and the code are unrelated and nothing is said.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from typing import Optional, Sequence

MIN_ID_CHARS = 6
MIN_NEAR_CHARS = 8        # shorter runs (a date, a weight) are too alike by chance to call a misread
MAX_MISMATCH_CHARS = 2
CONFIRMED = "code_confirmed"     # counter names (per camera)
MISMATCH = "code_mismatch"

_RUN = re.compile(r"[A-Z0-9]+")


def identifiers(text: str) -> list[str]:
    """The candidate identifiers in a text, longest first, at least MIN_ID_CHARS long."""
    upper = text.upper()
    runs = _RUN.findall(re.sub(r"[\s\-]", "", upper)) + _RUN.findall(upper)
    out: list[str] = []
    for run in sorted(runs, key=len, reverse=True):
        if len(run) >= MIN_ID_CHARS and run not in out:
            out.append(run)
    return out


def code_values(code) -> list[str]:
    values = identifiers(code.text)
    for value in (code.gs1 or {}).values():
        values += [v for v in identifiers(value) if v not in values]
    return values


def _near(a: str, b: str) -> bool:
    if min(len(a), len(b)) < MIN_NEAR_CHARS:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) <= MAX_MISMATCH_CHARS
    if abs(len(a) - len(b)) == 1:   # one character dropped or doubled by the OCR
        short, long_ = (a, b) if len(a) < len(b) else (b, a)
        return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))
    return False


def match_codes(lines: Sequence, codes: Sequence) -> tuple[list, Counter]:
    """Each line annotated where a code speaks to it; counts of confirmed and mismatched lines."""
    values = [v for code in codes for v in code_values(code)]
    counts: Counter = Counter()
    out = []
    for line in lines:
        idents = identifiers(line.text)
        verdict: Optional[dict] = None
        if idents and values:
            if any(v in idents for v in values):
                verdict = {"confirmed_by": "code"}
                counts[CONFIRMED] += 1
            else:
                near = next((v for ident in idents for v in values if _near(v, ident)), None)
                if near is not None:
                    verdict = {"code_value": near}
                    counts[MISMATCH] += 1
        out.append(replace(line, **verdict) if verdict else line)
    return out, counts
