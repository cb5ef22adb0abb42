"""Kernels compiled ahead of time, on the GPU machine: build the cubin into a temporary engines directory,
then load it the way the daemon under systemd does (PATH=/usr/bin:/bin, so no nvcc; no home directory,
so no pycuda cache) and check the letterbox kernel against the CPU pre-processing. Stale and unloadable
cubins are refused with the build command. Skips without pycuda and a GPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daemon.gpu import pycuda_available

_OK, _WHY = pycuda_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _OK, reason=f"needs pycuda and an NVIDIA GPU: {_WHY}")]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ctx():
    from daemon.gpu.context import CudaContext

    return CudaContext()


@pytest.fixture(scope="module")
def built(ctx, tmp_path_factory) -> Path:
    from daemon.gpu.kernel_build import build_kernels

    return build_kernels(tmp_path_factory.mktemp("engines"), ctx)


def copy_kernels(built: Path, to: Path) -> Path:
    from daemon.gpu.kernel_files import sidecar_path

    to.mkdir(parents=True, exist_ok=True)
    (to / built.name).write_bytes(built.read_bytes())
    sidecar_path(to / built.name).write_bytes(sidecar_path(built).read_bytes())
    return to / built.name


def test_build_writes_a_cubin_and_sidecar_for_this_gpu(ctx, built):
    from daemon.gpu.kernel_files import (check_kernels, expected_for_device, read_kernels_sidecar, sha256_bytes,
                                         sidecar_path, source_sha256)

    major, minor = ctx.facts.compute_capability.split(".")
    assert built.name == f"kernels.sm{major}{minor}.cubin"
    image = built.read_bytes()
    assert image[:4] == b"\x7fELF"          # a cubin is an ELF image
    side = read_kernels_sidecar(sidecar_path(built))
    print(json.dumps(side, indent=2))
    assert side["arch"] == f"sm_{major}{minor}" and side["compute_capability"] == ctx.facts.compute_capability
    assert side["kernels_cu_sha256"] == source_sha256() and side["cubin_sha256"] == sha256_bytes(image)
    assert check_kernels(side, {**expected_for_device(ctx), "cubin_sha256": sha256_bytes(image)}) == []
    assert sorted(p.name for p in built.parent.iterdir()) == [built.name, built.name + ".json"]


_DAEMON_SIDE = textwrap.dedent("""
    import json, shutil, sys
    import numpy as np
    from daemon.gpu.context import CudaContext
    from daemon.gpu.letterbox import GpuLetterbox
    from daemon.ocr.det_pre import preprocess_det
    import pycuda.driver as cuda

    ctx = CudaContext(kernels_dir=sys.argv[1])
    frame = np.random.default_rng(7).integers(0, 256, (960, 1280, 3), dtype=np.uint8)
    want, _ = preprocess_det(frame, 736, 960)
    diffs = {}
    for zero_copy in (False, True):
        lb = GpuLetterbox(ctx, 736, 960, zero_copy=zero_copy)
        with ctx.active():
            stream = cuda.Stream()
            dst = cuda.mem_alloc(want.nbytes)
            lb.enqueue(frame, int(dst), stream)
            stream.synchronize()
            got = np.empty_like(want)
            cuda.memcpy_dtoh(got, dst)
        diffs["zero_copy" if zero_copy else "upload"] = float(np.abs(got - want).max())
    print(json.dumps({"nvcc_on_path": shutil.which("nvcc"), "max_abs_diff": diffs,
                      "pycuda_compiler_imported": "pycuda.compiler" in sys.modules}))
""")


def test_the_daemon_loads_the_prebuilt_cubin_with_no_nvcc_on_path(built, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "no-home"), "PYTHONNOUSERSITE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    for key in ("CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH"):
        if key in os.environ:
            env[key] = os.environ[key]
    proc = subprocess.run([sys.executable, "-c", _DAEMON_SIDE, str(built.parent)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(result)
    assert result["nvcc_on_path"] is None
    assert not result["pycuda_compiler_imported"]
    assert max(result["max_abs_diff"].values()) <= 1e-3
    home = tmp_path / "no-home"
    made = sorted(str(p.relative_to(home)) for p in home.rglob("*")) if home.exists() else []
    print("created under HOME:", made)      # the CUDA driver may make its own ~/.nv; pycuda must make nothing
    assert not (home / ".cache" / "pycuda").exists()    # no pycuda compiler cache wanted


def test_a_stale_cubin_is_refused_with_the_build_command(built, tmp_path):
    from daemon.gpu.context import CudaContext, GpuUnavailable
    from daemon.gpu.kernel_files import read_kernels_sidecar, sidecar_path, write_kernels

    path = copy_kernels(built, tmp_path)
    side = read_kernels_sidecar(sidecar_path(path))
    write_kernels(path, path.read_bytes(), {**side, "kernels_cu_sha256": "0" * 64})
    with pytest.raises(GpuUnavailable, match=r"kernels\.cu changed since the build.*ocr-daemon build-kernels"):
        CudaContext(kernels_dir=tmp_path).kernels()


def test_a_cubin_the_driver_cannot_load_is_refused(ctx, built, tmp_path):
    """A cubin for another architecture (SASS does not run across major versions), with a sidecar that
    claims this GPU: the sidecar check passes, the driver refuses, and the message says so."""
    from pycuda.compiler import compile as nvcc_compile

    from daemon.gpu.context import CudaContext, GpuUnavailable
    from daemon.gpu.kernel_build import find_nvcc
    from daemon.gpu.kernel_files import KERNELS_CU, read_kernels_sidecar, sha256_bytes, sidecar_path, write_kernels

    other = "sm_80" if not ctx.facts.compute_capability.startswith("8.") else "sm_90"
    image = nvcc_compile(KERNELS_CU.read_text(), nvcc=find_nvcc(), options=["-O3"], no_extern_c=True,
                         arch=other, cache_dir=False)
    path = copy_kernels(built, tmp_path)
    side = read_kernels_sidecar(sidecar_path(path))
    write_kernels(path, image, {**side, "cubin_sha256": sha256_bytes(image)})
    with pytest.raises(GpuUnavailable, match=r"the driver cannot load it.*ocr-daemon build-kernels") as err:
        CudaContext(kernels_dir=tmp_path).kernels()
    print(err.value)


def test_kernels_load_once_per_context(built):
    from daemon.gpu.context import CudaContext

    ctx = CudaContext(kernels_dir=built.parent)
    assert ctx.kernels() is ctx.kernels()
