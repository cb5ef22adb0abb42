"""Where ONNX Runtime spends one model's time on the CPU: median ms per call and the share of each op type.

    python bench/ort_profile.py MODEL.onnx 1,3,736,960 [--threads 2] [--runs 30] [--fold]

Random input of the given shape, the daemon's session options (daemon/backends/onnxruntime), ONNX
Runtime's own profiler for the shares. --fold profiles the CPU's folded copy
(daemon/backends/onnxruntime/fold.py) instead of the file as shipped.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time

import numpy as np
import onnxruntime as ort

from daemon.backends.onnxruntime import session_options


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("shape", help="input shape, comma-separated (e.g. 1,3,736,960)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--fold", action="store_true", help="profile the folded copy")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if args.fold:
            import onnx

            from daemon.backends.onnxruntime.fold import fold

            m = onnx.load(model)
            print(fold(m))
            model = os.path.join(tmp, "folded.onnx")
            onnx.save(m, model)
        opts = session_options(args.threads)
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "profile")
        session = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).random([int(d) for d in args.shape.split(",")], dtype=np.float32)
        feed = {session.get_inputs()[0].name: x}
        for _ in range(3):
            session.run(None, feed)
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - t)
        with open(session.end_profiling()) as f:
            events = json.load(f)
    per_op = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
    total = sum(per_op.values()) or 1
    print(f"{args.model} {args.shape}, {args.threads} threads: median {np.median(times) * 1000:.1f} ms, "
          f"p95 {np.percentile(times, 95) * 1000:.1f} ms over {args.runs} calls")
    for op, dur in per_op.most_common(10):
        print(f"  {op:24s} {dur / total:6.1%}")


if __name__ == "__main__":
    main()
