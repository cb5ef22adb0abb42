"""The typed walk from parsed YAML to the frozen section dataclasses.

Each value is converted to its field's type (an unknown key, a wrong type or a value out of range is a ConfigError
naming the key path), then two rules that hold for every setting of a kind: text carries no NUL (no path, topic or
C library takes one) and no lone surrogate (UTF-8 cannot encode it); a duration (*_s, *_ms) fits Python's timers.
A section that has a ``check(key)`` method is checked as soon as it is built, with its key path ("cameras[1]").
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from typing import Any, Literal

from daemon.config.errors import ConfigError, join, key_text, require, shown

# Integers go to SQLite, C libraries and the protocols as at most 64 bits.
INT64_MAX = 2 ** 63 - 1
# Every wait goes through Python's timers, which refuse more than threading.TIMEOUT_MAX (about 292 years);
# a *_s or *_ms setting above this bound (about 31 years) is a typo, not a wish.
MAX_DURATION_S = 1e9
_EXPONENT_ONLY = re.compile(r"[-+]?[0-9]+[eE][-+]?[0-9]+")
_NO_FILE_CARRIES = re.compile("[\x00\ud800-\udfff]")


def build(cls: type, data: Any, prefix: str) -> Any:
    """An instance of the dataclass cls from a mapping (None: every default), checked by its check(prefix)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(prefix, f"expected a mapping, got {shown(data)}")
    hints = _type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("not_a_key")}   # Config.source_path
    for k in data:
        if k not in names:
            raise ConfigError(join(prefix, key_text(k)), f"unknown key (known: {', '.join(sorted(names))})")
    kwargs = {k: _convert(v, hints[k], join(prefix, k)) for k, v in data.items()}
    section = cls(**kwargs)
    check = getattr(section, "check", None)
    if check is not None:
        check(prefix)
    return section


def _convert(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key)
    if origin is Literal:
        # by type too: true is not 1 (sparkplug.qos), 1.0 is not 1
        if not any(type(value) is type(a) and value == a for a in args):
            quote = (" (YAML reads a bare on, off, yes or no as true or false: put the word in quotes)"
                     if isinstance(value, bool) and any(isinstance(a, str) for a in args) else "")
            raise ConfigError(key, f"{shown(value)} is not one of {', '.join(map(repr, args))}{quote}")
        return value
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key)
    if origin is dict:   # a small mapping of names to values (expect_fields)
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {shown(value)}")
        return {_convert(k, args[0], f"{key} (a key)"): _convert(v, args[1], join(key, key_text(k)))
                for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {shown(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(key, f"expected a list of {len(args)} items, got {shown(value)}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {shown(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {shown(value)}")
        return _duration(_in_int64(value, key), key)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            hint = (" (YAML 1.1 reads 1e3 as text: write 1.0e+3)"
                    if isinstance(value, str) and _EXPONENT_ONLY.fullmatch(value) else "")
            raise ConfigError(key, f"expected a number, got {shown(value)}{hint}")
        if not math.isfinite(_in_int64(value, key) if isinstance(value, int) else value):
            raise ConfigError(key, f"expected a finite number, got {shown(value)}")
        return _duration(float(value), key)
    if hint is str:
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ConfigError(key, f"expected a string, got {shown(value)}")
        return _text(value, key) if isinstance(value, str) else str(_in_int64(value, key))
    raise ConfigError(key, f"unsupported type {hint!r}")  # a programming error, caught by the tests


def _in_int64(value: int, key: str) -> int:
    if not -INT64_MAX <= value <= INT64_MAX:
        raise ConfigError(key, f"{shown(value)} is out of range (at most {INT64_MAX} either way)")
    return value


def _text(value: str, key: str) -> str:
    bad = _NO_FILE_CARRIES.search(value)
    if bad:
        raise ConfigError(key, f"{shown(value)} holds U+{ord(bad.group()):04X} at character {bad.start() + 1}, "
                               "which no file name, topic or C library carries")
    return value


def _duration(value: int | float, key: str) -> int | float:
    seconds = value / 1000 if key.endswith("_ms") else value if key.endswith("_s") else 0
    require(seconds <= MAX_DURATION_S, key, value, f"is longer than {MAX_DURATION_S:.0f} s (about 31 years)")
    return value


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """The fields' types, evaluated once per class (each evaluation compiles every annotation: a config with a
    thousand cameras spent most of its load here)."""
    return typing.get_type_hints(cls)
