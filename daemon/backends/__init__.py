"""Backend choice: `auto` takes TensorRT where it loads and its engines match, else ONNX Runtime.

The decision is one pure function, ``decide(setting, precision, facts)``, over facts probed without loading
a model (TensorRT and pycuda importable, a GPU, the engines and GPU kernels on disk matching it). The daemon
(``choose_backend``, then ``OcrPipeline.from_config`` for what only loading shows) and `ocr-daemon doctor`
both call it, so doctor says what the daemon will do. The result, a ``BackendChoice``, says which backend
runs, at which precision and why; /healthz, the stats topic and ``ocr_backend_info`` show it.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from daemon.backends.base import Backend, BackendError
from daemon.config import Config, OcrConfig
from daemon.gpu import PYCUDA_HINT, nvidia_gpu_seen

log = logging.getLogger(__name__)

# The bounded set of BackendChoice.category values (the `reason` label of ocr_backend_info).
CATEGORIES = ("configured", "loaded", "no_gpu", "tensorrt_unavailable", "pycuda_unavailable", "gpu_unavailable",
              "engine_missing", "engine_stale", "kernels_missing", "gpu_error")
# The reason when nothing on the box is an NVIDIA GPU: the CPU is not a fallback there, so this is not degraded.
NO_GPU = "no NVIDIA GPU: the CPU backend is this box's backend; set backend: onnxruntime to say so"


@dataclass(frozen=True)
class BackendChoice:
    backend: str        # what runs: "tensorrt" or "onnxruntime"
    precision: str      # what runs at: fp32, fp16 or int8 (fp16 runs as fp32 on the CPU)
    reason: str         # why, in a sentence: "auto: TensorRT is not importable (No module named 'tensorrt')"
    category: str       # one of CATEGORIES: short and bounded, for a metric label

    @property
    def degraded(self) -> bool:
        """True when `auto` fell back to the CPU on a box with an NVIDIA GPU: healthy, but on a fallback the
        operator did not choose. `backend: onnxruntime` and a box without an NVIDIA GPU are not degraded."""
        return self.category not in ("configured", "loaded", "no_gpu")

    def as_dict(self) -> dict:
        return {"backend": self.backend, "precision": self.precision, "reason": self.reason,
                "category": self.category, "degraded": self.degraded}


@dataclass(frozen=True)
class EngineFact:
    role: str                   # "det", "rec", "rec_tail", "cls"
    present: bool               # the engine file exists (its sidecar may still disagree with this box)
    problems: tuple[str, ...]   # empty: usable here


@dataclass(frozen=True)
class GpuFacts:
    """What `auto` decides on, probed without loading any model; a fact not probed stays empty."""
    tensorrt_version: str | None = None
    tensorrt_edition: str = "tensorrt"  # generation.Edition.name of the edition that imports: or "tensorrt-rtx"
    tensorrt_why: str = ""          # why TensorRT is not importable
    pycuda_why: str = ""            # why pycuda is not importable; empty: it is
    gpu: str | None = None          # "Orin (compute capability 8.7)"; None: no usable GPU
    gpu_why: str = ""
    gpu_seen: str | None = None     # what shows an NVIDIA GPU without pycuda (nvidia_gpu_seen); "": none; None: unprobed
    engines: tuple[EngineFact, ...] = ()
    kernels_problem: str = ""       # why the prebuilt GPU kernels cannot be used; empty: usable or not checked


def cpu_precision(precision: str) -> str:
    """What ONNX Runtime runs for ocr.precision: the Q/DQ INT8 models or FP32 (it has no FP16 path here)."""
    return "fp32" if precision == "fp16" else precision


def decide(setting: str, precision: str, facts: GpuFacts | None, config_path: str | None = None) -> BackendChoice:
    """Which backend `backend: <setting>` runs on, given the facts (None: not probed, for onnxruntime).
    ``config_path`` (Config.source_path) goes into the rebuild command of a reason.

    For `tensorrt` a choice other than tensorrt means the daemon refuses to start (no silent CPU)."""
    from daemon.engines.plan import rebuild_command

    if setting == "onnxruntime":
        return BackendChoice("onnxruntime", cpu_precision(precision), "configured", "configured")
    facts = facts or GpuFacts()
    why, category = _first_gap(facts, precision, rebuild_command(precision, config_path))
    if not why:
        return BackendChoice("tensorrt", precision, f"{_label(facts)} engines match {facts.gpu}", "loaded")
    return BackendChoice("onnxruntime", cpu_precision(precision), f"{setting}: {why}", category)


def _first_gap(facts: GpuFacts, precision: str, rebuild: str) -> tuple[str, str]:
    # No GPU at all comes first: installing TensorRT or pycuda would not help such a box.
    if facts.gpu is None and facts.gpu_seen == "":
        return NO_GPU, "no_gpu"
    if facts.tensorrt_version is None:
        return f"TensorRT is not importable ({facts.tensorrt_why or 'not probed'})", "tensorrt_unavailable"
    from daemon.backends.tensorrt.generation import UnsupportedTensorRT, edition_named, generation

    try:
        generation(facts.tensorrt_version, edition_named(facts.tensorrt_edition))
    except UnsupportedTensorRT as exc:
        return str(exc), "tensorrt_unavailable"
    if facts.pycuda_why:
        return f"pycuda is not importable ({facts.pycuda_why}); {PYCUDA_HINT}", "pycuda_unavailable"
    if facts.gpu is None:
        return f"no usable GPU ({facts.gpu_why or 'none found'})", "gpu_unavailable"
    for missing in (True, False):   # a missing engine first: the fix (build) also covers stale ones
        for e in facts.engines:
            if e.problems and (not e.present) == missing:
                return (f"{e.role} engine cannot be used: {'; '.join(e.problems)}. Rebuild it with `{rebuild}`",
                        "engine_missing" if missing else "engine_stale")
    if facts.kernels_problem:
        return facts.kernels_problem, "kernels_missing"
    return "", "loaded"


def _label(facts: GpuFacts) -> str:
    """'TensorRT 10.3.0', 'TensorRT-RTX 1.7.1.116'."""
    from daemon.backends.tensorrt.generation import UnsupportedTensorRT, edition_named

    try:
        return f"{edition_named(facts.tensorrt_edition).label} {facts.tensorrt_version}"
    except UnsupportedTensorRT:
        return f"{facts.tensorrt_edition} {facts.tensorrt_version}"


def probe_tensorrt():
    """(TensorRTInstall, "") of the TensorRT edition that imports (TensorRT, else TensorRT-RTX), else
    (None, why not)."""
    try:
        from daemon.backends.tensorrt import import_tensorrt

        _, found = import_tensorrt()
    except ImportError as exc:
        return None, str(exc)
    return found, ""


def probe_pycuda() -> tuple[bool, str]:
    """(True, "") when pycuda imports, else (False, why not). Whether it sees a GPU is the backend's to say."""
    try:
        import pycuda.driver  # noqa: F401
    except ImportError as exc:
        return False, str(exc)
    return True, ""


