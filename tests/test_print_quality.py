"""Print quality per character: a character printed with a fifth of its ink, or with a blot of ink over it, is read
right by the real recognizer, sure of itself, and still fails verification as "faint" or "smudged"; a good print
of the same text passes."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from daemon import config
from daemon.ocr.pipeline import OcrPipeline
from daemon.ocr.print_quality import char_blots, char_contrast
from daemon.ocr.results import CharCandidate, TextLine
from daemon.readings.verify import FAINT, MISMATCH, PASS, SMUDGED, Expectation, verify
from daemon.samples.render import DEJAVU_DIR

TEXT = "PN 48K7-2231"
PAPER, INK = 228, 30


FONT_PX = 34


def _centres() -> list[float]:
    """Each character's centre column in _print's frame."""
    font = ImageFont.truetype(str(DEJAVU_DIR / "DejaVuSansMono-Bold.ttf"), FONT_PX)
    return [40 + font.getlength(TEXT[:i]) + font.getlength(TEXT[i]) / 2 for i in range(len(TEXT))]


def _print(faded_at: int | None = None, ink_share: float = 0.2, blot_at: int | None = None,
           blot: tuple[int, int] = (8, 6)) -> np.ndarray:
    """TEXT in a coder's mono bold on a pack-like grey, one character (faded_at) at ink_share of the ink, or one
    (blot_at) under a drop of ink (an ellipse of half-axes blot, slightly blurred as a smear is)."""
    font = ImageFont.truetype(str(DEJAVU_DIR / "DejaVuSansMono-Bold.ttf"), FONT_PX)
    canvas = Image.new("L", (520, 120), PAPER)
    draw = ImageDraw.Draw(canvas)
    x = 40.0
    for i, ch in enumerate(TEXT):
        share = ink_share if i == faded_at else 1.0
        draw.text((x, 40), ch, font=font, fill=int(round(PAPER - share * (PAPER - INK))))
        x += font.getlength(ch)
    if blot_at is not None:
        x, (a, b) = _centres()[blot_at], blot
        draw.ellipse((x - a, 62 - b, x + a, 62 + b), fill=INK + 10)
    grey = np.asarray(canvas, dtype=np.float32)
    if blot_at is not None:
        grey = np.asarray(Image.fromarray(grey.astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.0)), np.float32)
    grey = grey + np.random.default_rng(5).normal(0, 2.0, (120, 520))
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


def test_a_blot_over_a_character_read_right_is_smudged_and_fails(pipeline):
    at = TEXT.index("2")                 # one of three 2s: the other two show its shape without the blot
    lines = pipeline.run(_print(blot_at=at)).lines
    assert [line.text for line in lines] == [TEXT]          # the recognizer reads through the blot
    assert lines[0].chars[at].p > 0.9 and lines[0].chars[at].blot > 1.0
    assert max(c.blot for i, c in enumerate(lines[0].chars) if i != at) < 1.0
    v = verify(Expectation(text=TEXT), lines)
    assert v.verdict == MISMATCH
    assert [(c.status, c.at, c.expected, c.read) for c in v.chars if c.status != "ok"] == [(SMUDGED, at, "2", "2")]
    assert v.to_json()["chars"][[c.at for c in v.chars].index(at)]["blot"] > 1.0
    # smudged_over 0: not judged, the text passes; a higher bound passes it too
    assert verify(Expectation(text=TEXT), lines, smudged_over=0.0).verdict == PASS
    assert verify(Expectation(text=TEXT), lines, smudged_over=100.0).verdict == PASS


def test_char_blots_grade_a_blot_thicker_than_the_strokes_and_a_copy_unlike_the_others():
    centres = [c - 30 for c in _centres()]
    good = char_blots(_print()[30:90, 30:480], list(TEXT), centres, 1.0)
    assert max(good) < 1.0 and good[2] == 0.0                # the space is not graded
    at = TEXT.index("4")                 # the only 4: only its thickness can tell
    thick = char_blots(_print(blot_at=at, blot=(11, 9))[30:90, 30:480], list(TEXT), centres, 1.0)
    assert thick[at] > 1.0 and max(b for i, b in enumerate(thick) if i != at) < 1.0
    light = char_blots(255 - _print(blot_at=at, blot=(11, 9))[30:90, 30:480], list(TEXT), centres, 1.0)
    assert light == pytest.approx(thick, abs=0.1)             # a light print on a dark pack grades alike
    assert char_blots(_print()[30:90, 30:480], ["L"], [20.0], 1.0) == [0.0]   # nothing to compare with


def test_only_what_coders_print_is_graded_for_blots():
    crop, centres = _print(blot_at=TEXT.index("4"), blot=(11, 9))[30:90, 30:480], [c - 30 for c in _centres()]
    as_slash = char_blots(crop, list(TEXT.replace("-", "/")), centres, 1.0)   # a slash is cut unevenly: not graded
    assert as_slash[TEXT.index("-")] == 0.0 and as_slash[TEXT.index("4")] > 1.0
    lower = char_blots(crop, list(TEXT.lower()), centres, 1.0)                # lower case: not graded
    assert lower[TEXT.index("K")] == 0.0
    assert char_blots(crop, list(TEXT.replace("K", "数")), centres, 1.0) == [0.0] * len(TEXT)   # not an ASCII line


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
    assert [c.blot for c in plain[0].chars] == [0.0] * len(TEXT) and max(c.blot for c in graded[0].chars) > 0
    assert [c._replace(contrast=1.0, blot=0.0) for c in graded[0].chars] == list(plain[0].chars)


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
    smeared = tuple(CharCandidate(ch, 0.99, blot=3.0 if i == 1 else 0.2) for i, ch in enumerate("A7"))
    lines = [TextLine("A7", 0.99, box, smeared), TextLine("A7", 0.98, box, smeared), TextLine("A1", 0.5, box, smeared)]
    voted = vote_line(lines)
    assert voted.chars[1].blot == 3.0
    assert verify(Expectation(text="A7"), [voted]).chars[1].status == SMUDGED


def test_a_camera_judges_smudges_unless_it_joins_dots_and_a_bad_bound_names_its_key():
    from daemon.readings.cycle import cycle_rules

    def camera(**keys):
        cfg = config.from_dict({"device_id": "st1", "mqtt": {"enabled": False},
                                "cameras": [{"name": "cam", "kind": "sample", "mode": "triggered", **keys}]})
        return cfg.cameras[0]

    assert cycle_rules(camera()).smudged_over == 1.0
    assert cycle_rules(camera(smudged_over=1.5)).smudged_over == 1.5
    # joined dots vary from copy to copy as a smudge does: such a camera does not judge smudges
    assert cycle_rules(camera(join_dots_px=1.5)).smudged_over == 0.0
    with pytest.raises(config.ConfigError, match=r"cameras\[0\]\.smudged_over"):
        camera(smudged_over=-1)
