"""ocr.exclude_chars: characters the recognizer never emits, its next best read in their place, on both recognizer
heads (the softmax of ONNX Runtime, the top 3 of TensorRT's engines). The default keeps PP-OCRv6 small from
reading the letter x of "3 x 1.49" as the multiplication sign: real models on rendered lines."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from daemon import config
from daemon.backends.onnxruntime import OnnxRuntimeBackend
from daemon.config import ConfigError
from daemon.ocr import models
from daemon.ocr.ctc import (ctc_candidates_ranges, ctc_candidates_top3_ranges, drop_unseen_runner_ups,
                            exclude_columns, exclude_top3, rescale_excluded)
from daemon.ocr.pipeline import OcrPipeline
from daemon.ocr.rec_head import TOP3

QUANTITIES = ["2 x 6.02", "3 x 1.49", "12 x 0.99", "4 x 2.50", "6 x 1.5L", "10 x 20 cm"]


@pytest.fixture(scope="module")
def receipt_lines() -> np.ndarray:
    """Quantity lines as a till prints them, in DejaVu Sans Mono."""
    im = Image.new("RGB", (640, 60 * len(QUANTITIES) + 40), "white")
    draw = ImageDraw.Draw(im)
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf", 26)
    for i, text in enumerate(QUANTITIES):
        draw.text((40, 30 + 60 * i), text, font=font, fill=(30, 30, 30))
    return cv2.cvtColor(np.asarray(im), cv2.COLOR_RGB2BGR)


def _lines(image, exclude: str, rec_head: str = "softmax") -> list:
    cfg = config.from_dict({"backend": "onnxruntime", "ocr": {"exclude_chars": exclude}})
    backend = OnnxRuntimeBackend(threads=2, rec_head=rec_head) if rec_head == TOP3 else OnnxRuntimeBackend(threads=2)
    pipeline = OcrPipeline(cfg.ocr, backend, models.resolve(cfg))
    try:
        return pipeline.run(image).lines
    finally:
        pipeline.close()


def test_the_default_reads_the_letter_x_where_every_character_allowed_reads_the_sign(receipt_lines):
    assert config.from_dict({}).ocr.exclude_chars == "×"
    every = _lines(receipt_lines, "")
    assert any("×" in line.text for line in every), [line.text for line in every]   # PP-OCRv6 small by itself
    default = _lines(receipt_lines, "×")
    assert [line.text for line in default] == QUANTITIES
    # TensorRT's decoding path (the top-3 head, run by ONNX Runtime) reads the same, to the probabilities.
    top3 = _lines(receipt_lines, "×", TOP3)
    assert [(ln.text, ln.confidence, ln.chars) for ln in top3] == [(ln.text, ln.confidence, ln.chars) for ln in default]
    # Where the sign was the best, the letter's probability is its share of what the sign left.
    for sign_line, line in zip(every, default):
        for was, now in zip(sign_line.chars, line.chars):
            if was.char == "×":
                assert now.char == "x" and was.alt == "x"
                assert now.p == pytest.approx(min(1.0, was.alt_p / (1.0 - was.p))) and now.p > was.alt_p


def test_the_top3_rows_with_a_class_excluded_decode_as_the_full_rows_with_its_column_zeroed():
    """As the pipeline decodes either head: the same characters, steps and probabilities, and the same runner-ups
    once the softmax head drops those the top 3 cannot hold (drop_unseen_runner_ups)."""
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 2, (4, 30, 12)).astype(np.float32)
    logits[..., 3] += 2.0                                       # the excluded class is often the best
    logits[..., 0] += 1.0                                       # and the blank often in the top 3 with it
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    order = np.argsort(-probs, axis=-1, kind="stable")[..., :3]
    values, classes = np.take_along_axis(probs, order, -1), order
    excluded = np.array([3])
    ranges = [(k, 0, 30) for k in range(4)]
    top3 = ctc_candidates_top3_ranges(*exclude_top3(values, classes, excluded), ranges)
    full = probs.copy()
    excluded_p = full[..., excluded].copy()
    exclude_columns(full, excluded)
    want = ctc_candidates_ranges(full, ranges)
    assert any(3 in idx for idx, *_ in ctc_candidates_ranges(probs, ranges))   # it was emitted before
    dropped = 0
    for k, ((idx, steps, p, alt, alt_p), (w_idx, w_steps, w_p, w_alt, w_alt_p)) in enumerate(zip(top3, want)):
        assert 3 not in idx and (idx, steps) == (w_idx, w_steps)
        assert np.allclose(p, w_p)
        kept = drop_unseen_runner_ups(w_alt_p, w_steps, excluded_p[k], full[k, :, 0])
        dropped += sum(1 for a, b in zip(kept, w_alt_p) if a != b)
        assert [max(q, 0.0) for q in alt_p] == pytest.approx(kept)
        assert [a for a, q in zip(alt, alt_p) if q > 0] == [a for a, q in zip(w_alt, kept) if q > 0]
    assert dropped > 0                                          # the case arose


def test_an_excluded_best_renormalizes_what_the_step_emits_and_nothing_else():
    gone = np.array([0.65, 0.1, 0.0, 1.0], np.float32)      # per step: the excluded class's probability
    prob, alt = rescale_excluded([0.3, 0.8, 0.9, 0.0], [0.05, 0.1, 0.0, 0.0], [0, 1, 2, 3], gone)
    assert prob[0] == pytest.approx(0.3 / 0.35) and alt[0] == pytest.approx(0.05 / 0.35)   # it was the best
    assert prob[1:] == [0.8, 0.9, 0.0] and alt[1:] == [0.1, 0.0, 0.0]   # below the best; none; all of it gone


def test_rows_without_an_excluded_class_are_returned_as_they_are():
    values = np.array([[[0.5, 0.3, 0.2]]], np.float32)
    classes = np.array([[[4, 0, 2]]], np.int32)
    assert exclude_top3(values, classes, np.array([7]))[0] is values


@pytest.mark.parametrize("bad", ["x" * 257, "× ", "\t"])
def test_an_exclusion_too_long_or_with_whitespace_is_a_config_error_naming_the_key(bad):
    with pytest.raises(ConfigError, match="ocr.exclude_chars"):
        config.from_dict({"ocr": {"exclude_chars": bad}})
