"""TensorRT-RTX as the fourth generation: its recipe, engine names and sidecars, the refusal of the other
edition's engines, and what `auto` and `doctor` make of it. Pure or faked probes: runs everywhere (the real
parser and builder run in test_tensorrt_rtx_build.py)."""
from __future__ import annotations

import argparse
import platform

import pytest

import daemon.backends.tensorrt as trt_backend
from daemon import doctor
from daemon.backends import EngineFact, GpuFacts, decide, probe_tensorrt
from daemon.backends.tensorrt.generation import (TENSORRT, TENSORRT_RTX, BuildRecipe, TensorRTInstall,
                                                 UnsupportedTensorRT, build_recipe, build_refusal_hint,
                                                 compute_capability_member, context_memory_api, generation,
                                                 target_compute_capabilities)
from daemon.config import from_dict
from daemon.engines.check import check_engine
from daemon.engines.plan import plan_engines
from daemon.engines.sidecar import (DeviceInfo, check_sidecar, engine_filename, engine_path, expected_sidecar,
                                    make_sidecar, read_sidecar, sha256_file, sidecar_path, write_sidecar)

RTX_CCS = ("7.5", "8.0", "8.6", "8.9", "12.0", "12.1")
RTX = TensorRTInstall(TENSORRT_RTX, "1.7.1.116", RTX_CCS)
# built on a machine without the GPU: only the compute capability is known
RTX_BUILT_ON_CPU = DeviceInfo(None, "8.9", "1.7.1.116", None, None, "tensorrt-rtx")
RTX_4070 = DeviceInfo("NVIDIA GeForce RTX 4070", "8.9", "1.7.1.116", 46, 11873, "tensorrt-rtx")
ORIN = DeviceInfo("Orin", "8.7", "10.3.0", 8, 7620)
DET = (1, 3, 736, 960)


# ---- the generation ----

def test_tensorrt_rtx_1_x_is_a_generation_with_tensorrt_11s_api():
    gen = generation("1.7.1.116", TENSORRT_RTX)
    assert (gen.major, gen.minor, gen.edition, gen.api_major, gen.strongly_typed) == (1, 7, TENSORRT_RTX, 11, True)
    assert context_memory_api(gen) == context_memory_api(generation("11.4.0.106"))


@pytest.mark.parametrize("version, edition", [("2.0.0", TENSORRT_RTX), ("0.9", TENSORRT_RTX), ("1.7.1.116", TENSORRT)])
def test_versions_of_the_other_numbering_are_refused(version, edition):
    with pytest.raises(UnsupportedTensorRT, match="is not supported; this daemon runs on .*TensorRT-RTX 1.x"):
        generation(version, edition)


def test_recipe_is_tensorrt_11s_plus_a_compute_capability_and_no_timing_cache():
    gen = generation("1.7.1.116", TENSORRT_RTX)
    assert [build_recipe(gen, p) for p in ("fp32", "fp16", "int8")] == [
        BuildRecipe(False, (), source, compute_capability_target=True, timing_cache=False)
        for source in ("fp32", "fp16", "qdq_fp16")]
    assert build_recipe(generation("11.4.0.106"), "int8") == BuildRecipe(False, (), "qdq_fp16")


def test_compute_capabilities_map_to_the_enum_members_and_back():
    assert [compute_capability_member(cc) for cc in ("7.5", "8.9", "12.0", "12.1")] == ["SM75", "SM89", "SM120", "SM121"]
    names = ["NONE", "CURRENT", "SM75", "SM80", "SM86", "SM89", "SM120", "SM121"]   # TensorRT-RTX 1.7.1.116's
    assert target_compute_capabilities(names) == RTX_CCS
    for bad in ("89", "sm89", "8.9.1", "8.10"):
        with pytest.raises(ValueError, match="major.minor"):
            compute_capability_member(bad)


