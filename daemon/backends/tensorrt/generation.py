"""Everything that differs between the TensorRT generations this daemon supports, in one place.

| TensorRT | ships with | what differs here |
|---|---|---|
| 8.6 | JetPack 6.0 | `create_network(0)` means implicit batch, which the ONNX parser rejects: the EXPLICIT_BATCH flag is required; FP16/INT8 builder flags; shared context memory via `create_execution_context_without_device_memory` + the `device_memory` property |
| 10.3+ | JetPack 6.1/6.2, desktop | explicit batch only (flags 0); FP16/INT8 builder flags; `ExecutionContextAllocationStrategy.USER_MANAGED` + `set_device_memory(ptr, size)` sized by `device_memory_size_v2` |
| 11.x | desktop | always strongly typed: no FP16/INT8 builder flags, precision comes from the ONNX itself (an FP16 ONNX made here; INT8 = the Q/DQ ONNX with its float layers in FP16); the 10.x context-memory API |
| TensorRT-RTX 1.x | PyPI `tensorrt-rtx-cu12`, x86-64 PCs with an RTX GPU | a separate edition (module `tensorrt_rtx`) with TensorRT 11's API and recipe, plus a compute-capability target list: its builder needs no GPU, so an engine is built *for* a compute capability (this GPU's, or `--compute-capability` on a machine without it) and runs on any GPU of it (the runtime specializes on the device); no timing cache (a no-op since 1.7) |

An engine of one edition never loads in the other: engine names (`.trt<version>` / `.rtx<version>`) and
sidecars (`tensorrt_edition`) say which built it. Checked against NVIDIA's real Python bindings of 8.6.1,
10.3.0, 10.16.1.11 and 11.4.0.106 by tests/test_tensorrt_bindings.py, and TensorRT-RTX's real parser and
builder by tests/test_tensorrt_rtx_build.py. Everything here is pure: functions of the edition, the
version and the precision; build.py and engine.py apply them to the live module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Which ONNX a build parses: the FP32 model, an FP16 copy made by build-engine (IO kept float32),
# calibrate's Q/DQ model, or that Q/DQ model with its unquantized layers in FP16.
Source = Literal["fp32", "fp16", "qdq", "qdq_fp16"]


class UnsupportedTensorRT(RuntimeError):
    """A TensorRT version or edition this daemon was not written and checked for."""


@dataclass(frozen=True)
class Edition:
    name: str           # in sidecars ("tensorrt_edition") and GpuFacts
    label: str          # in messages: "TensorRT 10.3.0", "TensorRT-RTX 1.7.1.116"
    module: str         # what `import` takes
    file_tag: str       # engine file names end .<file_tag><version>.engine
    supported: str      # the versions this daemon runs on, for messages
    # TensorRT tunes an engine for the exact GPU that built it (two Orin modules of one compute capability
    # differ); TensorRT-RTX builds for a compute capability and specializes on the device when it runs.
    device_specific: bool
    install: str        # where to get it, for doctor


TENSORRT = Edition("tensorrt", "TensorRT", "tensorrt", "trt", "TensorRT 8.6, 10.3 or a later 10.x, or 11.x",
                   device_specific=True,
                   install="on a Jetson: `sudo apt install nvidia-jetpack` (JetPack 6.0 has TensorRT 8.6, 6.1/6.2 "
                           "TensorRT 10.3); elsewhere NVIDIA's TensorRT 10 or 11 Python wheel")
TENSORRT_RTX = Edition("tensorrt-rtx", "TensorRT-RTX", "tensorrt_rtx", "rtx", "TensorRT-RTX 1.x",
                       device_specific=False,
                       install="on an x86-64 PC with an RTX GPU: `pip install tensorrt-rtx-cu12` (no aarch64 "
                               "wheels: not on a Jetson)")
# The order the daemon looks for them: TensorRT (every Jetson has it) before TensorRT-RTX.
EDITIONS = (TENSORRT, TENSORRT_RTX)
SUPPORTED = f"{TENSORRT.supported}; or {TENSORRT_RTX.supported}"


def edition_named(name: str) -> Edition:
    for e in EDITIONS:
        if e.name == name:
            return e
    raise UnsupportedTensorRT(f"TensorRT edition {name!r} is not one of {', '.join(e.name for e in EDITIONS)}")


@dataclass(frozen=True)
class TensorRTInstall:
    """An importable TensorRT edition as found on this box."""
    edition: Edition
    version: str
    # compute capabilities its builder can target ("8.9", ...); empty: any the version supports (TensorRT)
    compute_capabilities: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.edition.label} {self.version}"

    def runs_on(self, compute_capability: str) -> bool:
        return not self.compute_capabilities or compute_capability in self.compute_capabilities


@dataclass(frozen=True)
class Generation:
    major: int
    minor: int
    edition: Edition = field(default=TENSORRT)

    @property
    def api_major(self) -> int:
        """The TensorRT API generation: TensorRT-RTX 1.x has TensorRT 11's."""
        return 11 if self.edition == TENSORRT_RTX else self.major

    @property
    def strongly_typed(self) -> bool:
        """TensorRT 11 networks are always strongly typed: tensor types come from the ONNX."""
        return self.api_major >= 11


