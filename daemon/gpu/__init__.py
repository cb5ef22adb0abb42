"""GPU side of the pipeline, with pycuda: one CUDA context, the fused letterbox kernel, pinned and mapped
buffers, and two streams with two buffer sets so that frame N+1's upload and pre-processing overlap
frame N's inference.

Import cost is nil: pycuda is imported inside functions, so CPU-only installs never need it.
What ran where: everything in this package ran on the GPU test machine (one H100, pycuda built from
source, no TensorRT); tests/test_gpu_*.py and bench/gpu_bench.py are that evidence.
"""
from __future__ import annotations


def pycuda_available() -> tuple[bool, str]:
    """(True, device summary) when pycuda imports and sees a CUDA device, else (False, why not)."""
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        return False, f"pycuda is not importable ({exc}); on a Jetson: sudo apt install python3-pycuda"
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
