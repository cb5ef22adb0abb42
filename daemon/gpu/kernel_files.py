"""The prebuilt GPU kernels: kernels.cu compiled ahead of time into engines/kernels.sm<cc>.cubin, and the
JSON sidecar that says what it was built from.

A cubin holds machine code for one GPU architecture only, and means what its kernels.cu meant when it was
compiled. The sidecar records those facts at build time (`ocr-daemon build-kernels`); the daemon compares
them with this box before it loads the cubin, and so never needs nvcc. Everything here is pure apart from
the small file helpers, and nothing imports pycuda: CI tests it without a GPU.
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from daemon.atomic_write import write_atomic
from daemon.config import config_option

KERNELS_CU = Path(__file__).with_name("kernels.cu")


def build_command(config_path: str | None = None) -> str:
    """The build-kernels line a message suggests; ``config_path``: Config.source_path where known."""
    return f"ocr-daemon build-kernels {config_option(config_path)}"


BUILD_COMMAND = build_command()     # where no config is known
SIDECAR_KEYS = ("compute_capability", "arch", "kernels_cu_sha256", "cuda_toolkit_version",
                "driver_cuda_min", "cubin_sha256", "built_at")


class KernelFileError(Exception):
    """The kernels file cannot be used; str() names the file, every problem and the build command."""

    def __init__(self, path: Path, problems: list[str], config_path: str | None = None):
        self.path = path
        self.problems = problems
        super().__init__(f"GPU kernels {str(path)!r} cannot be used: {'; '.join(problems)}. "
                         f"Build them on this device with `{build_command(config_path)}`")


def arch_tag(compute_capability: str) -> str:
    """'8.7' -> '87' (nvcc's sm_87, the file's sm87)."""
    major, _, minor = str(compute_capability).partition(".")
    if not (major.isdigit() and minor.isdigit()):
        raise ValueError(f"compute capability {compute_capability!r} is not 'major.minor'")
    return f"{major}{minor}"


def kernels_filename(compute_capability: str) -> str:
    """kernels.sm87.cubin on a Jetson Orin, kernels.sm90.cubin on an H100/H200."""
    return f"kernels.sm{arch_tag(compute_capability)}.cubin"


def kernels_path(kernels_dir: str | Path, compute_capability: str) -> Path:
    return Path(kernels_dir) / kernels_filename(compute_capability)


def sidecar_path(cubin: str | Path) -> Path:
    """Beside its cubin: <cubin file>.json."""
    cubin = Path(cubin)
    return cubin.with_name(cubin.name + ".json")


def toolkit_release(nvcc_version_text: str) -> str:
    """'... Cuda compilation tools, release 12.6, V12.6.68 ...' -> '12.6'."""
    m = re.search(r"release (\d+)\.(\d+)", nvcc_version_text)
    if not m:
        raise ValueError(f"no CUDA release in nvcc's version text {nvcc_version_text.strip()!r}")
    return f"{m.group(1)}.{m.group(2)}"


def driver_cuda_min(toolkit_version: str) -> str:
    """The oldest driver CUDA version that loads a cubin from this toolkit: the first of its major release.
    Minor version compatibility (CUDA 11 on) lets SASS from toolkit X.y run on any X.* driver; only PTX
    JIT would need the toolkit's own version, and we ship no PTX
    (https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html)."""
    return f"{_version(toolkit_version)[0]}.0"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source_sha256() -> str:
    """sha256 of kernels.cu as installed beside this module."""
    return sha256_bytes(KERNELS_CU.read_bytes())


def make_kernels_sidecar(*, compute_capability: str, cuda_toolkit_version: str, kernels_cu_sha256: str,
                         cubin_sha256: str, gpu_name: str = "", built_at: datetime | None = None
                         ) -> dict[str, Any]:
    when = built_at or datetime.now(timezone.utc)
    return {
        "compute_capability": compute_capability,
        "arch": f"sm_{arch_tag(compute_capability)}",
        "kernels_cu_sha256": kernels_cu_sha256,
        "cuda_toolkit_version": cuda_toolkit_version,
        "driver_cuda_min": driver_cuda_min(cuda_toolkit_version),
        "cubin_sha256": cubin_sha256,
        "gpu_name": gpu_name,             # for people: a cubin serves every GPU of its architecture
        "built_at": when.isoformat(timespec="seconds"),
    }


def expected_kernels(compute_capability: str, driver_cuda_version: str,
                     kernels_cu_sha256: str | None = None) -> dict[str, Any]:
    """What a usable kernels sidecar must say on a box with this GPU and driver."""
    return {
        "compute_capability": compute_capability,
        "driver_cuda_version": driver_cuda_version,
        "kernels_cu_sha256": kernels_cu_sha256 if kernels_cu_sha256 is not None else source_sha256(),
    }


def expected_for_device(ctx) -> dict[str, Any]:
    """expected_kernels for the GPU and driver of ``ctx`` (a daemon.gpu.context.CudaContext)."""
    return expected_kernels(ctx.facts.compute_capability, ctx.driver_cuda_version)


def check_kernels(sidecar: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Every reason the cubin described by ``sidecar`` is not usable here, one readable line each; [] = usable.
    ``expected`` may carry "cubin_sha256" (of the file on disk) to catch a replaced or truncated cubin."""
    problems = [f"sidecar lacks {key!r}" for key in SIDECAR_KEYS if key not in sidecar]
    if "compute_capability" in sidecar and str(sidecar["compute_capability"]) != str(expected["compute_capability"]):
        problems.append(f"compute capability: built for {sidecar['compute_capability']!r}, "
                        f"this GPU is {expected['compute_capability']!r}")
    if "kernels_cu_sha256" in sidecar and sidecar["kernels_cu_sha256"] != expected["kernels_cu_sha256"]:
        problems.append(f"kernels.cu changed since the build (sha256 {str(sidecar['kernels_cu_sha256'])[:12]}... "
                        f"then, {str(expected['kernels_cu_sha256'])[:12]}... now)")
    if "driver_cuda_min" in sidecar:
        try:
            too_new = _version(sidecar["driver_cuda_min"]) > _version(expected["driver_cuda_version"])
        except ValueError as exc:
            problems.append(f"CUDA versions: {exc}")
        else:
            if too_new:
                problems.append(f"built by CUDA toolkit {sidecar.get('cuda_toolkit_version', '?')}, which needs a "
                                f"driver supporting CUDA {sidecar['driver_cuda_min']} or newer; this driver "
                                f"supports CUDA {expected['driver_cuda_version']}")
    if "cubin_sha256" in sidecar and "cubin_sha256" in expected and sidecar["cubin_sha256"] != expected["cubin_sha256"]:
        problems.append("the cubin's sha256 differs from its sidecar's (file replaced or truncated after the build)")
    return problems