def probe_driver_cuda() -> str | None:
    """The newest CUDA version the driver supports ("12.6"), or None where pycuda cannot tell."""
    try:
        import pycuda.driver as cuda

        cuda.init()
        v = cuda.get_driver_version()     # e.g. 12060
    except Exception:                     # ImportError, pycuda.driver.Error: the load will say more
        return None
    return f"{v // 1000}.{(v % 1000) // 10}"


def kernels_problem(kernels_dir, compute_capability: str, driver_cuda: str, config_path: str | None = None) -> str:
    """Why the prebuilt GPU kernels (`ocr-daemon build-kernels`) cannot be used on this GPU and driver;
    "" when they can. Reads the cubin and its sidecar, loads nothing."""
    from daemon.gpu.kernel_files import KernelFileError, expected_kernels, read_checked_cubin

    try:
        read_checked_cubin(kernels_dir, expected_kernels(compute_capability, driver_cuda), config_path)
    except KernelFileError as exc:
        return str(exc)
    return ""


def describe_error(exc: BaseException) -> str:
    """An exception as one line that names its type: a programming error must not pass as a GPU gap."""
    return str(exc) if isinstance(exc, BackendError) else f"{type(exc).__name__}: {exc}"


def load_failure_category(exc: BaseException) -> str:
    """The category of a failure that only loading showed (the probe had found nothing wrong)."""
    text = describe_error(exc)
    if type(exc).__name__ == "KernelFileError" or "build-kernels" in text:
        return "kernels_missing"
    if isinstance(exc, BackendError) and "build-engine" in text:   # the engine refused: shape, dtype, version
        return "engine_stale"
    return "gpu_error"


