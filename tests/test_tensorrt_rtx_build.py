"""`ocr-daemon build-engine` for real, with NVIDIA's TensorRT-RTX parser and builder on this CPU-only machine.

TensorRT-RTX's builder needs no GPU ("CPU-only AOT"), so this is the one place where NVIDIA's ONNX parser
and builder run on our files: every model of both model sets (det, rec, rec_tail, cls), at the config's
shapes, for fp32, fp16 and int8 (from `ocr-daemon calibrate`'s own Q/DQ models on 8 rendered labels), for
compute capability 8.9 (an RTX 40xx). The config is the default but for a 480x640 detector input, which
halves calibration time here; bench/rtx_build.py builds the default 736x960 (bench/RESULTS.md). Each build's network input and output shapes are read just before
`build_serialized_network` and land in the sidecar (an engine cannot be deserialized without a GPU);
build time and peak memory go to build/test-figures/tensorrt_rtx_build.json. Deserializing and running the
engines is not done anywhere (no RTX-class GPU: TensorRT-RTX does not run on compute capability 9.0).

x86-64 only: NVIDIA publishes no aarch64 TensorRT-RTX wheels, so a Jetson skips this file.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

if platform.machine() not in ("x86_64", "AMD64"):
    pytest.skip(f"TensorRT-RTX has x86-64 wheels only (none for {platform.machine()}): NVIDIA's parser and "
                f"builder cannot run on this machine", allow_module_level=True)
try:
    import tensorrt_rtx  # noqa: F401  (the test extra installs it on x86-64: scripts/setup.sh)
except ImportError as exc:
    raise ImportError(f"tensorrt_rtx is not importable ({exc}): `bash scripts/setup.sh` installs "
                      f"tensorrt-rtx-cu12 (the test extra) on x86-64") from None

from daemon import config  # noqa: E402
from daemon.engines.build import BuildError, build_engine, cpu_target  # noqa: E402
from daemon.engines.plan import plan_engines  # noqa: E402
from daemon.engines.check import check_engine  # noqa: E402
from daemon.engines.sidecar import DeviceInfo, engine_path, read_sidecar, sha256_file, sidecar_path  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
MODEL_SETS = ("pp-ocrv4", "pp-ocrv6-small")
DET_INPUT = (480, 640)      # the default 736x960 doubles calibrate's time; every other shape is the default
PRECISIONS = ("fp32", "fp16", "int8")
CC = "8.9"
VERSION = tensorrt_rtx.__version__
FIGURES = ROOT / "build" / "test-figures" / "tensorrt_rtx_build.json"
# Runs one CLI command in this process and prints its peak resident memory (VmHWM: this process image's
# own, unlike ru_maxrss, which on Linux starts from the parent's at fork) as the last line.
CLI = ("import re, sys\nfrom daemon.cli import main\nrc = main(sys.argv[1:])\n"
       "print('VmHWM', re.search(r'VmHWM:\\s*(\\d+) kB', open('/proc/self/status').read()).group(1))\n"
       "sys.exit(rc)\n")


def cli(*args: str, timeout: int = 600) -> tuple[subprocess.CompletedProcess, float, int]:
    """`ocr-daemon ARGS` as a process: the result, its wall seconds and its peak RSS in MiB."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", CLI, "--log-level", "WARNING", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - started
    lines = done.stdout.strip().splitlines()
    peak = int(lines[-1].split()[1]) // 1024 if lines and lines[-1].startswith("VmHWM") else 0
    return done, seconds, peak


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    """8 rendered labels (calibrate's minimum) with their ground truth."""
    import cv2

    from daemon.samples.render import LABELS_FILE, render_label

    folder = tmp_path_factory.mktemp("frames")
    with open(folder / LABELS_FILE, "w", encoding="utf-8") as f:
        for i in range(8):
            s = render_label(700 + i, width=640, height=480, variant=("plain", "rotated", "blurred")[i % 3])
            cv2.imwrite(str(folder / f"{s.name}.png"), s.image)
            f.write(json.dumps({"image": f"{s.name}.png",
                                "lines": [{"text": ln.text, "box": [list(p) for p in ln.box]} for ln in s.lines]},
                               ensure_ascii=False) + "\n")
    return folder


