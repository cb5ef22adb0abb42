"""The prebuilt-kernels file and its sidecar, checked without a GPU or pycuda: file names, every reason a
cubin is refused, atomic writes, and the messages that name `ocr-daemon build-kernels`. The GPU half
(build, then load with no nvcc on PATH) is tests/test_gpu_kernels_aot.py."""
from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from daemon import atomic_write
from daemon.gpu import kernel_build, kernel_files
from daemon.gpu.context import CudaContext, DeviceFacts, GpuUnavailable
from daemon.gpu.kernel_files import (BUILD_COMMAND, KernelFileError, check_kernels, driver_cuda_min,
                                     expected_kernels, kernels_filename, kernels_path, make_kernels_sidecar,
                                     read_checked_cubin, sha256_bytes, sidecar_path, source_sha256,
                                     toolkit_release, write_atomic, write_kernels)

NVCC_12_6 = ("nvcc: NVIDIA (R) Cuda compiler driver\nCopyright (c) 2005-2024 NVIDIA Corporation\n"
             "Built on Wed_Aug_14_10:26:51_PDT_2024\nCuda compilation tools, release 12.6, V12.6.68\n"
             "Build cuda_12.6.r12.6/compiler.34714021_0\n")
CUBIN = b"\x7fELF not really a cubin, but bytes with a sha256"


def sidecar(**overrides):
    fields = dict(compute_capability="8.7", cuda_toolkit_version="12.6", kernels_cu_sha256=source_sha256(),
                  cubin_sha256=sha256_bytes(CUBIN), gpu_name="Orin",
                  built_at=datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc))
    fields.update(overrides)
    return make_kernels_sidecar(**fields)


def expected(**overrides):
    want = expected_kernels("8.7", "12.6")
    want.update(overrides)
    return want


def fake_context(kernels_dir, compute_capability="8.7", driver="12.6"):
    """A CudaContext without pycuda: the attributes kernels() reads before it asks the driver to load."""
    ctx = object.__new__(CudaContext)
    ctx.kernels_dir = kernels_dir
    ctx.facts = DeviceFacts("Orin", compute_capability, True, 16, True)
    ctx.driver_cuda_version = driver
    ctx._kernels = None
    return ctx


def test_kernels_file_is_named_for_the_architecture(tmp_path):
    assert kernels_filename("8.7") == "kernels.sm87.cubin"
    assert kernels_filename("9.0") == "kernels.sm90.cubin"
    assert kernels_path(tmp_path, "10.0") == tmp_path / "kernels.sm100.cubin"
    assert sidecar_path(tmp_path / "kernels.sm87.cubin") == tmp_path / "kernels.sm87.cubin.json"
    assert sidecar()["arch"] == "sm_87"
    with pytest.raises(ValueError, match="major.minor"):
        kernels_filename("orin")


def test_toolkit_version_comes_from_nvccs_version_text():
    assert toolkit_release(NVCC_12_6) == "12.6"
    assert toolkit_release("Cuda compilation tools, release 13.0, V13.0.88") == "13.0"
    with pytest.raises(ValueError, match="no CUDA release"):
        toolkit_release("nvcc unknown version")


def test_a_cubin_needs_a_driver_of_its_toolkits_major_release():
    assert driver_cuda_min("12.6") == "12.0"
    assert driver_cuda_min("13.0") == "13.0"
    assert sidecar()["driver_cuda_min"] == "12.0"


def test_a_fresh_sidecar_passes_its_own_check():
    s = sidecar()
    assert set(kernel_files.SIDECAR_KEYS) <= set(s)
    assert check_kernels(s, expected()) == []
    assert check_kernels(s, expected(cubin_sha256=sha256_bytes(CUBIN))) == []


