"""Whole processes, start-up included: `ocr-daemon once DIR` against RapidOCR scripts on the same files.

    python bench/process_bench.py --images DIR [--rounds 3] [--config NAME=FILE ...] [--json OUT]

Two measurements per system and round, the systems taking turns (the order rotates every round, so a
noisy neighbour hits all alike):
  folder     one process over every image of DIR: images/s = images / wall time of the process;
  one image  one process over DIR's first image: the start-up a user waits for on a single frame.
Accuracy (CER, line recall against DIR's labels.jsonl) comes from the processes' own output. RapidOCR
1.4.4 and 3.10 (bench/peer_once.py) run when importable, each with its own default models and settings.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daemon.ocr import evaluate  # noqa: E402
from daemon.once import image_paths  # noqa: E402
from daemon.samples.render import read_labels  # noqa: E402

PEERS = {"rapidocr-1.4.4": ("rapidocr_onnxruntime", "1.4.4"), "rapidocr-3.10": ("rapidocr", "3.10")}


def systems(configs: list[str]) -> dict[str, list[str]]:
    """name -> command line taking image arguments at the end."""
    ours = [sys.executable, "-m", "daemon.cli", "once", "--json"]
    out = {"ocr-daemon once": ours}
    for spec in configs:
        name, _, path = spec.partition("=")
        out[f"ocr-daemon once ({name})"] = ours + ["--config", path]
    for name, (module, version) in PEERS.items():
        if importlib.util.find_spec(module) is not None:
            out[name] = [sys.executable, str(ROOT / "bench" / "peer_once.py"), version]
    return out


def run(cmd: list[str], images: list[str]) -> tuple[float, list[dict]]:
    t0 = time.perf_counter()
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    done = subprocess.run(cmd + images, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path})
    wall = time.perf_counter() - t0
    outputs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode not in (0, 1) or len(outputs) != len(images):   # 1: `once` saw an unreadable image
        raise SystemExit(f"{cmd} failed (exit {done.returncode}, {len(outputs)} of {len(images)} images):\n"
                         f"{done.stderr[-2000:]}")
    return wall, outputs


def accuracy(folder: Path, outputs: list[dict]) -> dict | None:
    truth = read_labels(folder)
    scores = []
    for out in outputs:
        name = Path(out["image"]).name
        if name in truth:
            scores.append(evaluate.score_image([(l.text, l.box) for l in truth[name]],
                                               [(t["text"], t["box"]) for t in out.get("texts", [])]))
    if not scores:
        return None
    a = evaluate.combine(scores)
    return {"lines": len(a.lines), "cer": round(a.cer, 4), "line_recall": round(a.line_recall, 4)}


def measure(folder: Path, rounds: int, configs: list[str]) -> dict:
    images = image_paths([str(folder)])
    cmds = systems(configs)
    names = list(cmds)
    walls = {n: {"folder": [], "one": []} for n in names}
    acc = {}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            wall, outputs = run(cmds[name], images)
            walls[name]["folder"].append(wall)
            if r == 0:
                acc[name] = accuracy(folder, outputs)
        for name in order:
            walls[name]["one"].append(run(cmds[name], images[:1])[0])
    report = {"machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                          "cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
                          "python": platform.python_version()},
              "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "images": len(images), "rounds": rounds,
              "systems": {}}
    for name in names:
        f, one = np.asarray(walls[name]["folder"]), np.asarray(walls[name]["one"])
        report["systems"][name] = {
            "folder_wall_s_median": round(float(np.median(f)), 2), "folder_wall_s_p95": round(float(np.percentile(f, 95)), 2),
            "images_per_s": round(len(images) / float(np.median(f)), 2),
            "one_image_s_median": round(float(np.median(one)), 2), "one_image_s_p95": round(float(np.percentile(one, 95)), 2),
            "accuracy": acc.get(name), "folder_walls_s": [round(x, 2) for x in f], "one_image_walls_s": [round(x, 2) for x in one]}
    ours = report["systems"]["ocr-daemon once"]
    for name in names:
        s = report["systems"][name]
        s["throughput_vs_ours"] = round(s["images_per_s"] / ours["images_per_s"], 3)
    return report


def format_table(report: dict) -> str:
    rows = [f"{report['images']} images, {report['rounds']} rounds, medians (p95) of whole-process wall times",
            "", "| system | folder s | images/s | one image s | CER | line recall |", "|---|---:|---:|---:|---:|---:|"]
    for name, s in report["systems"].items():
        a = s["accuracy"] or {}
        cer = f"{a['cer'] * 100:.2f} %" if a else "-"
        rec = f"{a['line_recall'] * 100:.1f} %" if a else "-"
        rows.append(f"| {name} | {s['folder_wall_s_median']} ({s['folder_wall_s_p95']}) | {s['images_per_s']} | "
                    f"{s['one_image_s_median']} ({s['one_image_s_p95']}) | {cer} | {rec} |")
    ours = report["systems"]["ocr-daemon once"]
    for name, s in report["systems"].items():
        if name.startswith("rapidocr"):
            rows.append(f"ocr-daemon once vs {name}: {ours['images_per_s'] / s['images_per_s']:.2f}x images/s, "
                        f"one image {s['one_image_s_median'] / ours['one_image_s_median']:.2f}x")
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", required=True, type=Path)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--config", action="append", default=[], metavar="NAME=FILE",
                   help="also run `once --config FILE` as a system named NAME (repeatable)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    report = measure(args.images, args.rounds, args.config)
    print(format_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