@pytest.fixture(scope="module")
def figures():
    rows: list[dict] = []
    yield rows
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps({"tensorrt_rtx": VERSION, "compute_capability": CC, "builds": rows}, indent=1))


@pytest.fixture(scope="module", params=MODEL_SETS)
def model_set(request, tmp_path_factory, frames, figures):
    """A config of this model set at the default shapes, calibrated by `ocr-daemon calibrate` itself."""
    tmp = tmp_path_factory.mktemp(request.param)
    engines = tmp / "engines"
    path = tmp / "config.yaml"
    # the default timing-cache setting, pointed inside this test's folder: TensorRT-RTX must not write it
    path.write_text(f"backend: onnxruntime\nocr: {{model_set: {request.param}, det_input_size: {list(DET_INPUT)}}}\n"
                    f"engines: {{dir: {engines}, timing_cache: {engines / 'timing.cache'}}}\n", encoding="utf-8")
    done, seconds, peak = cli("calibrate", "--config", str(path), "--images", str(frames), "--held-out", "0",
                              "--speed-runs", "1", "--rec-lines", "16")
    assert done.returncode == 0, done.stderr[-3000:]
    figures.append({"model_set": request.param, "step": "calibrate", "seconds": round(seconds, 1), "peak_rss_mib": peak})
    return request.param, path, config.load(path)


@pytest.fixture(scope="module")
def builds(model_set, figures):
    """`ocr-daemon build-engine --precision P --compute-capability 8.9` for each precision, as processes."""
    name, path, cfg = model_set
    out = {}
    for precision in PRECISIONS:
        done, seconds, peak = cli("build-engine", "--config", str(path), "--precision", precision,
                                  "--compute-capability", CC)
        out[precision] = done
        figures.append({"model_set": name, "step": f"build-engine {precision}", "seconds": round(seconds, 1),
                        "peak_rss_mib": peak, "engines": _engine_rows(cfg, precision, done.stdout)})
    return out


def _engine_rows(cfg, precision: str, stdout: str) -> list[dict]:
    rows = []
    for plan in plan_engines(cfg, precision):
        path = engine_path(cfg.engines.dir, plan.engine_stem, plan.precision, rtx_device())
        line = next((ln for ln in stdout.splitlines() if ln.startswith(f"built {plan.role}: ")), "")
        build_s = float(line.split("(")[1].split(" s;")[0]) if "(" in line else None
        rows.append({"role": plan.role, "engine": path.name, "bytes": path.stat().st_size if path.is_file() else None,
                     "build_s": build_s})
    return rows


def rtx_device() -> DeviceInfo:
    return DeviceInfo(None, CC, VERSION, None, None, "tensorrt-rtx")


