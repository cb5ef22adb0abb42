"""The one CUDA context the daemon uses, and the kernels it loads.

We take the device's *primary* context rather than a private one: TensorRT's runtime calls bind to
the primary context, so engines, our kernels and our buffers all live in one context and can share
device pointers. The context is made current only inside ``with ctx.active():``; a lock keeps that to
one thread at a time (in the daemon, the inference thread is the only caller).

The kernels are never compiled here: `ocr-daemon build-kernels` (daemon/gpu/kernel_build.py) compiles
kernels.cu ahead of time into ``kernels_dir`` (the config's engines.dir), and ``kernels()`` loads that
cubin after checking its sidecar (daemon/gpu/kernel_files.py). pycuda's SourceModule would run nvcc,
which a systemd unit's PATH does not have.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

from daemon.gpu.kernel_files import KernelFileError, build_command, expected_for_device, read_checked_cubin


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
    config_path: str | None = None     # named in a kernels error's build command; None: `--config FILE`

    def __init__(self, device_index: int = 0, kernels_dir: str | Path | None = None, config_path: str | None = None):
        """``kernels_dir``: where `ocr-daemon build-kernels` put kernels.sm<cc>.cubin (engines.dir);
        None when the caller needs no kernels (building engines only). ``config_path``: the config file, named in
        the build command of a kernels error."""
        self.kernels_dir = Path(kernels_dir) if kernels_dir is not None else None
        self.config_path = config_path
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
            v = cuda.get_driver_version()       # e.g. 12060: the newest CUDA this driver supports
            self.driver_cuda_version = f"{v // 1000}.{(v % 1000) // 10}"
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
        """The prebuilt kernels for this GPU, loaded once per context; never runs nvcc. GpuUnavailable,
        naming the file, the problem and the build command, when the cubin is missing, stale or unloadable."""
        if self._kernels is None:
            if self.kernels_dir is None:
                raise GpuUnavailable(f"no kernels directory given: the GPU kernels are built ahead of time "
                                     f"into engines.dir by `{build_command(self.config_path)}`")
            try:
                path, image = read_checked_cubin(self.kernels_dir, expected_for_device(self), self.config_path)
            except KernelFileError as exc:
                raise GpuUnavailable(str(exc)) from None
            self._kernels = self.load_kernels(image, path)
        return self._kernels

    def load_kernels(self, image: bytes, path: Path) -> "Kernels":
        """A cubin image as prepared launchers (``path`` only names it in errors)."""
        cuda = self._cuda
        with self.active():
            try:
                return Kernels(cuda.module_from_buffer(image))
            except cuda.Error as exc:     # not a cubin for this GPU, or a kernel missing from it
                raise GpuUnavailable(str(KernelFileError(path, [f"the driver cannot load it ({exc})"],
                                                         self.config_path))) from None

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
