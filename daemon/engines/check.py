"""Is the engine for a plan on disk, and does its sidecar match this box? Shared by the TensorRT
backend (which refuses to load a stale engine) and `doctor` (which reports it)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from daemon.backends.tensorrt.generation import TENSORRT, UnsupportedTensorRT, edition_named
from daemon.engines.plan import EnginePlan
from daemon.engines.sidecar import (DeviceInfo, check_sidecar, engine_file_problem, engine_path, expected_sidecar,
                                    read_sidecar, sha256_file, sidecar_path)


@dataclass(frozen=True)
class EngineCheck:
    plan: EnginePlan
    path: Path
    problems: tuple[str, ...]     # empty: the engine may be loaded
    notes: tuple[str, ...] = ()   # worth saying, not a reason to refuse it (no checksum recorded)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_engine(plan: EnginePlan, device: DeviceInfo, engines_dir: str | Path) -> EngineCheck:
    path = engine_path(engines_dir, plan.engine_stem, plan.precision, device)
    if not path.is_file():
        return EngineCheck(plan, path, (f"engine {str(path)!r} does not exist", *_other_editions(plan, device, path)))
    try:
        sidecar = read_sidecar(sidecar_path(path))
    except ValueError as exc:
        return EngineCheck(plan, path, (str(exc),))
    if not plan.source_onnx.is_file():
        return EngineCheck(plan, path, (f"its source model {str(plan.source_onnx)!r} does not exist",))
    expected = expected_sidecar(device, plan.precision, plan.input_shape, sha256_file(plan.source_onnx),
                                plan.head)
    # Hashing the engine (10-100 MB: well under a second) finds bytes that deserializing would choke on.
    corrupt, note = engine_file_problem(sidecar, path)
    return EngineCheck(plan, path, (*check_sidecar(sidecar, expected), *([corrupt] if corrupt else [])),
                       (note,) if note else ())


def _other_editions(plan: EnginePlan, device: DeviceInfo, wanted: Path) -> list[str]:
    """Engines for this model and precision that the other TensorRT edition built (their names differ, so
    they are never loaded): one line each saying so, for the operator who copied the wrong ones."""
    found = []
    for other in sorted(wanted.parent.glob(f"{plan.engine_stem}.{plan.precision}.*.engine")):
        try:
            edition = str(read_sidecar(sidecar_path(other)).get("tensorrt_edition", TENSORRT.name))
        except ValueError:
            continue
        if edition != device.tensorrt_edition:
            try:
                name = edition_named(edition).label
            except UnsupportedTensorRT:
                name = edition
            found.append(f"{other.name} beside it was built by {name}, which {device.tensorrt_label} cannot load")
    return found
