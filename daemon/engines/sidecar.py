"""Engine file names and their JSON sidecars: which GPU, TensorRT edition and version and ONNX an engine
was built from.

An engine only runs on the GPU architecture and TensorRT edition and version it was built with, and only
means what its source ONNX meant. The sidecar records those facts at build time; loading compares them
with this box and refuses a stale or foreign engine. A TensorRT engine is tied to the exact GPU that built
it; a TensorRT-RTX engine to its compute capability only (it may be built on a machine without that GPU,
or without any). Everything here is pure apart from the two small file helpers.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from daemon.atomic_write import write_atomic
from daemon.backends.tensorrt.generation import TENSORRT, UnsupportedTensorRT, edition_named
from daemon.ocr.rec_head import MODEL

SIDECAR_KEYS = ("tensorrt_version", "gpu_name", "compute_capability", "multiprocessors", "total_memory_mib",
                "precision", "input_shapes", "onnx_sha256", "built_at")
# Written since TensorRT-RTX; a sidecar without them is TensorRT's (the only edition before) and says
# nothing about outputs, which only inform. "head" since the recognizer's top-3 head: without it, an engine of the
# model's own outputs (daemon/ocr/rec_head.py). "engine_sha256" since doctor was shown a truncated engine as
# matching: the engine file's own bytes, so a corrupt or replaced one is refused before deserializing.
LATER_KEYS = ("tensorrt_edition", "output_shapes", "head", "engine_sha256")


@dataclass(frozen=True)
class DeviceInfo:
    """What an engine is tied to on the box that builds or loads it. A TensorRT-RTX engine built on a
    machine without its GPU has only the compute capability: the GPU's name, SMs and memory are None."""
    gpu_name: str | None        # e.g. "NVIDIA H100 80GB HBM3", "Orin"
    compute_capability: str     # "major.minor", e.g. "8.7" on Jetson Orin
    tensorrt_version: str       # trt.__version__, e.g. "10.3.0", "1.7.1.116" (TensorRT-RTX)
    # Orin modules all report the name "Orin" and compute capability 8.7; the SM count and the memory
    # tell an Orin Nano 4GB (4 SMs) from an 8GB one or an Orin NX/AGX, whose tuned kernels differ.
    multiprocessors: int | None
    total_memory_mib: int | None
    tensorrt_edition: str = TENSORRT.name   # generation.Edition.name: "tensorrt" or "tensorrt-rtx"

    @property
    def tensorrt_label(self) -> str:
        """'TensorRT 10.3.0', 'TensorRT-RTX 1.7.1.116'."""
        return f"{edition_named(self.tensorrt_edition).label} {self.tensorrt_version}"


def sm_tag(compute_capability: str) -> str:
    """'8.7' -> 'sm87': the architecture part of an engine's file name."""
    major, _, minor = compute_capability.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        raise ValueError(f"compute capability {compute_capability!r} is not 'major.minor'")
    return f"sm{major}{minor}"


def engine_filename(engine_stem: str, precision: str, device: DeviceInfo) -> str:
    """engines/<model>.b<batch>.<precision>.sm<cc>.<edition tag><version>.engine, e.g.
    ch_PP-OCRv4_det_infer.b1.int8.sm87.trt10.3.0.engine (TensorRT) or
    ch_PP-OCRv4_det_infer.b1.int8.sm89.rtx1.7.1.116.engine (TensorRT-RTX); engine_stem: EnginePlan.engine_stem."""
    tag = edition_named(device.tensorrt_edition).file_tag
    return f"{engine_stem}.{precision}.{sm_tag(device.compute_capability)}.{tag}{device.tensorrt_version}.engine"


def engine_path(engines_dir: str | Path, engine_stem: str, precision: str, device: DeviceInfo) -> Path:
    return Path(engines_dir) / engine_filename(engine_stem, precision, device)


