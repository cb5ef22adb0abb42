"""The recognizer's top-3 head (daemon/ocr/rec_head.py) decodes to exactly what its full softmax decodes to: the same
characters, steps, probabilities and runner-ups, on the real PP-OCR recognizer's outputs and through the pipeline."""
from __future__ import annotations

import numpy as np
import pytest

from daemon import config
from daemon.backends.onnxruntime import OnnxRuntimeBackend
from daemon.ocr import models
from daemon.ocr.ctc import ctc_candidates, ctc_candidates_top3
from daemon.ocr.pipeline import OcrPipeline
from daemon.ocr.rec_head import CLASSES, TOP3, VALUES, declared_classes, top3_model
from daemon.samples.render import render_label, render_line


def reference_top3(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Three argmaxes, each over what the earlier ones left: numpy's order (the lower class first among equals)."""
    rows = probs.reshape(-1, probs.shape[-1]).copy()
    hit = np.arange(len(rows))
    classes = np.empty((len(rows), 3), np.int64)
    values = np.empty((len(rows), 3), probs.dtype)
    for j in range(3):
        classes[:, j] = rows.argmax(axis=1)
        values[:, j] = rows[hit, classes[:, j]]
        rows[hit, classes[:, j]] = -np.inf
    return values.reshape(*probs.shape[:-1], 3), classes.reshape(*probs.shape[:-1], 3)


def _session(model):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_topk_puts_equal_probabilities_in_the_lower_class_first_as_argmax_does():
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["probs"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", 7])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", "T", 7])])
    model = top3_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]))
    x = np.array([[[0.1, 0.3, 0.3, 0.0, 0.3, 0.0, 0.0],      # three equal best: 1, 2, 4
                   [0.2, 0.0, 0.2, 0.2, 0.4, 0.0, 0.0],      # blank tied with the runner-ups
                   [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],      # all others zero
                   [0.25, 0.25, 0.25, 0.25, 0.0, 0.0, 0.0]]], np.float32)
    values, classes = _session(model).run([VALUES, CLASSES], {"x": x})
    want_values, want_classes = reference_top3(x)
    assert classes.dtype == np.int32 and classes.tolist() == want_classes.tolist()
    assert values.tolist() == want_values.tolist()


def test_equal_probabilities_in_another_order_within_the_top3_decode_as_in_onnx_order():
    """TensorRT's TopK does not document its order among equal values: the decoder does not depend on it."""
    probs = np.zeros((6, 9), np.float32)
    probs[0, [4, 2, 0]] = (0.4, 0.3, 0.3)      # runner-up tied with the blank: the blank comes first, 2 is next
    probs[1, [5, 1, 3]] = (0.5, 0.25, 0.25)     # a tied runner-up: the lower class
    probs[2, [6, 7, 0]] = (0.45, 0.45, 0.1)     # a tied best: the lower class
    probs[3, [6, 0, 8]] = (0.5, 0.2, 0.2)
    probs[4, [0, 1, 2]] = (0.5, 0.25, 0.25)
    probs[5, [3, 4, 5]] = (0.34, 0.33, 0.33)
    want = ctc_candidates(probs)
    values, classes = reference_top3(probs)
    assert [a.tolist() for a in ctc_candidates_top3(values, classes.astype(np.int32))] == [a.tolist() for a in want]
    swapped = classes.astype(np.int32)              # the equal values with the higher class first
    rows = [0, 1, 3, 4, 5]
    swapped[rows, 1], swapped[rows, 2] = classes[rows, 2], classes[rows, 1]
    swapped[2, 0], swapped[2, 1] = classes[2, 1], classes[2, 0]
    values_swapped = np.take_along_axis(probs, swapped.astype(np.intp), axis=1)
    assert (values_swapped == values).all() and (swapped != classes).any(axis=1).all()
    assert [a.tolist() for a in ctc_candidates_top3(values_swapped, swapped)] == [a.tolist() for a in want]


@pytest.fixture(scope="module")
def rec_outputs():
    """Real recognizer batches (8 x 3 x 48 x 320, from the pipeline's own crops of rendered labels and a long line)
    and, for each, the shipped model's softmax and the top-3 model's two outputs."""
    import onnx

    cfg = config.from_dict({"backend": "onnxruntime"})
    path = models.resolve(cfg).rec
    pipeline = OcrPipeline(cfg.ocr, OnnxRuntimeBackend(threads=2), models.resolve(cfg))
    batches = []
    real_run = pipeline.rec.run

    def keep(feeds):
        batches.append(next(iter(feeds.values())).copy())
        return real_run(feeds)

    pipeline.rec.run = keep
    for seed, variant in ((3100, "plain"), (3101, "blurred"), (3102, "rotated")):
        pipeline.run(render_label(seed, variant=variant).image)
    pipeline.run(render_line(3103, "ZTO 7730 1234 5678 SHANGHAI PUDONG CENTURY AVENUE 100 ROOM 2308").image)
    pipeline.close()
    full = _session(onnx.load(str(path)))
    top = _session(top3_model(onnx.load(str(path))))
    out = [(full.run(None, {"x": b})[0], *top.run([VALUES, CLASSES], {"x": b})) for b in batches]
    assert len(out) >= 4
    return out


def test_the_top3_head_returns_the_softmax_rows_three_most_probable_classes(rec_outputs):
    for probs, values, classes in rec_outputs:
        want_values, want_classes = reference_top3(probs)
        assert np.array_equal(classes, want_classes)
        assert np.array_equal(values, want_values)


def test_decoding_the_top3_gives_what_decoding_every_class_gives(rec_outputs):
    emitted = 0
    for probs, values, classes in rec_outputs:
        for k in range(probs.shape[0]):
            # whole slots and the step ranges of pieces within them (a piece restarts the collapsing of repeats)
            for lo, hi in ((0, probs.shape[1]), (0, 17), (5, 29), (13, probs.shape[1])):
                full = ctc_candidates(probs[k, lo:hi])
                top = ctc_candidates_top3(values[k, lo:hi], classes[k, lo:hi])
                for a, b in zip(full, top):
                    assert a.tolist() == b.tolist()
                emitted += len(full[0])
    assert emitted > 300


def test_the_pipeline_reads_the_same_lines_with_either_head():
    cfg = config.from_dict({"backend": "onnxruntime"})
    paths = models.resolve(cfg)
    softmax = OcrPipeline(cfg.ocr, OnnxRuntimeBackend(threads=2), paths)
    top3 = OcrPipeline(cfg.ocr, OnnxRuntimeBackend(threads=2, rec_head=TOP3), paths)
    assert not softmax.rec_top3 and top3.rec_top3
    assert top3.rec.class_count() == declared_classes(paths.rec) == len(top3.charset)
    images = [render_label(seed, variant=variant).image
              for seed, variant in ((3200, "plain"), (3201, "blurred"), (3202, "rotated"))]
    for image in images:
        a, b = softmax.run(image).lines, top3.run(image).lines
        assert len(a) >= 5
        assert [(ln.text, ln.confidence, ln.box, ln.chars) for ln in a] == \
            [(ln.text, ln.confidence, ln.box, ln.chars) for ln in b]
    softmax.close()
    top3.close()