def read_checked_cubin(kernels_dir: str | Path, expected: Mapping[str, Any],
                       config_path: str | None = None) -> tuple[Path, bytes]:
    """The cubin for this device from ``kernels_dir`` after checking its sidecar; KernelFileError otherwise
    (its build command names ``config_path`` where given)."""
    # absolute, so that a message from under systemd says where (relative paths resolve in its StateDirectory)
    path = kernels_path(Path(kernels_dir).absolute(), expected["compute_capability"])
    try:
        image = path.read_bytes()
    except FileNotFoundError:
        raise KernelFileError(path, ["missing"], config_path) from None
    except OSError as exc:
        raise KernelFileError(path, [f"cannot be read ({exc.strerror})"], config_path) from None
    try:
        sidecar = read_kernels_sidecar(sidecar_path(path))
    except ValueError as exc:
        raise KernelFileError(path, [str(exc)], config_path) from None
    problems = check_kernels(sidecar, {**expected, "cubin_sha256": sha256_bytes(image)})
    if problems:
        raise KernelFileError(path, problems, config_path)
    return path, image


def read_kernels_sidecar(path: str | Path) -> dict[str, Any]:
    """The sidecar as a dict; a missing or unreadable one raises ValueError saying so."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"its sidecar {Path(path).name!r} is missing") from None
    except OSError as exc:
        raise ValueError(f"its sidecar {Path(path).name!r} cannot be read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"its sidecar {Path(path).name!r} is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"its sidecar {Path(path).name!r} is not a JSON object")
    return data


def write_kernels(cubin_path: str | Path, image: bytes, sidecar: Mapping[str, Any]) -> None:
    """The cubin first, then its sidecar: an interrupted build leaves a sidecar that does not match
    (caught by cubin_sha256) or none, never a usable-looking pair that is wrong."""
    write_atomic(cubin_path, image)
    write_atomic(sidecar_path(cubin_path),
                 (json.dumps(dict(sidecar), indent=2, sort_keys=True) + "\n").encode("utf-8"))


def _version(text: Any) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)?", str(text).strip())
    if not m:
        raise ValueError(f"{text!r} is not a 'major.minor' version")
    return int(m.group(1)), int(m.group(2))
