"""Verification (OCV): a reading against what was expected -> a verdict and, per expected character, what was read.

Pure: no clock (the caller passes ``today``), no I/O, no model. ``verify(expectation, lines, codes, fields, today,
confused_margin, faint_below, smudged_over)`` takes the lines as the pipeline read them (before the filter: a print
the filter would refuse is still judged) and the codes of the same frames.

What can be expected (an ``Expectation``, exactly one of):

- ``text``: an exact string; a ``\\n`` separates the lines of a print of several lines;
- ``template``: a string with fields, ``LOT {lot}\\nEXP {date:%Y-%m}``, their values from ``fields``. A field
  with a ``%`` spec is a date: a ``datetime.date``, an ISO date ``2026-12-06``, or ``today``, ``today+30``,
  ``today-2 days`` counted from ``today`` (printers stamp "best before" that way). Other specs are Python's
  (``{n:05d}``); ``{{`` and ``}}`` are braces;
- ``regex``: a pattern one line must match entirely;
- ``format``: one of daemon/formats' names (``accept_formats``: s10, sscc, gtin, iso6346): one line must have its
  shape and a valid check digit as read (a line that is valid only after a look-alike correction fails: the
  print is judged, not the identifier);

plus, optionally, ``code``: a value one of the codes must carry (its text, or one of its GS1 AI values; upper case
and spaces or hyphens ignored). An expectation may be a code alone.

Matching (text and template). Characters compare after Unicode NFKC folding (a full-width colon is a colon), and
the characters of a ``lookalikes`` group count as one (default ``O0`` and ``x×``: a general recognizer takes each for
the other, and no printer swaps one for the other); case counts. Spaces are left out of the comparison by
default (``ignore_spaces``: a recognizer's spaces follow the print's spacing, which no printer holds to the pixel);
they get no status. Each expected line is aligned (Levenshtein, with its backtrace) against each line read; the
lines of an expectation of several lines go to distinct lines read, in any order (a tilted print's short line
can come first in reading order), and the assignment with the fewest edits wins. A line read with more than half
of an expected line to edit is not taken for it: that expected line is all ``missing``. Boxes on one row (up to
four, along the row's own direction, gaps up to three line heights: a detector cuts a printed line at wide gaps)
are also tried as one line, their texts joined by a space; other print on the pack is ignored. A regex or a
format is tried on every line and every such row.

Per character of the expected text (``CharCheck``, ``at`` its index in the expected text):

- ``ok``: read as expected;
- ``confused``: read as expected, but the recognizer's runner-up at that step (``TextLine.chars``) is another
  character within ``confused_margin`` of the best (p - alt_p < margin): the print may be that other character;
- ``faint``: read as expected, but printed with too little ink: its contrast against the line's typical letter or
  digit (``CharCandidate.contrast``, daemon.ocr.print_quality) is under ``faint_below`` (a dry nozzle, a worn
  ribbon: the recognizer reads such a character as surely as a good one); for punctuation, under half of it;
- ``smudged``: read as expected, but with ink beyond its shape: its blot grade (``CharCandidate.blot``,
  daemon.ocr.print_quality: a blot thicker than the line's strokes, or ink another copy of the character in the
  line does not have) is over ``smudged_over`` (a smear, a drop of ink the recognizer reads through);
- ``mismatch``: another character was read (``read``);
- ``missing``: nothing was read for it;
- ``extra``: a character was read where none was expected (``at``: the expected index it precedes).

For a regex or a format the checks are per character of the matching line: ``ok``, ``confused`` where putting the
runner-up in its place would no longer match (a runner-up that matches as well changes nothing), ``faint`` or
``smudged``.

Verdict: ``pass`` when every check is ``ok`` and the code (if any) is found; ``no_read`` when nothing was read to
judge: no text line (regex, format), no expected line with at least half of its characters found (text,
template: the expected print is not there), no code read (a code alone), every expected part so; else
``mismatch``. A ``confused``, ``faint`` or ``smudged`` character fails the verdict: a print that may read
otherwise, is fading or is smeared, is not passed.
"""
from __future__ import annotations

import datetime
import re
import string
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Optional, Sequence

from daemon.formats import FORMATS, Checked, check_line
from daemon.ocr.results import CharCandidate, TextLine
from daemon.patterns import PatternError, compile_pattern

