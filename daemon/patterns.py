"""The patterns a user writes (cameras[].accept_patterns, expect_regex): matched by RE2, in time linear in the line.

Python's re backtracks: "((.+)+)+X" against a 30-character line runs for minutes holding the GIL, so a pattern
that check-config accepted froze every thread of the daemon, /healthz included (found from outside). RE2
(google-re2) never backtracks. It has no lookaround and no backreferences, which a line filter does not need; a
pattern that uses them is refused when the config is checked, with RE2's reason.
"""
from __future__ import annotations

import functools

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False   # a bad pattern is the config's error, said once by the caller, not logged by RE2


class PatternError(ValueError):
    """A pattern RE2 does not take; the message says why."""


@functools.lru_cache(maxsize=256)   # verification compiles its expectation's regex per cycle
def compile_pattern(pattern: str):
    """The compiled pattern (fullmatch, search, match as re's); PatternError when RE2 refuses it."""
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as exc:
        why = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise PatternError(f"{why} (patterns are RE2: no lookaround or backreferences)") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise PatternError(str(exc)) from None
