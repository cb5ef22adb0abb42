"""What building engines with TensorRT-RTX costs on a machine without a GPU: build time, peak memory and engine
size per model and precision, and what the compute-capability target does to the size.

    .venv/bin/python bench/rtx_build.py --out build/rtx-bench --json build/rtx-bench/figures.json

For each model set (pp-ocrv4, pp-ocrv6-small) at the default config (detector 1x3x736x960, recognizer 8 and
2 x3x48x320, classifier 8x3x48x192): `ocr-daemon calibrate` on rendered labels, then one
`ocr-daemon build-engine --precision P --role R --compute-capability 8.9` process per model and precision
(its build seconds as it prints them, its peak RSS as /proc/self/status VmHWM, the engine's bytes). Then the
sizes of det, rec and cls engines for every compute capability TensorRT-RTX targets, through the daemon's
build_engine, and of the detector built straight through TensorRT-RTX's API for targets the daemon does not
offer (none set: its default, portable from 8.0 on; several at once). x86-64 only (TensorRT-RTX's wheels).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODEL_SETS = ("pp-ocrv4", "pp-ocrv6-small")
PRECISIONS = ("fp32", "fp16", "int8")
ROLES = ("det", "rec", "rec_tail", "cls")
CC = "8.9"
# One CLI command in this process, then its own peak RSS (VmHWM, not ru_maxrss: that starts from the parent's).
CLI = ("import re, sys\nfrom daemon.cli import main\nrc = main(sys.argv[1:])\n"
       "print('VmHWM', re.search(r'VmHWM:\\s*(\\d+) kB', open('/proc/self/status').read()).group(1))\n"
       "sys.exit(rc)\n")


def cli(*args: str) -> tuple[subprocess.CompletedProcess, float, int]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", CLI, "--log-level", "WARNING", *args], cwd=ROOT,
                          capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    peak = int(lines[-1].split()[1]) // 1024 if lines and lines[-1].startswith("VmHWM") else 0
    return done, time.monotonic() - started, peak


def render_frames(folder: Path, n: int) -> Path:
    import cv2

    from daemon.samples.render import LABELS_FILE, render_label

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LABELS_FILE, "w", encoding="utf-8") as f:
        for i in range(n):
            s = render_label(700 + i, width=640, height=480, variant=("plain", "rotated", "blurred")[i % 3])
            cv2.imwrite(str(folder / f"{s.name}.png"), s.image)
            f.write(json.dumps({"image": f"{s.name}.png", "lines": [
                {"text": ln.text, "box": [list(p) for p in ln.box]} for ln in s.lines]}, ensure_ascii=False) + "\n")
    return folder


def import_baseline_mib() -> int:
    probe = ("import re, tensorrt_rtx\n"
             "print(re.search(r'VmHWM:\\s*(\\d+) kB', open('/proc/self/status').read()).group(1))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) // 1024


def per_model(config_path: Path, model_set: str) -> list[dict]:
    import tensorrt_rtx

    from daemon import config
    from daemon.engines.plan import plan_engines
    from daemon.engines.sidecar import DeviceInfo, engine_path

    cfg = config.load(config_path)
    device = DeviceInfo(None, CC, tensorrt_rtx.__version__, None, None, "tensorrt-rtx")
    rows = []
    for precision in PRECISIONS:
        for plan in plan_engines(cfg, precision):
            done, wall, peak = cli("build-engine", "--config", str(config_path), "--precision", precision,
                                   "--role", plan.role, "--compute-capability", CC)
            line = next((ln for ln in done.stdout.splitlines() if ln.startswith(f"built {plan.role}: ")), "")
            m = re.search(r"\((\d+\.\d+) s;", line)
            path = engine_path(cfg.engines.dir, plan.engine_stem, plan.precision, device)
            rows.append({"model_set": model_set, "role": plan.role, "precision": precision,
                         "engine_precision": plan.precision, "input": list(plan.input_shape), "ok": done.returncode == 0,
                         "build_s": float(m.group(1)) if m else None, "process_s": round(wall, 1),
                         "peak_rss_mib": peak, "bytes": path.stat().st_size if path.is_file() else None,
                         "error": done.stderr.strip().splitlines()[-1] if done.returncode else ""})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def per_compute_capability(config_path: Path, model_set: str) -> list[dict]:
    """Engine bytes of det, rec and cls for each compute capability, through the daemon's build_engine."""
    import tensorrt_rtx

    from daemon import config
    from daemon.backends.tensorrt.generation import target_compute_capabilities
    from daemon.engines.build import BuildError, build_engine, cpu_target
    from daemon.engines.plan import plan_engines

    cfg = config.load(config_path)
    rows = []
    for cc in target_compute_capabilities(tensorrt_rtx.ComputeCapability.__members__):
        target = cpu_target(cc)
        for precision in PRECISIONS:
            for plan in plan_engines(cfg, precision):
                if plan.role == "rec_tail":
                    continue
                try:
                    built = build_engine(plan, cfg.engines, target)
                    size, error = built.path.stat().st_size, ""
                    built.path.unlink()         # the largest (Turing's) run to 200 MB each
                except BuildError as exc:
                    size, error = None, str(exc).split(": ")[-1]
                rows.append({"model_set": model_set, "role": plan.role, "precision": precision,
                             "compute_capability": cc, "bytes": size, "error": error})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def detector_targets(config_path: Path, model_set: str) -> list[dict]:
    """The FP32 detector built through TensorRT-RTX's API for targets the daemon does not offer."""
    import tensorrt_rtx as trt

    from daemon import config
    from daemon.engines.plan import plan_engines

    cfg = config.load(config_path)
    plan = plan_engines(cfg, "fp32")[0]
    rows = []
    for targets in ((), ("SM86", "SM89", "SM120"), ("SM80", "SM86", "SM89", "SM120", "SM121"),
                    ("SM75", "SM80", "SM86", "SM89", "SM120", "SM121")):
        logger = trt.Logger(trt.Logger.ERROR)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        assert parser.parse(plan.source_onnx.read_bytes(), str(plan.source_onnx))
        network.get_input(0).shape = plan.input_shape
        conf = builder.create_builder_config()
        if targets:
            conf.num_compute_capabilities = len(targets)
            for i, name in enumerate(targets):
                conf.set_compute_capability(getattr(trt.ComputeCapability, name), i)
        started = time.monotonic()
        serialized = builder.build_serialized_network(network, conf)
        rows.append({"model_set": model_set, "role": "det", "precision": "fp32",
                     "targets": list(targets) or "TensorRT-RTX default (none set)",
                     "bytes": serialized.nbytes if serialized is not None else None,
                     "build_s": round(time.monotonic() - started, 2)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="build/rtx-bench", help="work folder (frames, configs, engines)")
    p.add_argument("--frames", type=int, default=16, help="rendered calibration labels (default 16)")
    p.add_argument("--json", default=None, help="write every figure here")
    p.add_argument("--skip-sweep", action="store_true", help="skip the compute-capability size sweep")
    args = p.parse_args()

    import platform

    if platform.machine() not in ("x86_64", "AMD64"):
        print(f"TensorRT-RTX has x86-64 wheels only, not {platform.machine()}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    frames = render_frames(out / "frames", args.frames)
    report = {"tensorrt_rtx": None, "compute_capability": CC, "import_baseline_mib": import_baseline_mib(),
              "calibrate": [], "builds": [], "compute_capabilities": [], "detector_targets": []}
    import tensorrt_rtx

    report["tensorrt_rtx"] = tensorrt_rtx.__version__
    for model_set in MODEL_SETS:
        engines = out / model_set / "engines"
        config_path = out / model_set / "config.yaml"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(f"backend: onnxruntime\nocr: {{model_set: {model_set}}}\n"
                               f"engines: {{dir: {engines}, timing_cache: null}}\n", encoding="utf-8")
        done, wall, peak = cli("calibrate", "--config", str(config_path), "--images", str(frames), "--held-out", "0",
                               "--speed-runs", "1", "--rec-lines", "64")
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        report["calibrate"].append({"model_set": model_set, "seconds": round(wall, 1), "peak_rss_mib": peak})
        report["builds"] += per_model(config_path, model_set)
        if not args.skip_sweep:
            report["compute_capabilities"] += per_compute_capability(config_path, model_set)
            report["detector_targets"] += detector_targets(config_path, model_set)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
