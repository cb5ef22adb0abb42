"""Everything that differs between the TensorRT generations this daemon supports, in one place.

| TensorRT | ships with | what differs here |
|---|---|---|
| 8.6 | JetPack 6.0 | `create_network(0)` means implicit batch, which the ONNX parser rejects: the EXPLICIT_BATCH flag is required; FP16/INT8 builder flags; shared context memory via `create_execution_context_without_device_memory` + the `device_memory` property |
| 10.3+ | JetPack 6.1/6.2, desktop | explicit batch only (flags 0); FP16/INT8 builder flags; `ExecutionContextAllocationStrategy.USER_MANAGED` + `set_device_memory(ptr, size)` sized by `device_memory_size_v2` |
| 11.x | desktop | always strongly typed: no FP16/INT8 builder flags, precision comes from the ONNX itself (an FP16 ONNX made here; INT8 = the Q/DQ ONNX with its float layers in FP16); the 10.x context-memory API |

Checked against NVIDIA's real Python bindings of 8.6.1, 10.3.0, 10.16.1.11 and 11.4.0.106 by
tests/test_tensorrt_bindings.py. Everything here is pure: functions of the version and the precision;
build.py and engine.py apply them to the live module.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SUPPORTED = "TensorRT 8.6, 10.3 or a later 10.x, or 11.x"

# Which ONNX a build parses: the FP32 model, an FP16 copy made by build-engine (IO kept float32),
# calibrate's Q/DQ model, or that Q/DQ model with its unquantized layers in FP16.
Source = Literal["fp32", "fp16", "qdq", "qdq_fp16"]


class UnsupportedTensorRT(RuntimeError):
    """A TensorRT version this daemon was not written and checked for."""


@dataclass(frozen=True)
class Generation:
    major: int
    minor: int

    @property
    def strongly_typed(self) -> bool:
        """TensorRT 11 networks are always strongly typed: tensor types come from the ONNX."""
        return self.major >= 11


@dataclass(frozen=True)
class BuildRecipe:
    explicit_batch_flag: bool           # pass 1 << EXPLICIT_BATCH to create_network (8.x only)
    builder_flags: tuple[str, ...]      # trt.BuilderFlag member names to set
    source: Source                      # which ONNX to parse


@dataclass(frozen=True)
class ContextMemoryApi:
    """How several execution contexts of one engine share one device memory block."""
    user_managed_strategy: bool     # 10+: create_execution_context(ExecutionContextAllocationStrategy.USER_MANAGED)
    size_attribute: str             # engine property with the block's size in bytes
    set_device_memory: bool         # 10+: context.set_device_memory(ptr, size); 8.6: context.device_memory = ptr


def generation(version: str) -> Generation:
    """'10.3.0' -> Generation(10, 3); refuses what this daemon was not written for."""
    parts = version.split(".")
    try:
        major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise UnsupportedTensorRT(f"TensorRT version {version!r} is not 'major.minor...'") from None
    if (major, minor) < (8, 6) or major == 9 or (major == 10 and minor < 3) or major > 11:
        raise UnsupportedTensorRT(f"TensorRT {version} is not supported; this daemon runs on {SUPPORTED}")
    return Generation(major, minor)


def build_recipe(gen: Generation, precision: str) -> BuildRecipe:
    """How to build an engine of ``precision`` ("fp32", "fp16" or "int8") on this generation.

    INT8 always comes from calibrate's Q/DQ ONNX (explicit quantization; no calibrator, which 10.1
    deprecated and 11 removed). Its unquantized layers run in FP16: on 8.6 and 10.x through the FP16
    flag beside INT8 (INT8 alone leaves them in FP32), on 11 through an FP16 copy of the Q/DQ model.
    """
    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError(f"precision {precision!r} is not fp32, fp16 or int8")
    explicit_batch = gen.major < 10
    if gen.strongly_typed:
        source: Source = {"fp32": "fp32", "fp16": "fp16", "int8": "qdq_fp16"}[precision]  # type: ignore[assignment]
        return BuildRecipe(explicit_batch, (), source)
    flags = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}[precision]
    return BuildRecipe(explicit_batch, flags, "qdq" if precision == "int8" else "fp32")


def network_flags(trt, recipe: BuildRecipe) -> int:
    """The create_network argument: a bit mask of NetworkDefinitionCreationFlag values."""
    if recipe.explicit_batch_flag:
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return 0


def context_memory_api(gen: Generation) -> ContextMemoryApi:
    if gen.major < 10:
        return ContextMemoryApi(user_managed_strategy=False, size_attribute="device_memory_size",
                                set_device_memory=False)
    return ContextMemoryApi(user_managed_strategy=True, size_attribute="device_memory_size_v2",
                            set_device_memory=True)
