"""The label renderer: deterministic by seed, ground truth inside the frame and following the transform."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from daemon.samples import render
from daemon.samples.render import (ALL_VARIANTS, FontMissingError, load_dataset, make_dataset, read_kinds, render_label,
                                   render_line)


def _quad(line) -> np.ndarray:
    return np.asarray(line.box, dtype=np.float64)


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_same_seed_same_pixels_and_truth(variant):
    a = render_label(7, variant=variant)
    b = render_label(7, variant=variant)
    assert np.array_equal(a.image, b.image)
    assert a.lines == b.lines
    c = render_label(8, variant=variant)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_boxes_inside_frame_and_line_count(variant):
    for seed in range(2):
        s = render_label(seed, variant=variant)
        h, w = s.image.shape[:2]
        assert (w, h) == (render.LARGE_SIZE if variant == "large" else (1280, 960))
        assert s.image.dtype == np.uint8 and s.image.shape[2] == 3
        assert 6 <= len(s.lines) <= 12
        for line in s.lines:
            q = _quad(line)
            assert line.text and line.text == line.text.strip()
            assert q.shape == (4, 2)
            assert q[:, 0].min() >= 0 and q[:, 0].max() <= w - 1
            assert q[:, 1].min() >= 0 and q[:, 1].max() <= h - 1


def test_lines_do_not_overlap_on_plain_labels():
    import cv2

    for seed in range(5):
        s = render_label(seed)
        quads = [_quad(ln).astype(np.float32) for ln in s.lines]
        for i in range(len(quads)):
            for j in range(i + 1, len(quads)):
                inter, _ = cv2.intersectConvexConvex(quads[i], quads[j])
                assert inter == 0.0, (s.lines[i].text, s.lines[j].text)


def test_small_text_is_present_and_legible_sized():
    # cap heights from 14 px: the box height (cap or em plus 24 % padding) never drops under 14 px
    heights = []
    for seed in range(10):
        for line in render_label(seed).lines:
            q = _quad(line)
            heights.append(q[:, 1].max() - q[:, 1].min())
    assert min(heights) >= 14
    assert min(heights) < 30 and max(heights) > 45


def test_upside_down_truth_is_rotated_half_a_turn():
    s = render_label(3, variant="upside_down")
    for line in s.lines:
        q = _quad(line)
        # the text's own top-left corner ends up bottom-right of its bottom-right corner
        assert q[0, 0] > q[2, 0] and q[0, 1] > q[2, 1]


def test_rotated_truth_follows_ink():
    # The ink of each line lies inside its transformed quad: darkest pixels near the quad centre are text.
    import cv2

    s = render_label(5, variant="rotated")
    grey = cv2.cvtColor(s.image, cv2.COLOR_BGR2GRAY)
    for line in s.lines:
        mask = np.zeros_like(grey)
        cv2.fillConvexPoly(mask, _quad(line).astype(np.int32), 255)
        inside = grey[mask > 0]
        assert inside.min() < 90, line.text   # ink is there
        assert np.median(inside) > 150        # mostly paper


def test_all_characters_are_in_the_recognizer_dictionary():
    from daemon.ocr.models import bundled_model_dir, load_charset

    charset = set(load_charset(bundled_model_dir() / "ch_PP-OCRv4_rec_infer.onnx", None))
    texts = [ln.text for seed in range(20) for ln in render_label(seed, noise_sigma=0).lines]
    texts += [render.random_line_text(seed) for seed in range(200)]
    missing = {ch for t in texts for ch in t if ch not in charset}
    assert not missing


def test_render_line_is_one_cropped_line():
    s = render_line(11, "SF1234567890123", height=48)
    assert s.image.shape[0] == 48 and s.image.shape[1] > 48 * 4
    assert s.lines[0].text == "SF1234567890123"
    assert np.array_equal(s.image, render_line(11, "SF1234567890123", height=48).image)
    random_text = render_line(12)
    assert random_text.lines[0].text == render.random_line_text(12)


def test_dataset_round_trip(tmp_path: Path):
    paths = make_dataset(tmp_path, 3, seed=20, variants=("plain", "blurred"))
    assert [p.name for p in paths] == ["label_00020_plain.png", "label_00021_blurred.png", "label_00022_plain.png"]
    loaded = load_dataset(tmp_path)
    fresh = render_label(21, variant="blurred")
    assert np.array_equal(loaded[1].image, fresh.image)   # PNG is lossless
    assert [ln.text for ln in loaded[1].lines] == [ln.text for ln in fresh.lines]
    assert np.allclose(_quad(loaded[1].lines[0]), _quad(fresh.lines[0]), atol=0.01)
    record = json.loads((tmp_path / "labels.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert set(record) == {"image", "kind", "lines"} and set(record["lines"][0]) == {"text", "box"}
    assert read_kinds(tmp_path) == {p.name: v for p, v in zip(paths, ("plain", "blurred", "plain"))}
    assert [s.kind for s in loaded] == ["plain", "blurred", "plain"]


def test_load_dataset_without_labels_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="labels.jsonl"):
        load_dataset(tmp_path)


def test_bundled_samples_match_the_renderer():
    bundled = load_dataset(render.sample_dir())
    assert len(bundled) == len(render.BUNDLED_VARIANTS)
    for i, s in enumerate(bundled):
        png = render.sample_dir() / f"{s.name}.png"
        assert png.stat().st_size < 300_000
        fresh = render_label(render.BUNDLED_SEED + i, variant=render.BUNDLED_VARIANTS[i], noise_sigma=0.0)
        assert s.name == fresh.name and s.image.shape == (960, 1280, 3)
        assert [ln.text for ln in s.lines] == [ln.text for ln in fresh.lines]


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown variant"):
        render_label(0, variant="sideways")


def test_missing_font_names_the_debian_package(monkeypatch, tmp_path: Path):
    fonts = dict(render._FONT_FILES)
    fonts["cjk"] = (tmp_path / "NotoSansCJK-Regular.ttc", 2, "fonts-noto-cjk")
    monkeypatch.setattr(render, "_FONT_FILES", fonts)
    render._font.cache_clear()
    try:
        with pytest.raises(FontMissingError, match="fonts-noto-cjk"):
            render_label(0)
    finally:
        render._font.cache_clear()
