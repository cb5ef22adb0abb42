"""cameras[].equalize_detection through the real pipeline, on bench/ocv_quality.py's rendered production prints: a
low-contrast 5x7 dot-matrix code that the detector does not find in the frame as read (dots joined) is found in
the equalized copy and passes; a faded character in such a print still fails as faint, because the recognizer and
the grade read the frame itself (read from the equalized frame, the same faded print would pass)."""
from __future__ import annotations

import datetime
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from daemon import config
from daemon.ocr.pipeline import OcrPipeline
from daemon.ocr.print_quality import equalized, join_dots
from daemon.readings import Lane, wanted_frames
from daemon.readings.verify import FAINT, MISMATCH, NO_READ, PASS, Expectation, verify
from daemon.sources import Frame

BENCH = Path(__file__).resolve().parents[1] / "bench" / "ocv_quality.py"
TODAY = datetime.date(2026, 12, 6)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("ocv_quality_for_tests", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module      # its dataclasses look their module up
    spec.loader.exec_module(module)      # type: ignore[union-attr]
    yield module
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def pipeline():
    p = OcrPipeline.from_config(config.from_dict({"backend": "onnxruntime"}))
    p.grade_print = True       # a triggered camera that verifies grades the print
    yield p
    p.close()


def _lane(equalize: bool) -> Lane:
    cam = config.from_dict({"cameras": [{"name": "cam", "kind": "sample", "join_dots_px": 1.5,
                                         "equalize_detection": equalize}]}).cameras[0]
    return Lane(cam)


def _verified(bench, pipeline, p, lane: Lane):
    [seen] = wanted_frames([Frame("cam", p.image, time.time())], {"cam": lane})
    lines = pipeline.finish([pipeline.submit([seen.image], [seen.detect_image])])[0].lines
    # a camera that joins dots does not judge smudges (cycle_rules): its joined dots vary as a smudge does
    return verify(Expectation(template=p.template), lines, fields=p.fields, today=TODAY, smudged_over=0.0)


def test_a_low_contrast_dot_matrix_code_is_found_in_the_equalized_copy_and_passes(bench, pipeline):
    p = bench.make_print(85, "good", "low_contrast", TODAY)      # 270419 Y94H-5307, ink close to a lilac film
    assert p.font == "dot_matrix"
    assert _verified(bench, pipeline, p, _lane(False)).verdict == NO_READ     # no line found where the code is
    v = _verified(bench, pipeline, p, _lane(True))
    assert v.verdict == PASS, [(c.status, c.expected, c.read) for c in v.chars if c.status != "ok"]


def test_a_faded_character_stays_faint_since_the_frame_itself_is_read_and_graded(bench, pipeline):
    p = bench.make_print(3, "faded", "low_contrast", TODAY)      # one character at 12-30 % of the ink
    assert p.font == "dot_matrix"
    v = _verified(bench, pipeline, p, _lane(True))
    assert v.verdict == MISMATCH
    assert [c.status for c in v.chars if c.status != "ok"] == [FAINT]
    # what reading the equalized frame would do: the faded character's ink lifted, the print passed
    lines = pipeline.run(equalized(join_dots(p.image, 1.5))).lines
    assert verify(Expectation(template=p.template), lines, fields=p.fields, today=TODAY,
                  smudged_over=0.0).verdict == PASS


def test_the_lane_equalizes_only_the_detectors_copy_and_the_pipeline_checks_its_size(pipeline):
    image = np.full((60, 200, 3), 200, np.uint8)
    image[20:40, 30:170] = 170
    [seen] = wanted_frames([Frame("cam", image, time.time())], {"cam": _lane(True)})
    assert np.array_equal(seen.image, join_dots(image, 1.5))          # what is read: the dots joined, as before
    assert np.array_equal(seen.detect_image, equalized(seen.image))
    assert np.ptp(seen.detect_image) > np.ptp(seen.image)
    assert wanted_frames([Frame("cam", image, time.time())], {"cam": _lane(False)})[0].detect_image is None
    with pytest.raises(ValueError, match="detection image"):
        pipeline.submit([image], [image[:30]])
