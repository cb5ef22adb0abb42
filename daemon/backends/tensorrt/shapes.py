"""Fixed shapes for TensorRT engines, as pure functions of the ONNX, the engine, its profile and the config.

The bundled PP-OCR models (and calibrate's Q/DQ copies) declare dynamic dims (-1 or a name). A build
with only a min = opt = max profile still yields an engine whose ``get_tensor_shape`` reports -1 for
them ("-1 in place of each dynamic runtime dimension", NvInferRuntime.h; NVIDIA/TensorRT issue 971).
So the build sets every network input to the config's shape first (``network_input_shape``): the
engine is then truly fixed. A loader that meets an engine with dynamic dims anyway (built elsewhere)
resolves them through its execution context (``resolve_input_shape`` says with which shape) and sizes
every buffer from the context's resolved shapes (``require_static``).
"""
from __future__ import annotations

from typing import Optional, Sequence

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """A shape the engine or model cannot take; the message names the tensor and both shapes."""


def is_static(shape: Sequence[int]) -> bool:
    return all(int(d) >= 0 for d in shape)


def network_input_shape(name: str, declared: Sequence[int], wanted: Sequence[int]) -> Shape:
    """The shape to give a parsed network input before building: the config's, where each declared dim
    is dynamic (-1) or already the same; a fixed dim that disagrees is an error."""
    declared, wanted = tuple(int(d) for d in declared), tuple(int(d) for d in wanted)
    if len(declared) != len(wanted) or any(d not in (-1, w) for d, w in zip(declared, wanted)):
        raise ShapeError(f"input {name!r} is declared {declared} in the ONNX; the config needs {wanted}")
    return wanted


def resolve_input_shape(name: str, engine_shape: Sequence[int], configured: Sequence[int],
                        profile: Optional[Sequence[Sequence[int]]] = None) -> tuple[Shape, bool]:
    """(shape, must_set): the input shape to run with and whether the execution context must be told
    it (``set_input_shape``) because the engine left some dims dynamic. ``profile`` is the engine's
    (min, opt, max) for this input in optimization profile 0, needed only when a dim is dynamic."""
    engine_shape, configured = tuple(int(d) for d in engine_shape), tuple(int(d) for d in configured)
    if len(engine_shape) != len(configured):
        raise ShapeError(f"input {name!r} has rank {len(engine_shape)} in the engine; the config feeds {configured}")
    if is_static(engine_shape):
        if engine_shape != configured:
            raise ShapeError(f"input {name!r} is fixed at {engine_shape} in the engine but the config needs {configured}")
        return engine_shape, False
    for i, (d, want) in enumerate(zip(engine_shape, configured)):
        if d >= 0 and d != want:
            raise ShapeError(f"input {name!r} dim {i} is {d} in the engine ({engine_shape}); the config needs {configured}")
    if profile is None or len(profile) != 3:
        raise ShapeError(f"input {name!r} is dynamic {engine_shape} and the engine has no optimization profile for it")
    lo, _, hi = (tuple(int(d) for d in p) for p in profile)
    if len(lo) != len(configured) or len(hi) != len(configured) or any(
            not (a <= w <= b) for a, w, b in zip(lo, configured, hi)):
        raise ShapeError(f"input {name!r}: the config's shape {configured} is outside the engine's profile "
                         f"(min {lo}, max {hi})")
    return configured, True


def require_static(name: str, shape: Sequence[int]) -> Shape:
    """A resolved IO shape; -1 left after set_input_shape means the engine cannot run at a fixed shape."""
    shape = tuple(int(d) for d in shape)
    if not is_static(shape):
        raise ShapeError(f"tensor {name!r} still has a dynamic shape {shape} after the input shape was set")
    return shape