def test_turing_fp32_has_a_known_way_out_and_nothing_else_does():
    gen = generation("1.7.1.116", TENSORRT_RTX)
    assert "build fp16 or int8" in build_refusal_hint(gen, "7.5", "fp32")
    assert build_refusal_hint(gen, "7.5", "fp16") == build_refusal_hint(gen, "8.9", "fp32") == ""
    assert build_refusal_hint(generation("10.3.0"), "7.5", "fp32") == ""


def test_an_install_runs_on_its_compute_capabilities_only():
    assert RTX.runs_on("8.9") and not RTX.runs_on("9.0") and RTX.label == "TensorRT-RTX 1.7.1.116"
    assert TensorRTInstall(TENSORRT, "10.3.0").runs_on("9.0")


# ---- engine names and sidecars ----

def test_engine_names_say_which_edition_built_them():
    assert engine_filename("det.b1", "int8", RTX_BUILT_ON_CPU) == "det.b1.int8.sm89.rtx1.7.1.116.engine"
    assert engine_filename("det.b1", "int8", ORIN) == "det.b1.int8.sm87.trt10.3.0.engine"


def test_an_engine_built_without_the_gpu_matches_any_gpu_of_its_compute_capability():
    built = make_sidecar(RTX_BUILT_ON_CPU, "fp16", {"x": DET}, "ab" * 32)
    assert built["tensorrt_edition"] == "tensorrt-rtx" and built["gpu_name"] is None
    assert check_sidecar(built, expected_sidecar(RTX_4070, "fp16", DET, "ab" * 32)) == []
    other_cc = DeviceInfo("NVIDIA GeForce RTX 3060", "8.6", "1.7.1.116", 28, 11918, "tensorrt-rtx")
    assert [p.split(":")[0] for p in check_sidecar(built, expected_sidecar(other_cc, "fp16", DET, "ab" * 32))] == [
        "compute capability"]
    newer = DeviceInfo("NVIDIA GeForce RTX 4070", "8.9", "1.8.0.10", 46, 11873, "tensorrt-rtx")
    assert check_sidecar(built, expected_sidecar(newer, "fp16", DET, "ab" * 32))[0].startswith("TensorRT version")


def test_a_sidecar_of_the_other_edition_is_one_problem_naming_both():
    rtx = make_sidecar(RTX_BUILT_ON_CPU, "fp16", {"x": DET}, "ab" * 32)
    assert check_sidecar(rtx, expected_sidecar(ORIN, "fp16", DET, "ab" * 32)) == [
        "TensorRT edition: engine built by TensorRT-RTX 1.7.1.116, which TensorRT 10.3.0 on this box cannot load"]
    # a sidecar written before editions existed is TensorRT's
    old = {k: v for k, v in make_sidecar(ORIN, "fp16", {"x": DET}, "ab" * 32).items() if k != "tensorrt_edition"}
    assert check_sidecar(old, expected_sidecar(ORIN, "fp16", DET, "ab" * 32)) == []
    assert check_sidecar(old, expected_sidecar(RTX_4070, "fp16", DET, "ab" * 32))[0].startswith(
        "TensorRT edition: engine built by TensorRT 10.3.0")


@pytest.fixture()
def cfg(tmp_path):
    det, rec = tmp_path / "det.onnx", tmp_path / "rec.onnx"
    det.write_bytes(b"det model")
    rec.write_bytes(b"rec model")
    return from_dict({"ocr": {"det_model": str(det), "rec_model": str(rec), "use_angle_classifier": False,
                              "rec_tail_batch": 0},
                      "engines": {"dir": str(tmp_path / "engines"), "timing_cache": None}})


