"""Why a result failed, compact and in plain words: what the page shows under a fail and the evidence store keeps
beside its frame (``<id>.json``), so a rejection is explained on the station after the message went to the PLC.

Pure. ``fail_summary(cycle)`` takes a result's cycle fields (daemon/readings/cycle.py ``_fields``: status, note,
``verification`` as ``Verification.to_json()`` wrote it) and returns None for a good read, else a small dict:
``status``, ``verdict``, ``kind``, ``expected`` and ``read`` (each cut to MAX_TEXT characters), ``chars`` (the
first MAX_CHARS characters that are not ok, each with its status and values: mismatch ``read``, confused ``alt``
and the probabilities, faint ``contrast``, smudged ``blot``), ``more`` (how many more are not ok), ``code`` (the
code check, where one was expected), ``note``, and ``words``: one line for a person, e.g. ``expected LOT 4711A ·
read LOT 4711B · char 9: B instead of A``. Characters are counted from 1 (``at`` + 1), in the expected text (a
regex or a format: in the line read). The texts are printed text from a camera: the page sets them as text, never
as HTML.
"""
from __future__ import annotations

from typing import Optional

MAX_CHARS = 6       # the characters not ok a summary names; the others are counted (more)
MAX_TEXT = 120      # the expected and read texts, cut to this many characters
MAX_NOTE = 200
MAX_CODES = 3       # codes read, named where the expected code was not among them
_SEP = " · "
MAX_RUN = 40        # a run of missing characters (a line not found) is one entry, its text cut to this
_CHAR_KEYS = ("at", "to", "status", "expected", "read", "p", "alt", "alt_p", "contrast", "blot")


def fail_summary(cycle: Optional[dict]) -> Optional[dict]:
    """The summary of a result that is not good_read (see the module doc); None for a good read or no cycle."""
    if not cycle or cycle.get("status") in (None, "good_read"):
        return None
    out: dict = {"status": str(cycle["status"])}
    v = cycle.get("verification")
    if isinstance(v, dict):
        bad = _missing_runs([c for c in v.get("chars") or () if isinstance(c, dict) and c.get("status") != "ok"],
                            str(v.get("expected") or ""))
        out.update({"verdict": v.get("verdict"), "kind": v.get("kind"), "expected": _cut(v.get("expected")),
                    "read": _cut(v.get("read")),
                    "chars": [{k: _cut(c[k], MAX_RUN if k == "expected" else 4) if k in ("expected", "read", "alt")
                               else c[k] for k in _CHAR_KEYS if k in c} for c in bad[:MAX_CHARS]],
                    "more": max(0, len(bad) - MAX_CHARS)})
        code = v.get("code")
        if isinstance(code, dict):
            out["code"] = {"expected": _cut(code.get("expected")), "status": code.get("status"),
                           "read": [_cut(t) for t in list(code.get("read") or ())[:MAX_CODES]]}
    if cycle.get("note"):
        out["note"] = _cut(cycle["note"], MAX_NOTE)
    out["words"] = fail_words(out)
    return out


def fail_words(s: dict) -> str:
    """The summary in one line of plain words (see the module doc). Pure."""
    parts: list[str] = []
    kind, expected = s.get("kind"), _shown_text(s.get("expected") or "")
    if kind in ("text", "template"):
        parts.append(f"expected {expected}")
    elif kind == "regex":
        parts.append(f"expected a line matching {expected}")
    elif kind == "format":
        parts.append(f"expected a valid {expected}")
    if kind in ("text", "template"):
        parts.append(f"read {_shown_text(s['read'])}" if s.get("read") else "not found")
    elif kind in ("regex", "format"):
        parts.append(f"read {_shown_text(s['read'])}" if s.get("read") else "no line read matches")
    for c in s.get("chars") or ():
        if not (c.get("status") == "missing" and kind in ("text", "template") and not s.get("read")):
            parts.append(_char_words(c, s.get("expected") or ""))   # "not found" says that much
    if s.get("more"):
        parts.append(f"and {s['more']} more")
    code = s.get("code")
    if code and code.get("status") != "ok":
        if code.get("status") == "missing":
            parts.append(f"code {code.get('expected')} expected, no code read")
        else:
            parts.append(f"code {code.get('expected')} expected, read {', '.join(code.get('read') or ())}")
    if not parts and s.get("status") == "no_label":
        parts.append("nothing in view")
    if not parts and s.get("status") == "no_read" and not s.get("note"):
        parts.append("something in view, nothing of it accepted")
    if s.get("status") == "multiple":   # one_label: with an expectation, its print twice (daemon/readings/cycle.py)
        parts.append("the expected print in view twice" if s.get("kind") else
                     "more than one label read where one was expected")
    if s.get("note"):
        parts.append(s["note"])
    return _SEP.join(parts)


def _char_words(c: dict, expected: str) -> str:
    status, at = c.get("status"), int(c.get("at", 0))
    n = at + 1
    want, got = _shown(c.get("expected", "")), _shown(c.get("read", ""))
    what = want or got   # a regex's or a format's checks name the character read
    if status == "mismatch":
        return f"char {n}: {got} instead of {want}"
    if status == "missing" and c.get("to") is not None:
        return f"chars {n}-{int(c['to']) + 1} '{c.get('expected', '')}' missing"
    if status == "missing":
        return f"char {n} '{want}' missing"
    if status == "extra":
        if at >= len(expected) or expected[at] == "\n":
            return f"extra '{got}' at the end"
        return f"extra '{got}' before char {n}"
    if status == "confused":
        odds = f" ({c['p']:.2f} vs {c['alt_p']:.2f})" if c.get("p") is not None and c.get("alt_p") is not None else ""
        return f"char {n} '{what}' could be '{_shown(c.get('alt', ''))}'{odds}"
    if status == "faint":
        value = f" (contrast {c['contrast']:.2f})" if c.get("contrast") is not None else ""
        return f"char {n} '{what}' faint{value}"
    if status == "smudged":
        value = f" (blot {c['blot']:.1f})" if c.get("blot") is not None else ""
        return f"char {n} '{what}' smudged{value}"
    return f"char {n} '{what}' {status}"


def _missing_runs(bad: list, expected: str) -> list:
    """The checks with each run of two or more missing characters (next to each other in the expected text, or
    only spaces between) as one: {"at": first, "to": last, "status": "missing", "expected": the text between}."""
    out: list = []
    for c in bad:
        prev = out[-1] if out else None
        at = c.get("at")
        if (c.get("status") == "missing" and prev is not None and prev.get("status") == "missing"
                and isinstance(at, int) and isinstance(prev.get("at"), int)):
            last = prev.get("to", prev["at"])
            if at > last and expected[last + 1:at].isspace() or at == last + 1:
                out[-1] = {"at": prev["at"], "to": at, "status": "missing", "expected": expected[prev["at"]:at + 1]}
                continue
        out.append(c)
    return out


def _shown(ch: str) -> str:
    """One character as a person can read it: a space or an invisible one by its code point."""
    return "".join(x if x.isprintable() and not x.isspace() else f"U+{ord(x):04X}" for x in ch or "")


def _shown_text(text: str) -> str:
    return " / ".join(text.split("\n"))


def _cut(value, n: int = MAX_TEXT) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= n else text[:n - 1] + "…"
