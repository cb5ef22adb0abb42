"""Engine names, sidecars and the refusal of stale or foreign engines: pure, runs everywhere."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from daemon.backends.base import ModelSpec
from daemon.backends.tensorrt.buffers import IoTensor, tensor_nbytes
from daemon.engines.check import check_engine
from daemon import config
from daemon.engines.plan import plan_engines, plan_for_spec, rebuild_command
from daemon.engines.sidecar import (LATER_KEYS, SIDECAR_KEYS, DeviceInfo, check_sidecar, engine_filename, engine_path,
                                    expected_sidecar, make_sidecar, read_sidecar, sha256_file, sidecar_path,
                                    sm_tag, write_sidecar)

ORIN = DeviceInfo("Orin", "8.7", "10.3.0", 8, 7620)      # Orin Nano 8GB
H100 = DeviceInfo("NVIDIA H100 80GB HBM3", "9.0", "10.3.0", 132, 81008)
DET_SHAPE = (1, 3, 960, 960)
REC_SHAPE = (8, 3, 48, 320)


def test_engine_name_carries_model_precision_architecture_and_tensorrt_version():
    assert sm_tag("8.7") == "sm87" and sm_tag("10.0") == "sm100"
    assert engine_filename("ch_PP-OCRv4_det_infer", "int8", ORIN) == "ch_PP-OCRv4_det_infer.int8.sm87.trt10.3.0.engine"
    path = engine_path("engines", "m", "fp16", H100)
    assert path == Path("engines/m.fp16.sm90.trt10.3.0.engine")
    assert sidecar_path(path) == Path("engines/m.fp16.sm90.trt10.3.0.engine.json")


def test_bad_compute_capability_is_refused():
    with pytest.raises(ValueError):
        sm_tag("sm_87")


def test_sidecar_round_trips_and_has_every_key(tmp_path):
    when = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
    sc = make_sidecar(ORIN, "int8", {"x": DET_SHAPE}, "ab" * 32, built_at=when, engine_sha256="ef" * 32)
    assert set(sc) == set(SIDECAR_KEYS) | set(LATER_KEYS)
    assert sc["tensorrt_edition"] == "tensorrt" and sc["output_shapes"] == {}
    assert sc["input_shapes"] == {"x": [1, 3, 960, 960]} and sc["built_at"] == "2026-11-23T12:00:00+00:00"
    write_sidecar(tmp_path / "e.json", sc)
    assert read_sidecar(tmp_path / "e.json") == sc


def test_matching_sidecar_has_no_problems_whatever_the_input_name():
    built = make_sidecar(ORIN, "int8", {"x": DET_SHAPE}, "ab" * 32)
    assert check_sidecar(built, expected_sidecar(ORIN, "int8", DET_SHAPE, "ab" * 32)) == []


@pytest.mark.parametrize("device, precision, shape, sha, word", [
    (DeviceInfo("Orin", "8.7", "10.4.0", 8, 7620), "int8", DET_SHAPE, "ab" * 32, "TensorRT version"),
    (DeviceInfo("Orin", "7.2", "10.3.0", 8, 7620), "int8", DET_SHAPE, "ab" * 32, "compute capability"),
    (DeviceInfo("Orin Nano", "8.7", "10.3.0", 8, 7620), "int8", DET_SHAPE, "ab" * 32, "GPU"),
    # An Orin Nano 4GB reports the same name and compute capability as the 8GB module
    (DeviceInfo("Orin", "8.7", "10.3.0", 4, 7620), "int8", DET_SHAPE, "ab" * 32, "SM count"),
    (DeviceInfo("Orin", "8.7", "10.3.0", 8, 15656), "int8", DET_SHAPE, "ab" * 32, "GPU memory"),
    (ORIN, "fp16", DET_SHAPE, "ab" * 32, "precision"),
    (ORIN, "int8", (1, 3, 640, 640), "ab" * 32, "input shapes"),
    (ORIN, "int8", DET_SHAPE, "cd" * 32, "source ONNX sha256"),
])
def test_each_kind_of_mismatch_is_named(device, precision, shape, sha, word):
    built = make_sidecar(ORIN, "int8", {"x": DET_SHAPE}, "ab" * 32)
    problems = check_sidecar(built, expected_sidecar(device, precision, shape, sha))
    assert len(problems) == 1 and problems[0].startswith(word), problems


def test_a_recognizer_engine_built_before_the_top3_head_is_stale_and_other_engines_are_not():
    """Engines are built with the recognizer's top-3 head (rec_head.py); one whose sidecar predates it returned the
    softmax over every class, which the pipeline no longer reads."""
    old = {k: v for k, v in make_sidecar(ORIN, "fp16", {"x": REC_SHAPE}, "ab" * 32).items() if k != "head"}
    problems = check_sidecar(old, expected_sidecar(ORIN, "fp16", REC_SHAPE, "ab" * 32, head="top3"))
    assert problems == ["outputs: engine built for 'model', this box has 'top3'"]
    assert check_sidecar(old, expected_sidecar(ORIN, "fp16", REC_SHAPE, "ab" * 32)) == []     # det, cls
    new = make_sidecar(ORIN, "fp16", {"x": REC_SHAPE}, "ab" * 32, head="top3")
    assert check_sidecar(new, expected_sidecar(ORIN, "fp16", REC_SHAPE, "ab" * 32, head="top3")) == []


def test_engines_plan_the_recognizers_with_the_top3_head_and_nothing_else(tmp_path):
    cfg = config.from_dict({"engines": {"dir": str(tmp_path)}})
    heads = {p.role: p.head for p in plan_engines(cfg)}
    assert heads == {"det": "model", "rec": "top3", "rec_tail": "top3", "cls": "model"}


def test_sidecar_missing_keys_and_garbage_shapes_are_problems():
    expected = expected_sidecar(ORIN, "int8", DET_SHAPE, "ab" * 32)
    assert any("lacks 'onnx_sha256'" in p for p in check_sidecar({"precision": "int8"}, expected))
    broken = dict(make_sidecar(ORIN, "int8", {"x": DET_SHAPE}, "ab" * 32), input_shapes=[1, 3])
    assert any("not a name -> shape map" in p for p in check_sidecar(broken, expected))


def _engine_on_disk(tmp_path, with_sha256):
    """An engine file with a sidecar that matches ORIN; with_sha256 False: as sidecars were written before it."""
    onnx = tmp_path / "det.onnx"
    onnx.write_bytes(b"det model")
    plan = plan_for_spec(ModelSpec("det", str(onnx), DET_SHAPE), "fp32", tmp_path)
    path = engine_path(tmp_path, plan.engine_stem, plan.precision, ORIN)
    path.write_bytes(b"engine bytes " * 1000)
    write_sidecar(sidecar_path(path), make_sidecar(ORIN, "fp32", {"x": DET_SHAPE}, sha256_file(onnx),
                                                   engine_sha256=sha256_file(path) if with_sha256 else None))
    return plan, path


def test_a_truncated_engine_is_refused_by_its_sha256_before_deserializing(tmp_path):
    plan, path = _engine_on_disk(tmp_path, with_sha256=True)
    assert check_engine(plan, ORIN, tmp_path).ok
    with open(path, "r+b") as f:
        f.truncate(4096)
    check = check_engine(plan, ORIN, tmp_path)
    assert check.problems == (f"{path.name} is corrupt: its sha256 differs from its sidecar's (truncated, damaged "
                              "or replaced since the build)",)


def test_an_engine_whose_sidecar_has_no_sha256_is_usable_with_a_note(tmp_path):
    plan, path = _engine_on_disk(tmp_path, with_sha256=False)
    path.write_bytes(b"garbage")     # nothing to tell it by: loading will say
    check = check_engine(plan, ORIN, tmp_path)
    assert check.ok and check.notes == ("no checksum recorded (built before sidecars recorded one): rebuild to "
                                        "record one",)


def test_unreadable_sidecar_names_its_path(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        read_sidecar(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="missing.json"):
        read_sidecar(tmp_path / "missing.json")


# ---- element sizes come from the dtype, never from the DataType enum (nvOCDR's TensorRT 10 bug) ----

@pytest.mark.parametrize("dtype, itemsize", [(np.float32, 4), (np.float16, 2), (np.int8, 1), (np.int32, 4), (np.bool_, 1)])
def test_buffer_bytes_use_the_element_size_of_the_dtype(dtype, itemsize):
    assert tensor_nbytes((8, 3, 48, 320), dtype) == 8 * 3 * 48 * 320 * itemsize
    assert IoTensor("y", False, (1, 1, 960, 960), np.dtype(dtype)).nbytes == 960 * 960 * itemsize


def test_dynamic_dimensions_are_refused():
    with pytest.raises(ValueError, match="dynamic"):
        tensor_nbytes((-1, 3, 48, 320), np.float32)


# ---- plans: which ONNX an engine comes from ----

def test_int8_engines_come_from_the_qdq_models_and_cls_stays_fp16(tmp_path):
    det = plan_for_spec(ModelSpec("det", "/m/ch_PP-OCRv4_det_infer.onnx", DET_SHAPE), "int8", tmp_path)
    assert det.source_onnx == tmp_path / "ch_PP-OCRv4_det_infer.int8.qdq.onnx"
    assert det.model_stem == "ch_PP-OCRv4_det_infer" and det.precision == "int8"
    cls = plan_for_spec(ModelSpec("cls", "/m/cls.onnx", (8, 3, 48, 192)), "int8", tmp_path)
    assert cls.source_onnx == Path("/m/cls.onnx") and cls.precision == "fp16"
    fp16 = plan_for_spec(ModelSpec("rec", "/m/rec.onnx", (8, 3, 48, 320)), "fp16", tmp_path)
    assert fp16.source_onnx == Path("/m/rec.onnx")
    assert rebuild_command("int8") == "ocr-daemon build-engine --config FILE --precision int8"
    # the config's own path where it is known (under systemd it decides where the engines land)
    assert rebuild_command("fp16", "/etc/ocr-daemon/config.yaml") == ("ocr-daemon build-engine --config "
                                                                      "/etc/ocr-daemon/config.yaml --precision fp16")
    assert rebuild_command("fp32", "/srv/line 2/c.yaml") == ("ocr-daemon build-engine --config '/srv/line 2/c.yaml' "
                                                             "--precision fp32")


def test_the_two_recognizer_engines_of_one_model_have_their_own_files(tmp_path):
    from daemon.config import OcrConfig
    from daemon.engines.plan import specs_for
    from daemon.ocr.models import ModelPaths

    paths = ModelPaths(Path("/m/det.onnx"), Path("/m/rec.onnx"), None, None)
    plans = [plan_for_spec(s, "fp16", tmp_path) for s in specs_for(OcrConfig(), paths)]
    assert [(p.role, p.input_shape[0]) for p in plans] == [("det", 1), ("rec", 8), ("rec_tail", 2)]
    names = [engine_path(tmp_path, p.engine_stem, p.precision, ORIN).name for p in plans]
    assert names[1:] == ["rec.b8.fp16.sm87.trt10.3.0.engine", "rec.b2.fp16.sm87.trt10.3.0.engine"]
    assert [s.role for s in specs_for(OcrConfig(rec_tail_batch=0), paths)] == ["det", "rec"]


# ---- check_engine: what the TensorRT backend and doctor refuse ----

@pytest.fixture()
def built(tmp_path):
    """An engine file (its bytes do not matter here) and a sidecar written as build-engine writes it."""
    onnx = tmp_path / "det.onnx"
    onnx.write_bytes(b"onnx model bytes")
    plan = plan_for_spec(ModelSpec("det", str(onnx), DET_SHAPE), "fp16", tmp_path / "engines")
    path = engine_path(tmp_path / "engines", plan.engine_stem, "fp16", ORIN)
    path.parent.mkdir()
    path.write_bytes(b"serialized engine")
    write_sidecar(sidecar_path(path), make_sidecar(ORIN, "fp16", {"x": DET_SHAPE}, sha256_file(onnx)))
    return plan, onnx


def test_matching_engine_passes(built, tmp_path):
    plan, _ = built
    check = check_engine(plan, ORIN, tmp_path / "engines")
    assert check.ok and check.path.name == "det.b1.fp16.sm87.trt10.3.0.engine"


def test_engine_for_another_gpu_is_simply_not_found(built, tmp_path):
    plan, _ = built
    check = check_engine(plan, H100, tmp_path / "engines")
    assert not check.ok and "does not exist" in check.problems[0] and "sm90" in check.problems[0]


def test_changed_model_is_refused(built, tmp_path):
    plan, onnx = built
    onnx.write_bytes(b"a retrained model")
    check = check_engine(plan, ORIN, tmp_path / "engines")
    assert not check.ok and check.problems[0].startswith("source ONNX sha256")


def test_missing_sidecar_is_refused(built, tmp_path):
    plan, _ = built
    sidecar_path(engine_path(tmp_path / "engines", "det.b1", "fp16", ORIN)).unlink()
    check = check_engine(plan, ORIN, tmp_path / "engines")
    assert not check.ok and "cannot be read" in check.problems[0]


def test_changed_config_shape_is_refused(built, tmp_path):
    _, onnx = built
    plan = plan_for_spec(ModelSpec("det", str(onnx), (1, 3, 640, 640)), "fp16", tmp_path / "engines")
    check = check_engine(plan, ORIN, tmp_path / "engines")
    assert not check.ok and check.problems[0].startswith("input shapes")
