"""The CPU's folded models (daemon/backends/onnxruntime/fold.py, folded.py): each rewrite on a small graph
run through ONNX Runtime against the original, its limits (padding, shared outputs, tensors that are not
scalars), the real PP-OCRv4 detector and the pipeline's readings with and without it, and the copy on disk:
written once, reused, refreshed when the model changes, and never in the way when it cannot be used."""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from daemon import config
from daemon.backends.base import ModelSpec
from daemon.backends.onnxruntime import OnnxRuntimeBackend
from daemon.backends.onnxruntime.fold import fold
from daemon.backends import cpu_fold_dir
from daemon.backends.onnxruntime.folded import cache_key, default_dir, folded_path
from daemon.ocr.models import bundled_model_dir
from daemon.ocr.pipeline import OcrPipeline
from daemon.samples.render import render_label

RNG = np.random.default_rng(7)
C = 8


def _const(name: str, value) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, np.float32), name))


def _conv(name: str, x: str, y: str, k: int = 1, pads: int = 0, group: int = 1) -> tuple[onnx.NodeProto, list]:
    w = numpy_helper.from_array(RNG.normal(size=(C, C // group, k, k)).astype(np.float32), f"{name}_w")
    b = numpy_helper.from_array(RNG.normal(size=C).astype(np.float32), f"{name}_b")
    node = helper.make_node("Conv", [x, w.name, b.name], [y], name=name, kernel_shape=[k, k], pads=[pads] * 4,
                            group=group)
    return node, [w, b]


def _affine(prefix: str, x: str, y: str, s: float, b: float, shape=(1,)) -> list[onnx.NodeProto]:
    return [_const(f"{prefix}_s", np.full(shape, s)), _const(f"{prefix}_b", np.full(shape, b)),
            helper.make_node("Mul", [x, f"{prefix}_s"], [f"{prefix}_m"]),
            helper.make_node("Add", [f"{prefix}_m", f"{prefix}_b"], [y])]


def _hard_swish(prefix: str, x: str, y: str) -> list[onnx.NodeProto]:
    return [_const(f"{prefix}_3", [3.0]), _const(f"{prefix}_0", [0.0]), _const(f"{prefix}_6", [6.0]),
            _const(f"{prefix}_d", [6.0]),
            helper.make_node("Add", [x, f"{prefix}_3"], [f"{prefix}_a"]),
            helper.make_node("Clip", [f"{prefix}_a", f"{prefix}_0", f"{prefix}_6"], [f"{prefix}_c"]),
            helper.make_node("Mul", [x, f"{prefix}_c"], [f"{prefix}_m"]),
            helper.make_node("Div", [f"{prefix}_m", f"{prefix}_d"], [y])]


def _model(nodes: list, inits: list, outputs=("y",)) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, 6, 6])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, C, 6, 6]) for o in outputs], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})


def _folded(model: onnx.ModelProto):
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    counts = fold(copy)
    onnx.checker.check_model(copy)
    return copy, counts


def _same(model: onnx.ModelProto, folded: onnx.ModelProto) -> None:
    x = RNG.normal(size=(1, C, 6, 6)).astype(np.float32) * 4
    for a, b in zip(_run(model, x), _run(folded, x)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node if n.op_type != "Constant"]


def test_a_pp_lcnet_layer_folds_to_its_convolutions():
    """conv -> affine -> hard-swish -> affine -> 1x1 conv: two convs, one hard-swish, nothing else."""
    c1, i1 = _conv("c1", "x", "h1", k=3, pads=1)
    c2, i2 = _conv("c2", "a2", "y")
    model = _model([c1, *_affine("p", "h1", "a1", 0.9, 0.1), *_hard_swish("hs", "a1", "s1"),
                    *_affine("q", "s1", "a2", 1.2, -0.3), c2], i1 + i2)
    folded, counts = _folded(model)
    assert (counts.conv_affines, counts.pointwise_affines, counts.hard_swishes) == (1, 1, 1)
    assert _ops(folded) == ["Conv", "HardSigmoid", "Mul", "Conv"]
    _same(model, folded)


def test_a_conv_scale_without_a_shift_folds():
    c1, i1 = _conv("c1", "x", "h1")
    model = _model([c1, _const("s", [0.5]), helper.make_node("Mul", ["s", "h1"], ["y"])], i1)
    folded, counts = _folded(model)
    assert counts.conv_affines == 1 and _ops(folded) == ["Conv"]
    _same(model, folded)


