"""The page's picture of a frame, drawn by pure functions: boxes in the colour of what the filter made of each
line, labels with text and confidence, codes and the ROI; the frame itself is never written."""
import os

import numpy as np
import pytest

from daemon.codes.reader import Code
from daemon.ocr.results import TextLine
from daemon.web.draw import (CJK_FONTS, CODE, KEPT, REJECTED, ROI, VOTING, annotate, encode_jpeg, label_text,
                             scale_for)
from daemon.web.live import LiveView, accepted_flags

KEPT_LINE = TextLine("SF7300007919", 0.97, ((40.0, 100.0), (400.0, 100.0), (400.0, 150.0), (40.0, 150.0)))
LOW_LINE = TextLine("smudge", 0.31, ((40.0, 300.0), (300.0, 300.0), (300.0, 340.0), (40.0, 340.0)))


def white(w=800, h=600):
    return np.full((h, w, 3), 255, np.uint8)


def colour_at(img, x, y):
    return tuple(int(v) for v in img[y, x])


def test_a_camera_restarted_by_a_reload_keeps_its_fails_on_the_page_and_a_removed_one_does_not():
    live = LiveView()
    live.frame("dock", white(), 1.0, [KEPT_LINE], [KEPT_LINE])
    live.reading("dock", "box1:dock:1:1", 1.0, [KEPT_LINE], status="mismatch")
    live.forget("dock", history=False)        # its source restarted: the old source's frame goes, the fails stay
    view = live.camera_view("dock")
    assert view["frame_seq"] == 0 and [f["id"] for f in view["fails"]] == ["box1:dock:1:1"]
    live.forget("dock")                       # removed
    assert live.camera_view("dock")["fails"] == []


def test_kept_and_rejected_lines_are_drawn_in_their_colours_on_a_copy():
    image = white()
    out = annotate(image, [KEPT_LINE, LOW_LINE], [True, False], max_side=800)
    assert (image == 255).all()                                # the frame is untouched
    assert colour_at(out, 220, 150) == KEPT                    # bottom edge of the kept box
    assert colour_at(out, 170, 340) == REJECTED                # bottom edge of the rejected one
    assert colour_at(out, 220, 125) == (255, 255, 255)         # inside a box: the label, not a fill
    # the label sits on a filled bar of the box's colour just above it
    bar = out[98:100, 45:120].reshape(-1, 3)       # its bottom rows, below the glyphs
    assert (bar == KEPT).all(axis=1).mean() > 0.8


def test_voting_lines_codes_and_the_roi_outline():
    code = Code("Code128", "SF7300007919", ((500.0, 400.0), (700.0, 400.0), (700.0, 460.0), (500.0, 460.0)))
    out = annotate(white(), [KEPT_LINE], None, [code], roi=(100, 50, 800, 600), max_side=800)
    assert colour_at(out, 220, 150) == VOTING
    assert colour_at(out, 600, 400) == CODE
    assert colour_at(out, 400, 599) == ROI and colour_at(out, 799, 300) == ROI


def test_large_frames_are_scaled_with_their_boxes():
    out = annotate(white(1600, 1200), [KEPT_LINE], [True], max_side=800)
    assert out.shape == (600, 800, 3)
    assert colour_at(out, 110, 75) == KEPT                     # (220, 150) in the frame, halved
    assert scale_for(1600, 1200, 800) == 0.5 and scale_for(640, 480, 800) == 1.0


def test_labels_are_cut_short_with_the_confidence_and_ascii_for_the_hershey_font():
    assert label_text("SF123", 0.9712) == "SF123 0.97"
    assert label_text("韵达快递 No.1") == "???? No.1"
    assert label_text("韵达快递 No.1\n", ascii_only=False) == "韵达快递 No.1"
    assert label_text("x" * 50, max_chars=10) == "xxxxxxx..."


@pytest.mark.skipif(not any(os.path.exists(p) for p in CJK_FONTS), reason="fonts-noto-cjk is not installed")
def test_chinese_labels_are_drawn_with_the_cjk_font():
    line = TextLine("韵达快递", 0.99, KEPT_LINE.box)
    out = annotate(white(), [line], [True], max_side=800)
    bar = out[75:99, 40:200]
    ink = (bar == 255).all(axis=2) & ~(bar == KEPT).all(axis=2)
    assert ink.sum() > 40                                        # glyphs drawn in white on the green bar
    hershey = annotate(white(), [TextLine("????", 0.99, KEPT_LINE.box)], [True], max_side=800)
    assert not np.array_equal(out[75:99, 40:200], hershey[75:99, 40:200])


def test_jpeg_round_trip():
    import cv2
    data = encode_jpeg(annotate(white(), [KEPT_LINE], [True]), quality=90)
    assert data[:2] == b"\xff\xd8"
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (600, 800, 3)


def test_live_view_marks_kept_lines_by_box_and_folds_repeated_rejects():
    corrected = TextLine("SF7300007919", 0.97, KEPT_LINE.box)   # the filter may rewrite the text, not the box
    assert accepted_flags([KEPT_LINE, LOW_LINE], [corrected]) == (True, False)
    assert accepted_flags([KEPT_LINE], None) is None
    live = LiveView(recent_readings=2, recent_rejects=3)
    live.frame("dock", white(), 1.0, [KEPT_LINE, LOW_LINE], [KEPT_LINE])
    view = live.camera_view("dock")
    assert view["frame_seq"] == 1 and [l["state"] for l in view["lines"]] == ["kept", "rejected"]
    for t in (1.0, 2.0, 3.0):
        live.rejected("dock", t, {"low_confidence": 1}, [KEPT_LINE, LOW_LINE], [KEPT_LINE])
    live.rejected("dock", 4.0, {"duplicate": 1}, [KEPT_LINE], [KEPT_LINE])
    rejects = live.camera_view("dock")["rejects"]
    assert [(r["reasons"], r["repeats"], [t["text"] for t in r["texts"]]) for r in rejects] == [
        ({"duplicate": 1}, 1, ["SF7300007919"]), ({"low_confidence": 1}, 3, ["smudge"])]
    for i in range(3):
        live.reading("dock", f"box1:dock:{i}:1", float(i), [KEPT_LINE])
    assert [r["id"] for r in live.camera_view("dock")["readings"]] == ["box1:dock:2:1", "box1:dock:1:1"]