def built_for(cfg, device, kernels_cc=None):
    """Engines (and GPU kernels, when kernels_cc) as build-engine and build-kernels leave them for ``device``."""
    from daemon.gpu import kernel_files

    for plan in plan_engines(cfg):
        path = engine_path(cfg.engines.dir, plan.engine_stem, plan.precision, device)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"engine")
        write_sidecar(sidecar_path(path), make_sidecar(device, plan.precision, {"x": plan.input_shape},
                                                       sha256_file(plan.source_onnx), head=plan.head))
    if kernels_cc:
        cubin = b"cubin"
        kernel_files.write_kernels(kernel_files.kernels_path(cfg.engines.dir, kernels_cc), cubin,
                                   kernel_files.make_kernels_sidecar(
                                       compute_capability=kernels_cc, cuda_toolkit_version="12.6",
                                       kernels_cu_sha256=kernel_files.source_sha256(),
                                       cubin_sha256=kernel_files.sha256_bytes(cubin)))


def test_the_other_editions_engine_beside_the_wanted_one_is_named_with_the_rebuild_command(cfg):
    built_for(cfg, RTX_BUILT_ON_CPU)          # provisioned for an RTX PC; this one runs TensorRT 10.3
    tensorrt_pc = DeviceInfo("NVIDIA GeForce RTX 4070", "8.9", "10.3.0", 46, 11873)
    check = check_engine(plan_engines(cfg)[0], tensorrt_pc, cfg.engines.dir)
    assert not check.ok and "does not exist" in check.problems[0]
    assert check.problems[1] == ("det.b1.fp32.sm89.rtx1.7.1.116.engine beside it was built by TensorRT-RTX, which "
                                 "TensorRT 10.3.0 cannot load")
    facts = GpuFacts("10.3.0", gpu="NVIDIA GeForce RTX 4070 (compute capability 8.9)",
                     engines=(EngineFact("det", False, check.problems),))
    choice = decide("auto", "fp32", facts)
    assert choice.category == "engine_missing" and "built by TensorRT-RTX" in choice.reason
    assert choice.reason.endswith("Rebuild it with `ocr-daemon build-engine --config FILE --precision fp32`")
    # and the other way round
    built_for(cfg, tensorrt_pc)
    check = check_engine(plan_engines(cfg)[0], RTX_4070, cfg.engines.dir)
    assert check.ok                            # its own engine is there too: the other one is not in the way
    check.path.unlink()
    check = check_engine(plan_engines(cfg)[0], RTX_4070, cfg.engines.dir)
    assert "built by TensorRT, which TensorRT-RTX 1.7.1.116 cannot load" in check.problems[1]


# ---- auto ----

def test_auto_takes_tensorrt_rtx_where_its_engines_match():
    facts = GpuFacts("1.7.1.116", "tensorrt-rtx", gpu="NVIDIA GeForce RTX 4070 (compute capability 8.9)",
                     engines=(EngineFact("det", True, ()), EngineFact("rec", True, ())))
    choice = decide("auto", "int8", facts)
    assert (choice.backend, choice.category) == ("tensorrt", "loaded")
    assert choice.reason == "TensorRT-RTX 1.7.1.116 engines match NVIDIA GeForce RTX 4070 (compute capability 8.9)"
    unsupported = decide("auto", "int8", GpuFacts("2.0.0", "tensorrt-rtx", gpu="x"))
    assert unsupported.category == "tensorrt_unavailable" and "TensorRT-RTX 2.0.0 is not supported" in unsupported.reason


def test_the_backend_refuses_a_gpu_tensorrt_rtx_cannot_run_on(monkeypatch):
    """An H100 (9.0) with TensorRT-RTX: device() is a BackendError, which `auto` turns into a CPU fallback."""
    from types import SimpleNamespace

    from daemon.backends.base import BackendError

    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: (None, RTX))
    ctx = SimpleNamespace(facts=SimpleNamespace(name="NVIDIA H100 80GB HBM3", compute_capability="9.0",
                                                multiprocessors=132),
                          device=SimpleNamespace(total_memory=lambda: 81008 << 20))
    backend = trt_backend.TensorRTBackend(from_dict({}))
    backend._ctx = ctx
    with pytest.raises(BackendError, match=r"TensorRT-RTX 1.7.1.116 runs on compute capability 7.5, 8.0, 8.6, "
                                           r"8.9, 12.0, 12.1; this NVIDIA H100 80GB HBM3 is 9.0 \(use TensorRT 8.6"):
        backend.device()