def test_an_affine_before_a_padded_convolution_stays():
    """The padded border would see zeros where the affine put b: not exact, so not folded."""
    c1, i1 = _conv("c1", "a", "y", k=3, pads=1, group=C)
    model = _model([helper.make_node("Relu", ["x"], ["r"]), *_affine("p", "r", "a", 0.9, 0.1), c1], i1)
    folded, counts = _folded(model)
    assert counts.total == 0 and _ops(folded) == _ops(model)
    _same(model, folded)


def test_a_conv_output_read_twice_or_per_channel_scales_stay():
    c1, i1 = _conv("c1", "x", "h1")
    c2, i2 = _conv("c2", "x", "h2")
    shared = [c1, *_affine("p", "h1", "y", 0.9, 0.1), helper.make_node("Relu", ["h1"], ["z"])]
    per_channel = [c2, *_affine("q", "h2", "w", 0.9, 0.1, shape=(1, C, 1, 1))]
    model = _model(shared + per_channel, i1 + i2, outputs=("y", "z", "w"))
    folded, counts = _folded(model)
    assert counts.total == 0
    _same(model, folded)


def test_the_pp_ocrv4_detector_folds_and_reads_the_same_map():
    path = bundled_model_dir("pp-ocrv4", "det") / "ch_PP-OCRv4_det_infer.onnx"
    model = onnx.load(str(path))
    folded, counts = _folded(model)
    assert (counts.conv_affines, counts.pointwise_affines, counts.hard_swishes) == (28, 10, 24)
    label = render_label(4242, variant="plain").image
    x = np.zeros((1, 3, 480, 640), np.float32)
    x[0] = (label[::2, ::2].transpose(2, 0, 1).astype(np.float32) / 255.0 - 0.45) / 0.225
    s = {name: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
         for name, m in (("shipped", model), ("folded", folded))}
    a, b = (sess.run(None, {sess.get_inputs()[0].name: x})[0] for sess in s.values())
    assert (a > 0.3).sum() > 1000                 # the label's text is there
    assert np.abs(a - b).max() < 1e-3
    assert ((a > 0.3) != (b > 0.3)).sum() <= 10   # the binarized map: a pixel or two at the threshold


def test_the_pipeline_reads_the_same_with_and_without_folding(tmp_path):
    labels = [render_label(seed, variant=v) for seed, v in ((4300, "plain"), (4301, "upside_down"),
                                                             (4302, "blurred"))]
    readings = {}
    for fold_on in (False, True):
        cfg = config.from_dict({"backend": "onnxruntime",
                                "ocr": {"model_set": "pp-ocrv4-det-v6-rec", "cpu_fold": fold_on,
                                        "cpu_fold_dir": str(tmp_path / "cpu")}})
        p = OcrPipeline.from_config(cfg)
        try:
            readings[fold_on] = [[line.text for line in p.run(s.image).lines] for s in labels]
        finally:
            p.close()
    assert all(readings[False]), readings[False]
    assert readings[True] == readings[False]
    written = sorted(f.name for f in (tmp_path / "cpu").iterdir())   # v6 small's recognizer has nothing to fold
    assert [re.sub(r"\.[0-9a-f]{16}\.", ".<key>.", n) for n in written] == [
        "PP-OCRv6_rec_small.<key>.unchanged", "ch_PP-OCRv4_det_infer.<key>.cpu.onnx",
        "ch_ppocr_mobile_v2.0_cls_infer.<key>.cpu.onnx"]


# --- the copy on disk


def _detector() -> str:
    return str(bundled_model_dir("pp-ocrv4", "det") / "ch_PP-OCRv4_det_infer.onnx")


def test_the_copy_is_written_once_and_reused(tmp_path):
    source = tmp_path / "det.onnx"
    source.write_bytes(open(_detector(), "rb").read())
    first = folded_path(source, tmp_path / "cpu")
    assert first != source and first.parent == tmp_path / "cpu"
    stamp = first.stat().st_mtime_ns
    assert folded_path(source, tmp_path / "cpu") == first
    assert first.stat().st_mtime_ns == stamp            # not rewritten
    os.utime(source, ns=(stamp + 10**9, stamp + 10**9))  # the model file replaced: a new copy, the old one gone
    second = folded_path(source, tmp_path / "cpu")
    assert second != first and second.exists() and not first.exists()


