"""The CPU recognizer's cost per 48x320 line slot by batch size, on the slots real frames give it.

    python bench/rec_batch_sweep.py --images DIR [--config FILE] [--threads N ...] [--rounds 3] [--json OUT]

The pipeline reads DIR once and records every recognizer input it builds (the packed slots, in order);
then, for each thread count, one ONNX Runtime session (the daemon's own options) runs those slots at each
batch size. Each round times every batch size over the same slots; the table gives the best round per
batch in ms per slot. ocr.cpu_rec_batch's automatic choice comes from this table (bench/RESULTS.md 19).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon import config  # noqa: E402
from daemon.backends.onnxruntime import session_options  # noqa: E402
from daemon.backends.onnxruntime.threads import physical_cores  # noqa: E402
from daemon.bench import _load_images, _Recorder, _time_models  # noqa: E402
from daemon.ocr.pipeline import OcrPipeline  # noqa: E402

BATCHES = (1, 2, 4, 6, 8, 12, 16)


def recorded_slots(images: Path, cfg: config.Config) -> tuple[str, np.ndarray]:
    """The recognizer's ONNX path and every slot the pipeline fed it over the images (N x 3 x 48 x 320),
    recorded the way `ocr-daemon bench` records its "models alone" calls."""
    pipe = OcrPipeline.from_config(dataclasses.replace(cfg, backend="onnxruntime"))
    recorder = _Recorder()
    _time_models(pipe, recorder)
    rec = pipe.rec.inner
    seen: list[np.ndarray] = []
    try:
        for _, frame in _load_images(images):
            recorder.clear()
            pipe.run(frame)
            seen += [feeds[rec.input_name] for model, feeds in recorder.calls if model is rec]
    finally:
        pipe.close()
    return pipe.rec_path, np.concatenate(seen)


def sweep(onnx_path: str, slots: np.ndarray, threads: int, rounds: int) -> dict[int, float]:
    """batch -> best ms per slot over the rounds (the slots that fill whole batches)."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_path, session_options(threads), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    session.run(None, {name: slots[:1]})
    best: dict[int, float] = {}
    for _ in range(rounds):
        for batch in BATCHES:
            n = len(slots) // batch * batch
            t0 = time.perf_counter()
            for i in range(0, n, batch):
                session.run(None, {name: slots[i:i + batch]})
            ms = (time.perf_counter() - t0) * 1000.0 / n
            best[batch] = min(best.get(batch, ms), ms)
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", required=True, type=Path)
    p.add_argument("--config", default=None, help="config.yaml whose ocr section picks the recognizer")
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help="ONNX Runtime thread counts (default: 2 and one per physical core)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    threads = args.threads or sorted({2, physical_cores()})
    cfg = config.load_or_defaults(args.config)
    onnx_path, slots = recorded_slots(args.images, cfg)
    rows = {t: sweep(onnx_path, slots, t, args.rounds) for t in threads}
    print(f"{len(slots)} slots from {args.images}, best of {args.rounds} rounds, ms per slot\n")
    print("| threads | " + " | ".join(f"batch {b}" for b in BATCHES) + " |")
    print("|---:|" + "---:|" * len(BATCHES))
    for t, row in rows.items():
        fastest = min(row.values())
        cells = [f"**{row[b]:.2f}**" if row[b] == fastest else f"{row[b]:.2f}" for b in BATCHES]
        print(f"| {t} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                         "physical_cores": physical_cores(), "slots": len(slots),
                                         "ms_per_slot": {str(t): {str(b): round(v, 3) for b, v in r.items()}
                                                         for t, r in rows.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