@pytest.mark.parametrize("driver", ["12.2", "12.6", "12.8", "13.0"])
def test_a_cubin_from_a_newer_minor_toolkit_is_accepted_by_an_older_driver_of_its_major(driver):
    # minor version compatibility: SASS from 12.6 runs on a 12.2 driver; any newer driver runs it too
    assert check_kernels(sidecar(cuda_toolkit_version="12.6"), expected(driver_cuda_version=driver)) == []


@pytest.mark.parametrize("change, want", [
    ({"sidecar": {"compute_capability": "9.0"}}, "compute capability: built for '9.0', this GPU is '8.7'"),
    ({"sidecar": {"kernels_cu_sha256": "ab" * 32}}, "kernels.cu changed since the build"),
    ({"sidecar": {"cuda_toolkit_version": "13.0"}},
     "built by CUDA toolkit 13.0, which needs a driver supporting CUDA 13.0 or newer; this driver supports CUDA 12.6"),
    ({"expected": {"driver_cuda_version": "11.4"}}, "which needs a driver supporting CUDA 12.0 or newer"),
    ({"expected": {"cubin_sha256": sha256_bytes(CUBIN[:-1])}}, "file replaced or truncated"),
    ({"drop": "kernels_cu_sha256"}, "sidecar lacks 'kernels_cu_sha256'"),
    ({"drop": "built_at"}, "sidecar lacks 'built_at'"),
    ({"raw": {"driver_cuda_min": "twelve"}}, "'twelve' is not a 'major.minor' version"),
], ids=["other_gpu", "kernels_cu_changed", "toolkit_newer_than_driver", "old_driver", "cubin_replaced",
        "no_source_hash", "no_built_at", "bad_version"])
def test_every_reason_a_cubin_is_stale_is_one_readable_line(change, want):
    s = sidecar(**change.get("sidecar", {}))
    s.update(change.get("raw", {}))
    if "drop" in change:
        del s[change["drop"]]
    problems = check_kernels(s, expected(**change.get("expected", {})))
    assert len(problems) == 1 and want in problems[0], problems


def test_a_cubin_for_another_gpu_built_from_an_old_source_lists_both_problems():
    problems = check_kernels(sidecar(compute_capability="9.0", kernels_cu_sha256="0" * 64), expected())
    assert len(problems) == 2


def test_written_kernels_read_back_and_pass_the_check(tmp_path):
    path = kernels_path(tmp_path, "8.7")
    write_kernels(path, CUBIN, sidecar())
    assert json.loads(sidecar_path(path).read_text()) == sidecar()
    assert read_checked_cubin(tmp_path, expected()) == (path, CUBIN)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kernels.sm87.cubin", "kernels.sm87.cubin.json"]


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "kernels.sm87.cubin"
    write_atomic(target, b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_written_kernels_are_readable_by_the_daemons_user(tmp_path):
    old = os.umask(0o022)
    try:
        write_kernels(kernels_path(tmp_path, "8.7"), CUBIN, sidecar())
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {
        "kernels.sm87.cubin": 0o644, "kernels.sm87.cubin.json": 0o644}


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_an_interrupted_write_keeps_the_old_file_whole(tmp_path, monkeypatch, failing):
    target = tmp_path / "kernels.sm87.cubin"
    write_atomic(target, b"old")

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic_write.os, failing, fail)
    with pytest.raises(OSError, match="No space"):
        write_atomic(target, b"new, but only half of it")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_missing_kernels_raise_gpu_unavailable_naming_the_file_and_the_command(tmp_path):
    with pytest.raises(GpuUnavailable) as err:
        fake_context(tmp_path).kernels()
    msg = str(err.value)
    assert str(tmp_path / "kernels.sm87.cubin") in msg and "missing" in msg
    assert BUILD_COMMAND == "ocr-daemon build-kernels --config FILE" and f"`{BUILD_COMMAND}`" in msg


def test_the_build_command_names_the_config_file_where_it_is_known(tmp_path):
    ctx = fake_context(tmp_path)
    ctx.config_path = "/etc/ocr-daemon/config.yaml"
    with pytest.raises(GpuUnavailable, match=r"missing\. Build them on this device with "
                                             r"`ocr-daemon build-kernels --config /etc/ocr-daemon/config\.yaml`"):
        ctx.kernels()


