"""`ocr-daemon doctor [--config FILE] [--json]`: what this box can do, and what to do next for each gap.

It checks TensorRT (or TensorRT-RTX, and whether it runs on this GPU), CUDA, the GPU and its compute capability, pycuda, the prebuilt GPU kernels, the engines
the config needs and whether their sidecars match this box, and says what `backend` will run on and why
(daemon.backends.decide, the daemon's own decision, over these facts; no model is loaded), then cameras
(/dev/video*) and the MQTT broker (a TCP connect with a short timeout). Every check degrades to a finding
instead of an exception, so it runs on a CPU-only box. Exit code 0 whatever it finds (it is a report); 2 for an invalid config.
With `backend: onnxruntime` the GPU side is shown as facts ("--", not used by that backend), never as gaps.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from daemon.backends import (BackendChoice, EngineFact, GpuFacts, cpu_fold_dir, decide, kernels_problem,
                             probe_tensorrt)
from daemon.config import Config, config_option
from daemon.gpu import PYCUDA_HINT, nvidia_gpu_seen


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str
    next_step: str = ""     # what to do about it; empty when nothing is needed
    choice: dict | None = None   # the backend finding only: BackendChoice.as_dict()
    # A fact the configured backend does not use (the GPU side under `backend: onnxruntime`): ok, shown as "--",
    # never a gap. Not in --json, whose rows keep their keys: there it is ok with a "not used by" detail.
    info: bool = False


@dataclass(frozen=True)
class GpuProbe:
    """What could be learned about the GPU, from pycuda or else nvidia-smi."""
    name: str | None
    compute_capability: str | None
    driver_cuda: str | None     # CUDA version the driver supports, "12.6"
    integrated: bool | None
    source: str                 # "pycuda", "nvidia-smi" or "none"
    why_not: str = ""
    multiprocessors: int | None = None      # SM count (pycuda only; nvidia-smi does not say)
    total_memory_mib: int | None = None


def probe_pycuda() -> tuple[bool, str]:
    try:
        import pycuda  # noqa: F401
        import pycuda.driver  # noqa: F401
    except ImportError as exc:
        return False, str(exc)
    return True, getattr(pycuda, "VERSION_TEXT", "")


def probe_gpu() -> GpuProbe:
    try:
        import pycuda.driver as cuda

        cuda.init()
        if cuda.Device.count() > 0:
            dev = cuda.Device(0)
            major, minor = dev.compute_capability()
            v = cuda.get_driver_version()           # e.g. 12060
            attr = cuda.device_attribute
            return GpuProbe(dev.name(), f"{major}.{minor}", f"{v // 1000}.{(v % 1000) // 10}",
                            bool(dev.get_attribute(attr.INTEGRATED)), "pycuda",
                            multiprocessors=int(dev.get_attribute(attr.MULTIPROCESSOR_COUNT)),
                            total_memory_mib=int(dev.total_memory()) // 2**20)
    except ImportError:
        why = "pycuda is missing"
    except Exception as exc:  # pycuda.driver.Error and friends: fall back to nvidia-smi
        why = f"pycuda: {exc}"
    else:
        why = "pycuda sees no GPU"
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name,compute_cap,memory.total", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10)
            head = subprocess.run([smi], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            return GpuProbe(None, None, None, None, "none", f"nvidia-smi failed ({exc})")
        line = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
        if line:
            name, cc, memory = _smi_fields(line)
            cuda_version = None
            for token in head.split("CUDA Version:")[1:2]:
                cuda_version = token.split()[0]
            return GpuProbe(name, cc, cuda_version, None, "nvidia-smi", total_memory_mib=memory)
    # Jetsons have no nvidia-smi on older JetPacks; /etc/nv_tegra_release marks one.
    if Path("/etc/nv_tegra_release").exists():
        return GpuProbe(None, None, None, True, "none", "a Jetson (nv_tegra_release) but pycuda is missing")
    return GpuProbe(None, None, None, None, "none", f"no NVIDIA GPU found ({why}; no nvidia-smi)")


def _smi_fields(line: str) -> tuple[str, str | None, int | None]:
    """'NVIDIA H200, 9.0, 143771' -> name, compute capability, memory in MiB (nvidia-smi csv, nounits)."""
    name, cc, memory = ([p.strip() for p in line.rsplit(",", 2)] + ["", ""])[:3]
    return name, cc or None, int(memory) if memory.isdigit() else None


def probe_nvcc() -> str | None:
    """CUDA toolkit release from nvcc: needed only to build the GPU kernels ahead of time, never at run time."""
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
    if not nvcc:
        return None
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for part in out.split(","):
        if part.strip().startswith("release"):
            return part.strip().split()[1]
    return None


def _cameras() -> list[str]:
    return sorted(glob.glob("/dev/video*"))


def broker_reachable(host: str, port: int, timeout_s: float = 1.0) -> tuple[bool, str]:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True, f"TCP connect to {host}:{port} succeeded"
    except OSError as exc:
        return False, f"TCP connect to {host}:{port} failed ({exc.strerror or exc})"


def engine_findings(cfg: Config, trt_version: str | None, gpu: GpuProbe, edition: str = "tensorrt") -> list[Finding]:
    """One finding per engine the config needs; when TensorRT or the GPU is unknown, engines present
    on disk are listed but cannot be matched. ``edition``: the TensorRT edition of ``trt_version``."""
    return engine_checks(cfg, trt_version, gpu, edition)[0]


def engine_checks(cfg: Config, trt_version: str | None, gpu: GpuProbe, edition: str = "tensorrt"
                  ) -> tuple[list[Finding], tuple[EngineFact, ...]]:
    """engine_findings, and the same checks as the facts `auto` decides on (empty when not checked)."""
    from daemon.engines.check import check_engine
    from daemon.engines.plan import plan_engines, rebuild_command
    from daemon.engines.sidecar import DeviceInfo
    from daemon.ocr.models import ModelFileError

    precision = cfg.ocr.precision
    try:
        plans = plan_engines(cfg)
    except ModelFileError as exc:
        return [Finding("engines", False, str(exc), "fix ocr.det_model / ocr.rec_model in the config")], ()
    findings = int8_model_findings(cfg, plans)
    rebuild = rebuild_command(precision, cfg.source_path)
    if trt_version is None or gpu.compute_capability is None or gpu.name is None:
        for p in plans:
            present = sorted(Path(cfg.engines.dir).glob(f"{p.engine_stem}.{p.precision}.*.engine"))
            detail = (f"{len(present)} file(s) for this model and precision: {', '.join(x.name for x in present)}"
                      if present else "none built")
            # TensorRT-RTX builds without the GPU: for an RTX PC, here.
            here = f", or here for it: `{rebuild} --compute-capability X.Y`" if trt_version and edition == "tensorrt-rtx" else ""
            findings.append(Finding(f"engine {p.role} ({p.precision})", False,
                                    f"{detail}; cannot check them without TensorRT and a GPU",
                                    f"on the target device: `{rebuild}`{here}"))
        return findings, ()
    device = DeviceInfo(gpu.name, gpu.compute_capability, trt_version, gpu.multiprocessors, gpu.total_memory_mib,
                        edition)
    facts = []
    for p in plans:
        check = check_engine(p, device, cfg.engines.dir)
        problems = check.problems
        if gpu.multiprocessors is None or gpu.total_memory_mib is None:
            # nvidia-smi does not give the SM count (and an old one not the memory): those are not compared.
            problems = tuple(x for x in problems if not x.startswith(("SM count:", "GPU memory (MiB):")))
        facts.append(EngineFact(p.role, check.path.is_file(), problems))
        if not problems:
            notes = "".join(f"; {n} (`{rebuild}`)" for n in check.notes)
            findings.append(Finding(f"engine {p.role} ({p.precision})", True, f"{check.path} matches this box{notes}"))
        else:
            findings.append(Finding(f"engine {p.role} ({p.precision})", False, "; ".join(problems),
                                    f"`{rebuild}`"))
    return findings, tuple(facts)


def int8_model_findings(cfg: Config, plans) -> list[Finding]:
    """The calibrated Q/DQ models ocr.precision int8 runs from (engines and the CPU alike): a gap each that is
    missing or not ONNX."""
    from daemon.engines.plan import EnginePlan

    if cfg.ocr.precision != "int8":
        return []
    bad: dict[Path, tuple[EnginePlan, str]] = {}
    for p in plans:     # rec and rec_tail share one Q/DQ model: one finding for it
        if p.precision == "int8" and p.source_onnx not in bad:
            why = _unreadable_onnx(p.source_onnx)
            if why:
                bad[p.source_onnx] = (p, why)
    return [Finding(f"int8 model ({p.role})", False, f"{path} {why}",
                    f"run `ocr-daemon calibrate {config_option(cfg.source_path)} --images DIR`")
            for path, (p, why) in bad.items()]


def cpu_int8_model_findings(cfg: Config) -> list[Finding]:
    """int8_model_findings where no engine is checked (backend onnxruntime runs the same Q/DQ models)."""
    from daemon.engines.plan import plan_engines
    from daemon.ocr.models import ModelFileError

    try:
        return int8_model_findings(cfg, plan_engines(cfg))
    except ModelFileError as exc:
        return [Finding("models", False, str(exc), "fix ocr.det_model / ocr.rec_model in the config")]


def kernels_finding(cfg: Config, gpu: GpuProbe, toolkit: str | None) -> tuple[Finding, str]:
    """The prebuilt GPU kernels (engines/kernels.sm<cc>.cubin) for this GPU and driver, and the problem
    `auto` decides on ("" when usable or not checkable here)."""
    from daemon.gpu.kernel_files import build_command, kernels_filename

    nvcc = (f"nvcc {toolkit} is here" if toolkit else
            "it needs the CUDA toolkit's nvcc, which JetPack has in /usr/local/cuda/bin")
    build = f"`{build_command(cfg.source_path)}` ({nvcc}; the daemon loads the cubin and never runs nvcc)"
    if gpu.compute_capability is None or gpu.driver_cuda is None:
        return Finding("GPU kernels", False, "cannot check them without a GPU and its driver",
                       f"on the target device: {build}"), ""
    problem = kernels_problem(cfg.engines.dir, gpu.compute_capability, gpu.driver_cuda, cfg.source_path)
    if problem:
        return Finding("GPU kernels", False, problem, build), problem
    return Finding("GPU kernels", True, f"{Path(cfg.engines.dir) / kernels_filename(gpu.compute_capability)} "
                                        f"matches this GPU and driver"), ""


def backend_finding(cfg: Config, choice: BackendChoice) -> Finding:
    """What `backend: <setting>` runs on here and why: the daemon's own decision over doctor's facts."""
    why = choice.reason.removeprefix(f"{cfg.backend}: ")
    refused = cfg.backend == "tensorrt" and choice.backend != "tensorrt"
    outcome = "does not start (exit 1)" if refused else f"{choice.backend} ({choice.precision})"
    detail = f"backend {cfg.backend} → {outcome}: {why}"
    next_steps = {
        "tensorrt_unavailable": "install TensorRT (see the TensorRT finding) or set `backend: onnxruntime`",
        "no_gpu": "set `backend: onnxruntime`, or run it on a box with an NVIDIA GPU",
        "pycuda_unavailable": PYCUDA_HINT,
        "gpu_unavailable": "see the GPU and CUDA findings",
        "engine_missing": "build the engines (see the engine findings)",
        "engine_stale": "rebuild the engines (see the engine findings)",
        "kernels_missing": "build the GPU kernels (see the GPU kernels finding)",
    }
    ok = not choice.degraded and not refused
    return Finding(f"backend {cfg.backend}", ok, detail, "" if ok else next_steps.get(choice.category, ""),
                   choice=choice.as_dict())


def tiles_finding(cfg: Config, backend: str) -> Finding:
    """Which frames the detector also reads as tiles (ocr.tiles) on the backend that runs."""
    from daemon.ocr.tiles import describe_policy, tile_policy

    policy = tile_policy(cfg.ocr.tiles, cfg.ocr.tiles_max, backend)
    h, w = cfg.ocr.det_input_size
    return Finding("small text (tiles)", True, f"ocr.tiles {cfg.ocr.tiles} on {backend}: {describe_policy(policy)}"
                   + ("" if policy is None else f"; tiles of {h}x{w} with the letterboxed frame, "
                                                f"{cfg.ocr.det_batch} per detector call (ocr.det_batch)"))


def cpu_fold_finding(cfg: Config) -> Finding:
    """Whether the CPU backend will run its FP32 models from folded copies (ocr.cpu_fold), read from the
    files alone: doctor imports neither onnx nor ONNX Runtime for it."""
    from daemon.backends.onnxruntime.folded import copy_state
    from daemon.ocr.models import ModelFileError, resolve

    if not cfg.ocr.cpu_fold or cfg.ocr.precision == "int8":
        why = "ocr.cpu_fold is false" if not cfg.ocr.cpu_fold else "INT8 Q/DQ models are never folded"
        return Finding("CPU folded models", True, f"off: {why}; the CPU runs the model files as they are")
    try:
        paths = resolve(cfg)
    except ModelFileError as exc:
        return Finding("CPU folded models", False, str(exc), "fix the model paths in config.yaml")
    cache = cpu_fold_dir(cfg)
    # A detector that runs from its shipped INT8 copy is never folded (cpu_int8_finding says which).
    det = None if _int8_det_runs(cfg, paths.det) else paths.det
    states = {role: copy_state(path, cache) for role, path in (("det", det), ("rec", paths.rec),
                                                                ("cls", paths.cls)) if path is not None}
    detail = f"{cache}: " + ", ".join(f"{role} {state}" for role, state in states.items())
    parent = next((p for p in (cache, *cache.parents) if p.exists()), Path("."))
    writable = parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)
    if "not written yet" in states.values() and not writable:
        return Finding("CPU folded models", False, f"{detail}; {parent} is not writable, so the CPU runs them "
                       "unfolded (1.1-1.25x slower)", "make it writable for the daemon's user, set "
                       "ocr.cpu_fold_dir to a directory that is, or set ocr.cpu_fold: false")
    if "not written yet" in states.values():
        detail += " (the next start writes them, about 1.5 s once)"
    return Finding("CPU folded models", True, detail)


def _int8_det_runs(cfg: Config, det: Path) -> bool:
    from daemon.backends.onnxruntime.int8_copy import find_copy

    return cfg.ocr.cpu_int8_det and cfg.ocr.precision != "int8" and find_copy(det).path is not None


def cpu_int8_finding(cfg: Config) -> Finding:
    """Whether the CPU backend runs the detector from its shipped INT8 copy (ocr.cpu_int8_det), from the
    files alone (their sha256), loading no model."""
    from daemon.backends.onnxruntime.int8_copy import find_copy
    from daemon.ocr.models import ModelFileError, resolve

    check = "CPU INT8 detector"
    if not cfg.ocr.cpu_int8_det or cfg.ocr.precision == "int8":
        why = "ocr.cpu_int8_det is false" if not cfg.ocr.cpu_int8_det else "ocr.precision int8 runs calibrate's models"
        return Finding(check, True, f"off: {why}")
    try:
        det = resolve(cfg).det
    except ModelFileError as exc:
        return Finding(check, False, str(exc), "fix the model paths in config.yaml")
    found = find_copy(det)
    if found.path is not None:
        return Finding(check, True, f"{det.name} runs from {found.path}")
    if found.state == "no copy shipped":
        return Finding(check, True, f"none shipped for {det.name}: it runs in FP32 (only pp-ocrv6-small's "
                       "detector has one)")
    return Finding(check, False, f"{found.state}: {found.detail}; the detector runs in FP32 (about 3x slower)",
                   f"`{found.rebuild}`, or set ocr.cpu_int8_det: false")


def tensorrt_finding(found, why: str, gpu: GpuProbe, config_path: str | None = None) -> Finding:
    """Which TensorRT edition imports, and (TensorRT-RTX) whether it runs on this GPU at all."""
    from daemon.backends.tensorrt.generation import TENSORRT, TENSORRT_RTX

    if found is None:
        return Finding("TensorRT", False, f"not importable ({why})",
                       f"{TENSORRT.install}; {TENSORRT_RTX.install}; until then the daemon runs on ONNX Runtime (CPU)")
    detail = found.label
    if found.compute_capabilities:
        detail += f" (runs on compute capability {', '.join(found.compute_capabilities)})"
    if gpu.compute_capability and not found.runs_on(gpu.compute_capability):
        return Finding("TensorRT", False, f"{detail}; this GPU is {gpu.compute_capability}",
                       f"on this GPU use {TENSORRT.supported}; TensorRT-RTX can still build engines here for an "
                       f"RTX PC (`ocr-daemon build-engine {config_option(config_path)} --compute-capability X.Y`)")
    return Finding("TensorRT", True, detail)


def not_used(f: Finding, backend: str) -> Finding:
    """A GPU-side finding as a fact about the box, for a backend that does not use it."""
    return Finding(f.check, True, f"not used by backend {backend}: {f.detail}", info=True)


def diagnose(cfg: Config) -> list[Finding]:
    findings = []
    found, trt_why = probe_tensorrt()
    trt_version = found.version if found else None
    edition = found.edition.name if found else "tensorrt"
    gpu = probe_gpu()
    findings.append(tensorrt_finding(found, trt_why, gpu, cfg.source_path))
    toolkit = probe_nvcc()
    # nvcc only builds the kernels ahead of time (build-kernels); the daemon never needs it.
    toolkit_text = (f"toolkit (nvcc) {toolkit}" if toolkit else
                    "no CUDA toolkit (nvcc): needed only by `ocr-daemon build-kernels`, not at run time")
    if gpu.driver_cuda:
        findings.append(Finding("CUDA", True, f"driver supports CUDA {gpu.driver_cuda} (via {gpu.source}); "
                                              f"{toolkit_text}"))
    else:
        findings.append(Finding("CUDA", False, f"{gpu.why_not or 'no driver'}; {toolkit_text}",
                                "install the NVIDIA driver (JetPack on a Jetson)"))
    if gpu.name:
        kind = {True: ", integrated (zero-copy frames)", False: ", discrete (frames uploaded)"}.get(gpu.integrated, "")
        size = "".join([f", {gpu.multiprocessors} SMs" if gpu.multiprocessors else "",
                        f", {gpu.total_memory_mib} MiB" if gpu.total_memory_mib else ""])
        findings.append(Finding("GPU", True, f"{gpu.name}, compute capability {gpu.compute_capability}{size}{kind}"))
    else:
        findings.append(Finding("GPU", False, gpu.why_not or "none found",
                                "the daemon will run on the CPU; for TensorRT use a Jetson or an NVIDIA GPU"))
    has_pycuda, pycuda_detail = probe_pycuda()
    findings.append(Finding("pycuda", has_pycuda, f"pycuda {pycuda_detail}" if has_pycuda else f"missing ({pycuda_detail})",
                            "" if has_pycuda else PYCUDA_HINT))
    if cfg.backend == "onnxruntime":
        # Nothing of the GPU side is this config's to fix: the findings so far stay as facts about the box,
        # and the engines and kernels, which only a GPU backend loads, are not checked.
        findings = [not_used(f, cfg.backend) for f in findings]
        findings.append(Finding("engines", True, f"not used by backend {cfg.backend}: the TensorRT engines and GPU "
                                "kernels are checked under backend auto or tensorrt", info=True))
        findings += cpu_int8_model_findings(cfg)
        return findings + backend_and_rest(cfg, decide(cfg.backend, cfg.ocr.precision, None))
    kernels, kernels_gap = kernels_finding(cfg, gpu, toolkit)
    findings.append(kernels)
    engines, engine_facts = engine_checks(cfg, trt_version, gpu, edition)
    findings.extend(engines)
    # The daemon needs pycuda to see the GPU: one seen only by nvidia-smi does not count for it.
    usable_gpu = gpu.name is not None and gpu.source == "pycuda"
    gpu_why = "" if usable_gpu else (gpu.why_not or f"pycuda does not see the {gpu.name}")
    if usable_gpu and found is not None and not found.runs_on(gpu.compute_capability):
        usable_gpu, gpu_why = False, (f"{found.label} runs on compute capability "
                                      f"{', '.join(found.compute_capabilities)}; this {gpu.name} is {gpu.compute_capability}")
    facts = GpuFacts(tensorrt_version=trt_version, tensorrt_edition=edition, tensorrt_why=trt_why,
                     pycuda_why="" if has_pycuda else pycuda_detail,
                     gpu=f"{gpu.name} (compute capability {gpu.compute_capability})" if usable_gpu else None,
                     gpu_why=gpu_why, gpu_seen=gpu.name or nvidia_gpu_seen(), engines=engine_facts,
                     kernels_problem=kernels_gap)
    return findings + backend_and_rest(cfg, decide(cfg.backend, cfg.ocr.precision, facts, cfg.source_path))


def backend_and_rest(cfg: Config, choice: BackendChoice) -> list[Finding]:
    """The backend decision and what depends on it, then the CPU models, cameras and the broker."""
    findings = [backend_finding(cfg, choice)]
    findings.append(tiles_finding(cfg, choice.backend))
    findings.append(cpu_fold_finding(cfg))
    findings.append(cpu_int8_finding(cfg))

    cameras = _cameras()
    wanted = [c for c in cfg.cameras if c.kind == "v4l2"]
    missing = [c for c in wanted if (c.uri if c.uri.startswith("/dev/") else f"/dev/video{c.uri}") not in cameras]
    detail = f"{len(cameras)} V4L2 device(s): {', '.join(cameras)}" if cameras else "no /dev/video* devices"
    if missing:
        findings.append(Finding("cameras", False, f"{detail}; configured but absent: "
                                + ", ".join(f"{c.name} ({c.uri})" for c in missing),
                                "plug the camera in, or check `v4l2-ctl --list-devices` and the cameras[].uri"))
    else:
        findings.append(Finding("cameras", bool(cameras) or not wanted, detail,
                                "" if cameras or not wanted else "plug a camera in"))
    gst = [c.name for c in cfg.cameras if c.kind == "gstreamer"]
    if gst:
        from daemon.sources.capture import gstreamer_available

        ok = gstreamer_available()
        findings.append(Finding("GStreamer cameras", ok,
                                f"{', '.join(gst)}: this OpenCV " + ("reads GStreamer pipelines" if ok else
                                                                     "was built without GStreamer"),
                                "" if ok else "run with the system OpenCV (JetPack's): `sudo systemd/install.sh "
                                              "--gpu` builds such a venv (systemd/make-venv.sh --gpu)"))

    if cfg.mqtt.enabled:
        ok, detail = broker_reachable(cfg.mqtt.host, cfg.mqtt.port)
        findings.append(Finding("MQTT broker", ok, detail,
                                "" if ok else "start the broker or fix mqtt.host / mqtt.port; the daemon starts "
                                "anyway and queues results on disk until the broker is back"))
    else:
        findings.append(Finding("MQTT broker", True, "mqtt.enabled is false: nothing to check"))
    return findings


def render(findings: list[Finding]) -> str:
    width = max(len(f.check) for f in findings)
    lines = []
    for f in findings:
        lines.append(f"{'-- ' if f.info else 'ok ' if f.ok else 'GAP'}  {f.check:<{width}}  {f.detail}")
        if f.next_step:
            lines.append(f"     {'':<{width}}  next: {f.next_step}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="config file (default: config.yaml if present, else defaults)")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")


def main(args: argparse.Namespace) -> int:
    from daemon import config as config_mod

    path = config_mod.one_shot_path(args.config)
    try:
        cfg = config_mod.load_or_defaults(path)
    except config_mod.ConfigError as exc:   # cli.main's line and exit status, for callers of main() itself
        print(exc.report(path), file=sys.stderr)
        return 2
    findings = diagnose(cfg)
    if args.json:
        print(json.dumps([{k: v for k, v in asdict(f).items() if k != "info" and (k != "choice" or v is not None)}
                          for f in findings], indent=2, ensure_ascii=False))
    else:
        print(f"ocr-daemon doctor ({'config ' + path if path else 'default config'})")
        print(render(findings))
    return 0


def _unreadable_onnx(path: Path) -> str:
    """Why a calibrated model cannot be used ("is missing", "is not an ONNX model: ..."), or "" when it parses: a
    file cut short or overwritten fails at start, and doctor is where that should show first."""
    if not path.is_file():
        return "is missing"
    try:
        import onnx

        onnx.load(str(path), load_external_data=False)
    except Exception as exc:   # onnx raises protobuf's DecodeError and its own errors
        return f"is not an ONNX model ({type(exc).__name__}: {str(exc)[:160]})"
    return ""
