"""Reading config.yaml within bounds: the file (size, encoding, characters), then its YAML (nesting, values with
aliases expanded, number length, duplicate keys), so that a hostile or broken file ends in one ConfigError line."""
from __future__ import annotations

import os
import re
from typing import Any, Optional

import yaml

from daemon.config.errors import ConfigError, join, key_text, shown
from daemon.config.files import read_regular_file

# The file, its YAML and the secrets a config names are read within these bounds, so that a hostile or broken file
# ends in one ConfigError line within a second and a few MiB, never a traceback, a hang or a memory climb.
# A real config is a few KiB, 4 levels deep, and about 60 values a camera with every key written out.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_YAML_DEPTH = 32
MAX_YAML_VALUES = 10_000   # keys and values, each alias as what it copies: what the walk and the checks visit
# A number no setting can hold (int64 has 19 digits); PyYAML would build any size, and int() refuses 4300 digits.
MAX_NUMBER_CHARS = 64
# What the YAML reader accepts (YAML 1.1's printable set); anything else is named with its line and column.
_NOT_YAML_TEXT = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_config_text(path: str | os.PathLike) -> str:
    """The config file's text: a regular file of at most MAX_CONFIG_BYTES, UTF-8 (a UTF-8 byte order mark is
    skipped), only characters YAML accepts."""
    data = read_regular_file("", path, MAX_CONFIG_BYTES, "the file")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError("", "the file is UTF-16 or UTF-32 (it starts with that byte order mark); save it as UTF-8")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError("", f"line {line}: byte 0x{data[exc.start]:02x} is not UTF-8; save the file as UTF-8") \
            from None
    bad = _NOT_YAML_TEXT.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        hint = " (a UTF-16 file without a byte order mark?)" if bad.group() == "\0" else ""
        raise ConfigError("", f"line {line}, column {column}: character U+{ord(bad.group()):04X} is not allowed "
                              f"in YAML{hint}")
    return text