def test_a_relative_kernels_dir_is_named_absolute_in_the_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KernelFileError) as err:
        read_checked_cubin("engines", expected())
    assert err.value.path == tmp_path / "engines" / "kernels.sm87.cubin"


def test_stale_kernels_raise_gpu_unavailable_with_the_problem(tmp_path):
    write_kernels(kernels_path(tmp_path, "8.7"), CUBIN, sidecar(kernels_cu_sha256="1" * 64))
    with pytest.raises(GpuUnavailable, match=r"kernels\.cu changed since the build.*ocr-daemon build-kernels"):
        fake_context(tmp_path).kernels()
    with pytest.raises(GpuUnavailable, match=r"kernels\.sm90\.cubin.*missing"):    # other GPU, other file
        fake_context(tmp_path, compute_capability="9.0").kernels()


def test_a_cubin_without_a_readable_sidecar_is_refused(tmp_path):
    path = kernels_path(tmp_path, "8.7")
    path.write_bytes(CUBIN)
    with pytest.raises(GpuUnavailable, match="sidecar 'kernels.sm87.cubin.json' is missing"):
        fake_context(tmp_path).kernels()
    sidecar_path(path).write_text("{not json")
    with pytest.raises(GpuUnavailable, match="is not JSON"):
        fake_context(tmp_path).kernels()


def test_a_context_without_a_kernels_dir_says_how_to_build_them():
    with pytest.raises(GpuUnavailable, match="ocr-daemon build-kernels"):
        fake_context(None).kernels()


def fake_build_context():
    return SimpleNamespace(facts=DeviceFacts("Orin", "8.7", True, 16, True), driver_cuda_version="12.6")


def test_building_without_nvcc_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr(kernel_build.shutil, "which", lambda name: None)
    monkeypatch.setattr(kernel_build, "NVCC_FALLBACK", tmp_path / "cuda" / "bin" / "nvcc")
    with pytest.raises(kernel_build.KernelBuildError, match="nvcc is neither on PATH nor at"):
        kernel_build.build_kernels(tmp_path, fake_build_context())
    assert list(tmp_path.iterdir()) == []


def test_building_without_pycuda_names_the_pip_install(tmp_path, monkeypatch):
    monkeypatch.setattr(kernel_build, "find_nvcc", lambda: "/usr/local/cuda/bin/nvcc")
    for name in ("pycuda", "pycuda.driver", "pycuda.compiler"):
        monkeypatch.setitem(sys.modules, name, None)      # import raises ImportError
    with pytest.raises(kernel_build.KernelBuildError, match="pip install pycuda"):
        kernel_build.build_kernels(tmp_path, fake_build_context())


def test_the_pycuda_hint_is_pip_not_apt(monkeypatch):
    from daemon.gpu import pycuda_available

    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    ok, why = pycuda_available()
    assert not ok and "pip install pycuda" in why and "/usr/local/cuda/bin" in why and "apt" not in why


def test_build_kernels_command_exits_1_without_pycuda_and_2_on_a_bad_config(tmp_path, monkeypatch, capsys):
    import daemon.gpu
    from daemon import cli

    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"engines:\n  dir: {tmp_path / 'engines'}\n")
    monkeypatch.setattr(daemon.gpu, "pycuda_available", lambda: (False, "pycuda is not importable (test)"))
    assert cli.main(["build-kernels", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "cannot build the GPU kernels here: pycuda is not importable" in err
    cfg.write_text("engines:\n  dir: [1, 2]\n")
    assert cli.main(["build-kernels", "--config", str(cfg)]) == 2
    assert "engines.dir" in capsys.readouterr().err
    assert not (tmp_path / "engines").exists()
    assert os.listdir(tmp_path) == ["config.yaml"]