def sidecar_path(engine: str | Path) -> Path:
    """The sidecar sits beside its engine: <engine file>.json."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def make_sidecar(device: DeviceInfo, precision: str, input_shapes: Mapping[str, Sequence[int]],
                 onnx_sha256: str, built_at: datetime | None = None,
                 output_shapes: Mapping[str, Sequence[int]] | None = None, head: str = MODEL,
                 engine_sha256: str | None = None) -> dict[str, Any]:
    """``output_shapes``: the network's outputs as the build saw them (informational, never compared). ``head``:
    the outputs the engine was built with (rec_head.py): part of what it means, like the source's sha256.
    ``engine_sha256``: of the engine file itself, when there is one (not for expected_sidecar)."""
    when = built_at or datetime.now(timezone.utc)
    sidecar = {
        "tensorrt_edition": device.tensorrt_edition,
        "tensorrt_version": device.tensorrt_version,
        "gpu_name": device.gpu_name,
        "compute_capability": device.compute_capability,
        "multiprocessors": device.multiprocessors,
        "total_memory_mib": device.total_memory_mib,
        "precision": precision,
        "input_shapes": {name: [int(d) for d in shape] for name, shape in input_shapes.items()},
        "output_shapes": {name: [int(d) for d in shape] for name, shape in (output_shapes or {}).items()},
        "onnx_sha256": onnx_sha256,
        "head": head,
        "built_at": when.isoformat(timespec="seconds"),
    }
    if engine_sha256 is not None:
        sidecar["engine_sha256"] = engine_sha256
    return sidecar


def expected_sidecar(device: DeviceInfo, precision: str, input_shape: Sequence[int], onnx_sha256: str,
                     head: str = MODEL) -> dict[str, Any]:
    """What a usable engine's sidecar must say on this box; the input is named "*" because the daemon
    feeds its models' single image input by position, so only the shape matters."""
    return make_sidecar(device, precision, {"*": input_shape}, onnx_sha256, head=head)


def check_sidecar(sidecar: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Every way ``sidecar`` disagrees with ``expected``, one readable line each; [] means usable.

    The GPU name, SM count and memory are compared as well as the compute capability: two GPUs of one
    architecture (every Jetson Orin module is "Orin", 8.7) still differ in SMs and memory, and TensorRT
    tunes kernels for the exact device. TensorRT-RTX engines are for a compute capability, so those three
    are not compared for them. An engine of the other edition is one problem, whatever else differs.
    """
    built_by = str(sidecar.get("tensorrt_edition", TENSORRT.name))
    wanted = str(expected.get("tensorrt_edition", TENSORRT.name))
    if built_by != wanted:
        return [f"TensorRT edition: engine built by {_label(built_by, sidecar.get('tensorrt_version'))}, which "
                f"{_label(wanted, expected.get('tensorrt_version'))} on this box cannot load"]
    problems = [f"sidecar lacks {key!r}" for key in SIDECAR_KEYS if key not in sidecar]
    labels = {
        "tensorrt_version": "TensorRT version",
        "gpu_name": "GPU",
        "compute_capability": "compute capability",
        "multiprocessors": "SM count",
        "total_memory_mib": "GPU memory (MiB)",
        "precision": "precision",
        "onnx_sha256": "source ONNX sha256",
        "head": "outputs",
    }
    if not edition_named(wanted).device_specific:
        for key in ("gpu_name", "multiprocessors", "total_memory_mib"):
            labels.pop(key)
    sidecar = {"head": MODEL, **sidecar}      # written before the top-3 head: the model's own outputs
    for key, label in labels.items():
        if key in sidecar and key in expected and str(sidecar[key]) != str(expected[key]):
            problems.append(f"{label}: engine built for {sidecar[key]!r}, this box has {expected[key]!r}")
    if "input_shapes" in sidecar and "input_shapes" in expected:
        got = _shapes(sidecar["input_shapes"])
        want = _shapes(expected["input_shapes"])
        if got is None:
            problems.append(f"input shapes: sidecar value {sidecar['input_shapes']!r} is not a name -> shape map")
        elif want is not None and got != want:
            problems.append(f"input shapes: engine built for {got}, the config needs {want}")
    return problems


def _label(edition: str, version: Any) -> str:
    try:
        name = edition_named(edition).label
    except UnsupportedTensorRT:     # an edition this daemon does not know: its name as written
        name = edition
    return f"{name} {version}" if version else name


def _shapes(value: Any) -> list[list[int]] | None:
    if not isinstance(value, Mapping):
        return None
    try:
        return sorted([int(d) for d in shape] for shape in value.values())
    except (TypeError, ValueError):
        return None


def engine_file_problem(sidecar: Mapping[str, Any], engine: str | Path) -> tuple[str, str]:
    """(problem, note) about the engine file's own bytes against its sidecar's sha256; both "" when they agree.
    A sidecar written before the checksum was recorded gives a note, not a problem: the engine may be fine."""
    recorded = sidecar.get("engine_sha256")
    if not recorded:
        return "", "no checksum recorded (built before sidecars recorded one): rebuild to record one"
    if sha256_file(engine) != str(recorded):
        return (f"{Path(engine).name} is corrupt: its sha256 differs from its sidecar's (truncated, damaged or "
                f"replaced since the build)", "")
    return "", ""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The sidecar as a dict; a missing or unreadable one raises ValueError with the path."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"engine sidecar {str(path)!r} cannot be read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"engine sidecar {str(path)!r} is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"engine sidecar {str(path)!r} is not a JSON object")
    return data


def write_sidecar(path: str | Path, sidecar: Mapping[str, Any]) -> None:
    write_atomic(path, (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode("utf-8"))
