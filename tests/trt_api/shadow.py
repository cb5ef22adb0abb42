"""A stand-in `tensorrt` module whose every class, enum, method, property and signature is NVIDIA's real
one for a given version, read from the real Python bindings, and whose return values come from a scenario.

The bindings import over stub libraries (stub_libs.c) and can do nothing, so nothing here calls into
them: attribute look-ups go to the real classes (a missing one raises AttributeError, as the real module
would: `hasattr` answers as on a machine with TensorRT), calls are checked against the pybind11
signatures in the real docstrings (arity, keyword names, argument types, every overload), property writes
against the real setters, and enum members are the real ones. What a call returns comes from a hook of
the scenario, else from the declared return type (a shadow of a TensorRT class, True, 0, None).
Every mismatch is raised into the code under test *and* recorded in ``problems``, so code that catches
exceptions cannot hide one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

MODULE = "tensorrt_bindings.tensorrt"


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    has_default: bool
    default_is_none: bool


@dataclass(frozen=True)
class Signature:
    params: tuple[Param, ...]      # without self
    returns: str


def _split_top(text: str, sep: str = ",") -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([<{":
            depth += 1
        elif ch in ")]>}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def _short(type_text: str) -> str:
    for prefix in (MODULE + ".", "tensorrt_rtx_bindings.tensorrt_rtx.", "tensorrt_rtx_bindings.", "tensorrt_bindings."):
        type_text = type_text.replace(prefix, "tensorrt.")     # TensorRT-RTX's types read as TensorRT's
    return type_text.strip()


def parse_signatures(doc: str | None, name: str) -> list[Signature]:
    """pybind11 docstring -> one Signature per overload. ``name`` is the function's name, or "" for a
    property getter/setter whose docstring reads "(arg0: X) -> int"."""
    if not doc:
        return []
    sigs = []
    for line in doc.splitlines():
        line = line.strip()
        m = re.match(r"^(?:\d+\.\s+)?" + re.escape(name) + r"\((.*)\)\s*->\s*(.+)$", line)
        if not m or m.group(1) == "*args, **kwargs":
            continue
        params = []
        for i, raw in enumerate(_split_top(m.group(1))):
            head, eq, default = raw.partition("=")
            pname, _, ptype = head.partition(":")
            params.append(Param(pname.strip(), _short(ptype), bool(eq), default.strip() == "None"))
        if params and (params[0].name in ("self", "arg0") and (name == "" or params[0].name == "self")):
            params = params[1:]
        sigs.append(Signature(tuple(params), _short(m.group(2))))
    return sigs


class ApiMismatch(TypeError):
    """A call or attribute the real bindings of this version do not have."""


class Recorder:
    def __init__(self, real_module, hooks: dict[str, Callable] | None = None):
        self.real = real_module
        self.hooks = dict(hooks or {})
        self.calls: list[tuple[str, tuple, dict]] = []
        self.problems: list[str] = []

    def fail(self, message: str, kind=ApiMismatch):
        self.problems.append(message)
        raise kind(message)

    def real_class(self, name: str):
        return getattr(self.real, name)


class Shadow:
    """An instance of a TensorRT class: real class for look-ups, scenario for values."""

    def __init__(self, rec: Recorder, cls_name: str, **state):
        object.__setattr__(self, "_rec", rec)
        object.__setattr__(self, "_cls_name", cls_name)
        object.__setattr__(self, "_state", dict(state))

    def __repr__(self) -> str:
        return f"<shadow {self._cls_name} {self._state.get('name', '')}>"

    def _real(self):
        return self._rec.real_class(self._cls_name)

    def __getattr__(self, attr: str):
        rec, cls = self._rec, self._real()
        if attr.startswith("__"):
            raise AttributeError(attr)
        member = _lookup(cls, attr)
        if member is None:
            rec.fail(f"{self._cls_name}.{attr} does not exist in TensorRT {rec.real.__version__}", AttributeError)
        qual = f"{self._cls_name}.{attr}"
        if isinstance(member, property):
            sigs = parse_signatures(member.fget.__doc__ if member.fget else None, "")
            rec.calls.append((qual, (), {}))
            if qual in rec.hooks:
                return rec.hooks[qual](self)
            if attr in self._state:
                return self._state[attr]
            return _default(rec, sigs[0].returns if sigs else "object")
        if callable(member) and not _is_enum_class(member):
            def method(*args, **kwargs):
                sigs = parse_signatures(member.__doc__, attr)
                check_call(rec, qual, sigs, args, kwargs)
                rec.calls.append((qual, args, kwargs))
                if qual in rec.hooks:
                    return rec.hooks[qual](self, *args, **kwargs)
                return _default(rec, sigs[0].returns if sigs else "object")
            return method
        return member      # nested enums and constants: the real thing

    def __setattr__(self, attr: str, value):
        rec, cls = self._rec, self._real()
        member = _lookup(cls, attr)
        qual = f"{self._cls_name}.{attr}"
        if not isinstance(member, property):
            rec.fail(f"{qual} is not a property in TensorRT {rec.real.__version__}", AttributeError)
        if member.fset is None:
            rec.fail(f"{qual} is read-only in TensorRT {rec.real.__version__}", AttributeError)
        sigs = parse_signatures(member.fset.__doc__, "")
        if sigs and sigs[0].params and not accepts(rec, sigs[0].params[0].type, value):
            rec.fail(f"{qual} = {value!r}: the setter takes {sigs[0].params[0].type}")
        rec.calls.append((qual + "=", (value,), {}))
        self._state[attr] = value


class ShadowClass:
    def __init__(self, rec: Recorder, name: str):
        self._rec, self._name = rec, name

    def __call__(self, *args, **kwargs):
        cls = self._rec.real_class(self._name)
        sigs = parse_signatures(cls.__init__.__doc__, "__init__")
        check_call(self._rec, f"{self._name}()", sigs, args, kwargs)
        self._rec.calls.append((f"{self._name}()", args, kwargs))
        hook = self._rec.hooks.get(f"{self._name}()")
        return hook(*args, **kwargs) if hook else Shadow(self._rec, self._name)

    def __getattr__(self, attr: str):
        cls = self._rec.real_class(self._name)
        if not hasattr(cls, attr):
            self._rec.fail(f"{self._name}.{attr} does not exist in TensorRT {self._rec.real.__version__}",
                           AttributeError)
        return getattr(cls, attr)


class ShadowModule:
    def __init__(self, rec: Recorder):
        self._rec = rec
        self.__version__ = rec.real.__version__

    def __getattr__(self, name: str):
        rec = self._rec
        if not hasattr(rec.real, name):
            rec.fail(f"tensorrt.{name} does not exist in TensorRT {rec.real.__version__}", AttributeError)
        value = getattr(rec.real, name)
        if isinstance(value, type) and not _is_enum_class(value):
            return ShadowClass(rec, name)
        return value       # enums, trt.nptype and other pure-Python helpers: the real ones


def check_call(rec: Recorder, qual: str, sigs: list[Signature], args: tuple, kwargs: dict) -> None:
    if not sigs:
        rec.fail(f"{qual}: no signature found in the real docstring")
    reasons = []
    for sig in sigs:
        why = _mismatch(rec, sig, args, kwargs)
        if why is None:
            return
        reasons.append(why)
    rec.fail(f"{qual}{_fmt(args, kwargs)} matches no signature of TensorRT {rec.real.__version__}: "
             + " | ".join(reasons))


def _mismatch(rec: Recorder, sig: Signature, args: tuple, kwargs: dict) -> str | None:
    params = sig.params
    if len(args) > len(params):
        return f"{len(args)} positional arguments for {len(params)} parameters"
    given = {p.name: a for p, a in zip(params, args)}
    for key, value in kwargs.items():
        if key not in {p.name for p in params}:
            return f"no parameter named {key!r}"
        if key in given:
            return f"{key!r} given twice"
        given[key] = value
    for p in params:
        if p.name not in given:
            if not p.has_default:
                return f"missing {p.name!r}"
            continue
        value = given[p.name]
        if value is None and p.default_is_none:
            continue
        if not accepts(rec, p.type, value):
            return f"{p.name!r} takes {p.type}, got {type(value).__name__}"
    return None


_BYTES = (bytes, bytearray, memoryview)


def accepts(rec: Recorder, type_text: str, value: Any) -> bool:
    t = type_text.strip()
    if "|" in t and "[" not in t:
        return any(accepts(rec, part, value) for part in t.split("|"))
    if t.startswith("typing.Optional[") or t.startswith("Optional["):
        return value is None or accepts(rec, t[t.index("[") + 1:-1], value)
    if t in ("int", "typing.SupportsInt"):
        return isinstance(value, int) or (hasattr(value, "__index__") and not isinstance(value, float))
    if t in ("float", "typing.SupportsFloat"):
        return isinstance(value, (int, float))
    if t == "bool":
        return isinstance(value, bool)
    if t == "str":
        return isinstance(value, str)
    if t in ("buffer", "bytes", "typing_extensions.Buffer", "collections.abc.Buffer"):
        return isinstance(value, _BYTES) or hasattr(value, "__array_interface__")
    if t == "None":
        return value is None
    if t.startswith(("typing.List[", "list[", "typing.Sequence[", "collections.abc.Sequence[")):
        return isinstance(value, (list, tuple))
    if t.startswith("tensorrt."):
        name = t.split(".", 1)[1]
        real = _resolve(rec.real, name)       # nested types too: tensorrt.ILogger.Severity
        if real is None:
            return False
        if name.startswith("Dims") and isinstance(value, (tuple, list)):
            return all(isinstance(d, int) for d in value)      # pybind converts a tuple of ints to Dims
        if isinstance(value, Shadow):
            return issubclass(value._real(), real)
        return isinstance(value, real)
    return True    # numpy arrays, capsules, object: not checked


def _resolve(module, dotted: str):
    value = module
    for part in dotted.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def _default(rec: Recorder, returns: str):
    if returns in ("bool",):
        return True
    if returns in ("int",):
        return 0
    if returns in ("None",):
        return None
    if returns.startswith("tensorrt."):
        name = returns.split(".", 1)[1]
        real = getattr(rec.real, name, None)
        if real is not None and not _is_enum_class(real):
            return Shadow(rec, name)
    return None


def _lookup(cls, attr: str):
    for klass in cls.__mro__:
        if attr in klass.__dict__:
            member = klass.__dict__[attr]
            return member if isinstance(member, property) else getattr(cls, attr)
    return None


def _is_enum_class(value) -> bool:
    return isinstance(value, type) and hasattr(value, "__members__")


def _fmt(args: tuple, kwargs: dict) -> str:
    inner = [type(a).__name__ if not isinstance(a, (int, str, bool)) else repr(a) for a in args]
    inner += [f"{k}={type(v).__name__}" for k, v in kwargs.items()]
    return "(" + ", ".join(inner) + ")"
