"""The one CUDA context the daemon uses, and the compiled kernels.

We take the device's *primary* context rather than a private one: TensorRT's runtime calls bind to
the primary context, so engines, our kernels and our buffers all live in one context and can share
device pointers. The context is made current only inside ``with ctx.active():``; a lock keeps that to
one thread at a time (in the daemon, the inference thread is the only caller).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

_KERNELS_CU = Path(__file__).with_name("kernels.cu")


class GpuUnavailable(RuntimeError):
    """No usable CUDA device or pycuda; the message says which."""


def use_zero_copy(setting: Literal["auto", "on", "off"], integrated: bool) -> bool:
    """gpu.zero_copy: on an integrated GPU (Jetson) host and device share DRAM, so mapped pinned memory
    saves a copy; on a discrete GPU the kernel would read the frame over PCIe, so `auto` uploads."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    return integrated


@dataclass(frozen=True)
class DeviceFacts:
    name: str
    compute_capability: str     # "9.0"
    integrated: bool            # shares memory with the CPU (Jetson)
    multiprocessors: int
    can_map_host_memory: bool


class CudaContext:
    def __init__(self, device_index: int = 0):
        try:
            import pycuda.driver as cuda
        except ImportError as exc:
            raise GpuUnavailable(f"pycuda is not importable ({exc})") from None
        self._cuda = cuda
        try:
            cuda.init()
            if cuda.Device.count() <= device_index:
                raise GpuUnavailable(f"CUDA device {device_index} does not exist "
                                     f"({cuda.Device.count()} device(s) found)")
            self.device = cuda.Device(device_index)
            self._ctx = self.device.retain_primary_context()
        except cuda.Error as exc:
            raise GpuUnavailable(f"CUDA did not initialize ({exc})") from None
        self._lock = threading.RLock()
        attr = cuda.device_attribute
        major, minor = self.device.compute_capability()
        self.facts = DeviceFacts(
            name=self.device.name(),
            compute_capability=f"{major}.{minor}",
            integrated=bool(self.device.get_attribute(attr.INTEGRATED)),
            multiprocessors=int(self.device.get_attribute(attr.MULTIPROCESSOR_COUNT)),
            can_map_host_memory=bool(self.device.get_attribute(attr.CAN_MAP_HOST_MEMORY)),
        )
        self._kernels: Kernels | None = None

    @contextmanager
    def active(self) -> Iterator[None]:
        """Makes the context current on this thread for the block; re-entrant."""
        with self._lock:
            self._ctx.push()
            try:
                yield
            finally:
                self._cuda.Context.pop()

    def kernels(self) -> "Kernels":
        """kernels.cu compiled once per process for this device (pycuda caches the cubin on disk)."""
        if self._kernels is None:
            from pycuda.compiler import SourceModule

            with self.active():
                module = SourceModule(_KERNELS_CU.read_text(encoding="utf-8"), no_extern_c=True,
                                      options=["-O3"])
                self._kernels = Kernels(module)
        return self._kernels

    def close(self) -> None:
        """Releases our hold on the primary context (after every buffer of ours is gone)."""
        with self._lock:
            if self._ctx is not None:
                self._ctx.detach()
                self._ctx = None


class Kernels:
    """Prepared launchers: prepared_async_call skips pycuda's per-call argument inspection, which is
    most of the launch cost at this size."""

    def __init__(self, module):
        self.module = module
        self.letterbox = module.get_function("letterbox_bgr_to_chw")
        # src, src_h, src_w, src_pitch, dst, dst_h, dst_w, new_h, new_w, scale_y, scale_x, mul, add
        self.letterbox.prepare("PiiiPiiiiddff")
        self.busy_wait = module.get_function("busy_wait")
        self.busy_wait.prepare("qP")