def expected_outputs(role: str, shape: tuple[int, ...], cfg) -> tuple[int, ...]:
    """What each model must produce at its config shape: the DB probability map at the input's size, one
    CTC step per 8 pixels of line width with its 3 most probable classes, two classes."""
    n = shape[0]
    if role == "det":
        return ((n, 1, *shape[2:]),)
    if role == "cls":
        return ((n, 2),)
    return ((n, shape[3] // 8, 3),) * 2      # the top-3 head: probabilities and classes (rec_head.py)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_build_engine_builds_every_model_at_the_config_shapes_with_no_dynamic_dim(model_set, builds, precision):
    name, _, cfg = model_set
    done = builds[precision]
    assert done.returncode == 0, f"{name} {precision}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    plans = plan_engines(cfg, precision)
    assert [p.role for p in plans] == ["det", "rec", "rec_tail", "cls"]
    for plan in plans:
        path = engine_path(cfg.engines.dir, plan.engine_stem, plan.precision, rtx_device())
        assert path.name.endswith(f".{plan.precision}.sm89.rtx{VERSION}.engine"), path.name
        assert path.is_file() and path.stat().st_size > 100_000, path
        sidecar = read_sidecar(sidecar_path(path))
        assert (sidecar["tensorrt_edition"], sidecar["tensorrt_version"], sidecar["compute_capability"]) == (
            "tensorrt-rtx", VERSION, CC)
        assert sidecar["gpu_name"] is None and sidecar["precision"] == plan.precision     # cls: fp16 under int8
        assert sidecar["engine_sha256"] == sha256_file(path)     # the bytes written, so a corrupt file shows
        # read off the network just before the build: the config's input, every output static and as expected
        assert list(sidecar["input_shapes"].values()) == [list(plan.input_shape)]
        outputs = tuple(tuple(shape) for shape in sidecar["output_shapes"].values())
        assert outputs == expected_outputs(plan.role, plan.input_shape, cfg), (plan.role, outputs)
        assert f"built {plan.role}: {path} (" in done.stdout
    assert not (Path(cfg.engines.dir) / "timing.cache").exists()     # a no-op in TensorRT-RTX 1.7: not written
    assert not list(Path(cfg.engines.dir).glob(".*.tmp"))


def test_a_second_build_is_byte_identical(model_set, builds, tmp_path):
    """int8's det and cls cover both kinds of copy a build makes: the Q/DQ model's FP16 copy (det; rec is
    built the same way) and the FP32 model's FP16 copy (cls)."""
    name, path, cfg = model_set
    assert builds["int8"].returncode == 0
    plans = [p for p in plan_engines(cfg, "int8") if p.role in ("det", "cls")]
    first = {}
    for plan in plans:
        engine = engine_path(cfg.engines.dir, plan.engine_stem, plan.precision, rtx_device())
        first[engine] = (engine.read_bytes(), read_sidecar(sidecar_path(engine)))
    done, _, _ = cli("build-engine", "--config", str(path), "--precision", "int8", "--compute-capability", CC,
                     "--role", "det", "--role", "cls")
    assert done.returncode == 0, done.stderr[-3000:]
    for engine, (data, sidecar) in first.items():
        assert engine.read_bytes() == data, f"{name}: {engine.name} differs from the first build"
        again = read_sidecar(sidecar_path(engine))
        assert {k: v for k, v in again.items() if k != "built_at"} == {k: v for k, v in sidecar.items() if k != "built_at"}


def test_figures_are_recorded(model_set, builds, figures):
    name = model_set[0]
    rows = [r for r in figures if r["model_set"] == name]
    assert {r["step"] for r in rows} >= {"calibrate", "build-engine fp32", "build-engine fp16", "build-engine int8"}
    for r in rows:
        assert r["seconds"] > 0 and r["peak_rss_mib"] > 0
        for e in r.get("engines", []):
            assert e["bytes"] and e["build_s"] is not None


# ---- in-process: what a build writes, and when ----

@pytest.fixture()
def cls_plan(tmp_path):
    """The classifier (the smallest model: a build takes well under a second) at fp32."""
    cfg = config.from_dict({"ocr": {"model_set": "pp-ocrv4"}, "engines": {"dir": str(tmp_path / "engines"),
                                                                          "timing_cache": None}})
    (plan,) = [p for p in plan_engines(cfg, "fp32") if p.role == "cls"]
    return cfg, plan


def test_engine_and_sidecar_are_written_atomically_engine_first(cls_plan, monkeypatch):
    cfg, plan = cls_plan
    target = cpu_target(CC)
    build_engine(plan, cfg.engines, target)        # an earlier pair on disk, to be replaced
    engine = engine_path(cfg.engines.dir, plan.engine_stem, plan.precision, target.device)
    events = []
    real_replace = os.replace

    def replace(src, dst):
        src, dst = Path(src), Path(dst)
        events.append((dst.name, src.parent == dst.parent, src.name.endswith(".tmp"), src.stat().st_size,
                       sidecar_path(engine).exists()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    built = build_engine(plan, cfg.engines, target)
    monkeypatch.undo()
    assert built.path == engine
    # each file arrives whole by one rename of a temporary file beside it; the engine first, while no
    # sidecar exists (the old one was removed: a sidecar never describes other engine bytes)
    assert [e[0] for e in events] == [engine.name, sidecar_path(engine).name]
    assert all(same_dir and tmp for _, same_dir, tmp, _, _ in events)
    assert events[0][3] == engine.stat().st_size and events[0][4] is False
    assert not list(engine.parent.glob(".*.tmp"))


def test_a_build_the_parser_refuses_leaves_the_previous_engine_and_sidecar(cls_plan, tmp_path, capsys):
    import dataclasses

    cfg, plan = cls_plan
    target = cpu_target(CC)
    built = build_engine(plan, cfg.engines, target)
    before = (built.path.read_bytes(), sidecar_path(built.path).read_bytes())
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(plan.source_onnx.read_bytes()[:4000])       # a truncated model: NVIDIA's parser says no
    with pytest.raises(BuildError, match="the ONNX parser rejected"):
        build_engine(dataclasses.replace(plan, source_onnx=broken), cfg.engines, target)
    assert "ONNX parser:" in capsys.readouterr().err
    assert (built.path.read_bytes(), sidecar_path(built.path).read_bytes()) == before
    assert not list(built.path.parent.glob(".*.tmp"))


def test_a_config_shape_the_model_cannot_take_stops_before_the_build(tmp_path):
    """PP-OCRv6 small's recognizer declares its height (48) in the ONNX: a config asking for 32 is named."""
    cfg = config.from_dict({"ocr": {"model_set": "pp-ocrv6-small", "rec_height": 32},
                            "engines": {"dir": str(tmp_path), "timing_cache": None}})
    (plan,) = [p for p in plan_engines(cfg, "fp32") if p.role == "rec"]
    with pytest.raises(BuildError, match=r"declared \(-1, 3, 48, -1\) in the ONNX; the config needs \(8, 3, 32, 320\)"):
        build_engine(plan, cfg.engines, cpu_target(CC))
    assert not list(Path(tmp_path).glob("*.engine"))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_recognizer_builds_with_its_top3_head(tmp_path, precision):
    """NVIDIA's parser takes the edited graph (TopK after the softmax, its indices cast to int32); the network returns
    3 values and 3 classes per step, and the sidecar says which head the engine has."""
    cfg = config.from_dict({"ocr": {"model_set": "pp-ocrv6-small"},
                            "engines": {"dir": str(tmp_path), "timing_cache": None}})
    (plan,) = [p for p in plan_engines(cfg, precision) if p.role == "rec"]
    assert plan.head == "top3"
    built = build_engine(plan, cfg.engines, cpu_target(CC))
    assert built.output_shapes == {"top3_values": (8, 40, 3), "top3_classes": (8, 40, 3)}
    sidecar = read_sidecar(sidecar_path(built.path))
    assert sidecar["head"] == "top3" and sidecar["onnx_sha256"] == sha256_file(plan.source_onnx)
    assert check_engine(plan, rtx_device(), tmp_path).ok


def test_other_compute_capabilities_build_and_name_their_engine(cls_plan):
    cfg, plan = cls_plan
    names = {cc: build_engine(plan, cfg.engines, cpu_target(cc)).path.name for cc in ("8.6", "12.0")}
    assert names["8.6"].endswith(f".fp32.sm86.rtx{VERSION}.engine")
    assert names["12.0"].endswith(f".fp32.sm120.rtx{VERSION}.engine")


def test_turing_gets_no_fp32_matrix_multiply_and_the_error_says_build_fp16(cls_plan):
    """TensorRT-RTX 1.7 compiles no FP32 GEMM for compute capability 7.5: the classifier (and the recognizer)
    fail there at fp32 and build at fp16."""
    import dataclasses

    cfg, plan = cls_plan
    with pytest.raises(BuildError, match="build fp16 or int8 engines for it"):
        build_engine(plan, cfg.engines, cpu_target("7.5"))
    fp16 = build_engine(dataclasses.replace(plan, precision="fp16"), cfg.engines, cpu_target("7.5"))
    assert fp16.path.name.endswith(f".fp16.sm75.rtx{VERSION}.engine")


def test_compute_capabilities_tensorrt_rtx_cannot_target_are_refused_naming_those_it_can(tmp_path):
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(f"engines: {{dir: {tmp_path / 'engines'}}}\n", encoding="utf-8")
    done, _, _ = cli("build-engine", "--config", str(cfg_path), "--compute-capability", "9.0")
    assert done.returncode == 2
    assert "--compute-capability 9.0" in done.stderr and "8.6, 8.9, 12.0" in done.stderr
    assert not (tmp_path / "engines").exists() or not list((tmp_path / "engines").glob("*.engine"))
