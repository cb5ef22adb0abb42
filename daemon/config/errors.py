"""ConfigError, and the value and key path as its one line shows them: cut, whatever the value was."""
from __future__ import annotations

import re
import reprlib
from typing import Any, Optional

# An error is one line of the journal: values are shown cut to this many characters, the whole message to the other.
SHOWN_VALUE_CHARS = 80
MAX_MESSAGE_CHARS = 1000


class ConfigError(ValueError):
    """A config value that cannot be used; ``key`` is the dotted path to it. The message is one line of at most
    MAX_MESSAGE_CHARS characters, whatever the value was. ``path`` is the file it came from (set by load())."""

    def __init__(self, key: str, message: str):
        self.key = key
        self.path: Optional[str] = None
        text = " ".join((f"{key}: {message}" if key else message).splitlines())
        if len(text) > MAX_MESSAGE_CHARS:
            text = text[:MAX_MESSAGE_CHARS] + f"… ({len(text)} characters)"
        super().__init__(text)

    def report(self, path: Optional[str] = None) -> str:
        """The one line every command prints for it (then exits 2): the file, when known, and the message."""
        where = self.path or path
        return f"{where}: invalid config: {self}" if where else f"invalid config: {self}"


class _ShortRepr(reprlib.Repr):
    """repr() with every part bounded: a huge list, a deep one or a long integer is shown by its start."""

    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxdict, self.maxlist, self.maxtuple, self.maxset = 3, 4, 6, 6, 6
        self.maxstring = self.maxother = self.maxlong = SHOWN_VALUE_CHARS

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 200:   # repr() of a number over 4300 digits raises; its size is what matters
            return f"<an integer of {int(x.bit_length() * 0.30103) + 1} digits>"
        return super().repr_int(x, level)


_short_repr = _ShortRepr()


def shown(value: Any) -> str:
    """The value as an error message shows it: its repr, cut to SHOWN_VALUE_CHARS with its full length added."""
    if isinstance(value, str) and len(value) > SHOWN_VALUE_CHARS:
        return f"{value[:SHOWN_VALUE_CHARS]!r}… ({len(value)} characters)"
    if isinstance(value, (list, tuple, dict)) and len(value) > 6:
        return f"{_short_repr.repr(value)} ({len(value)} items)"
    return _short_repr.repr(value)


def require(ok: bool, key: str, value: Any, why: str) -> None:
    """A ConfigError "<key>: <value> <why>" unless ok."""
    if not ok:
        raise ConfigError(key, f"{shown(value)} {why}")


def join(prefix: str, key: str) -> str:
    """A key path one level down: ``mqtt`` and ``port`` make ``mqtt.port``."""
    return f"{prefix}.{key}" if prefix else key


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def key_text(key: Any) -> str:
    """A mapping key as a key path shows it: as written when it looks like a key, else its short repr."""
    return key if isinstance(key, str) and _PLAIN_KEY.fullmatch(key) else shown(key)