def test_a_model_with_nothing_to_fold_leaves_a_marker(tmp_path):
    c1, i1 = _conv("c1", "x", "y")
    source = tmp_path / "plain.onnx"
    onnx.save(_model([c1], i1), str(source))
    assert folded_path(source, tmp_path / "cpu") == source
    assert [p.suffix for p in (tmp_path / "cpu").iterdir()] == [".unchanged"]
    assert folded_path(source, tmp_path / "cpu") == source


def test_an_unwritable_cache_runs_the_model_as_shipped(tmp_path, caplog):
    blocker = tmp_path / "cpu"
    blocker.write_text("a file where the directory should be")
    with caplog.at_level(logging.WARNING):
        assert folded_path(Path(_detector()), blocker) == Path(_detector())
    assert "unfolded" in caplog.text and "ocr.cpu_fold_dir" in caplog.text


def test_a_damaged_copy_is_removed_and_the_original_runs(tmp_path, caplog):
    source = Path(_detector())
    target = folded_path(source, tmp_path)
    target.write_bytes(b"not an onnx file")
    backend = OnnxRuntimeBackend(threads=1, fold_dir=tmp_path)
    with caplog.at_level(logging.WARNING):
        model = backend.load(ModelSpec("det", str(source), (1, 3, 64, 64)))
    assert not target.exists() and "removed" in caplog.text
    out = model.run({model.inputs[0].name: np.zeros((1, 3, 64, 64), np.float32)})
    assert next(iter(out.values())).shape[-2:] == (64, 64)


def test_q_dq_models_are_never_folded(tmp_path):
    assert OnnxRuntimeBackend(precision="int8", fold_dir=tmp_path).fold_dir is None
    assert OnnxRuntimeBackend(exact_qdq=True, fold_dir=tmp_path).fold_dir is None


@pytest.mark.parametrize("value", ["yes", 1])
def test_cpu_fold_must_be_a_boolean(value):
    with pytest.raises(config.ConfigError, match="ocr.cpu_fold"):
        config.from_dict({"ocr": {"cpu_fold": value}})


def test_a_write_killed_half_way_leaves_nothing_that_lasts(tmp_path):
    """A temporary file an hour old (a SIGKILL during the write) goes with the next write; a fresh one stays."""
    source = tmp_path / "det.onnx"
    source.write_bytes(open(_detector(), "rb").read())
    cache = tmp_path / "cpu"
    cache.mkdir()
    earlier = cache_key(source)[:8] + "0" * 8      # the same file before a change of size or mtime
    stale, fresh = cache / f".det.{earlier}.cpu.onnx.x1", cache / f".det.{earlier}.cpu.onnx.x2"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(stale, (1, 1))
    folded_path(source, cache)
    assert not stale.exists() and fresh.exists()


def test_two_models_of_one_name_keep_their_own_copies(tmp_path):
    copies = []
    for where in ("a", "b"):
        (tmp_path / where).mkdir()
        source = tmp_path / where / "det.onnx"
        source.write_bytes(open(_detector(), "rb").read())
        copies.append(folded_path(source, tmp_path / "cpu"))
    assert copies[0] != copies[1] and all(c.exists() for c in copies)


def test_the_copies_go_to_the_system_cache_unless_configured(tmp_path):
    engines = str(tmp_path / "engines")
    assert default_dir({"CACHE_DIRECTORY": "/var/cache/ocr-daemon", "HOME": "/root"}, engines) == \
        Path("/var/cache/ocr-daemon/cpu-models")                     # systemd's CacheDirectory=
    assert default_dir({"XDG_CACHE_HOME": "/x", "HOME": "/home/u"}, engines) == Path("/x/ocr-daemon/cpu-models")
    assert default_dir({"HOME": "/home/u"}, engines) == Path("/home/u/.cache/ocr-daemon/cpu-models")
    assert default_dir({}, engines) == tmp_path / "engines" / "cpu"
    configured = config.from_dict({"state_dir": str(tmp_path), "ocr": {"cpu_fold_dir": "folded"}})
    assert cpu_fold_dir(config.resolve_state_paths(configured)) == tmp_path / "folded"
