"""Text from outside (file names, client input) made safe for one log line or a JSON payload.

File names are bytes on Linux: a Windows share writes Latin-1 (``caf\\xe9.png``), and Python hands such a name over
with surrogate escapes that no UTF-8 encoder accepts. A name may also hold a newline, which would forge a log line.
``printable`` keeps valid UTF-8 as it is and spells everything else as a visible escape, so the same bytes always give
the same text and nothing breaks a line.
"""
from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators (journald and many viewers break on them).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match) -> str:
    ch = m.group(0)
    return _NAMED.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")


def printable(text: str) -> str:
    """``text`` with undecodable bytes as ``\\xNN`` and control characters escaped: valid UTF-8, one line."""
    if text.isprintable():   # the common case: nothing to do
        return text
    return _UNSAFE.sub(_escape, _without_surrogates(text))


def _without_surrogates(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:   # surrogate escapes (os.fsdecode of non-UTF-8 bytes) back to their bytes, spelled as \xNN
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:   # a lone surrogate from elsewhere: spelled as \udNNN
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
