"""Why bench's "models alone" replays the real inputs: the same model calls on zeros vs on the pipeline's feeds.

    python bench/replay_inputs.py DIR [--config FILE] [--repeat N]

Per image: the pipeline once (its model calls recorded with copies of their feeds, as `ocr-daemon bench`
does), then the same calls replayed on those feeds and on zero-filled inputs of the same shapes, the two
replays in alternating order. Prints images/s of each and the overhead share each floor implies.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon import config  # noqa: E402
from daemon.bench import _load_images, _Recorder, _Series, _time_models  # noqa: E402
from daemon.ocr.pipeline import OcrPipeline  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", type=Path)
    p.add_argument("--config", default=None)
    p.add_argument("--repeat", type=int, default=1)
    args = p.parse_args()
    pipeline = OcrPipeline.from_config(config.load_or_defaults(args.config))
    recorder = _Recorder()
    _time_models(pipeline, recorder)
    images = _load_images(args.dir)
    for _, frame in images[:2]:
        pipeline.run(frame)
    ours, real, zeros = _Series(), _Series(), _Series()
    turn = 0
    for _ in range(args.repeat):
        for _, frame in images:
            recorder.clear()
            t0 = time.perf_counter()
            pipeline.run(frame)
            ours.total_ms.append((time.perf_counter() - t0) * 1000.0 - recorder.copy_ms)
            zero_calls = [(m, {k: np.zeros_like(v) for k, v in f.items()}) for m, f in recorder.calls]
            replays = [(real, recorder.calls), (zeros, zero_calls)]
            for series, calls in (replays if turn % 2 == 0 else replays[::-1]):
                t0 = time.perf_counter()
                for model, feeds in calls:
                    model.run(feeds)
                series.total_ms.append((time.perf_counter() - t0) * 1000.0)
            turn += 1
    for name, s in (("pipeline", ours), ("models alone, real inputs", real), ("models alone, zeros", zeros)):
        print(f"{name}: {s.summary()}")
    print(f"zeros run {sum(real.total_ms) / sum(zeros.total_ms):.3f}x as fast as the real inputs")
    for name, s in (("real inputs", real), ("zeros", zeros)):
        print(f"overhead share with the floor from {name}: {1 - sum(s.total_ms) / sum(ours.total_ms):.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