def engine_facts(cfg: Config, device) -> tuple[EngineFact, ...]:
    """Each engine the config needs, checked against ``device`` (a sidecar DeviceInfo) without loading it."""
    from daemon.engines.check import check_engine
    from daemon.engines.plan import plan_engines

    facts = []
    for plan in plan_engines(cfg):
        try:
            check = check_engine(plan, device, cfg.engines.dir)
        except Exception as exc:   # an unreadable file: a problem of that engine, not a crash
            facts.append(EngineFact(plan.role, True, (describe_error(exc),)))
        else:
            facts.append(EngineFact(plan.role, check.path.is_file(), check.problems))
    return tuple(facts)


def choose_backend(cfg: Config) -> tuple[Backend, BackendChoice]:
    """The backend for cfg.backend and why. `tensorrt` raises BackendError where TensorRT cannot run;
    `auto` then falls back to ONNX Runtime with one WARNING line giving the reason. What only loading the
    engines shows is the caller's to handle (OcrPipeline.from_config, through ``fall_back``)."""
    if cfg.backend == "onnxruntime":
        return cpu_backend(cfg), decide("onnxruntime", cfg.ocr.precision, None)
    facts, backend = _probe(cfg)
    choice = decide(cfg.backend, cfg.ocr.precision, facts, cfg.source_path)
    if choice.backend == "tensorrt":
        return backend, dataclasses.replace(choice, reason=f"{_label(facts)} engines loaded on {facts.gpu}")
    if backend is not None:
        backend.close()     # the probe's CUDA context: nothing of the GPU attempt stays
    if cfg.backend == "tensorrt":
        raise refusal(choice)
    return fall_back(cfg, choice)


def refusal(choice: BackendChoice) -> BackendError:
    """`backend: tensorrt` does not fall back: the error the daemon exits with (status 1)."""
    return BackendError(f"backend: tensorrt cannot run: {choice.reason.removeprefix('tensorrt: ')}")


def fall_back(cfg: Config, choice: BackendChoice) -> tuple[Backend, BackendChoice]:
    """`auto` on the CPU: the one WARNING line that says why (INFO on a box without an NVIDIA GPU, where the CPU
    is no fallback), and the ONNX Runtime backend."""
    log.log(logging.WARNING if choice.degraded else logging.INFO, "backend auto: running on ONNX Runtime (CPU, %s) "
            "because %s", choice.precision, choice.reason.removeprefix("auto: "))
    return cpu_backend(cfg, warn_fp16=False), choice


def gpu_failure(cfg: Config, exc: BaseException) -> BackendChoice:
    """The choice after the TensorRT pipeline failed to build although the probe found nothing wrong."""
    return BackendChoice("onnxruntime", cpu_precision(cfg.ocr.precision),
                         f"{cfg.backend}: the TensorRT pipeline failed to load: {describe_error(exc)}",
                         load_failure_category(exc))


