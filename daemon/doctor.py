"""`ocr-daemon doctor [--config FILE] [--json]`: what this box can do, and what to do next for each gap.

It checks TensorRT, CUDA, the GPU and its compute capability, pycuda, the engines the config needs and
whether their sidecars match this box, cameras (/dev/video*) and the MQTT broker (a TCP connect with a
short timeout). Every check degrades to a finding instead of an exception, so it runs on a CPU-only box.
Exit code 0 whatever it finds (it is a report); 2 for an invalid config.
"""
from __future__ import annotations

import argparse
import glob
import json
import shutil
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from daemon.config import Config


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str
    next_step: str = ""     # what to do about it; empty when nothing is needed


@dataclass(frozen=True)
class GpuProbe:
    """What could be learned about the GPU, from pycuda or else nvidia-smi."""
    name: str | None
    compute_capability: str | None
    driver_cuda: str | None     # CUDA version the driver supports, "12.6"
    integrated: bool | None
    source: str                 # "pycuda", "nvidia-smi" or "none"
    why_not: str = ""


def probe_tensorrt() -> tuple[str | None, str]:
    try:
        import tensorrt as trt
    except ImportError as exc:
        return None, str(exc)
    return trt.__version__, ""


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
            return GpuProbe(dev.name(), f"{major}.{minor}", f"{v // 1000}.{(v % 1000) // 10}",
                            bool(dev.get_attribute(cuda.device_attribute.INTEGRATED)), "pycuda")
    except ImportError:
        why = "pycuda is missing"
    except Exception as exc:  # pycuda.driver.Error and friends: fall back to nvidia-smi
        why = f"pycuda: {exc}"
    else:
        why = "pycuda sees no GPU"
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
            head = subprocess.run([smi], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            return GpuProbe(None, None, None, None, "none", f"nvidia-smi failed ({exc})")
        line = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
        if line:
            name, _, cc = (part.strip() for part in line.partition(","))
            cuda_version = None
            for token in head.split("CUDA Version:")[1:2]:
                cuda_version = token.split()[0]
            return GpuProbe(name, cc or None, cuda_version, None, "nvidia-smi")
    # Jetsons have no nvidia-smi on older JetPacks; /etc/nv_tegra_release marks one.
    if Path("/etc/nv_tegra_release").exists():
        return GpuProbe(None, None, None, True, "none", "a Jetson (nv_tegra_release) but pycuda is missing")
    return GpuProbe(None, None, None, None, "none", f"no NVIDIA GPU found ({why}; no nvidia-smi)")


def probe_nvcc() -> str | None:
    """CUDA toolkit release from nvcc (pycuda compiles the letterbox kernel with it at start)."""
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


def engine_findings(cfg: Config, trt_version: str | None, gpu: GpuProbe) -> list[Finding]:
    """One finding per engine the config needs; when TensorRT or the GPU is unknown, engines present
    on disk are listed but cannot be matched."""
    from daemon.engines.check import check_engine
    from daemon.engines.plan import EnginePlan, plan_engines, rebuild_command
    from daemon.engines.sidecar import DeviceInfo
    from daemon.ocr.models import ModelFileError

    precision = cfg.ocr.precision
    try:
        plans = plan_engines(cfg)
    except ModelFileError as exc:
        return [Finding("engines", False, str(exc), "fix ocr.det_model / ocr.rec_model in the config")]
    findings = []
    if precision == "int8":
        missing: dict[Path, EnginePlan] = {}
        for p in plans:     # rec and rec_tail share one Q/DQ model: one finding for it
            if p.precision == "int8" and not p.source_onnx.is_file():
                missing.setdefault(p.source_onnx, p)
        findings += [Finding(f"int8 model ({p.role})", False, f"{p.source_onnx} is missing",
                             "run `ocr-daemon calibrate --config FILE --images DIR`") for p in missing.values()]
    rebuild = rebuild_command(precision)
    if trt_version is None or gpu.compute_capability is None or gpu.name is None:
        for p in plans:
            present = sorted(Path(cfg.engines.dir).glob(f"{p.engine_stem}.{p.precision}.*.engine"))
            detail = (f"{len(present)} file(s) for this model and precision: {', '.join(x.name for x in present)}"
                      if present else "none built")
            findings.append(Finding(f"engine {p.role} ({p.precision})", False,
                                    f"{detail}; cannot check them without TensorRT and a GPU",
                                    f"on the target device: `{rebuild}`"))
        return findings
    device = DeviceInfo(gpu.name, gpu.compute_capability, trt_version)
    for p in plans:
        check = check_engine(p, device, cfg.engines.dir)
        if check.ok:
            findings.append(Finding(f"engine {p.role} ({p.precision})", True, f"{check.path} matches this box"))
        else:
            findings.append(Finding(f"engine {p.role} ({p.precision})", False, "; ".join(check.problems),
                                    f"`{rebuild}`"))
    return findings


def diagnose(cfg: Config) -> list[Finding]:
    findings = []
    trt_version, trt_why = probe_tensorrt()
    findings.append(Finding("TensorRT", trt_version is not None,
                            f"TensorRT {trt_version}" if trt_version else f"not importable ({trt_why})",
                            "" if trt_version else "on a Jetson: `sudo apt install nvidia-jetpack` (JetPack 6 has "
                            "TensorRT 10.3); elsewhere install NVIDIA's TensorRT 10 Python wheel; until then "
                            "the daemon runs on ONNX Runtime (CPU)"))
    gpu = probe_gpu()
    toolkit = probe_nvcc()
    toolkit_text = f"toolkit (nvcc) {toolkit}" if toolkit else "no CUDA toolkit (nvcc) found"
    if gpu.driver_cuda:
        findings.append(Finding("CUDA", toolkit is not None,
                                f"driver supports CUDA {gpu.driver_cuda} (via {gpu.source}); {toolkit_text}",
                                "" if toolkit else "install the CUDA toolkit (JetPack has it in /usr/local/cuda): "
                                "pycuda compiles the pre-processing kernel with nvcc"))
    else:
        findings.append(Finding("CUDA", False, f"{gpu.why_not or 'no driver'}; {toolkit_text}",
                                "install the NVIDIA driver (JetPack on a Jetson)"))
    if gpu.name:
        kind = {True: ", integrated (zero-copy frames)", False: ", discrete (frames uploaded)"}.get(gpu.integrated, "")
        findings.append(Finding("GPU", True, f"{gpu.name}, compute capability {gpu.compute_capability}{kind}"))
    else:
        findings.append(Finding("GPU", False, gpu.why_not or "none found",
                                "the daemon will run on the CPU; for TensorRT use a Jetson or an NVIDIA GPU"))
    has_pycuda, pycuda_detail = probe_pycuda()
    findings.append(Finding("pycuda", has_pycuda, f"pycuda {pycuda_detail}" if has_pycuda else f"missing ({pycuda_detail})",
                            "" if has_pycuda else "`pip install pycuda` (needs the CUDA toolkit's nvcc) or "
                            "`sudo apt install python3-pycuda` on a Jetson"))
    findings.extend(engine_findings(cfg, trt_version, gpu))

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
        lines.append(f"{'ok ' if f.ok else 'GAP'}  {f.check:<{width}}  {f.detail}")
        if f.next_step:
            lines.append(f"     {'':<{width}}  next: {f.next_step}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="config file (default: config.yaml if present, else defaults)")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")


def main(args: argparse.Namespace) -> int:
    from daemon import config as config_mod

    path = args.config or ("config.yaml" if Path("config.yaml").is_file() else None)
    try:
        cfg = config_mod.load_or_defaults(path)
    except config_mod.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    findings = diagnose(cfg)
    if args.json:
        print(json.dumps([asdict(f) for f in findings], indent=2))
    else:
        print(f"ocr-daemon doctor ({'config ' + path if path else 'default config'})")
        print(render(findings))
    return 0
