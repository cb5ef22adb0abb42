"""The TensorRT code checked against NVIDIA's real Python bindings of every version docs/install-and-jetson.md supports.

TensorRT's libraries cannot be installed on our machines, but PyPI's bindings wheels import over stub
libraries (tests/trt_api/stub_libs.c, built into build/trt-api/ for this check only; nothing in the
daemon loads them). tests/trt_api/scenarios.py then runs the daemon's own build_engine and EngineSession
against each version's real classes, enums and pybind11 signatures (tests/trt_api/shadow.py): a class,
member, keyword or argument type that version lacks fails the run. On the code before issue 8 this
fails for 11.4 (`BuilderFlag.FP16` does not exist), for 8.6 (create_network(0) is implicit batch) and
everywhere for the fixed input shapes (never set on the network). TensorRT-RTX 1.7's installed bindings
(real libraries, nothing called in them here) take the same scenarios: its build path also runs for real in
test_tensorrt_rtx_build.py, but its load path (session.py) can only be checked this way without an RTX GPU.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trt_api.bindings import VERSIONS, Unavailable, prepare

ROOT = Path(__file__).resolve().parents[1]
DET_SHAPE = [1, 3, 736, 960]


@pytest.fixture(scope="module", params=VERSIONS, ids=[v[0] for v in VERSIONS])
def report(request, tmp_path_factory):
    label, requirement, major = request.param
    if label.startswith("rtx") and platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(f"TensorRT-RTX has x86-64 wheels only (none for {platform.machine()})")
    try:
        bindings = prepare(label, requirement, major)
    except Unavailable as exc:
        if os.environ.get("CI"):
            raise           # CI reaches PyPI and has gcc: a missing wheel there is a failure
        pytest.skip(f"TensorRT {label} bindings not available here: {exc}")
    env = dict(os.environ, LD_LIBRARY_PATH=str(bindings.libs), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "tests.trt_api.scenarios", str(bindings.site),
                           str(tmp_path_factory.mktemp(f"trt{label}")), bindings.module],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout.strip().splitlines()[-1])
    data["major"] = major
    return data


def _calls(scenario: dict, name: str) -> list[list]:
    return [c for c in scenario["calls"] if c[0] == name]


@pytest.mark.parametrize("scenario", ["build_fp32", "build_fp16", "build_int8", "load_static", "load_dynamic"])
def test_every_tensorrt_call_exists_with_its_signature_in_this_version(report, scenario):
    s = report["scenarios"][scenario]
    assert s["problems"] == [], s["problems"]
    assert s["error"] is None, s["error"]


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_sets_the_network_explicit_batch_flag_only_before_10(report, precision):
    s = report["scenarios"][f"build_{precision}"]
    (call,) = _calls(s, "Builder.create_network")
    assert call[1] == [1 if report["major"] < 10 else 0]      # 1 << EXPLICIT_BATCH (0) on 8.6


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engines_are_fixed_shape_the_input_is_set_before_the_build(report, precision):
    s = report["scenarios"][f"build_{precision}"]
    names = [c[0] for c in s["calls"]]
    assert ["ITensor.shape=", [DET_SHAPE], {}] in s["calls"]
    assert names.index("ITensor.shape=") < names.index("Builder.build_serialized_network")
    assert names.index("INetworkDefinition.get_output") < names.index("Builder.build_serialized_network")
    assert s["detail"]["sidecar_shapes"] == {"x": DET_SHAPE}
    assert s["detail"]["sidecar_outputs"] == {"y": [1, 1, 736, 960]}


def test_precision_comes_from_builder_flags_before_11_and_from_the_onnx_on_11(report):
    flags = {p: [c[1][0] for c in _calls(report["scenarios"][f"build_{p}"], "IBuilderConfig.set_flag")]
             for p in ("fp32", "fp16", "int8")}
    sources = {p: report["scenarios"][f"build_{p}"]["detail"]["sources"] for p in ("fp32", "fp16", "int8")}
    if report["major"] >= 11:       # strongly typed: no FP16/INT8 flags; FP16 copies of the ONNX
        assert flags == {"fp32": [], "fp16": [], "int8": []}
        assert sources == {"fp32": ["fp32"], "fp16": ["fp16"], "int8": ["qdq_fp16"]}
    else:                           # INT8 beside FP16, else unquantized layers run in FP32
        assert flags["fp32"] == [] and flags["fp16"] == ["<BuilderFlag.FP16: 0>"]
        assert sorted(flags["int8"]) == sorted(["<BuilderFlag.INT8: 1>", "<BuilderFlag.FP16: 0>"])
        assert sources == {"fp32": ["fp32"], "fp16": ["fp32"], "int8": ["qdq"]}


def test_timing_cache_is_attached_and_its_answer_checked(report):
    s = report["scenarios"]["build_fp32"]
    if report["edition"] == "tensorrt-rtx":         # a deprecated no-op there: never touched
        assert _calls(s, "IBuilderConfig.set_timing_cache") == _calls(s, "IBuilderConfig.create_timing_cache") == []
        return
    (call,) = _calls(s, "IBuilderConfig.set_timing_cache")
    assert call[1][1] is False       # ignore_mismatch=False: a foreign cache is refused, not trusted


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_rtx_builds_for_one_explicit_compute_capability_and_tensorrt_sets_none(report, precision):
    s = report["scenarios"][f"build_{precision}"]
    if report["edition"] != "tensorrt-rtx":
        assert _calls(s, "IBuilderConfig.set_compute_capability") == []
        return
    assert [c[1] for c in _calls(s, "IBuilderConfig.num_compute_capabilities=")] == [[1]]
    assert [c[1] for c in _calls(s, "IBuilderConfig.set_compute_capability")] == [["<ComputeCapability.SM89: 89>", 0]]
    assert s["detail"]["engine"].endswith(f".sm89.rtx{report['version']}.engine")


@pytest.mark.parametrize("scenario", ["load_static", "load_dynamic"])
def test_two_contexts_share_one_activation_block(report, scenario):
    s = report["scenarios"][scenario]
    assert s["detail"]["allocations"] == [48 << 20]            # one block, not one per context
    assert s["detail"]["saved_bytes"] == 48 << 20
    if report["major"] < 10:
        assert len(_calls(s, "ICudaEngine.create_execution_context_without_device_memory")) == 2
        assert [c[1] for c in _calls(s, "IExecutionContext.device_memory=")] == [[0x10000], [0x10000]]
    else:
        created = _calls(s, "ICudaEngine.create_execution_context")
        assert [c[1] for c in created] == [["<ExecutionContextAllocationStrategy.USER_MANAGED: 2>"]] * 2
        assert [c[1] for c in _calls(s, "IExecutionContext.set_device_memory")] == [[0x10000, 48 << 20]] * 2


def test_an_engine_with_dynamic_dims_is_resolved_through_each_context(report):
    static, dynamic = report["scenarios"]["load_static"], report["scenarios"]["load_dynamic"]
    assert _calls(static, "IExecutionContext.set_input_shape") == []
    assert [c[1] for c in _calls(dynamic, "IExecutionContext.set_input_shape")] == [["x", DET_SHAPE]] * 2
    for s in (static, dynamic):
        assert s["detail"]["input"] == DET_SHAPE and s["detail"]["outputs"] == [[1, 1, 736, 960]]
