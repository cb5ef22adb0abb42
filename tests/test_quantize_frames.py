"""Calibration frames by kind and hardness, the per-kind split, and what the INT8 report warns about. Pure parts:
rendered frames and dataclasses, no models."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from daemon.quantize import hardness, report
from daemon.quantize.frames import DEFAULT_KIND, Frame, load_frames, split_frames
from daemon.quantize.measure import COMBOS, Comparison, Group, Scores, group_names
from daemon.samples.render import LABELS_FILE, render_label


def _measured(variant: str, seed: int = 7):
    s = render_label(seed, variant=variant)
    return hardness.measure(s.image, [ln.box for ln in s.lines])


def test_an_ordinary_label_is_not_hard():
    assert _measured("plain").reasons == ()


@pytest.mark.parametrize("variant, reason", [("motion", "blurred"), ("defocus", "blurred"), ("dim", "dim"),
                                             ("noisy", "noisy"), ("small", "small text"), ("tilted", "tilted"),
                                             ("upside_down", "tilted")])
def test_hard_frames_are_flagged_with_their_reason(variant, reason):
    assert reason in _measured(variant).reasons


def test_line_geometry_of_an_upside_down_box():
    height, tilt = hardness.line_geometry([[[100, 50], [0, 50], [0, 30], [100, 30]]])
    assert height == pytest.approx(20.0) and tilt == pytest.approx(180.0)


def _frame(kind: str, hard: bool, i: int) -> Frame:
    h = hardness.Hardness(1000.0, 100.0, 2.0, None, None, ("blurred",) if hard else ())
    return Frame(f"{kind}-{i}", np.zeros((4, 4, 3), np.uint8), None, kind, h)


def test_split_holds_out_a_share_of_every_kind_and_hardness():
    frames = ([_frame("dock", False, i) for i in range(10)] + [_frame("dock", True, i) for i in range(5)]
              + [_frame("night", True, i) for i in range(5)] + [_frame("rare", False, 0)])
    split = split_frames(frames, 0.2, seed=3)
    held = {(f.kind, f.hard) for f in split.held_out}
    assert held == {("dock", False), ("dock", True), ("night", True)}   # a group of one stays in calibration
    assert len(split.held_out) == 2 + 1 + 1
    assert {f.name for f in split.calibration} | {f.name for f in split.held_out} == {f.name for f in frames}
    assert split_frames(frames, 0.2, seed=3) == split                    # seeded


def test_kinds_come_from_sub_folders_and_labels(tmp_path):
    for sub, variants in (("dock", ("plain", "motion")), ("night", ("dim", "dim"))):
        folder = tmp_path / sub
        folder.mkdir()
        with open(folder / LABELS_FILE, "w", encoding="utf-8") as f:
            for i, v in enumerate(variants):
                s = render_label(40 + i, width=640, height=480, variant=v)
                cv2.imwrite(str(folder / f"{s.name}.png"), s.image)
                rec = {"image": f"{s.name}.png", "lines": [{"text": ln.text, "box": ln.box} for ln in s.lines]}
                if sub == "dock":
                    rec["kind"] = v
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    for i in range(4):   # frames at the top level have the default kind
        cv2.imwrite(str(tmp_path / f"top{i}.png"), render_label(60 + i, width=640, height=480).image)
    frames = load_frames(tmp_path)
    assert sorted(f.kind for f in frames) == sorted([DEFAULT_KIND] * 4 + ["dock/plain", "dock/motion", "night", "night"])
    assert all(f.hardness is not None for f in frames)
    by_kind = {f.kind: f for f in frames}
    assert by_kind["dock/motion"].hard and "dim" in by_kind["night"].hardness.reasons
    assert group_names(by_kind["dock/motion"]) == ("all", "dock", "dock/motion", "hard (measured)")


def _scores(det_recall: float, cer: float, chars: int) -> Scores:
    return Scores(det_recall, det_recall, cer, round(cer * chars), chars)


def _group(name: str, lines: int, int8_cer: float, int8_recall: float) -> Group:
    s = {k: _scores(1.0, 0.01, 12 * lines) for k in COMBOS}
    s["int8"] = _scores(int8_recall, int8_cer, 12 * lines)
    return Group(name, 10, lines, s)


def test_targets_are_checked_on_every_group():
    ok, hard = _group("ordinary", 400, 0.012, 1.0), _group("hard", 400, 0.03, 0.95)
    assert ok.meets_targets and not hard.meets_targets
    assert hard.cer_increase_points() == pytest.approx(2.0) and hard.recall_decrease_points() == pytest.approx(5.0)
    rep = report.build_report({"report_only": True, "images": "x", "outputs": ["a", "b"]},
                              Comparison("ground truth", (_group("all", 800, 0.02, 0.97), ok, hard)), [], {}, None,
                              {"frames": 20, "hard": 10, "kinds": {}, "hard_reasons": {}})
    assert not rep["accuracy"]["meets_targets"] and rep["accuracy"]["missed"] == ["all", "hard"]
    md = report.to_markdown(rep)
    assert "TARGETS MISSED on: all, hard" in md and "| hard | 10 | 400 |" in md


def test_a_group_with_few_characters_is_shown_but_not_judged():
    few = _group("hard/motion", 20, 0.03, 1.0)     # 240 characters: +2 points is 5 edits
    assert not few.judged and not few.meets_targets
    rep = report.build_report({"report_only": True, "images": "x", "outputs": ["a", "b"]},
                              Comparison("ground truth", (_group("all", 400, 0.011, 1.0), few)), [], {}, None,
                              {"frames": 20, "hard": 10, "kinds": {}, "hard_reasons": {}})
    assert rep["accuracy"]["meets_targets"] and rep["accuracy"]["not_judged"] == ["hard/motion"]
    assert "missed (few chars)" in report.to_markdown(rep)


def test_report_warns_when_calibration_or_measurement_lacks_hard_frames():
    easy = {"frames": 50, "hard": 2, "kinds": {}, "hard_reasons": {}}
    none = {"frames": 10, "hard": 0, "kinds": {}, "hard_reasons": {}}
    comparison = Comparison("fp32", (_group("all", 30, 0.01, 1.0),))
    warnings = report.warnings_for(easy, none, comparison)
    assert any("only 2 of 50 calibration frames are hard" in w for w in warnings)
    assert any("no hard frame was measured" in w for w in warnings)
    assert any("no ground truth" in w for w in warnings)
    assert any("fewer than 1000 characters (all)" in w for w in warnings)
    mixed = {"frames": 50, "hard": 20, "kinds": {}, "hard_reasons": {}}
    assert report.warnings_for(mixed, mixed, Comparison("ground truth", (_group("all", 300, 0.01, 1.0),))) == []
