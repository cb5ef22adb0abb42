"""The CPU's shipped INT8 detector (daemon/quantize/cpu_int8.py, daemon/backends/onnxruntime/int8_copy.py):
the GELU rewrite on a small graph against ONNX Runtime, the shipped copy against the installed wheel's
detector (same bytes from the command that writes it, the same probability map to within INT8's step, the
same readings on labels), and each way a copy may not run: another source file, a damaged copy, a missing
sidecar, ocr.cpu_int8_det false. Each of those runs the detector in FP32 and says why."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from daemon import config, doctor
from daemon.backends.onnxruntime import int8_copy
from daemon.backends.onnxruntime.int8_copy import copy_paths, find_copy, sha256_of
from daemon.ocr import evaluate
from daemon.ocr.det_pre import preprocess_det
from daemon.ocr.models import MODEL_SETS, ModelFileError, bundled_model_dir
from daemon.ocr.pipeline import OcrPipeline
from daemon.quantize.cpu_int8 import KEPT_IN_FLOAT, build, fuse_gelu
from daemon.samples.render import render_label


def _v6_detector() -> Path:
    try:
        return bundled_model_dir("pp-ocrv6-small", "det") / MODEL_SETS["pp-ocrv6-small"]["det"][1]
    except ModelFileError as exc:
        pytest.skip(f"PP-OCRv6 small is not installed here: {exc}")


def _gelu_graph(half: float = 0.5) -> onnx.ModelProto:
    consts = [numpy_helper.from_array(np.asarray(v, np.float32), n)
              for n, v in (("sqrt2", 2.0 ** 0.5), ("one", 1.0), ("half", half))]
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Div", ["r", "sqrt2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["a"]), helper.make_node("Mul", ["r", "a"], ["m"]),
             helper.make_node("Mul", ["m", "half"], ["y"])]
    graph = helper.make_graph(nodes, "gelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 64])], consts)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def test_an_erf_gelu_becomes_one_node_with_the_same_values():
    model = _gelu_graph()
    x = np.random.default_rng(3).normal(scale=3, size=(2, 64)).astype(np.float32)
    before = _run(model, x)
    fused = onnx.ModelProto()
    fused.CopyFrom(model)
    assert fuse_gelu(fused) == 1
    assert [n.op_type for n in fused.graph.node] == ["Relu", "Gelu"]
    np.testing.assert_allclose(_run(fused, x), before, atol=1e-5)


def test_a_chain_with_other_constants_is_left_alone():
    model = _gelu_graph(half=0.25)
    assert fuse_gelu(model) == 0
    assert len(model.graph.node) == 6


def test_the_shipped_copy_is_what_the_command_writes(tmp_path):
    """The bytes in daemon/models come from `python -m daemon.quantize.cpu_int8` on the wheel's detector,
    not from a hand edit: the same command here writes the same file."""
    source = _v6_detector()
    shipped, sidecar = copy_paths(source.name)
    meta = json.loads(sidecar.read_text())
    assert meta["source_sha256"] == sha256_of(source)
    assert meta["sha256"] == sha256_of(shipped)
    if meta["written_by"]["onnxruntime"] != ort.__version__ or meta["written_by"]["onnx"] != onnx.__version__:
        pytest.skip(f"written by onnxruntime {meta['written_by']['onnxruntime']} / onnx {meta['written_by']['onnx']}; "
                    f"this is {ort.__version__} / {onnx.__version__}, whose quantizer may round differently")
    _, new_meta = build(source, tmp_path, exclude=KEPT_IN_FLOAT[source.name])
    assert new_meta == meta


def test_the_int8_map_is_the_fp32_map_within_a_step():
    source = _v6_detector()
    frame = render_label(4400, variant="plain").image
    x = preprocess_det(frame, 736, 960)[0][None]
    maps = {}
    for name, path in (("fp32", source), ("int8", find_copy(source).path)):
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        maps[name] = s.run(None, {s.get_inputs()[0].name: x})[0]
    a, b = maps["fp32"], maps["int8"]
    assert (a > 0.3).sum() > 1000                       # the label's text is there
    disagree = ((a > 0.3) != (b > 0.3)).mean()
    assert disagree < 0.01, disagree                    # the binarized map: its edges move by a pixel or so
    assert np.abs(a - b).mean() < 0.02


def _readings(ocr: dict, images) -> tuple[list[list[tuple]], dict]:
    """Per image its (text, box) lines, and the engine the payload names."""
    p = OcrPipeline.from_config(config.from_dict({"backend": "onnxruntime", "ocr": ocr}))
    try:
        return [[(line.text, line.box) for line in p.run(img).lines] for img in images], p.describe()
    finally:
        p.close()


def test_the_pipeline_reads_labels_as_well_with_the_int8_detector(tmp_path):
    _v6_detector()
    labels = [render_label(seed, variant=v) for seed, v in ((4410, "plain"), (4411, "upside_down"),
                                                             (4412, "blurred"), (4413, "small"))]
    base = {"model_set": "pp-ocrv6-small", "cpu_fold_dir": str(tmp_path / "cpu")}
    fp32, fp32_engine = _readings({**base, "cpu_int8_det": False}, [s.image for s in labels])
    int8, int8_engine = _readings(base, [s.image for s in labels])
    assert "int8_models" not in fp32_engine
    assert int8_engine == {"backend": "onnxruntime", "precision": "fp32", "int8_models": ["det"]}

    def cer(readings) -> float:
        return evaluate.combine([evaluate.score_image([(ln.text, ln.box) for ln in s.lines], found)
                                 for s, found in zip(labels, readings)]).cer

    assert all(int8), int8
    assert sum(len(r) for r in int8) == sum(len(r) for r in fp32)
    assert cer(int8) <= cer(fp32) + 0.005, [[t for t, _ in r] for r in int8]


def _copy_of(source: Path, directory: Path) -> None:
    shipped, sidecar = copy_paths(source.name)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(shipped, directory)
    shutil.copy(sidecar, directory)


def test_a_copy_made_from_another_file_does_not_run(tmp_path, caplog):
    source = _v6_detector()
    other = tmp_path / "site" / source.name            # same name, different bytes: a site's own detector
    other.parent.mkdir()
    data = bytearray(source.read_bytes())
    other.write_bytes(bytes(data[:-8]) + bytes(8))
    _copy_of(source, tmp_path / "models")
    found = find_copy(other, tmp_path / "models")
    assert (found.path, found.state) == (None, "stale copy")
    assert found.rebuild == f"python -m daemon.quantize.cpu_int8 {other}"
    with caplog.at_level(logging.WARNING):
        assert int8_copy.int8_copy(other, tmp_path / "models") is None
    assert "runs in FP32" in caplog.text and "python -m daemon.quantize.cpu_int8" in caplog.text


def test_a_damaged_copy_or_sidecar_does_not_run(tmp_path):
    source = _v6_detector()
    models = tmp_path / "models"
    _copy_of(source, models)
    model, sidecar = copy_paths(source.name, models)
    assert find_copy(source, models).path == model
    model.write_bytes(model.read_bytes()[:1000])         # a truncated copy
    assert find_copy(source, models).state == "unreadable copy"
    sidecar.write_text("{not json")
    assert find_copy(source, models).state == "unreadable copy"
    sidecar.unlink()
    assert find_copy(source, models).state == "no copy shipped"


def test_a_stale_copy_runs_the_detector_in_fp32_and_doctor_names_the_command(tmp_path, monkeypatch):
    source = _v6_detector()
    models = tmp_path / "models"
    _copy_of(source, models)
    _, sidecar = copy_paths(source.name, models)
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "source_sha256": "0" * 64}))
    monkeypatch.setattr(int8_copy, "SHIPPED_DIR", models)
    cfg = config.from_dict({"backend": "onnxruntime",
                            "ocr": {"model_set": "pp-ocrv6-small", "cpu_fold_dir": str(tmp_path / "cpu")}})
    p = OcrPipeline.from_config(cfg)
    try:
        assert "int8_models" not in p.describe()
        assert p.run(render_label(4420).image).lines
    finally:
        p.close()
    finding = doctor.cpu_int8_finding(cfg)
    assert not finding.ok and "stale copy" in finding.detail
    assert "python -m daemon.quantize.cpu_int8" in finding.next_step


def test_doctor_says_which_detector_runs_in_int8():
    source = _v6_detector()
    ok = doctor.cpu_int8_finding(config.from_dict({"ocr": {"model_set": "pp-ocrv6-small"}}))
    assert ok.ok and source.name in ok.detail and ".cpu-int8.onnx" in ok.detail
    v4 = doctor.cpu_int8_finding(config.from_dict({"ocr": {"model_set": "pp-ocrv4"}}))
    assert v4.ok and "none shipped" in v4.detail
    off = doctor.cpu_int8_finding(config.from_dict({"ocr": {"cpu_int8_det": False}}))
    assert off.ok and off.detail.startswith("off")


@pytest.mark.parametrize("value", ["yes", 1])
def test_cpu_int8_det_must_be_a_boolean(value):
    with pytest.raises(config.ConfigError, match="cpu_int8_det"):
        config.from_dict({"ocr": {"cpu_int8_det": value}})
