"""One-off (RESULTS.md section 36): ONNX Runtime's TopK(3) head against numpy's CTC argmaxes on real recognizer batches.

    .venv/bin/python bench/ort_topk.py
"""
import sys, json, time, statistics
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np, onnx, onnxruntime as ort
from daemon import config
from daemon.backends.onnxruntime import OnnxRuntimeBackend, session_options
from daemon.ocr import models
from daemon.ocr.ctc import ctc_candidates, ctc_candidates_top3
from daemon.ocr.pipeline import OcrPipeline
from daemon.ocr.rec_head import top3_model, VALUES, CLASSES
from daemon.samples.render import render_label
cfg = config.from_dict({"backend": "onnxruntime"})
paths = models.resolve(cfg)
pl = OcrPipeline(cfg.ocr, OnnxRuntimeBackend(threads=2), paths)
batches = []
real = pl.rec.run
pl.rec.run = lambda feeds: (batches.append(next(iter(feeds.values())).copy()), real(feeds))[1]
for seed in (3300, 3301, 3302):
    pl.run(render_label(seed).image)
pl.close()
slots = np.concatenate(batches)
slots = slots[np.abs(slots).sum(axis=(1, 2, 3)) > 0]          # the filled slots, real lines
batches = [slots[i:i + 8] for i in range(0, len(slots) - 7, 8)]  # re-chunked at the engines' batch of 8
print("real line slots:", len(slots), "batches of 8:", len(batches))
o = session_options(2); o.enable_profiling = True; o.profile_file_prefix = "/tmp/ort_topk_prof"
full = ort.InferenceSession(str(paths.rec), sess_options=session_options(2), providers=["CPUExecutionProvider"])
top = ort.InferenceSession(top3_model(onnx.load(str(paths.rec))).SerializeToString(), sess_options=o, providers=["CPUExecutionProvider"])
ctc_full, ctc_top, run_full, run_top = [], [], [], []
for r in range(4):
    for b in batches:
        w0 = time.perf_counter(); probs = full.run(None, {"x": b})[0]; run_full.append((time.perf_counter() - w0) * 1e3)
        w0 = time.perf_counter(); v, c = top.run([VALUES, CLASSES], {"x": b}); run_top.append((time.perf_counter() - w0) * 1e3)
        t0 = time.thread_time_ns()
        for k in range(8): ctc_candidates(probs[k])
        ctc_full.append((time.thread_time_ns() - t0) / 1e6)
        t0 = time.thread_time_ns()
        for k in range(8): ctc_candidates_top3(v[k], c[k])
        ctc_top.append((time.thread_time_ns() - t0) / 1e6)
ev = json.load(open(top.end_profiling()))
topk = [e["dur"] / 1e3 for e in ev if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["args"].get("op_name") == "TopK"]
md = statistics.median
print(f"per batch of 8 x 3 x 48 x 320, {len(run_full)} runs each, medians (min):")
print(f"  ONNX Runtime TopK kernel, ms: {md(topk):.2f} ({min(topk):.2f})")
print(f"  numpy CTC on the softmax (ctc_candidates x 8), thread ms: {md(ctc_full):.2f} ({min(ctc_full):.2f})")
print(f"  numpy CTC on the top 3 (ctc_candidates_top3 x 8), thread ms: {md(ctc_top):.3f} ({min(ctc_top):.3f})")
print(f"  whole run, wall ms: softmax model {md(run_full):.0f}, top-3 model {md(run_top):.0f}")