PASS = "pass"
MISMATCH = "mismatch"
NO_READ = "no_read"

OK = "ok"
CONFUSED = "confused"
FAINT = "faint"
SMUDGED = "smudged"
MISSING = "missing"
EXTRA = "extra"
CHAR_MISMATCH = "mismatch"

# How close a runner-up makes a character read right "confused": bench/ocv_quality.py sweeps it against false
# accepts and false rejects (bench/RESULTS.md, "Verification quality").
DEFAULT_CONFUSED_MARGIN = 0.3
# A character printed with under this share of its line's typical contrast is "faint": the same bench's faded
# characters against its good prints' weakest letters and digits.
DEFAULT_FAINT_BELOW = 0.5
# Punctuation's thin strokes lose more contrast to blur than letters and digits do: it is faint under this share
# of faint_below (the same bench: good prints' weakest slash against faded hyphens and slashes).
THIN_MARKS = 0.5
# A character whose blot grade is over this is "smudged": 1.0 is the bound print_quality's constants put between
# the bench's good solid-font prints and its smudged ones.
DEFAULT_SMUDGED_OVER = 1.0
# A printed line the detector cut at wide gaps: up to this many boxes of one row, each at most MAX_ROW_GAP line
# heights from the next, are also tried as one line.
MAX_ROW_PIECES = 4
MAX_ROW_GAP = 3.0
# The closest lines read each expected line is tried against (fewest edits first); more only cost time.
MAX_OPTIONS = 8
# An expected line with less than this share of its characters found is not in view; none in view: no_read.
MIN_FOUND_SHARE = 0.5

_TODAY = re.compile(r"today\s*(?:([+-])\s*(\d+)\s*(?:d|days?)?)?", re.IGNORECASE)


class ExpectationError(ValueError):
    """An expectation that cannot be built or resolved: a bad pattern, an unknown format, a field without a
    value, a date that is none. The message names the field."""