# ---- doctor ----

@pytest.fixture()
def rtx_box(monkeypatch):
    """doctor's probes on an RTX PC with TensorRT-RTX 1.7 and pycuda (nothing of it here)."""
    probe = doctor.GpuProbe("NVIDIA GeForce RTX 4070", "8.9", "12.6", False, "pycuda", multiprocessors=46,
                            total_memory_mib=11873)
    monkeypatch.setattr(doctor, "probe_tensorrt", lambda: (RTX, ""))
    monkeypatch.setattr(doctor, "probe_pycuda", lambda: (True, "2024.1.2"))
    monkeypatch.setattr(doctor, "probe_gpu", lambda: probe)
    monkeypatch.setattr(doctor, "probe_nvcc", lambda: None)
    return probe


def by_check(findings):
    return {f.check: f for f in findings}


def test_doctor_on_an_rtx_pc_takes_engines_built_elsewhere_for_its_compute_capability(cfg, rtx_box):
    built_for(cfg, RTX_BUILT_ON_CPU, kernels_cc="8.9")
    checks = by_check(doctor.diagnose(cfg))
    assert checks["TensorRT"].ok and checks["TensorRT"].detail.startswith("TensorRT-RTX 1.7.1.116 (runs on compute")
    assert checks["engine det (fp32)"].ok
    backend = checks["backend auto"]
    assert backend.ok and backend.detail == ("backend auto → tensorrt (fp32): TensorRT-RTX 1.7.1.116 engines match "
                                             "NVIDIA GeForce RTX 4070 (compute capability 8.9)")


def test_doctor_says_tensorrt_engines_do_not_serve_tensorrt_rtx(cfg, rtx_box):
    built_for(cfg, DeviceInfo("NVIDIA GeForce RTX 4070", "8.9", "10.3.0", 46, 11873), kernels_cc="8.9")
    checks = by_check(doctor.diagnose(cfg))
    det = checks["engine det (fp32)"]
    assert not det.ok and "built by TensorRT, which TensorRT-RTX 1.7.1.116 cannot load" in det.detail
    assert det.next_step == "`ocr-daemon build-engine --config FILE --precision fp32`"
    assert checks["backend auto"].choice["category"] == "engine_missing"


def test_doctor_on_a_gpu_tensorrt_rtx_cannot_run_on_names_tensorrt(cfg, monkeypatch, rtx_box):
    h100 = doctor.GpuProbe("NVIDIA H100 80GB HBM3", "9.0", "13.0", False, "pycuda", multiprocessors=132,
                           total_memory_mib=81008)
    monkeypatch.setattr(doctor, "probe_gpu", lambda: h100)
    checks = by_check(doctor.diagnose(cfg))
    trt = checks["TensorRT"]
    assert not trt.ok and trt.detail.endswith("this GPU is 9.0") and "TensorRT 8.6, 10.3" in trt.next_step
    backend = checks["backend auto"]
    assert backend.choice["category"] == "gpu_unavailable" and "this NVIDIA H100 80GB HBM3 is 9.0" in backend.detail