def _probe(cfg: Config) -> tuple[GpuFacts, Backend | None]:
    """The facts for decide(), and the TensorRT backend whose CUDA context the engine check opened."""
    seen = nvidia_gpu_seen()    # probed whatever else is found: pycuda seeing a GPU overrules it
    found, why = probe_tensorrt()
    if found is None:
        return GpuFacts(tensorrt_why=why, gpu_seen=seen), None
    version, edition = found.version, found.edition.name
    ok, why = probe_pycuda()
    if not ok:
        return GpuFacts(version, edition, pycuda_why=why, gpu_seen=seen), None
    try:
        from daemon.backends.tensorrt import TensorRTBackend
    except ImportError as exc:   # the GPU code is optional on CPU-only installs
        return GpuFacts(None, tensorrt_why=f"the TensorRT backend module cannot be imported ({exc})",
                        gpu_seen=seen), None
    backend = TensorRTBackend(cfg)
    try:
        device = backend.device()
        gpu = f"{device.gpu_name} (compute capability {device.compute_capability})"
        engines = engine_facts(cfg, device)
        driver_cuda = probe_driver_cuda()
        kernels = (kernels_problem(cfg.engines.dir, device.compute_capability, driver_cuda, cfg.source_path)
                   if driver_cuda else "")
    except Exception as exc:    # pycuda.driver.Error, a GPU this edition cannot run on: a finding, not a crash loop
        backend.close()
        return GpuFacts(version, edition, gpu_why=describe_error(exc), gpu_seen=seen), None
    return GpuFacts(version, edition, gpu=gpu, engines=engines, kernels_problem=kernels), backend


def cpu_backend(cfg: Config, warn_fp16: bool = True) -> Backend:
    """ONNX Runtime on the CPU, running the FP32 or the calibrated Q/DQ INT8 models."""
    from daemon.backends.onnxruntime import OnnxRuntimeBackend

    precision = cpu_precision(cfg.ocr.precision)
    if precision != cfg.ocr.precision and warn_fp16:
        log.warning("ocr.precision fp16 applies to TensorRT engines; ONNX Runtime on the CPU runs the FP32 models")
    return OnnxRuntimeBackend(threads=cfg.ocr.threads, precision=precision,
                              in_flight=cpu_frames_in_flight(cfg.ocr.frames_in_flight),
                              fold_dir=cpu_fold_dir(cfg) if cfg.ocr.cpu_fold else None,
                              int8_det=cfg.ocr.cpu_int8_det)


def cpu_fold_dir(cfg: Config) -> Path:
    """Where the CPU's folded models live: ocr.cpu_fold_dir, or the system's cache directory."""
    import os

    from daemon.backends.onnxruntime.folded import default_dir

    return Path(cfg.ocr.cpu_fold_dir) if cfg.ocr.cpu_fold_dir else default_dir(os.environ, cfg.engines.dir)


def cpu_frames_in_flight(configured: int) -> int:
    """ocr.frames_in_flight as the CPU backend runs it: 0 = two from 4 physical cores up, else one."""
    from daemon.backends.onnxruntime.threads import physical_cores

    if configured:
        return configured
    return 2 if physical_cores() >= AUTO_OVERLAP_MIN_CORES else 1


# From this many physical cores up the CPU backend keeps two frames in flight: 1.47x on 16 cores. On two
# it depends on the box (1.14x on two Xeon cores, 0.90x on a 2-vCPU AMD VM; bench/RESULTS.md section 17),
# so two-core boxes run one frame at a time unless ocr.frames_in_flight says 2.
AUTO_OVERLAP_MIN_CORES = 4


def cpu_rec_batch(o: OcrConfig, threads: int) -> int:
    """ocr.cpu_rec_batch as the CPU backend runs it: 0 = 4 lines per recognizer call up to
    SMALL_BATCH_MAX_THREADS threads, ocr.rec_batch above; always more than the tail batch."""
    if o.cpu_rec_batch:
        return o.cpu_rec_batch
    if threads <= SMALL_BATCH_MAX_THREADS:
        return max(min(4, o.rec_batch), o.rec_tail_batch + 1)
    return o.rec_batch


# Recognizer ms per 48x320 line by batch (bench/RESULTS.md section 19, bench/rec_batch_sweep.py): on 2
# threads 4 lines per call beat 8 (AMD EPYC VM 17.5 vs 22.5 ms, Xeon 17.0 vs 18.8), on 4 they tie within the
# noise (10.8 vs 10.1 and 9.8 vs 10.2 in two runs), on 16 8 beats 4 (5.0 vs 6.8 ms).
SMALL_BATCH_MAX_THREADS = 2
