"""Print quality per character: a character printed with a fifth of its ink is read right by the real recognizer,
sure of itself, and still fails verification as "faint"; a good print of the same text passes."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from daemon import config
from daemon.ocr.pipeline import OcrPipeline
from daemon.ocr.print_quality import char_contrast
from daemon.ocr.results import CharCandidate, TextLine
from daemon.readings.verify import FAINT, MISMATCH, PASS, Expectation, verify
from daemon.samples.render import DEJAVU_DIR

TEXT = "PN 48K7-2231"
PAPER, INK = 228, 30


def _print(faded_at: int | None = None, ink_share: float = 0.2) -> np.ndarray:
    """TEXT in a coder's mono bold on a pack-like grey, one character (faded_at) at ink_share of the ink."""
    font = ImageFont.truetype(str(DEJAVU_DIR / "DejaVuSansMono-Bold.ttf"), 34)
    canvas = Image.new("L", (520, 120), PAPER)
    draw = ImageDraw.Draw(canvas)
    x = 40.0
    for i, ch in enumerate(TEXT):
        share = ink_share if i == faded_at else 1.0
        draw.text((x, 40), ch, font=font, fill=int(round(PAPER - share * (PAPER - INK))))
        x += font.getlength(ch)
    grey = np.asarray(canvas, dtype=np.float32) + np.random.default_rng(5).normal(0, 2.0, (120, 520))
    return np.repeat(np.clip(np.round(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=2)


@pytest.fixture(scope="module")
def pipeline():
    p = OcrPipeline.from_config(config.from_dict({"backend": "onnxruntime"}))
    p.grade_print = True
    yield p
    p.close()


def test_a_good_print_grades_every_character_alike_and_passes(pipeline):
    lines = pipeline.run(_print()).lines
    assert [line.text for line in lines] == [TEXT]
    graded = [c.contrast for c in lines[0].chars if c.char.isalnum()]
    assert min(graded) > 0.7, graded
    assert verify(Expectation(text=TEXT), lines).verdict == PASS


def test_a_faded_character_read_right_is_faint_and_fails(pipeline):
    at = TEXT.index("7")
    lines = pipeline.run(_print(faded_at=at)).lines
    assert [line.text for line in lines] == [TEXT]          # the recognizer reads it, and is sure of it
    faded = lines[0].chars[at]
    assert faded.char == "7" and faded.p > 0.9 and faded.contrast < 0.5
    v = verify(Expectation(text=TEXT), lines)
    assert v.verdict == MISMATCH
    assert [(c.status, c.at, c.expected, c.read) for c in v.chars if c.status != "ok"] == [(FAINT, at, "7", "7")]
    assert v.to_json()["chars"][[c.at for c in v.chars].index(at)]["contrast"] < 0.5
    # faint_below 0: print quality not judged, the text passes
    assert verify(Expectation(text=TEXT), lines, faint_below=0.0).verdict == PASS


def test_a_faded_hyphen_is_faint_too(pipeline):
    at = TEXT.index("-")
    v = verify(Expectation(text=TEXT), pipeline.run(_print(faded_at=at)).lines)
    assert [(c.status, c.at) for c in v.chars if c.status != "ok"] == [(FAINT, at)]


def test_a_regex_expectation_judges_print_quality_too(pipeline):
    lines = pipeline.run(_print(faded_at=TEXT.index("K"))).lines
    v = verify(Expectation(regex=r"PN \d\d[A-Z]\d-\d{4}"), lines)
    assert v.verdict == MISMATCH and [c.status for c in v.chars].count(FAINT) == 1


def test_grading_is_off_unless_asked_and_costs_nothing_to_the_text(pipeline):
    frame = _print(faded_at=TEXT.index("7"))
    graded = pipeline.run(frame).lines
    pipeline.grade_print = False
    try:
        plain = pipeline.run(frame).lines
    finally:
        pipeline.grade_print = True
    assert plain == graded and [c.contrast for c in plain[0].chars] == [1.0] * len(TEXT)
    assert [c._replace(contrast=1.0) for c in graded[0].chars] == list(plain[0].chars)


def test_char_contrast_is_relative_to_the_line_and_grades_punctuation_too():
    crop = _print(faded_at=4)[30:90, 30:480]
    font = ImageFont.truetype(str(DEJAVU_DIR / "DejaVuSansMono-Bold.ttf"), 34)
    centres = [10 + font.getlength(TEXT[:i]) + font.getlength(TEXT[i]) / 2 for i in range(len(TEXT))]
    contrast = char_contrast(crop, list(TEXT), centres, 1.0)
    assert contrast[4] < 0.5 < min(c for i, c in enumerate(contrast) if i != 4)
    assert contrast[2] == 1.0 and contrast[7] > 0.7          # the space is not graded, the hyphen is
    darker = char_contrast(np.clip(crop.astype(int) - 60, 0, 255).astype(np.uint8), list(TEXT), centres, 1.0)
    assert darker == pytest.approx(contrast, abs=0.05)        # a darker pack, the same grades
    assert char_contrast(crop, ["L"], [20.0], 1.0) == [1.0]   # nothing to compare with


def test_a_voted_line_keeps_the_print_grade_where_frames_disagreed():
    from daemon.readings.consensus import vote_line
    box = ((0.0, 0.0), (10.0, 0.0), (10.0, 5.0), (0.0, 5.0))
    faint = tuple(CharCandidate(ch, 0.99, contrast=0.2 if i == 1 else 1.0) for i, ch in enumerate("A7"))
    lines = [TextLine("A7", 0.99, box, faint), TextLine("A7", 0.98, box, faint), TextLine("A1", 0.5, box, faint)]
    voted = vote_line(lines)
    assert voted.text == "A7" and voted.chars[1].contrast == 0.2
    assert verify(Expectation(text="A7"), [voted]).chars[1].status == FAINT
