"""Is the engine for a plan on disk, and does its sidecar match this box? Shared by the TensorRT
backend (which refuses to load a stale engine) and `doctor` (which reports it)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from daemon.engines.plan import EnginePlan
from daemon.engines.sidecar import (DeviceInfo, check_sidecar, engine_path, expected_sidecar, read_sidecar,
                                    sha256_file, sidecar_path)


@dataclass(frozen=True)
class EngineCheck:
    plan: EnginePlan
    path: Path
    problems: tuple[str, ...]     # empty: the engine may be loaded

    @property
    def ok(self) -> bool:
        return not self.problems


def check_engine(plan: EnginePlan, device: DeviceInfo, engines_dir: str | Path) -> EngineCheck:
    path = engine_path(engines_dir, plan.engine_stem, plan.precision, device)
    if not path.is_file():
        return EngineCheck(plan, path, (f"engine {str(path)!r} does not exist",))
    try:
        sidecar = read_sidecar(sidecar_path(path))
    except ValueError as exc:
        return EngineCheck(plan, path, (str(exc),))
    if not plan.source_onnx.is_file():
        return EngineCheck(plan, path, (f"its source model {str(plan.source_onnx)!r} does not exist",))
    expected = expected_sidecar(device, plan.precision, plan.input_shape, sha256_file(plan.source_onnx))
    return EngineCheck(plan, path, tuple(check_sidecar(sidecar, expected)))