@dataclass(frozen=True)
class Expectation:
    text: Optional[str] = None
    template: Optional[str] = None
    regex: Optional[str] = None
    format: Optional[str] = None
    code: Optional[str] = None          # a value one of the codes must carry
    ignore_spaces: bool = True
    # Characters that count as one (text, template): a general recognizer cannot tell O from 0 in many printer
    # fonts, nor the letter x from the sign × (PP-OCRv6 small read about a third of the x in "2 x 12.99" on
    # rendered receipts as ×: bench/RESULTS.md section 41), and a printer does not swap one for the other.
    # () compares strictly; ("O0", "I1") takes I and 1 as one, and x and × apart.
    lookalikes: tuple[str, ...] = ("O0", "x×")

    def __post_init__(self) -> None:
        given = [name for name in ("text", "template", "regex", "format") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ExpectationError(
                f"an expectation is one of text, template, regex or format, not {' and '.join(given)}")
        if not given and self.code is None:
            raise ExpectationError("an expectation needs text, template, regex, format or code")
        for name in given + (["code"] if self.code is not None else []):
            if not str(getattr(self, name)).strip():
                raise ExpectationError(f"{name} is empty")
        if self.regex is not None:
            try:
                compile_pattern(self.regex)
            except PatternError as exc:
                raise ExpectationError(f"regex {self.regex!r} does not compile: {exc}") from None
        if self.format is not None and self.format not in FORMATS:
            raise ExpectationError(f"format {self.format!r} is not one of {', '.join(FORMATS)}")
        if self.template is not None:
            template_fields(self.template)
        for group in self.lookalikes:
            if not isinstance(group, str) or len(group) < 2 or any(ch.isspace() for ch in group):
                raise ExpectationError(f"lookalikes: {group!r} is not a group of two or more characters")

    @property
    def kind(self) -> str:
        for name in ("text", "template", "regex", "format"):
            if getattr(self, name) is not None:
                return name
        return "code"


@dataclass(frozen=True)
class CharCheck:
    status: str                    # ok, confused, faint, smudged, mismatch, missing, extra
    at: int                        # index in the expected text (regex, format: in the line read)
    expected: str = ""             # "" for extra (and for regex and format checks)
    read: str = ""                 # "" for missing
    p: Optional[float] = None      # the recognizer's probability of what was read, where known
    alt: str = ""                  # its runner-up at that step, where known
    alt_p: Optional[float] = None
    contrast: Optional[float] = None   # faint: the character's ink against its line's typical character
    blot: Optional[float] = None       # smudged: its ink beyond its shape (1.0 the default bound)

    def to_json(self) -> dict:
        doc: dict = {"at": self.at, "status": self.status}
        if self.expected:
            doc["expected"] = self.expected
        if self.read:
            doc["read"] = self.read
        if self.p is not None:
            doc["p"] = round(float(self.p), 4)
        if self.alt:
            doc["alt"] = self.alt
            doc["alt_p"] = round(float(self.alt_p or 0.0), 4)
        if self.contrast is not None:
            doc["contrast"] = round(float(self.contrast), 3)
        if self.blot is not None:
            doc["blot"] = round(float(self.blot), 3)
        return doc


@dataclass(frozen=True)
class CodeCheck:
    expected: str
    status: str                    # ok, mismatch (codes read, none carries it), missing (no code read)
    read: tuple[str, ...] = ()     # the texts of the codes read

    def to_json(self) -> dict:
        return {"expected": self.expected, "status": self.status, "read": list(self.read)}


@dataclass(frozen=True)
class Verification:
    verdict: str                            # pass, mismatch, no_read
    kind: str                               # text, template, regex, format or code
    expected: str                           # the text expected (a template resolved), the pattern or format name
    read: str = ""                          # the matched lines' texts, "\n"-joined ("" none)
    lines: tuple[TextLine, ...] = ()        # the matched lines, in reading order
    chars: tuple[CharCheck, ...] = ()
    code: Optional[CodeCheck] = None

    @property
    def passed(self) -> bool:
        return self.verdict == PASS

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.chars:
            out[c.status] = out.get(c.status, 0) + 1
        return out

    def to_json(self) -> dict:
        doc: dict = {"verdict": self.verdict, "kind": self.kind, "expected": self.expected, "read": self.read,
                     "lines": [line.to_json() for line in self.lines],
                     "chars": [c.to_json() for c in self.chars], "counts": self.counts()}
        if self.code is not None:
            doc["code"] = self.code.to_json()
        return doc


# ------------------------------------------------------------------------------------------------ templates

@lru_cache(maxsize=256)
def _parsed(template: str) -> tuple[tuple[str, Optional[str], str], ...]:
    try:
        parts = tuple((literal, name, spec or "") for literal, name, spec, _ in string.Formatter().parse(template))
    except ValueError as exc:
        raise ExpectationError(f"template {template!r}: {exc}") from None
    for _, name, _spec in parts:
        if name is not None and not name.isidentifier():
            raise ExpectationError(f"template {template!r}: field {{{name}}} is not a plain name")
    return parts


def template_fields(template: str) -> tuple[str, ...]:
    """The names of a template's fields, in order (each once)."""
    names: list[str] = []
    for _, name, _ in _parsed(template):
        if name is not None and name not in names:
            names.append(name)
    return tuple(names)


def _date_value(name: str, value: Any, today: Optional[datetime.date]) -> datetime.date:
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    text = str(value).strip()
    m = _TODAY.fullmatch(text)
    if m:
        if today is None:
            raise ExpectationError(f"field {name} is {text!r} but no today was given")
        days = int(m.group(2) or 0) * (-1 if m.group(1) == "-" else 1)
        return today + datetime.timedelta(days=days)
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise ExpectationError(f"field {name} is {text!r}: not a date (YYYY-MM-DD, today, today+N)") from None


def render_template(template: str, fields: Mapping[str, Any], today: Optional[datetime.date] = None) -> str:
    """The template with its fields filled in (see the module doc); ExpectationError names a missing or bad one."""
    out = []
    for literal, name, spec in _parsed(template):
        out.append(literal)
        if name is None:
            continue
        if name not in fields:
            raise ExpectationError(f"template {template!r}: field {name} has no value")
        value = fields[name]
        if "%" in spec:
            out.append(_date_value(name, value, today).strftime(spec))
            continue
        try:
            out.append(format(value, spec))
        except (ValueError, TypeError) as exc:
            raise ExpectationError(f"field {name}: {value!r} does not take the format {spec!r} ({exc})") from None
    return "".join(out)


def expected_text(expectation: Expectation, fields: Optional[Mapping[str, Any]] = None,
                  today: Optional[datetime.date] = None) -> Optional[str]:
    """The text a text or template expectation wants (None for the other kinds): a trigger's fields can be
    checked with it when they arrive, before any frame is read."""
    if expectation.text is not None:
        return expectation.text
    if expectation.template is not None:
        return render_template(expectation.template, fields or {}, today)
    return None


# ------------------------------------------------------------------------------------------------ alignment

@lru_cache(maxsize=4096)
def _nfkc(ch: str) -> str:
    return unicodedata.normalize("NFKC", ch)


@lru_cache(maxsize=64)
def _key_of(lookalikes: tuple[str, ...]):
    """ch -> what it compares as: NFKC-folded, then each look-alike group as its first character."""
    table = {_nfkc(ch): _nfkc(group[0]) for group in lookalikes for ch in group}

    def key(ch: str) -> str:
        folded = _nfkc(ch)
        return table.get(folded, folded)
    return key


def align(expected: Sequence[str], read: Sequence[str]) -> tuple[int, list[tuple[Optional[int], Optional[int]]]]:
    """Levenshtein alignment of two sequences (of characters, or of what they compare as): (edits, pairs), each pair
    (expected index or None, read index or None) in order; a substitution pairs both, a missing character has no
    read index, an extra one no expected index. Ties prefer a substitution, then a missing character."""
    n, m = len(expected), len(read)
    dist = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        dist[i][0] = i
    for j in range(m + 1):
        dist[0][j] = j
    for i in range(1, n + 1):
        row, prev, e = dist[i], dist[i - 1], expected[i - 1]
        for j in range(1, m + 1):
            row[j] = min(prev[j - 1] + (e != read[j - 1]), prev[j] + 1, row[j - 1] + 1)
    pairs: list[tuple[Optional[int], Optional[int]]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and dist[i][j] == dist[i - 1][j - 1] + (expected[i - 1] != read[j - 1]):
            i, j = i - 1, j - 1
            pairs.append((i, j))
        elif i > 0 and dist[i][j] == dist[i - 1][j] + 1:
            i -= 1
            pairs.append((i, None))
        else:
            j -= 1
            pairs.append((None, j))
    pairs.reverse()
    return dist[n][m], pairs


@dataclass(frozen=True)
class _Chars:
    """The characters of a text that take part in the comparison, what they compare as, their indices in it."""
    chars: tuple[str, ...]
    keys: tuple[str, ...]
    where: tuple[int, ...]

    @classmethod
    def of(cls, text: str, ignore_spaces: bool, key, offset: int = 0) -> "_Chars":
        kept = [(i, c) for i, c in enumerate(text) if not (ignore_spaces and c.isspace())]
        return cls(tuple(c for _, c in kept), tuple(key(c) for _, c in kept), tuple(offset + i for i, _ in kept))


def _candidate(line: TextLine, j: int) -> Optional[CharCandidate]:
    return line.chars[j] if len(line.chars) == len(line.text) else None


@dataclass(frozen=True)
class CharRules:
    """When a character read as expected still fails: a runner-up within confused_margin, ink under faint_below,
    a blot grade over smudged_over (either 0 = not judged)."""
    confused_margin: float = DEFAULT_CONFUSED_MARGIN
    faint_below: float = DEFAULT_FAINT_BELOW
    smudged_over: float = DEFAULT_SMUDGED_OVER


def _is_confused(c: Optional[CharCandidate], margin: float, key) -> bool:
    return (c is not None and bool(c.alt) and not c.alt.isspace() and key(c.alt) != key(c.char)
            and c.p - c.alt_p < margin)


def _is_faint(c: Optional[CharCandidate], faint_below: float) -> bool:
    return c is not None and c.contrast < (faint_below if c.char.isalnum() else faint_below * THIN_MARKS)


def _is_smudged(c: Optional[CharCandidate], smudged_over: float) -> bool:
    return c is not None and smudged_over > 0 and c.blot > smudged_over


def _print_status(c: Optional[CharCandidate], rules: CharRules) -> str:
    """A character read right: faint, smudged, or ok."""
    if _is_faint(c, rules.faint_below):
        return FAINT
    return SMUDGED if _is_smudged(c, rules.smudged_over) else OK


def _check(status: str, at: int, expected: str, read: str, c: Optional[CharCandidate]) -> CharCheck:
    if c is None:
        return CharCheck(status, at, expected, read)
    return CharCheck(status, at, expected, read, c.p, c.alt, c.alt_p if c.alt else None,
                     c.contrast if status == FAINT else None, c.blot if status == SMUDGED else None)


def _line_checks(exp: _Chars, line: Optional[TextLine], ignore_spaces: bool, rules: CharRules, key
                 ) -> list[CharCheck]:
    if line is None:
        return [CharCheck(MISSING, at, ch) for ch, at in zip(exp.chars, exp.where)]
    got = _Chars.of(line.text, ignore_spaces, key)
    _, pairs = align(exp.keys, got.keys)
    out: list[CharCheck] = []
    for k, (i, j) in enumerate(pairs):
        if j is None:
            out.append(CharCheck(MISSING, exp.where[i], exp.chars[i]))     # type: ignore[index]
            continue
        c = _candidate(line, got.where[j])
        read = got.chars[j]
        if i is None:
            # the expected index it precedes: the next expected character's, or the end of the text
            after = next((exp.where[a] for a, _ in pairs[k + 1:] if a is not None), None)
            at = after if after is not None else (exp.where[-1] + 1 if exp.where else 0)
            out.append(_check(EXTRA, at, "", read, c))
        elif exp.keys[i] != got.keys[j]:
            out.append(_check(CHAR_MISMATCH, exp.where[i], exp.chars[i], read, c))
        else:
            status = CONFUSED if _is_confused(c, rules.confused_margin, key) else _print_status(c, rules)
            out.append(_check(status, exp.where[i], exp.chars[i], read, c))
    return out


# ------------------------------------------------------------------------------------------------ rows

@dataclass(frozen=True)
class _Span:
    """One line read, or neighbours on one row (left to right) as one line: their texts joined by a space."""
    members: tuple[int, ...]
    line: TextLine


@dataclass(frozen=True)
class _Geometry:
    """A box along its own direction (a tilted print's rows are tilted): centre, unit vectors, height, extent."""
    centre: tuple[float, float]
    along: tuple[float, float]
    across: tuple[float, float]
    height: float

    @classmethod
    def of(cls, line: TextLine) -> "_Geometry":
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = [(float(x), float(y)) for x, y in line.box]
        dx, dy = x1 - x0, y1 - y0
        length = (dx * dx + dy * dy) ** 0.5
        ux, uy = (dx / length, dy / length) if length > 0 else (1.0, 0.0)
        height = abs(((x3 + x2 - x0 - x1) / 2) * -uy + ((y3 + y2 - y0 - y1) / 2) * ux)
        return cls(((x0 + x1 + x2 + x3) / 4, (y0 + y1 + y2 + y3) / 4), (ux, uy), (-uy, ux), max(1.0, height))

    def extent(self, line: TextLine) -> tuple[float, float]:
        """Where line's box starts and ends along this box's direction."""
        along = [float(x) * self.along[0] + float(y) * self.along[1] for x, y in line.box]
        return min(along), max(along)


def _next_on_row(lines: Sequence[TextLine], shapes: Sequence[_Geometry], a: int, taken: set[int]) -> Optional[int]:
    """The nearest box right of a on a's row (its centre within half a height of a's centre line, the gap at most
    MAX_ROW_GAP heights), or None."""
    g = shapes[a]
    a_end = g.extent(lines[a])[1]
    best: Optional[tuple[float, int]] = None
    for b in range(len(lines)):
        if b in taken:
            continue
        h = min(g.height, shapes[b].height)
        dx, dy = shapes[b].centre[0] - g.centre[0], shapes[b].centre[1] - g.centre[1]
        if abs(dx * g.across[0] + dy * g.across[1]) > 0.5 * h:
            continue
        gap = g.extent(lines[b])[0] - a_end
        if -0.5 * h <= gap <= MAX_ROW_GAP * max(g.height, shapes[b].height) and (best is None or gap < best[0]):
            best = (gap, b)
    return best[1] if best else None


def _joined(lines: Sequence[TextLine]) -> TextLine:
    text = " ".join(line.text for line in lines)
    chars: tuple[CharCandidate, ...] = ()
    if all(len(line.chars) == len(line.text) for line in lines):
        gap = (CharCandidate(" ", 1.0),)
        chars = tuple(c for k, line in enumerate(lines) for c in (gap if k else ()) + line.chars)
    xs = [float(x) for line in lines for x, _ in line.box]
    ys = [float(y) for line in lines for _, y in line.box]
    box = ((min(xs), min(ys)), (max(xs), min(ys)), (max(xs), max(ys)), (min(xs), max(ys)))
    return TextLine(text, sum(line.confidence for line in lines) / len(lines), box, chars)


def _spans(lines: Sequence[TextLine]) -> list[_Span]:
    """Every line alone, and from each line the chain of up to MAX_ROW_PIECES boxes to its right on its row."""
    shapes = [_Geometry.of(line) for line in lines]
    out = []
    for a in range(len(lines)):
        out.append(_Span((a,), lines[a]))
        chain = [a]
        while len(chain) < MAX_ROW_PIECES:
            b = _next_on_row(lines, shapes, chain[-1], set(chain))
            if b is None:
                break
            chain.append(b)
            out.append(_Span(tuple(chain), _joined([lines[i] for i in chain])))
    return out


def _assign(expected_lines: Sequence[_Chars], spans: Sequence[_Span], ignore_spaces: bool, key
            ) -> list[Optional[_Span]]:
    """The span each expected line goes with (None: none), no line read used twice, fewest edits overall; ties to
    the lower edits of the earlier expected lines, then to fewer boxes, then to the earlier lines read."""
    read = [_Chars.of(s.line.text, ignore_spaces, key).keys for s in spans]
    options: list[list[tuple[int, Optional[int]]]] = []
    for e in expected_lines:
        unread = len(e.keys)
        costs = sorted((align(e.keys, r)[0], len(spans[x].members), spans[x].members, x) for x, r in enumerate(read))
        # a line read with more than half of it to edit is not this expected line: it stays unread instead
        near = [(c, x) for c, _, _, x in costs[:MAX_OPTIONS] if c <= (1 - MIN_FOUND_SHARE) * unread]
        options.append(near + [(unread, None)])
    floor = [0] * (len(options) + 1)              # the least the expected lines from i on can still cost
    for i in range(len(options) - 1, -1, -1):
        floor[i] = floor[i + 1] + min(c for c, _ in options[i])
    best: list = [float("inf"), []]

    def search(i: int, used: frozenset, cost: int, picks: list) -> None:
        if cost + floor[i] >= best[0]:
            return
        if i == len(options):
            best[0], best[1] = cost, list(picks)
            return
        for c, x in options[i]:
            members = frozenset(spans[x].members) if x is not None else frozenset()
            if not members & used:
                search(i + 1, used | members, cost + c, picks + [x])
    search(0, frozenset(), 0, [])
    return [spans[x] if x is not None else None for x in best[1]]


# ------------------------------------------------------------------------------------------------ verify

def verify(expectation: Expectation, lines: Sequence[TextLine], codes: Sequence = (),
           fields: Optional[Mapping[str, Any]] = None, today: Optional[datetime.date] = None,
           confused_margin: float = DEFAULT_CONFUSED_MARGIN,
           faint_below: float = DEFAULT_FAINT_BELOW, smudged_over: float = DEFAULT_SMUDGED_OVER) -> Verification:
    """A reading (its lines in reading order, its codes: daemon.codes.reader.Code or anything with .text and .gs1)
    against an expectation; see the module doc. ExpectationError when a template cannot be resolved."""
    lines = [line for line in lines if line.text.strip()]
    rules = CharRules(confused_margin, faint_below, smudged_over)
    code = _check_code(expectation.code, codes) if expectation.code is not None else None
    kind = expectation.kind
    if kind == "code":
        text_verdict, result = None, Verification(PASS, kind, "")
    elif kind in ("regex", "format"):
        result = _verify_pattern(expectation, lines, rules)
        text_verdict = result.verdict
    else:
        result = _verify_text(expected_text(expectation, fields, today) or "", expectation, lines, rules)
        text_verdict = result.verdict
    verdicts = [v for v in (text_verdict, _code_verdict(code)) if v is not None]
    if all(v == PASS for v in verdicts):
        verdict = PASS
    elif all(v == NO_READ for v in verdicts):
        verdict = NO_READ
    else:
        verdict = MISMATCH
    return Verification(verdict, kind, result.expected, result.read, result.lines, result.chars, code)


def _verify_text(text: str, expectation: Expectation, lines: Sequence[TextLine], rules: CharRules) -> Verification:
    ignore, key = expectation.ignore_spaces, _key_of(tuple(expectation.lookalikes))
    expected_lines, offset = [], 0
    for part in text.split("\n"):
        expected_lines.append(_Chars.of(part, ignore, key, offset))
        offset += len(part) + 1
    expected_lines = [e for e in expected_lines if e.chars]
    if not expected_lines:
        raise ExpectationError(f"the expected text {text!r} has no characters to compare")
    chosen = _assign(expected_lines, _spans(lines), ignore, key)
    checks: list[CharCheck] = []
    in_view = False
    for exp, span in zip(expected_lines, chosen):
        line_checks = _line_checks(exp, span.line if span is not None else None, ignore, rules, key)
        found = sum(1 for c in line_checks if c.status in (OK, CONFUSED))
        in_view = in_view or found >= MIN_FOUND_SHARE * len(exp.chars)
        checks.extend(line_checks)
    spans = [span for span in chosen if span is not None]
    if all(c.status == OK for c in checks):
        verdict = PASS
    elif not in_view:
        verdict = NO_READ
    else:
        verdict = MISMATCH
    return Verification(verdict, expectation.kind, text, "\n".join(span.line.text for span in spans),
                        tuple(lines[i] for span in spans for i in span.members), tuple(checks))


def _matches(expectation: Expectation, text: str) -> bool:
    text = text.strip()
    if expectation.regex is not None:
        return compile_pattern(expectation.regex).fullmatch(text) is not None
    checked = check_line(text, [expectation.format])  # type: ignore[list-item]
    return isinstance(checked, Checked) and checked.corrected_from is None


def _verify_pattern(expectation: Expectation, lines: Sequence[TextLine], rules: CharRules) -> Verification:
    target = expectation.regex if expectation.regex is not None else expectation.format
    best: Optional[tuple[_Span, list[CharCheck]]] = None
    for span in _spans(lines):
        line = span.line
        if not _matches(expectation, line.text):
            continue
        checks = []
        for j, ch in enumerate(line.text):
            c = _candidate(line, j)
            status = OK
            if not ch.isspace() and _is_confused(c, rules.confused_margin, _nfkc):
                swapped = line.text[:j] + c.alt + line.text[j + 1:]   # type: ignore[union-attr]
                status = OK if _matches(expectation, swapped) else CONFUSED
            if status == OK and not ch.isspace():
                status = _print_status(c, rules)
            if not ch.isspace():
                checks.append(_check(status, j, "", ch, c))
        if best is None or sum(c.status != OK for c in checks) < sum(c.status != OK for c in best[1]):
            best = (span, checks)
    if best is None:
        return Verification(NO_READ if not lines else MISMATCH, expectation.kind, target or "")
    span, checks = best
    verdict = PASS if all(c.status == OK for c in checks) else MISMATCH
    return Verification(verdict, expectation.kind, target or "", span.line.text,
                        tuple(lines[i] for i in span.members), tuple(checks))


def _normal_code(value: str) -> str:
    return re.sub(r"[\s\-]", "", value).upper()


def _check_code(expected: str, codes: Sequence) -> CodeCheck:
    read = tuple(c.text for c in codes)
    if not codes:
        return CodeCheck(expected, MISSING, read)
    want = _normal_code(expected)
    for c in codes:
        values = [c.text, *((getattr(c, "gs1", None) or {}).values())]
        if any(_normal_code(str(v)) == want for v in values):
            return CodeCheck(expected, OK, read)
    return CodeCheck(expected, CHAR_MISMATCH, read)


def _code_verdict(code: Optional[CodeCheck]) -> Optional[str]:
    if code is None:
        return None
    return {OK: PASS, MISSING: NO_READ}.get(code.status, MISMATCH)