@dataclass(frozen=True)
class BuildRecipe:
    explicit_batch_flag: bool           # pass 1 << EXPLICIT_BATCH to create_network (8.x only)
    builder_flags: tuple[str, ...]      # trt.BuilderFlag member names to set
    source: Source                      # which ONNX to parse
    compute_capability_target: bool = False     # TensorRT-RTX: set the one compute capability built for
    timing_cache: bool = True           # attach engines.timing_cache (TensorRT-RTX 1.7: a deprecated no-op)


@dataclass(frozen=True)
class ContextMemoryApi:
    """How several execution contexts of one engine share one device memory block."""
    user_managed_strategy: bool     # 10+: create_execution_context(ExecutionContextAllocationStrategy.USER_MANAGED)
    size_attribute: str             # engine property with the block's size in bytes
    set_device_memory: bool         # 10+: context.set_device_memory(ptr, size); 8.6: context.device_memory = ptr


def generation(version: str, edition: Edition = TENSORRT) -> Generation:
    """'10.3.0' -> Generation(10, 3); ('1.7.1.116', TENSORRT_RTX) -> Generation(1, 7, TENSORRT_RTX); refuses
    what this daemon was not written for."""
    parts = version.split(".")
    try:
        major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise UnsupportedTensorRT(f"{edition.label} version {version!r} is not 'major.minor...'") from None
    if edition == TENSORRT_RTX:
        ok = major == 1
    else:
        ok = not ((major, minor) < (8, 6) or major == 9 or (major == 10 and minor < 3) or major > 11)
    if not ok:
        raise UnsupportedTensorRT(f"{edition.label} {version} is not supported; this daemon runs on {SUPPORTED}")
    return Generation(major, minor, edition)


def build_recipe(gen: Generation, precision: str) -> BuildRecipe:
    """How to build an engine of ``precision`` ("fp32", "fp16" or "int8") on this generation.

    INT8 always comes from calibrate's Q/DQ ONNX (explicit quantization; no calibrator, which 10.1
    deprecated and 11 removed). Its unquantized layers run in FP16: on 8.6 and 10.x through the FP16
    flag beside INT8 (INT8 alone leaves them in FP32), on 11 and TensorRT-RTX through an FP16 copy of
    the Q/DQ model.
    """
    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError(f"precision {precision!r} is not fp32, fp16 or int8")
    explicit_batch = gen.api_major < 10
    if gen.strongly_typed:
        source: Source = {"fp32": "fp32", "fp16": "fp16", "int8": "qdq_fp16"}[precision]  # type: ignore[assignment]
        rtx = gen.edition == TENSORRT_RTX
        return BuildRecipe(explicit_batch, (), source, compute_capability_target=rtx, timing_cache=not rtx)
    flags = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}[precision]
    return BuildRecipe(explicit_batch, flags, "qdq" if precision == "int8" else "fp32")


def network_flags(trt, recipe: BuildRecipe) -> int:
    """The create_network argument: a bit mask of NetworkDefinitionCreationFlag values."""
    if recipe.explicit_batch_flag:
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return 0


def context_memory_api(gen: Generation) -> ContextMemoryApi:
    if gen.api_major < 10:
        return ContextMemoryApi(user_managed_strategy=False, size_attribute="device_memory_size",
                                set_device_memory=False)
    return ContextMemoryApi(user_managed_strategy=True, size_attribute="device_memory_size_v2",
                            set_device_memory=True)


# ---- TensorRT-RTX compute capabilities: "8.9" <-> ComputeCapability.SM89 ----

def compute_capability_member(compute_capability: str) -> str:
    """'8.9' -> 'SM89', '12.0' -> 'SM120': the ComputeCapability member that targets it."""
    major, _, minor = compute_capability.partition(".")
    if not (major.isdigit() and minor.isdigit() and len(minor) == 1):
        raise ValueError(f"compute capability {compute_capability!r} is not 'major.minor' (e.g. 8.9)")
    return f"SM{int(major)}{minor}"


def target_compute_capabilities(member_names) -> tuple[str, ...]:
    """The compute capabilities a ComputeCapability enum can target, from its member names
    ('SM75', 'SM120'; NONE and CURRENT are not targets): ('7.5', '12.0')."""
    found = []
    for name in member_names:
        digits = name[2:]
        if name.startswith("SM") and digits.isdigit() and len(digits) >= 2:
            found.append(f"{int(digits[:-1])}.{digits[-1]}")
    return tuple(sorted(found, key=lambda cc: tuple(int(p) for p in cc.split("."))))


def build_refusal_hint(gen: Generation, compute_capability: str, precision: str) -> str:
    """Why a build that the builder refused is known to fail, and the way out; "" when not known.
    TensorRT-RTX 1.7 compiles no FP32 matrix multiply for Turing (its log: "Cannot compile operation
    'MatMul' for Turing (SM75): FP32 GEMM is not supported"): the recognizer and the classifier have one."""
    if gen.edition == TENSORRT_RTX and compute_capability == "7.5" and precision == "fp32":
        return (f"{gen.edition.label} builds no FP32 matrix multiply for Turing (compute capability 7.5): "
                f"build fp16 or int8 engines for it")
    return ""
