"""engines/int8_report.json and .md: what quantization cost and gained, in numbers, per group of frames.

The report says plainly when it cannot be trusted: no hard frames among those calibrated or held out, no
ground truth, or groups too small to resolve the targets.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

from daemon.quantize.frames import Frame
from daemon.quantize.measure import (CER_TARGET_POINTS, COMBOS, MIN_JUDGED_CHARS, RECALL_TARGET_POINTS,
                                     Comparison, Speed)

MIN_HARD_SHARE = 0.2      # below this share of hard frames, the calibration set is warned about
_COMBO_TITLES = {"fp32": "FP32", "int8_rec": "INT8 rec only", "int8_det": "INT8 det only", "int8": "INT8 det + rec"}


def frame_census(frames: Sequence[Frame]) -> dict:
    """How many frames of each kind, and how many measured hard and why."""
    kinds: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for f in frames:
        kinds[f.kind] = kinds.get(f.kind, 0) + 1
        for r in (f.hardness.reasons if f.hardness else ()):
            reasons[r] = reasons.get(r, 0) + 1
    return {"frames": len(frames), "hard": sum(1 for f in frames if f.hard), "kinds": kinds, "hard_reasons": reasons}


def warnings_for(calibration: dict | None, measured: dict, accuracy: Comparison | None) -> list[str]:
    out = []
    if calibration is not None and calibration["frames"] and calibration["hard"] / calibration["frames"] < MIN_HARD_SHARE:
        out.append(f"only {calibration['hard']} of {calibration['frames']} calibration frames are hard (blurred, dim, "
                   f"noisy, small or tilted text): INT8 is calibrated for easy frames and may lose lines on the hard "
                   f"ones a camera also sees; add at least {round(100 * MIN_HARD_SHARE)} % of such frames")
    if measured["frames"] and not measured["hard"]:
        out.append("no hard frame was measured: this report says nothing about INT8 on blurred, dim, noisy, small "
                   "or tilted text")
    if accuracy is not None:
        if accuracy.reference != "ground truth":
            out.append("no ground truth (labels.jsonl) for every frame: recall and CER are agreement with the FP32 "
                       "pipeline's own reading, not accuracy")
        small = [g.name for g in accuracy.groups if not g.judged]
        if small:
            out.append(f"groups with fewer than {MIN_JUDGED_CHARS} characters ({', '.join(small)}) are shown but not "
                       f"judged: one character there moves CER by more than 0.1 point")
    return out


def build_report(settings: dict, accuracy: Comparison | None, speeds: Sequence[Speed],
                 sizes_bytes: dict[str, int], calibration: dict | None, measured: dict) -> dict:
    report = {"settings": settings, "model_sizes_bytes": sizes_bytes,
              "speed_ms": [dataclasses.asdict(s) for s in speeds],
              "calibration_frames": calibration, "measured_frames": measured,
              "targets": {"cer_increase_points_max": CER_TARGET_POINTS,
                          "det_recall_decrease_points_max": RECALL_TARGET_POINTS}}
    if accuracy is not None:
        groups = []
        for g in accuracy.groups:
            groups.append({**dataclasses.asdict(g),
                           "cer_increase_points": {k: round(g.cer_increase_points(k), 3) for k in COMBOS if k != "fp32"},
                           "det_recall_decrease_points": {k: round(g.recall_decrease_points(k), 3)
                                                          for k in COMBOS if k != "fp32"},
                           "meets_targets": g.meets_targets, "judged": g.judged})
        judged = [g for g in groups if g["judged"]]
        report["accuracy"] = {"reference": accuracy.reference, "groups": groups,
                              "meets_targets": bool(judged) and all(g["meets_targets"] for g in judged),
                              "missed": [g["name"] for g in judged if not g["meets_targets"]],
                              "not_judged": [g["name"] for g in groups if not g["judged"]]}
    report["warnings"] = warnings_for(calibration, measured, accuracy)
    return report


def _verdict(group: dict) -> str:
    if not group["judged"]:
        return "met (few chars)" if group["meets_targets"] else "missed (few chars)"
    return "met" if group["meets_targets"] else "MISSED"


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def to_markdown(report: dict) -> str:
    s = report["settings"]
    out = ["# INT8 (Q/DQ) vs FP32, measured with ONNX Runtime on the CPU", ""]
    if s.get("report_only"):
        out += [f"Existing Q/DQ models measured on `{s['images']}`: {', '.join(s['outputs'])}.", ""]
    else:
        out += [f"Calibration: {s['method']}, {s['calibration_frames']} frames from `{s['images']}` "
                f"({s['rec_calibration_lines']} recognizer lines), {s['calibration_s']:.0f} s in all; "
                f"held out: {s['held_out_frames']} frames. Det ops quantized: {', '.join(s['det_op_types'])}; "
                f"rec ops: {', '.join(s['rec_op_types'])}; kept in float: det "
                f"{', '.join(s['exclude_nodes']['det']) or 'none'}; rec {', '.join(s['exclude_nodes']['rec']) or 'none'}.", ""]
    for w in report["warnings"]:
        out.append(f"**Warning:** {w}.")
    if report["warnings"]:
        out.append("")
    acc = report.get("accuracy")
    if acc:
        out += [f"Reference: {acc['reference']}. Targets for INT8 det + rec on every group: CER up at most "
                f"{CER_TARGET_POINTS} points, detection recall down at most {RECALL_TARGET_POINTS} point.", "",
                "| frames | n | lines | det recall FP32 → INT8 | line recall FP32 → INT8 | "
                + " | ".join(f"CER {_COMBO_TITLES[k]}" for k in COMBOS) + " | CER Δ | target |",
                "|---|---:|---:|---|---|" + "---:|" * len(COMBOS) + "---:|---|"]
        for g in acc["groups"]:
            sc = g["scores"]
            out.append(f"| {g['name']} | {g['frames']} | {g['lines']} | {_pct(sc['fp32']['det_recall'])} → "
                       f"{_pct(sc['int8']['det_recall'])} | {_pct(sc['fp32']['line_recall'])} → "
                       f"{_pct(sc['int8']['line_recall'])} | "
                       + " | ".join(_pct(sc[k]['cer']) for k in COMBOS)
                       + f" | {g['cer_increase_points']['int8']:+.2f} pt | {_verdict(g)} |")
        out += ["", "Targets met on every judged group." if acc["meets_targets"]
                else f"TARGETS MISSED on: {', '.join(acc['missed']) or 'no group has enough characters to judge'}.", ""]
    else:
        out += ["No held-out frames: accuracy not measured.", ""]
    if report["speed_ms"]:
        out += ["| model | input | FP32 ms | INT8 ms | speed-up | FP32 size | INT8 size |", "|---|---|---|---|---|---|---|"]
        sizes = report["model_sizes_bytes"]
        for sp in report["speed_ms"]:
            m = sp["model"]
            out.append(f"| {m} | {'x'.join(map(str, sp['input_shape']))} | {sp['fp32_ms']:.1f} | {sp['int8_ms']:.1f} | "
                       f"{sp['fp32_ms'] / max(sp['int8_ms'], 1e-9):.2f}x | {sizes[m + '_fp32'] / 1e6:.2f} MB | "
                       f"{sizes[m + '_int8'] / 1e6:.2f} MB |")
    return "\n".join(out) + "\n"


def write_report(report: dict, engines_dir: Path, stem: str = "int8_report") -> tuple[Path, Path]:
    engines_dir.mkdir(parents=True, exist_ok=True)
    js, md = engines_dir / f"{stem}.json", engines_dir / f"{stem}.md"
    js.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md.write_text(to_markdown(report), encoding="utf-8")
    return js, md
