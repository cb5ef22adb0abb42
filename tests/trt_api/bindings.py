"""NVIDIA's TensorRT Python bindings wheels from PyPI, unpacked, with stub libraries to import them over.

Only the bindings are real wheels on PyPI (the `tensorrt-*-libs` packages are stubs that download from a
host we cannot reach), and they link against libnvinfer & co. stub_libs.c defines the functions they
import, so `import tensorrt_bindings` succeeds: the classes, enums and pybind11 signatures are NVIDIA's
for that version; no TensorRT function can run. Everything lands in build/trt-api/ (git-ignored).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "trt-api"
STUB_SOURCE = Path(__file__).with_name("stub_libs.c")

# (label, pip requirement, soname major): the versions docs/install-and-jetson.md supports, as NVIDIA publishes them.
# TensorRT-RTX's (API major 11) is the installed wheel of the test extra, over its real libraries.
VERSIONS = (
    ("8.6", "tensorrt-bindings==8.6.1", 8),            # JetPack 6.0
    ("10.3", "tensorrt-cu12-bindings==10.3.0", 10),    # JetPack 6.1 / 6.2
    ("10.16", "tensorrt-cu12-bindings==10.16.1.11", 10),
    ("11.4", "tensorrt-cu13-bindings==11.4.0.106", 11),
    ("rtx-1.7", "tensorrt-rtx-cu12==1.7.1.116", 11),   # x86-64 PCs with an RTX GPU
)
LIBRARIES = ("nvinfer", "nvonnxparser", "nvinfer_plugin", "nvparsers")


@dataclass(frozen=True)
class Bindings:
    label: str
    site: Path      # holds the bindings package
    libs: Path      # the stub libraries, for LD_LIBRARY_PATH
    module: str = "tensorrt_bindings"


class Unavailable(RuntimeError):
    """The wheels or a C compiler could not be had; the message says which."""


def prepare(label: str, requirement: str, major: int) -> Bindings:
    if label.startswith("rtx"):
        return _installed_rtx(label, requirement)
    site = CACHE / label / "site"
    libs = CACHE / label / "lib"
    if not (site / "tensorrt_bindings" / "__init__.py").is_file():
        wheels = CACHE / label / "wheel"
        wheels.mkdir(parents=True, exist_ok=True)
        tag = f"{sys.version_info.major}{sys.version_info.minor}"
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
               "--python-version", tag, "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
               "--platform", "manylinux_2_17_x86_64", "-d", str(wheels), requirement]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        found = sorted(wheels.glob("*.whl"))
        if done.returncode != 0 or not found:
            raise Unavailable(f"pip download {requirement} failed: {done.stderr.strip()[-400:]}")
        shutil.rmtree(site, ignore_errors=True)
        with zipfile.ZipFile(found[0]) as z:
            z.extractall(site)
    if not all((libs / f"lib{name}.so.{major}").is_file() for name in LIBRARIES):
        cc = shutil.which("gcc") or shutil.which("cc")
        if cc is None:
            raise Unavailable("no C compiler (apt-get install gcc) to build the stub libraries")
        libs.mkdir(parents=True, exist_ok=True)
        for name in LIBRARIES:
            subprocess.run([cc, "-shared", "-fPIC", "-o", str(libs / f"lib{name}.so.{major}"), str(STUB_SOURCE)],
                           check=True, timeout=120)
    return Bindings(label, site, libs)


def _installed_rtx(label: str, requirement: str) -> Bindings:
    """TensorRT-RTX's real bindings as installed (its libraries are real wheels too: no stubs)."""
    import importlib.util

    spec = importlib.util.find_spec("tensorrt_rtx_bindings")
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable(f"{requirement} is not installed (scripts/setup.sh installs it on x86-64)")
    libs = CACHE / label / "lib"
    libs.mkdir(parents=True, exist_ok=True)      # nothing to stub
    return Bindings(label, Path(list(spec.submodule_search_locations)[0]).parent, libs, "tensorrt_rtx_bindings")
