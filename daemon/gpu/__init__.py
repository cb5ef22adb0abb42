"""GPU side of the pipeline, with pycuda: one CUDA context, the fused letterbox kernel, pinned and mapped
buffers, and two streams with two buffer sets so that frame N+1's upload and pre-processing overlap
frame N's inference.

Import cost is nil: pycuda is imported inside functions, so CPU-only installs never need it. The kernels
(kernels.cu) are compiled ahead of time by `ocr-daemon build-kernels` (kernel_build.py) and loaded as a
cubin (kernel_files.py, context.py): the daemon never runs nvcc.

What ran where: everything in this package ran on the GPU test machine (one H100, pycuda built from
source, no TensorRT); tests/test_gpu_*.py and bench/gpu_bench.py are that evidence.
"""
from __future__ import annotations

from pathlib import Path

# JetPack has no python3-pycuda, and Ubuntu's package of that name would pull the desktop driver onto L4T.
PYCUDA_HINT = ("install it with `pip install pycuda` with /usr/local/cuda/bin on PATH "
               "(what `sudo systemd/install.sh --gpu` does)")


def pycuda_available() -> tuple[bool, str]:
    """(True, device summary) when pycuda imports and sees a CUDA device, else (False, why not)."""
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        return False, f"pycuda is not importable ({exc}); {PYCUDA_HINT}"
    try:
        cuda.init()
        count = cuda.Device.count()
    except cuda.Error as exc:
        return False, f"the CUDA driver did not initialize ({exc})"
    if count == 0:
        return False, "the CUDA driver sees no GPU"
    dev = cuda.Device(0)
    major, minor = dev.compute_capability()
    return True, f"{dev.name()} (compute capability {major}.{minor})"


def nvidia_gpu_seen(root: str = "/") -> str:
    """What shows an NVIDIA GPU on this machine without pycuda or a driver call ("PCI 0000:01:00.0", "/dev/nvidia0",
    "a Jetson"), or "" when nothing does: a box without one runs on the CPU by design, not by fallback.
    A GPU whose driver is broken still shows on the PCI bus, so it is not mistaken for a CPU box."""
    base = Path(root)
    for dev in sorted((base / "sys/bus/pci/devices").glob("*")):
        try:    # vendor 0x10de, class 0x03xxxx: an NVIDIA display or 3D controller (not its audio function)
            if (dev / "vendor").read_text().strip() == "0x10de" and (dev / "class").read_text().startswith("0x03"):
                return f"PCI {dev.name}"
        except OSError:
            continue
    for marker, what in (("etc/nv_tegra_release", "a Jetson"), ("proc/driver/nvidia/gpus", "/proc/driver/nvidia")):
        if (base / marker).exists():
            return what
    found = sorted((base / "dev").glob("nvidia[0-9]*"))
    if found:
        return f"/dev/{found[0].name}"
    try:
        if b"nvidia,tegra" in (base / "proc/device-tree/compatible").read_bytes():
            return "a Jetson"
    except OSError:
        pass
    return ""
