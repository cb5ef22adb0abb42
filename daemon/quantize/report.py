"""engines/int8_report.json and .md: what quantization cost and gained, in numbers."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

from daemon.quantize.measure import Comparison, Speed


def build_report(settings: dict, accuracy: Comparison | None, speeds: Sequence[Speed],
                 sizes_bytes: dict[str, int]) -> dict:
    report = {"settings": settings, "model_sizes_bytes": sizes_bytes, "speed_ms": [dataclasses.asdict(s) for s in speeds]}
    if accuracy is not None:
        acc = dataclasses.asdict(accuracy)
        acc["cer_increase_points"] = 100.0 * (accuracy.cer_int8 - accuracy.cer_fp32)
        acc["det_recall_decrease_points"] = 100.0 * (accuracy.det_recall_fp32 - accuracy.det_recall_int8)
        # issue 4's targets: CER up at most 0.5 points, detection recall down at most 1 point
        acc["meets_targets"] = acc["cer_increase_points"] <= 0.5 and acc["det_recall_decrease_points"] <= 1.0
        report["accuracy"] = acc
    return report


def to_markdown(report: dict) -> str:
    s = report["settings"]
    out = ["# INT8 (Q/DQ) vs FP32, measured with ONNX Runtime on the CPU", "",
           f"Calibration: {s['method']}, {s['calibration_frames']} frames from `{s['images']}` "
           f"({s['rec_calibration_lines']} recognizer lines), {s['calibration_s']:.0f} s in all; "
           f"held out: {s['held_out_frames']} frames. Det ops quantized: {', '.join(s['det_op_types'])}; "
           f"rec ops: {', '.join(s['rec_op_types'])}; kept in float: {', '.join(s['exclude_nodes']) or 'none'}.", ""]
    acc = report.get("accuracy")
    if acc:
        out += [f"Reference: {acc['reference']} ({acc['lines']} lines on {acc['frames']} frames)", "",
                "| | FP32 | INT8 rec on FP32 crops | INT8 det + rec |", "|---|---|---|---|",
                f"| detection recall (IoU >= 0.5) | {100 * acc['det_recall_fp32']:.2f} % | - | "
                f"{100 * acc['det_recall_int8']:.2f} % |",
                f"| CER | {100 * acc['cer_fp32']:.2f} % | {100 * acc['cer_int8_rec']:.2f} % | {100 * acc['cer_int8']:.2f} % |",
                "", f"CER increase {acc['cer_increase_points']:+.2f} points (target <= 0.5), detection recall "
                f"decrease {acc['det_recall_decrease_points']:+.2f} points (target <= 1): "
                f"{'targets met' if acc['meets_targets'] else 'TARGETS MISSED'}.", ""]
    else:
        out += ["No held-out frames: accuracy not measured.", ""]
    out += ["| model | input | FP32 ms | INT8 ms | speed-up | FP32 size | INT8 size |", "|---|---|---|---|---|---|---|"]
    sizes = report["model_sizes_bytes"]
    for sp in report["speed_ms"]:
        m = sp["model"]
        out.append(f"| {m} | {'x'.join(map(str, sp['input_shape']))} | {sp['fp32_ms']:.1f} | {sp['int8_ms']:.1f} | "
                   f"{sp['fp32_ms'] / max(sp['int8_ms'], 1e-9):.2f}x | {sizes[m + '_fp32'] / 1e6:.2f} MB | "
                   f"{sizes[m + '_int8'] / 1e6:.2f} MB |")
    return "\n".join(out) + "\n"


def write_report(report: dict, engines_dir: Path) -> tuple[Path, Path]:
    engines_dir.mkdir(parents=True, exist_ok=True)
    js, md = engines_dir / "int8_report.json", engines_dir / "int8_report.md"
    js.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md.write_text(to_markdown(report), encoding="utf-8")
    return js, md
