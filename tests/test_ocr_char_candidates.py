"""The real recognizer's lines carry one candidate per character (its probability and the runner-up at the same
CTC step), aligned with the text, also for a line read in pieces; verification takes them as they come."""
from __future__ import annotations

import cv2
import pytest

from daemon import config
from daemon.ocr.pipeline import OcrPipeline
from daemon.readings.verify import PASS, Expectation, verify
from daemon.samples.render import render_label, render_line


@pytest.fixture(scope="module")
def pipeline():
    p = OcrPipeline.from_config(config.from_dict({"backend": "onnxruntime"}))
    yield p
    p.close()


def _assert_aligned(line):
    assert len(line.chars) == len(line.text), line.text
    assert "".join(c.char for c in line.chars) == line.text
    for c in line.chars:
        assert 0.0 <= c.alt_p <= c.p <= 1.0 and (c.alt == "") == (c.alt_p == 0.0)
        assert c.alt != c.char
    network = [c.p for c in line.chars if c.alt or c.char != " "]    # less the spaces put in at word gaps
    assert line.confidence == pytest.approx(sum(network) / len(network), abs=1e-6)


@pytest.mark.parametrize("seed, variant", [(2000, "plain"), (2001, "blurred"), (2002, "rotated")])
def test_every_line_of_a_label_carries_its_characters_candidates(pipeline, seed, variant):
    lines = pipeline.run(render_label(seed, variant=variant).image).lines
    assert len(lines) >= 5
    for line in lines:
        _assert_aligned(line)


def test_a_line_read_in_pieces_keeps_its_candidates_aligned(pipeline):
    text = "ZTO 7730 1234 5678 SHANGHAI PUDONG CENTURY AVENUE 100 ROOM 2308 TEL 13812345678"
    sample = render_line(7, text, height=48)
    frame = cv2.copyMakeBorder(sample.image, 40, 40, 40, 40, cv2.BORDER_REPLICATE)
    lines = pipeline.run(frame).lines
    assert sum(len(line.text) for line in lines) > 60
    for line in lines:
        _assert_aligned(line)


def test_a_print_read_by_the_real_pipeline_verifies(pipeline):
    sample = render_line(11, "LOT A12B-3456", height=48)
    frame = cv2.copyMakeBorder(sample.image, 40, 40, 40, 40, cv2.BORDER_REPLICATE)
    lines = pipeline.run(frame).lines
    assert verify(Expectation(text="LOT A12B-3456"), lines).verdict == PASS
    wrong = verify(Expectation(text="LOT A12B-3457"), lines)
    assert [(c.status, c.expected, c.read) for c in wrong.chars if c.status != "ok"] == [("mismatch", "7", "6")]