def test_doctor_names_a_corrupt_engine_and_notes_one_without_a_checksum(cfg, rtx_box):
    """The fake RTX PC (pycuda faked, 8.9) checking engines built for it: one truncated after the build, whose
    sidecar recorded its sha256, is named corrupt; one whose sidecar predates the checksum is usable with a note."""
    built_for(cfg, RTX_BUILT_ON_CPU, kernels_cc="8.9")
    det, rec = (check_engine(p, RTX_BUILT_ON_CPU, cfg.engines.dir).path for p in plan_engines(cfg))
    sidecar = read_sidecar(sidecar_path(det))
    write_sidecar(sidecar_path(det), {**sidecar, "engine_sha256": sha256_file(det)})
    det.write_bytes(det.read_bytes()[:3])
    checks = by_check(doctor.diagnose(cfg))
    bad = checks["engine det (fp32)"]
    assert not bad.ok and bad.detail.startswith(f"{det.name} is corrupt: its sha256 differs from its sidecar's")
    assert bad.next_step == "`ocr-daemon build-engine --config FILE --precision fp32`"
    old = checks["engine rec (fp32)"]
    assert old.ok and "no checksum recorded (built before sidecars recorded one): rebuild to record one" in old.detail
    assert checks["backend auto"].choice["category"] == "engine_stale"


def test_the_loader_refuses_a_corrupt_engine_before_deserializing_it(cfg, monkeypatch):
    """TensorRTBackend.load's pre-check is check_engine: the corrupt file never reaches the runtime."""
    from daemon.backends.base import BackendError
    from daemon.engines.plan import ENGINE_REC_HEAD, model_specs

    built_for(cfg, RTX_BUILT_ON_CPU)
    det = check_engine(plan_engines(cfg)[0], RTX_BUILT_ON_CPU, cfg.engines.dir).path
    write_sidecar(sidecar_path(det), {**read_sidecar(sidecar_path(det)), "engine_sha256": sha256_file(det)})
    det.write_bytes(b"")
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: (None, RTX))
    backend = trt_backend.TensorRTBackend(cfg)
    monkeypatch.setattr(backend, "device", lambda: RTX_4070)
    with pytest.raises(BackendError, match=r"det engine cannot be used: .* is corrupt: .*Rebuild it on this device "
                                           r"with `ocr-daemon build-engine --config FILE --precision fp32`"):
        backend.load(model_specs(cfg, ENGINE_REC_HEAD)[0])


def test_doctor_on_a_provisioning_box_without_a_gpu_offers_the_compute_capability_build(cfg, monkeypatch, rtx_box):
    monkeypatch.setattr(doctor, "probe_gpu", lambda: doctor.GpuProbe(None, None, None, None, "none", "no GPU"))
    det = by_check(doctor.diagnose(cfg))["engine det (fp32)"]
    assert "--precision fp32 --compute-capability X.Y" in det.next_step


# ---- build-engine's refusals, before anything is built ----

def _build_args(tmp_path, *extra):
    from daemon.engines import build

    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(f"engines: {{dir: {tmp_path / 'engines'}, timing_cache: null}}\n", encoding="utf-8")
    parser = argparse.ArgumentParser()
    build.add_arguments(parser)
    return build, parser.parse_args(["--config", str(cfg_path), *extra])


def test_compute_capability_is_refused_for_tensorrt_which_builds_only_for_its_gpu(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: (None, TensorRTInstall(TENSORRT, "10.3.0")))
    build, args = _build_args(tmp_path, "--compute-capability", "8.7")
    assert build.main(args) == 2
    assert "--compute-capability needs TensorRT-RTX; TensorRT 10.3.0 builds only for the GPU" in capsys.readouterr().err
    assert not (tmp_path / "engines").exists()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="TensorRT-RTX has x86-64 wheels only")
def test_without_a_gpu_build_engine_names_the_compute_capability_option(tmp_path, capsys):
    from daemon.gpu import pycuda_available

    found, why = probe_tensorrt()
    if found is None or found.edition != TENSORRT_RTX:
        pytest.skip(f"the edition found here is not TensorRT-RTX ({found.label if found else why})")
    if pycuda_available()[0]:
        pytest.skip("a GPU is usable here")
    build, args = _build_args(tmp_path)
    assert build.main(args) == 1
    err = capsys.readouterr().err
    assert "cannot build engines here" in err and "--compute-capability" in err