class _YamlShape:
    """One pass over the YAML events, before anything is built: bounds the nesting, the values with every alias
    expanded (a "billion laughs" is refused at its first level over the bound, not after 10^9 copies) and the
    length of numbers, refuses a key given twice in one mapping (YAML would keep the second silently), and knows
    the key path of the event it is at, for the message."""

    class _Frame:
        __slots__ = ("is_map", "children", "key", "start", "anchor", "depth_below", "lines")

        def __init__(self, is_map: bool, start: int, anchor: Optional[str]):
            self.is_map, self.children, self.key = is_map, 0, "?"
            self.start, self.anchor, self.depth_below = start, anchor, 0
            self.lines: dict[tuple[str, str], int] = {}   # a mapping's scalar keys (tag, text) -> line

    def __init__(self):
        self.stack: list[_YamlShape._Frame] = []
        self.anchors: dict[str, tuple[int, int]] = {}   # name -> (values it expands to, its depth)
        self.values = 0
        self.resolver = yaml.resolver.Resolver()

    def path(self) -> str:
        """The key path of the next event's position ("cameras[0].uri"); a key's own map while at a key."""
        parts = []
        for frame in self.stack:
            if not frame.is_map:
                parts.append(f"[{frame.children}]")
            elif frame.children % 2:
                parts.append(f".{frame.key}" if parts else frame.key)
            else:
                break
        return "".join(parts)

    def error(self, message: str) -> ConfigError:
        return ConfigError(self.path(), message)

    def walk(self, text: str, stop_at: Optional[tuple[int, int]] = None) -> Optional[str]:
        """Checks the bounds over the whole text (raising ConfigError); with stop_at (line, column), the key path
        of the node that starts there instead."""
        try:
            for event in yaml.parse(text, Loader=_YAML_LOADER):
                if stop_at is not None and (event.start_mark.line, event.start_mark.column) == stop_at:
                    return self.path()
                self._take(event)
        except yaml.YAMLError as exc:
            raise self.error(_yaml_problem(exc)) from None
        return None

    def _take(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.ScalarEvent):
            self._check_number(event)
            self._check_key_once(event)
            self._count(1)
            if event.anchor:
                self.anchors[event.anchor] = (1, 0)
            self._done(0, event.value)
        elif isinstance(event, yaml.AliasEvent):
            if any(f.anchor == event.anchor for f in self.stack):
                raise self.error(f"alias *{key_text(event.anchor)} refers to a collection it is in (endless)")
            size, depth = self.anchors.get(event.anchor, (1, 0))
            if len(self.stack) + depth > MAX_YAML_DEPTH:
                raise self.error(f"alias *{key_text(event.anchor)} nests values over {MAX_YAML_DEPTH} levels deep")
            self._count(size)
            self._done(depth, None)
        elif isinstance(event, yaml.CollectionStartEvent):
            if len(self.stack) >= MAX_YAML_DEPTH:
                raise self.error(f"values are nested more than {MAX_YAML_DEPTH} levels deep")
            self._count(1)
            self.stack.append(self._Frame(isinstance(event, yaml.MappingStartEvent), self.values - 1, event.anchor))
        elif isinstance(event, yaml.CollectionEndEvent):
            frame = self.stack.pop()
            size, depth = self.values - frame.start, frame.depth_below + 1
            if frame.anchor:
                self.anchors[frame.anchor] = (size, depth)
            self._done(depth, None)

    def _count(self, n: int) -> None:
        self.values += n
        if self.values > MAX_YAML_VALUES:
            raise self.error(f"the file holds more than {MAX_YAML_VALUES} keys and values "
                             "(each alias counted as what it copies)")

    def _done(self, depth: int, scalar: Optional[str]) -> None:
        """A node ended: it is its parent's next child (a key or a value in a mapping)."""
        if not self.stack:
            return
        parent = self.stack[-1]
        if parent.is_map and parent.children % 2 == 0:
            parent.key = key_text(scalar) if scalar is not None else "?"
        parent.children += 1
        parent.depth_below = max(parent.depth_below, depth)

    def _check_key_once(self, event: yaml.ScalarEvent) -> None:
        """A scalar in a mapping's key position is not a key that mapping already has (a merge key, <<, may
        repeat: each merges its own mapping)."""
        if not self.stack or not self.stack[-1].is_map or self.stack[-1].children % 2:
            return
        tag = self._tag(event)
        if tag == "tag:yaml.org,2002:merge":
            return
        lines, key, line = self.stack[-1].lines, (tag, event.value), event.start_mark.line + 1
        if key in lines:
            where = f"on lines {lines[key]} and {line}" if lines[key] != line else f"on line {line}"
            raise ConfigError(join(self.path(), key_text(event.value)),
                              f"is given twice in one mapping, {where}; YAML would keep only the second")
        lines[key] = line

    def _tag(self, event: yaml.ScalarEvent) -> str:
        """The scalar's resolved tag: `yes` (a boolean) and `'yes'` (a string) are different keys."""
        if event.tag and event.tag != "!":
            return event.tag
        if event.implicit[0]:
            return self.resolver.resolve(yaml.ScalarNode, event.value, (True, False))
        return "tag:yaml.org,2002:str"

    def _check_number(self, event: yaml.ScalarEvent) -> None:
        if len(event.value) <= MAX_NUMBER_CHARS:
            return
        tag = event.tag if not event.implicit[0] else self.resolver.resolve(yaml.ScalarNode, event.value, (True, False))
        if tag in _NUMBER_TAGS:
            raise self.error(f"a number of {len(event.value)} characters ({shown(event.value)}); "
                             f"no setting takes one over {MAX_NUMBER_CHARS}")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error as one line: where it is and what is wrong."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    what = ", ".join(p for p in parts if p) or str(exc).splitlines()[0]
    return f"{where}not valid YAML: {what}"


class _BoundedLoader(_YAML_LOADER):
    """The safe loader whose value constructors cannot escape with a bare exception: a timestamp like 2024-13-45
    (ValueError), a bad !!timestamp (AttributeError) or the like becomes a ConstructorError with its position."""

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, AttributeError, OverflowError, RecursionError, LookupError) as exc:
            raise yaml.constructor.ConstructorError(None, None, f"cannot read {node.tag.rsplit(':', 1)[-1]} "
                                                    f"{shown(getattr(node, 'value', ''))} ({exc})",
                                                    node.start_mark) from None


def parse_yaml(text: str) -> Any:
    """The YAML document as Python data, or a ConfigError naming the key path (and line) of the first problem."""
    _YamlShape().walk(text)
    try:
        return yaml.load(text, Loader=_BoundedLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        key = _YamlShape().walk(text, (mark.line, mark.column)) if mark is not None else ""
        raise ConfigError(key or "", _yaml_problem(exc)) from None
    except (ValueError, TypeError, AttributeError, OverflowError, RecursionError, LookupError) as exc:
        raise ConfigError("", f"not valid YAML: {exc}") from None   # outside any one value: a bug in PyYAML
