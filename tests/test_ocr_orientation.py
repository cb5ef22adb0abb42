"""The 0/180 classifier's choice checked by the recognizer (daemon/ocr/pipeline.py, _recheck): short lines of glyphs
that look alike turned half a turn ("N0003X" turned reads "XE000N"), drawn in OpenCV's Hershey fonts, got p(180) of
0.93 to 0.997 upright and were turned; read as found they are surer, so they stay upright, and the same lines
turned 180 degrees are still read right."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from daemon import config
from daemon.ocr import pipeline as pipeline_module
from daemon.ocr.pipeline import OcrPipeline

# text, font, width, height, thickness, font scale, background, ink: lines the classifier alone turned, sure of it
TURNED_UPRIGHT = [
    ("N0003X", cv2.FONT_HERSHEY_PLAIN, 320, 120, 3, 3.4758645241574704, 247, 60),
    ("N0100X", cv2.FONT_HERSHEY_TRIPLEX, 240, 80, 3, 1.414918715975978, 255, 48),
    ("N0109X", cv2.FONT_HERSHEY_COMPLEX, 320, 120, 2, 1.5194945328364449, 241, 23),
    ("N0179X", cv2.FONT_HERSHEY_COMPLEX, 320, 120, 2, 1.3189483313114396, 217, 15),
    ("N0199X", cv2.FONT_HERSHEY_COMPLEX, 240, 80, 2, 1.0351977934018586, 226, 26),
]


def _hershey(text, font, w, h, thickness, scale, bg, ink):
    img = np.full((h, w, 3), bg, np.uint8)
    (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    cv2.putText(img, text, ((w - tw) // 2, (h + th) // 2), font, scale, (ink, ink, ink), thickness, cv2.LINE_AA)
    return img


@pytest.fixture(scope="module")
def pipeline():
    p = OcrPipeline.from_config(config.from_dict({"backend": "onnxruntime"}))
    yield p
    p.close()


@pytest.mark.parametrize("spec", TURNED_UPRIGHT, ids=[s[0] for s in TURNED_UPRIGHT])
def test_a_line_that_looks_alike_turned_is_read_upright_either_way(pipeline, spec):
    img = _hershey(*spec)
    assert [l.text for l in pipeline.run(img).lines] == [spec[0]]
    assert [l.text for l in pipeline.run(np.ascontiguousarray(img[::-1, ::-1])).lines] == [spec[0]]


class _Stub:
    """Just what _recheck uses: a recognizer that reads each crop as the text painted into its first pixel's key."""
    def __init__(self, readings):
        self.readings = readings

    def _recognize(self, images):
        return [self.readings[int(im[0, 0, 0])] for im in images]


def _crop(key, turned_key):
    crop = np.zeros((4, 4, 3), np.uint8)
    crop[0, 0, 0], crop[-1, -1, 0] = key, turned_key       # turned 180 degrees, the crop shows turned_key
    return crop


def test_recheck_replaces_a_reading_only_with_a_surer_one_at_least_as_long():
    m = pipeline_module.CLS_RECHECK_MARGIN
    other = {1: ("N0003X", 0.9996, ()), 2: ("N0003X", 0.97 + m / 2, ()), 3: (":", 0.99, ()), 4: ("P8684A", 0.9999, ())}
    stub = _Stub(other)
    readings = [("XE000N", 0.97, ()), ("XE000N", 0.97, ()), ("寄件人:赵强", 0.93, ()), ("P864A", 0.68, ())]
    # lines 0-2 were turned (the recheck reads them as found), line 3 was not but leaned (read turned)
    crops = [_crop(1, 0), _crop(2, 0), _crop(3, 0), _crop(0, 4)]
    OcrPipeline._recheck(stub, readings, crops, [0, 1, 2], [3])   # type: ignore[arg-type]
    assert [r[0] for r in readings] == ["N0003X",     # surer as found: the classifier's turn undone
                                        "XE000N",     # within the margin: the classifier's choice stands
                                        "寄件人:赵强",  # a shorter reading never wins, however sure
                                        "P8684A"]     # leaned towards 180 and surer turned: turned
