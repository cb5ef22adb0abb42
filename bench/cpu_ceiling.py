"""The CPU ceiling: the frames/s the daemon's own work sustains when the models answer at once.

Whatever the GPU does, a frame also costs the CPU its capture hand-off, pre-processing, DB post-processing, crops,
CTC decoding, codes, the consensus tracker, the filter, the outbox row, evidence, the page's state and the sinks.
This runs the real daemon loop (daemon/service.py: Service.start, run in a thread, request_stop) with every one of
those, and replaces only two things:

- the models, by a replay backend (this file, behind daemon/backends/base.py's interface): each model call returns
  the output the real ONNX model gave for that call when it was recorded, so DB post-processing sees real probability
  maps and CTC decoding real, full-size softmax outputs (the recognizer's 18,710 classes included) on the CPU path,
  and with `--det-pre gpu` what TensorRT's engines return: the top 3 classes per step (daemon/ocr/rec_head.py);
- the camera, by a lossless in-process source (a daemon/sources Reader) that hands the recorded frames round and
  round as fast as the loop takes them, through the real CaptureSource thread and FrameHub.

Recording (`--record-only`, or the first run without a recording): bench/sequences.py's moving parcel labels
(1280x960 frames of a belt, one label in view, ~10 printed lines, a Code 128 or QR code on most labels) go through
the real OcrPipeline on ONNX Runtime (FP32 models of ocr.model_set, the TensorRT engines' fixed batches: rec_batch
and rec_tail_batch); every model call's output is kept in call order per frame (the recognizer's as its top 4
classes per step, the rest zero when replayed: greedy CTC reads only the best class; the detector's maps in 1/255
steps). Replayed, frame i's calls are answered in the same order; a call the recording does not have is counted as a
mismatch and fails the run, and each frame's lines are compared with the recorded run's.

Each configuration runs in its own process pinned to 1, 2 and all cores (os.sched_setaffinity), after a warm-up:
frames/s is what the work loop finished per wall second while the capture thread never let it wait; CPU ms per frame
is the whole process's CPU time (every thread) over those frames; per-stage CPU ms (p50/p95 over frames) is each
stage's thread CPU time in the loop (capture: in its own thread). Sinks off: mqtt.enabled false (outbox only); on:
MQTT to a local Mosquitto this script starts (unpinned). The rest of the config is the default (metrics, page and
evidence on), with a live camera's publish mode (consensus; `--modes first` too) and dedup_window_s 0, so each label
of the cycle is stored again as a new label would be. `--det-pre gpu` leaves the detector's letterbox to the GPU as
the TensorRT backend does (the CPU keeps the frame's copy into the staging buffer and the geometry), and overlaps as
its detector does with gpu.streams 2, the default: the loop submits frame N+1 before it finishes frame N (`--streams
1`: one frame at a time). `--text-settle on,off` runs the camera with cameras[].text_settle both ways.

The headline, `ceiling_frames_per_s` in the JSON (with `ceiling_loop_wall_ms_p95`, the work loop's wall time per frame),
is the default config's figure where a GPU runs the models, on all cores: consensus, sinks on (off without a broker),
`--det-pre gpu`, the TensorRT path. `ceiling_frames_per_s_cpu_letterbox` is ONNX Runtime's path, where the models on
the CPU take far longer than the ceiling.

    .venv/bin/python bench/cpu_ceiling.py --json FILE [--cores 1,2,all] [--sinks off,on] [--det-pre cpu,gpu]
                                          [--modes consensus] [--text-settle on,off] [--seconds 15] [--replay FILE]
                                          [--smoke]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DEFAULT_REPLAY = ROOT / "build" / "cpu_ceiling" / "replay.npz"
TOP_K = 4                 # recognizer classes kept per time step (greedy CTC reads the first)
CAMERA = "belt"

# Stages of the work loop, in the order a frame meets them; "rec_pre", "ctc" and "join" are parts of "rec".
LOOP_STAGES = ("take", "det", "det_post", "crop", "cls", "rec", "codes", "lane", "page", "status", "record",
               "heartbeat")
REC_PARTS = ("rec_pre", "ctc", "join")
# Wall ms per frame the loop spends waiting: for a frame (the hub's take), in LookPool.unread before its
# post-processing (a wait for the outlines while they had a thread of their own, bench/RESULTS.md section 54; since,
# only the settle rule) and for its codes (LookPool.result).
WAITS = ("wait_take", "wait_outlines", "wait_codes")
# The OCR settings a recording fixes (the calls' shapes and what post-processing keeps); replayed as recorded.
RECORDED_OCR = ("model_set", "det_input_size", "det_batch", "det_threshold", "det_box_threshold", "det_unclip_ratio",
                "det_min_size", "det_max_candidates", "rec_height", "rec_width", "rec_batch", "rec_tail_batch",
                "rec_packing", "use_angle_classifier", "cls_threshold", "drop_score")


# ---------------------------------------------------------------------------------------------- recording

def record(path: Path, labels: int, frames_per_label: int, seed: int, threads: int) -> dict:
    """Renders the moving labels, runs the real models on them and writes the replay file; returns its meta."""
    import hashlib
    from dataclasses import asdict

    import cv2
    import numpy as np

    sys.path.insert(0, str(BENCH))
    import sequences as seq  # bench/sequences.py: the labels and the belt

    from daemon import config as config_mod
    from daemon.backends.base import Backend, Model
    from daemon.backends.onnxruntime import OnnxRuntimeBackend
    from daemon.ocr import models
    from daemon.ocr.pipeline import OcrPipeline

    class Recording(Model):
        """The real model, each output kept in call order."""

        def __init__(self, spec, inner, calls):
            self.role, self._inner, self._calls = spec.role, inner, calls
            self.inputs, self.outputs = inner.inputs, inner.outputs

        def metadata(self):
            return self._inner.metadata()

        def run(self, feeds):
            out = self._inner.run(feeds)
            self._calls.append((self.role, next(iter(out.values()))))
            return out

    class RecordingBackend(Backend):
        name = "record"       # not "onnxruntime": the pipeline keeps the engines' batches (rec_batch 8)

        def __init__(self):
            self.inner = OnnxRuntimeBackend(threads=threads, precision="fp32", in_flight=1)
            self.calls: list = []

        def load(self, spec):
            return Recording(spec, self.inner.load(spec), self.calls)

    cfg = config_mod.from_dict({"backend": "onnxruntime"})
    paths = models.resolve(cfg)
    backend = RecordingBackend()
    pipeline = OcrPipeline(cfg.ocr, backend, paths, cfg.engines.dir)
    arrays: dict[str, np.ndarray] = {}
    frames_meta, texts = [], []
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for label in range(labels):
        patch, truth = seq.make_label(label, seed + label)
        for k in range(frames_per_label):
            view, _ = seq.make_frame([patch], k, frames_per_label, rng)
            ok, jpeg = cv2.imencode(".jpg", view, [cv2.IMWRITE_JPEG_QUALITY, 85])
            frame = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)      # what the replay hands out, bit for bit
            i = len(frames_meta)
            backend.calls.clear()
            result = pipeline.run(frame)
            arrays[f"frame_{i}"] = jpeg.reshape(-1)
            calls = []
            for j, (role, out) in enumerate(backend.calls):
                if role == "det":
                    if j != 0:
                        raise RuntimeError("a detector call after the frame's first call")
                    # In 1/255 steps (0.002 at most off; the same boxes): 13 kB a map instead of 1 MB in float16.
                    arrays[f"det_{i}"] = np.round(out * 255.0).astype(np.uint8)
                    continue
                if out.ndim == 3:      # recognizer: B x T x C softmax -> its top classes per step
                    idx = np.argpartition(out, -TOP_K, axis=2)[:, :, -TOP_K:]
                    arrays[f"call_{i}_{j}_idx"] = idx.astype(np.uint16 if out.shape[2] < 65536 else np.int32)
                    arrays[f"call_{i}_{j}_val"] = np.take_along_axis(out, idx, axis=2).astype(np.float32)
                    kind = "topk"
                else:                  # classifier: B x 2
                    arrays[f"call_{i}_{j}_dense"] = out.astype(np.float32)
                    kind = "dense"
                calls.append({"role": role, "shape": list(out.shape), "kind": kind})
            frames_meta.append({"label": label, "step": k, "calls": calls, "key": truth.key,
                                "code": truth.code_format})
            texts.append([line.text for line in result.lines])
            print(f"recorded frame {i + 1}/{labels * frames_per_label}: {len(result.lines)} lines, "
                  f"{len(calls)} recognizer/classifier calls ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    charset = pipeline.charset
    pipeline.close()
    sha = {role: hashlib.sha256(Path(p).read_bytes()).hexdigest()
           for role, p in (("det", paths.det), ("rec", paths.rec), ("cls", paths.cls)) if p is not None}
    import onnxruntime
    meta = {"version": 1, "ocr": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg.ocr).items()},
            "charset": charset[1:-1], "frames": frames_meta, "texts": texts,
            "labels": labels, "frames_per_label": frames_per_label, "seed": seed, "top_k": TOP_K,
            "model_sha256": sha, "onnxruntime": onnxruntime.__version__, "opencv": cv2.__version__,
            "recorded": time.strftime("%Y-%m-%d"), "machine": _machine()}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {len(frames_meta)} frames)", file=sys.stderr)
    return meta


class Replay:
    """A recording in memory: decoded frames, detector maps as float32, recognizer calls as top classes."""

    def __init__(self, path: Path):
        import cv2
        import numpy as np

        self.path = path
        # id(image) -> (the image, its recorded frame) for each frame the source handed out and the loop has not
        # handled yet: the detector's replay answers for the frame it is given, so a frame left unread before its
        # detection (text_settle, a detector that does not overlap) skips its recorded call, not the next frame's.
        self.handed: dict = {}
        with np.load(path) as z:
            self.meta = json.loads(bytes(z["meta"]).decode())
            n = len(self.meta["frames"])
            self.frames = [cv2.imdecode(z[f"frame_{i}"], cv2.IMREAD_COLOR) for i in range(n)]
            self.det = [z[f"det_{i}"].astype(np.float32) * np.float32(1.0 / 255.0) for i in range(n)]
            self.calls = []
            self.top3 = []       # per frame, per call: the recognizer's top-3 head's outputs, else None
            for i, fm in enumerate(self.meta["frames"]):
                calls, top3 = [], []
                for j, c in enumerate(fm["calls"], start=1):
                    if c["kind"] == "topk":
                        idx, val = z[f"call_{i}_{j}_idx"].astype(np.intp), z[f"call_{i}_{j}_val"]
                        calls.append((c["role"], tuple(c["shape"]), idx, val))
                        top3.append(top3_of_recorded(idx, val))
                    else:
                        calls.append((c["role"], tuple(c["shape"]), None, z[f"call_{i}_{j}_dense"]))
                        top3.append(None)
                self.calls.append(calls)
                self.top3.append(top3)
        self.texts = self.meta["texts"]


def top3_of_recorded(idx, val):
    """What the recognizer's top-3 head (daemon/ocr/rec_head.py) returns for a recorded call replayed as its dense
    form (its top classes, the rest zero): the three largest, equal values in the lower class first (TopK's order)."""
    import numpy as np

    # lexsort's last key is the primary one: value descending, then class ascending
    order = np.lexsort((idx, -val), axis=-1)[..., :3]
    values = np.take_along_axis(val, order, axis=-1).astype(np.float32)
    if not (values > 0).all():
        raise ValueError("a recorded top-3 probability is 0: the classes replayed as 0 would tie with it")
    return np.ascontiguousarray(values), np.take_along_axis(idx, order, axis=-1).astype(np.int32)


# ---------------------------------------------------------------------------------------------- replay

def replay_backend(replay: Replay, det_pre: str, streams: int = 2):
    """The replay backend: daemon/backends/base.py's interface, each call answered from the recording."""
    import numpy as np

    from daemon.backends.base import Backend, Model, TensorSpec
    from daemon.ocr import rec_head
    from daemon.ocr.det_pre import letterbox_geometry

    # The GPU path stands for TensorRT, whose engines return the recognizer's top 3 classes per step.
    head = rec_head.TOP3 if det_pre == "gpu" else rec_head.MODEL

    class Cursor:
        """Which recorded frame the loop is on: the detector call starts it (one camera, det_batch 1: the frame the
        detector is given, as the source handed it out); where the detector overlaps, collecting a frame's maps makes
        it the frame the recognizer's calls answer for."""

        def __init__(self):
            self.frame, self.call, self.mismatches = -1, 0, 0
            self.next_det = 0

    class ReplayModel(Model):
        def __init__(self, spec, cursor: Cursor):
            self.role, self._cursor = spec.role, cursor
            shape = tuple(spec.input_shape)
            self.inputs = (TensorSpec("x", shape, np.dtype(np.float32)),)
            if spec.role == "det":
                out = replay.det[0].shape
            elif spec.role == "cls":
                out = (shape[0], 2)
            else:
                t = next(c[1][1] for calls in replay.calls for c in calls if c[0] in ("rec", "rec_tail"))
                out = (shape[0], t, len(replay.meta["charset"]) + 2)
            self.outputs = (TensorSpec("y", out, np.dtype(np.float32)),)
            self._top3 = spec.head == rec_head.TOP3
            if self._top3:
                self._classes = out[2]
                self.outputs = (TensorSpec(rec_head.VALUES, (*out[:2], 3), np.dtype(np.float32)),
                                TensorSpec(rec_head.CLASSES, (*out[:2], 3), np.dtype(np.int32)))
            self._dense = None            # the recognizer's output buffer, reused like an engine's
            self._last_idx = None
            self._staging = None
            self._dummy = np.zeros((1,), np.float32)

        def metadata(self):
            return {"character": "\n".join(replay.meta["charset"])} if self.role == "rec" else None

        def class_count(self):
            return self._classes if self._top3 else super().class_count()

        def run_frames(self, frames):
            handed = replay.handed.get(id(frames[0]))
            if handed is not None and handed[0] is frames[0]:
                self._cursor.next_det = handed[1]
            if det_pre == "cpu":
                return super().run_frames(frames)     # letterbox on the CPU, as ONNX Runtime's path does
            # The TensorRT path: the frame is copied into the staging buffer and letterboxed on the GPU.
            _, _, in_h, in_w = self.inputs[0].shape
            boxes = []
            for f in frames:
                if self._staging is None or self._staging.shape != f.shape:
                    self._staging = np.empty_like(f)
                np.copyto(self._staging, f)
                boxes.append(letterbox_geometry(f.shape[0], f.shape[1], in_h, in_w))
            return self.run1(self._dummy), boxes

        def detector(self):
            if det_pre != "gpu" or streams < 2:
                return super().detector()     # ONNX Runtime's on 2 cores, TensorRT's with gpu.streams 1: eager
            return OverlappingDetector(self, self._cursor)

        def run(self, feeds):
            c = self._cursor
            if self.role == "det":
                c.frame, c.call = c.next_det, 0
                c.next_det = (c.next_det + 1) % len(replay.det)
                return {"y": replay.det[c.frame]}
            calls = replay.calls[c.frame]
            batch = next(iter(feeds.values())).shape[0]
            if c.call >= len(calls) or calls[c.call][0] != self.role or calls[c.call][1][0] != batch:
                c.mismatches += 1
                raise RuntimeError(f"replay: frame {c.frame} call {c.call + 1} is {self.role} x{batch}, "
                                   f"not in the recording")
            role, shape, idx, val = calls[c.call]
            top3 = replay.top3[c.frame][c.call]
            c.call += 1
            if idx is None:
                return {"y": val}
            if self._top3:
                return {rec_head.VALUES: top3[0], rec_head.CLASSES: top3[1]}
            if self._dense is None:
                self._dense = np.zeros(shape, np.float32)
            elif self._last_idx is not None:
                np.put_along_axis(self._dense, self._last_idx, 0.0, axis=2)
            np.put_along_axis(self._dense, idx, val, axis=2)
            self._last_idx = idx
            return {"y": self._dense}

    class OverlappingDetector:
        """TensorRT's detector with gpu.streams 2, the default: it overlaps, so the work loop submits frame N+1
        before it finishes frame N (daemon/service.py), as the daemon on a GPU does."""
        overlaps = True

        def __init__(self, model, cursor: Cursor):
            self._model, self._cursor = model, cursor

        def submit(self, frames):
            out = self._model.run_frames(frames)
            return self._cursor.frame, out

        def collect(self, ticket):
            frame, out = ticket
            self._cursor.frame, self._cursor.call = frame, 0
            return out

    class ReplayBackend(Backend):
        name = "replay"
        rec_head = head

        def __init__(self):
            self.cursor = Cursor()

        def load(self, spec):
            return ReplayModel(spec, self.cursor)

    return ReplayBackend()


def replay_pipeline(cfg, replay: Replay, det_pre: str):
    """The real OcrPipeline around the replay backend (what OcrPipeline.from_config returns in the worker)."""
    from daemon.backends import BackendChoice
    from daemon.ocr.models import ModelPaths
    from daemon.ocr.pipeline import OcrPipeline

    src = replay.path
    paths = ModelPaths(det=src, rec=src, cls=src if cfg.ocr.use_angle_classifier else None, dictionary=None)
    pipeline = OcrPipeline(cfg.ocr, replay_backend(replay, det_pre, cfg.gpu.streams), paths, cfg.engines.dir)
    pipeline.choice = BackendChoice("replay", "fp32", "bench: recorded model outputs replayed", "configured")
    return pipeline


# ---------------------------------------------------------------------------------------------- one run

class StageClock:
    """Thread CPU ms per stage, summed per frame of the work loop; a frame ends when the loop takes the next."""

    def __init__(self):
        self.frames: list[dict] = []       # per finished frame: stage -> ms, "loop" -> the loop's CPU for it
        self.current: dict = {}
        self.capture: list[float] = []     # capture thread: ms per frame handed out
        self.readings = 0
        self.record_ms: list[float] = []   # per reading offered to the recorder
        self.codes_read_ms: list[float] = []   # per frame's code reading, on the code pool's thread
        self._loop_t = self._wall_t = None

    def wrap(self, stage: str, fn, per_call: list | None = None):
        import time as _t

        def timed(*args, **kwargs):
            t0 = _t.thread_time_ns()
            try:
                return fn(*args, **kwargs)
            finally:
                ms = (_t.thread_time_ns() - t0) / 1e6
                self.current[stage] = self.current.get(stage, 0.0) + ms
                if per_call is not None:
                    per_call.append(ms)
        timed.__wrapped__ = fn
        return timed

    def wrap_wall(self, stage: str, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter_ns()
            try:
                return fn(*args, **kwargs)
            finally:
                self.current[stage] = self.current.get(stage, 0.0) + (time.perf_counter_ns() - t0) / 1e6
        timed.__wrapped__ = fn
        return timed

    def frame_taken(self, t0_ns: int, wall_ns: int) -> None:
        """The loop took a frame in a take that began at t0_ns (thread CPU), wall_ns (wall clock): the previous
        frame ends there."""
        if self._loop_t is not None:
            self.current["loop"] = (t0_ns - self._loop_t) / 1e6
            self.current["loop_wall"] = (wall_ns - self._wall_t) / 1e6
            self.frames.append(self.current)
        self.current = {}
        self._loop_t, self._wall_t = t0_ns, wall_ns


def _instrument(clock: StageClock) -> list[str]:
    """Wraps the loop's stages with thread CPU timers; returns the names it could not find (they land in 'other')."""
    from daemon.ocr import pipeline as pl
    from daemon.readings.lane import Lane
    from daemon.readings.recorder import Recorder
    from daemon.sources.hub import FrameHub
    from daemon.status import Counters, Heartbeat
    from daemon.web.live import LiveView

    missing = []

    def patch(owner, name, stage, per_call=None):
        fn = getattr(owner, name, None)
        if fn is None:
            missing.append(f"{getattr(owner, '__name__', owner)}.{name}")
            return
        setattr(owner, name, clock.wrap(stage, fn, per_call))

    take = FrameHub.take

    def take_and_mark(self, *args, **kwargs):
        t0, w0 = time.thread_time_ns(), time.perf_counter_ns()
        frames = take(self, *args, **kwargs)
        if frames:
            clock.frame_taken(t0, w0)
            clock.current["take"] = (time.thread_time_ns() - t0) / 1e6
            clock.current["wait_take"] = (time.perf_counter_ns() - w0) / 1e6
        return frames
    FrameHub.take = take_and_mark
    patch(pl.OcrPipeline, "submit", "det")
    for name in ("frame_boxes", "reading_order"):   # frame_boxes: DB post-processing and the map back to the frame
        patch(pl, name, "det_post")
    patch(pl, "warp_crop", "crop")
    patch(pl.OcrPipeline, "upright", "cls")
    patch(pl.OcrPipeline, "_recognize", "rec")
    for name in ("to_pieces", "pack_slots", "fill_slots"):
        patch(pl, name, "rec_pre")
    # CTC decoding and the line join by prefix, so a renamed variant (ctc_emissions, ctc_candidates) is still timed.
    for prefix, stage in (("ctc_", "ctc"), ("join_line", "join")):
        names = [n for n in dir(pl) if n.startswith(prefix) and callable(getattr(pl, n))]
        for name in names:
            patch(pl, name, stage)
        if not names:
            missing.append(f"daemon.ocr.pipeline.{prefix}*")
    try:
        from daemon.readings.look_pool import LookPool
    except ImportError:                 # a checkout from before the pool: codes are read in the loop (each checkout
        patch(Lane, "read_codes", "codes")   # is measured with its own copy of this script)
    else:
        # The loop's part: waiting for the frame's codes (CPU only where they were read inline); the reading itself
        # runs on the pool's thread, timed per call and counted in that thread's CPU.
        patch(LookPool, "result", "codes")
        LookPool.result = clock.wrap_wall("wait_codes", LookPool.result)
        if hasattr(LookPool, "unread"):
            LookPool.unread = clock.wrap_wall("wait_outlines", LookPool.unread)
        read = Lane.read_codes

        def read_timed(self, *args, **kwargs):
            t0 = time.thread_time_ns()
            try:
                return read(self, *args, **kwargs)
            finally:
                clock.codes_read_ms.append((time.thread_time_ns() - t0) / 1e6)
        Lane.read_codes = read_timed
    patch(Lane, "readings", "lane")
    patch(Lane, "due", "lane")
    patch(LiveView, "frame", "page")
    patch(Counters, "frame", "status")
    patch(Recorder, "record", "record", clock.record_ms)
    patch(Heartbeat, "tick", "heartbeat")
    return missing


def _thread_cpu_s() -> dict:
    """Seconds on a CPU per thread of this process (schedstat: ns), keyed by thread name."""
    import threading

    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            ns = int(Path(f"/proc/self/task/{tid}/schedstat").read_text().split()[0])
            comm = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
        except (OSError, ValueError, IndexError):
            continue
        name = names.get(int(tid)) or f"native:{comm}"
        out[name] = out.get(name, 0.0) + ns / 1e9
    return out


def _thread_group(name: str) -> str:
    for prefix, group in (("work-loop", "work loop"), ("capture-", "capture"), ("evidence", "evidence writer"),
                          ("mqtt", "mqtt sink"), ("codes-outlines", "label outlines"), ("codes", "code reader"),
                          ("sink-", "mqtt sink"), ("paho", "mqtt sink"),
                          ("MainThread", "main (idle)")):
        if name.startswith(prefix):
            return group
    if name.startswith("native:"):
        return "native pools (OpenCV, ...)"
    return "page, metrics, other"


def _percentile(values, q):
    import numpy as np

    return round(float(np.percentile(values, q)), 3) if len(values) else 0.0


def affinity_probe(seconds: float = 0.4) -> float:
    """Cores kept busy by two threads that hash without the GIL: about 1.0 when pinned to one core, about 2.0 with
    two or more; tells whether sched_setaffinity holds here (a sandbox may take the mask and ignore it)."""
    import hashlib
    import threading

    data = bytes(4 << 20)
    end = time.monotonic() + seconds

    def spin():
        while time.monotonic() < end:
            hashlib.sha256(data).digest()
    threads = [threading.Thread(target=spin) for _ in range(2)]
    c0, w0 = time.process_time(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return round((time.process_time() - c0) / (time.perf_counter() - w0), 2)


def worker(spec: dict) -> dict:
    """One configuration in this process (already pinned): the daemon on the replay, measured."""
    import resource
    import threading
    import logging

    import numpy as np

    from daemon import config as config_mod
    from daemon import service as service_mod
    from daemon.ocr.pipeline import OcrPipeline
    from daemon.sources import CaptureSource, Frame, Reader

    outlines = spec.get("outline_thread", "auto")
    if outlines != "auto":   # the label outlines' own thread forced on or off, whatever the daemon's default
        try:
            from daemon.readings import look_pool
            look_pool.OUTLINE_THREAD = outlines == "on"
        except ImportError:   # a checkout from before the pool
            pass

    probe = affinity_probe()
    replay = Replay(Path(spec["replay"]))
    clock = StageClock()
    missing = _instrument(clock)
    tmp = Path(spec["tmp"])
    logging.basicConfig(filename=str(tmp / "daemon.log"), level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    class ReplayReader(Reader):
        """The recorded frames, round and round, as fast as the loop takes them (lossless: never dropped)."""
        lossless = True

        def __init__(self, cam):
            self.cam, self.i = cam, 0

        def read(self):
            t0 = time.thread_time_ns()
            index = self.i % len(replay.frames)
            image = replay.frames[index].copy()   # a driver hands a new buffer each frame
            replay.handed[id(image)] = (image, index)
            while len(replay.handed) > 64:        # frames that were never handled (none in a run that passes)
                replay.handed.pop(next(iter(replay.handed)))
            self.i += 1
            frame = Frame(camera=self.cam.name, image=image, captured_at=time.time())
            clock.capture.append((time.thread_time_ns() - t0) / 1e6)
            return frame

    service_mod.make_source = lambda cam, hub: CaptureSource(cam, ReplayReader, hub)
    handle = service_mod.Service._handle
    # frames whose lines equal the recorded run's, frames whose lines differ, frames left unread (text_settle)
    lines_as_recorded = [0, 0, 0]

    def handle_checked(self, frame, result):
        handed = replay.handed.pop(id(frame.image), None)    # None: not a frame the source handed out
        if result is None:
            lines_as_recorded[2] += 1
            clock.current["unread"] = 1.0
        else:
            same = handed is not None and [line.text for line in result.lines] == replay.texts[handed[1]]
            lines_as_recorded[0 if same else 1] += 1
        return handle(self, frame, result)
    service_mod.Service._handle = handle_checked
    if spec["det_pre"] != "models":   # models: the real pipeline the config builds (ONNX Runtime), not a ceiling
        OcrPipeline.from_config = classmethod(lambda cls, cfg: replay_pipeline(cfg, replay, spec["det_pre"]))

    known = set(config_mod.OcrConfig.__dataclass_fields__)
    ocr = {k: v for k, v in replay.meta["ocr"].items() if k in RECORDED_OCR and k in known}
    sinks_on = spec["sinks"] == "on"
    cfg = config_mod.from_dict({
        "device_id": "ceiling", "backend": "onnxruntime", "ocr": ocr,
        "cameras": [{"name": CAMERA, "kind": "sample", "publish_mode": spec["mode"], "dedup_window_s": 0,
                     "text_settle": spec.get("text_settle", True),
                     "watchdog_s": 0}],
        "mqtt": {"enabled": sinks_on, "host": "127.0.0.1", "port": spec.get("broker_port") or 1883},
        "outbox": {"path": str(tmp / "outbox.sqlite3")},
        "evidence": {"dir": str(tmp / "evidence")},
        "metrics": {"port": _free_port()},
        "web": {"port": _free_port(), "saved_frames_dir": str(tmp / "saved-frames")},
        "engines": {"dir": str(tmp / "engines"), "timing_cache": None},
        "gpu": {"streams": spec.get("streams", 2)},
    })
    service = service_mod.Service(cfg, str(tmp / "config.yaml"))
    service.start()
    loop = threading.Thread(target=service.run, name="work-loop")
    loop.start()

    def frames_done():
        return service.snapshot()["cameras"][CAMERA]["frames"]

    end_warmup = time.monotonic() + spec["warmup_s"]
    while time.monotonic() < end_warmup:
        time.sleep(0.05)
    load0 = os.getloadavg()[0]
    f0, n0 = frames_done(), len(clock.frames)
    ru0, w0, th0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), _thread_cpu_s()
    stored0 = service.snapshot()["cameras"][CAMERA]["stored"]
    r0, c0 = len(clock.record_ms), len(clock.codes_read_ms)
    time.sleep(spec["seconds"])
    f1, n1 = frames_done(), len(clock.frames)
    ru1, w1, th1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), _thread_cpu_s()
    snap = service.snapshot()
    load1 = os.getloadavg()[0]
    stored1 = snap["cameras"][CAMERA]["stored"]
    record_ms = clock.record_ms[r0:]
    codes_read_ms = clock.codes_read_ms[c0:]
    service.request_stop()
    loop.join(timeout=120)
    mismatches = getattr(getattr(service.pipeline.backend, "cursor", None), "mismatches", 0)

    frames = f1 - f0
    wall = w1 - w0
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    window = clock.frames[n0:n1]
    stages = {}
    for stage in (*LOOP_STAGES, *REC_PARTS, *WAITS, "loop", "loop_wall"):
        values = [f.get(stage, 0.0) for f in window]
        stages[stage] = {"p50": _percentile(values, 50), "p95": _percentile(values, 95),
                         "mean": round(sum(values) / max(1, len(values)), 3)}
    other = [f["loop"] - sum(f.get(s, 0.0) for s in LOOP_STAGES) for f in window]
    stages["other"] = {"p50": _percentile(other, 50), "p95": _percentile(other, 95),
                       "mean": round(sum(other) / max(1, len(other)), 3)}
    for name, part in (("loop_read", [f for f in window if not f.get("unread")]),
                       ("loop_unread", [f for f in window if f.get("unread")])):   # text_settle's frames apart
        values = [f["loop"] for f in part]
        stages[name] = {"p50": _percentile(values, 50), "p95": _percentile(values, 95),
                        "mean": round(sum(values) / max(1, len(values)), 3), "frames": len(values)}
    cap = clock.capture[-max(1, frames):]
    stages["capture"] = {"p50": _percentile(cap, 50), "p95": _percentile(cap, 95),
                         "mean": round(sum(cap) / max(1, len(cap)), 3)}
    threads: dict[str, float] = {}
    for name, s in th1.items():
        g = _thread_group(name)
        threads[g] = threads.get(g, 0.0) + (s - th0.get(name, 0.0)) * 1000.0 / max(1, frames)
    return {
        "cores": spec["cores"], "sinks": spec["sinks"], "mode": spec["mode"], "det_pre": spec["det_pre"],
        "text_settle": spec.get("text_settle", True), "streams": spec.get("streams", 2),
        "outline_thread": spec.get("outline_thread", "auto"), "frames": frames, "wall_s": round(wall, 3),
        "frames_per_s": round(frames / wall, 2),
        "cpu_ms_per_frame": round(cpu * 1000.0 / max(1, frames), 3),
        "cpu_cores_busy": round(cpu / wall, 2),
        # The loop is one thread: with a core of its own it cannot pass 1000 ms over its CPU ms per frame. Less
        # sensitive than frames/s to neighbours taking the cores of a shared machine.
        "loop_bound_frames_per_s": round(1000.0 / max(1e-9, stages["loop"]["mean"]), 2),
        "load_avg_1min": [round(load0, 2), round(load1, 2)], "affinity_probe_cores_busy": probe,
        "readings_stored_per_s": round((stored1 - stored0) / wall, 2),
        "record_ms_per_reading": {"p50": _percentile(record_ms, 50), "p95": _percentile(record_ms, 95),
                                  "count": len(record_ms)},
        "codes_read_cpu_ms": {"p50": _percentile(codes_read_ms, 50), "p95": _percentile(codes_read_ms, 95),
                              "count": len(codes_read_ms)},
        "stages_cpu_ms": stages,
        "threads_cpu_ms_per_frame": {k: round(v, 3) for k, v in sorted(threads.items())},
        "daemon_latency_ms": snap.get("latency_ms", {}),
        "outbox_depth_at_end": service.outbox.depth()[0] if service.outbox is not None else None,
        "replay_mismatches": mismatches, "not_instrumented": missing,
        "frames_read_as_recorded": lines_as_recorded[0], "frames_read_otherwise": lines_as_recorded[1],
        "frames_left_unread": lines_as_recorded[2],
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------- the broker

class Mosquitto:
    """A Mosquitto on loopback for the sinks-on runs (no persistence: the outbox is the daemon's)."""

    def __init__(self, binary: str, extra_conf: str = ""):
        self.dir = Path(tempfile.mkdtemp(prefix="ceiling-mosq-"))
        self.port = _free_port()
        import pwd

        user = pwd.getpwuid(os.getuid()).pw_name
        conf = self.dir / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra_conf}"
                        f"user {user}\nlog_dest stderr\nlog_type error\nlog_type warning\n")
        env = dict(os.environ)
        lib = Path(binary).resolve().parent / "lib"     # a carried Mosquitto keeps its libraries beside it
        if lib.is_dir():
            env["LD_LIBRARY_PATH"] = f"{lib}:{env.get('LD_LIBRARY_PATH', '')}"
        self.log = open(self.dir / "mosquitto.log", "wb")
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.dir / 'mosquitto.log').read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not open its port in 10 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def find_mosquitto(given: str | None) -> str | None:
    for cand in (given, shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


# ---------------------------------------------------------------------------------------------- the parent

def _machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": model or platform.processor(),
            "python": platform.python_version(), "host": platform.node()}


def _core_counts(text: str) -> list[int]:
    n = len(os.sched_getaffinity(0))
    out = []
    for part in text.split(","):
        k = n if part.strip() == "all" else int(part)
        if 0 < k <= n and k not in out:
            out.append(k)
    return out


def run_one(spec: dict, cores: int) -> dict:
    """One configuration in a fresh process pinned to the first `cores` CPUs this process may use."""
    cpus = sorted(os.sched_getaffinity(0))[:cores]
    with tempfile.TemporaryDirectory(prefix="ceiling-") as tmp:
        spec = {**spec, "cores": cores, "cpus": cpus, "tmp": tmp}
        out = Path(tmp) / "result.json"
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec), "--worker-out", str(out)],
                              cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=spec["warmup_s"] + spec["seconds"] + 180)
        if proc.returncode != 0 or not out.exists():
            log = Path(tmp, "daemon.log")
            raise RuntimeError(f"worker failed ({proc.returncode}): {proc.stderr[-3000:]}\n"
                               f"{log.read_text()[-2000:] if log.exists() else ''}")
        return json.loads(out.read_text())


def _label(r: dict) -> str:
    return f"{r['cores']}c sinks {r['sinks']}" + ("" if r.get("text_settle", True) else " text_settle off")


def _mode(r: dict) -> str:
    outlines = r.get("outline_thread", "auto")
    return (r["mode"] + ("" if r.get("text_settle", True) else " (text_settle off)")
            + ("" if outlines == "auto" else f" (outlines' own thread {outlines})"))


def print_tables(runs: list[dict]) -> None:
    print("\n| mode | det pre-processing | cores | sinks | frames/s | CPU ms per frame (all threads) | cores busy "
          "| loop CPU ms per frame p50 / p95 | 1000 / loop mean ms | readings stored/s | load avg |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        if r.get("skipped"):
            print(f"| {_mode(r)} | {r['det_pre']} | {r['cores']} | {r['sinks']} | skipped: {r['skipped']} "
                  f"| | | | | | |")
            continue
        loop = r["stages_cpu_ms"]["loop"]
        print(f"| {_mode(r)} | {r['det_pre']} | {r['cores']} | {r['sinks']} | **{r['frames_per_s']:.1f}** "
              f"| {r['cpu_ms_per_frame']:.1f} | {r['cpu_cores_busy']:.2f} | {loop['p50']:.1f} / {loop['p95']:.1f} "
              f"| {r['loop_bound_frames_per_s']:.1f} | {r['readings_stored_per_s']:.1f} "
              f"| {r['load_avg_1min'][0]:.1f}-{r['load_avg_1min'][1]:.1f} |")
    groups: dict = {}
    for r in runs:
        if not r.get("skipped"):
            groups.setdefault((r["mode"], r["det_pre"]), []).append(r)
    for (mode, det_pre), rs in groups.items():
        print(f"\nPer-stage CPU ms per frame, p50 / p95 ({mode}, detector pre-processing on the {det_pre.upper()}):\n")
        print("| stage | " + " | ".join(_label(r) for r in rs) + " |")
        print("|---|" + "---:|" * len(rs))
        for stage in ("capture", *LOOP_STAGES[:6], *REC_PARTS, *LOOP_STAGES[6:], "other", "loop", "loop_wall"):
            name = {"rec_pre": "  rec: pre-processing", "ctc": "  rec: CTC", "join": "  rec: line join",
                    "loop": "**work loop, whole frame**", "capture": "capture (own thread)",
                    "loop_wall": "work loop, wall ms per frame"}.get(stage, stage)
            print(f"| {name} | " + " | ".join(f"{r['stages_cpu_ms'][stage]['p50']:.2f} / "
                                               f"{r['stages_cpu_ms'][stage]['p95']:.2f}" for r in rs) + " |")
        if all(w in rs[0]["stages_cpu_ms"] for w in WAITS):
            for stage in WAITS:
                print(f"| {stage.replace('_', ' ')} (wall ms, mean) | "
                      + " | ".join(f"{r['stages_cpu_ms'][stage]['mean']:.2f}" for r in rs) + " |")
        if any(r.get("codes_read_cpu_ms", {}).get("count") for r in rs):
            print("| codes read on the code pool's thread | " + " | ".join(
                f"{r['codes_read_cpu_ms']['p50']:.2f} / {r['codes_read_cpu_ms']['p95']:.2f}" for r in rs) + " |")
        print("\nCPU ms per frame by thread (mean):\n")
        names = sorted({k for r in rs for k in r["threads_cpu_ms_per_frame"]})
        print("| thread | " + " | ".join(_label(r) for r in rs) + " |")
        print("|---|" + "---:|" * len(rs))
        for n in names:
            print(f"| {n} | " + " | ".join(f"{r['threads_cpu_ms_per_frame'].get(n, 0.0):.2f}" for r in rs) + " |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replay", type=Path, default=DEFAULT_REPLAY,
                    help=f"the recording (default {DEFAULT_REPLAY.relative_to(ROOT)}; made first when missing)")
    ap.add_argument("--record-only", action="store_true", help="(re)record the replay file and stop")
    ap.add_argument("--labels", type=int, default=8, help="recording: labels (default 8)")
    ap.add_argument("--frames", type=int, default=6, help="recording: frames per label pass (default 6)")
    ap.add_argument("--seed", type=int, default=3100, help="recording: seed of the labels and the belt")
    ap.add_argument("--cores", default="1,2,all", help="core counts, one process each (default 1,2,all)")
    ap.add_argument("--sinks", default="off,on", help="off (outbox only), on (MQTT to a local Mosquitto)")
    ap.add_argument("--det-pre", default="cpu,gpu",
                    help="cpu: the detector's letterbox on the CPU (ONNX Runtime's path); gpu: on the GPU (TensorRT's); "
                         "models: no replay, the real models on ONNX Runtime (the CPU backend's own frames/s on the "
                         "recorded frames, to compare changes; not a ceiling)")
    ap.add_argument("--modes", default="consensus", help="cameras[].publish_mode: consensus, first (default consensus)")
    ap.add_argument("--text-settle", default="on", help="cameras[].text_settle: on (the default config), off, or "
                    "on,off (consensus only)")
    ap.add_argument("--streams", type=int, default=2, choices=(1, 2),
                    help="gpu.streams for the GPU path: 2 (the default) overlaps frame N+1's submit with frame N's "
                         "finish, 1 runs one frame at a time")
    ap.add_argument("--outline-thread", default="auto",
                    help="the label outlines' own thread: auto (the daemon's default, look_pool.OUTLINE_THREAD), "
                         "on, off, or several (on,off)")
    ap.add_argument("--seconds", type=float, default=15.0, help="measured seconds per configuration")
    ap.add_argument("--warmup-s", type=float, default=4.0, help="seconds run before measuring")
    ap.add_argument("--mosquitto", help="the mosquitto binary (default: PATH, /usr/sbin/mosquitto); a lib/ folder "
                                        "beside it is put on its LD_LIBRARY_PATH")
    ap.add_argument("--json", type=Path, help="write every run and ceiling_frames_per_s here")
    ap.add_argument("--smoke", action="store_true",
                    help="a few seconds: a 2-frame recording when none exists, all cores, sinks off, both det-pre paths, 1 s measured each")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        spec = json.loads(args.worker)
        os.sched_setaffinity(0, spec["cpus"])
        result = worker(spec)
        Path(args.worker_out).write_text(json.dumps(result))
        os._exit(0)   # the daemon's stopped threads are daemon threads; nothing left to flush

    smoke_dir = None
    if args.smoke:
        args.cores, args.sinks, args.det_pre, args.modes = "all", "off", "cpu,gpu", "consensus"
        args.seconds, args.warmup_s = 1.0, 1.0
        if not args.replay.exists():
            smoke_dir = tempfile.TemporaryDirectory(prefix="ceiling-smoke-")
            args.replay = Path(smoke_dir.name) / "replay.npz"
            args.labels, args.frames = 1, 2
    if args.record_only or not args.replay.exists():
        record(args.replay, args.labels, args.frames, args.seed, threads=len(os.sched_getaffinity(0)))
        if args.record_only:
            return 0

    meta = Replay(args.replay).meta
    modes = [m.strip() for m in args.modes.split(",")]
    det_pres = [d.strip() for d in args.det_pre.split(",")]
    sinks = [s.strip() for s in args.sinks.split(",")]
    cores = _core_counts(args.cores)
    settles = [t.strip() == "on" for t in args.text_settle.split(",")]
    outline_threads = [o.strip() for o in args.outline_thread.split(",")]
    broker, broker_why = None, ""
    if "on" in sinks:
        binary = find_mosquitto(args.mosquitto)
        if binary is None:
            broker_why = "no mosquitto binary"
        else:
            try:
                broker = Mosquitto(binary)
            except (OSError, RuntimeError) as exc:
                broker_why = f"mosquitto did not start ({exc})"
        if broker_why:
            print(f"sinks on: skipped, {broker_why}", file=sys.stderr)
    runs = []
    try:
        for mode in modes:
            for det_pre in det_pres:
                for n in cores:
                    for s in sinks:
                        for settle, outlines in ((t, o) for t in (settles if mode == "consensus" else [True])
                                                 for o in outline_threads):
                            base = {"mode": mode, "det_pre": det_pre, "sinks": s, "cores": n, "text_settle": settle,
                                    "outline_thread": outlines}
                            if s == "on" and broker is None:
                                runs.append({**base, "skipped": broker_why})
                                continue
                            spec = {"replay": str(args.replay.resolve()), "mode": mode, "det_pre": det_pre,
                                    "sinks": s, "text_settle": settle, "streams": args.streams,
                                    "outline_thread": outlines,
                                    "seconds": args.seconds,
                                    "warmup_s": args.warmup_s, "broker_port": broker.port if broker else None}
                            r = run_one(spec, n)
                            if r["replay_mismatches"]:
                                raise RuntimeError(f"{r['replay_mismatches']} model calls were not in the recording")
                            runs.append(r)
                            print(f"{_mode(r)}, det pre {det_pre}, {n} core(s), sinks {s}: {r['frames_per_s']:.1f} "
                                  f"frames/s, {r['cpu_ms_per_frame']:.1f} CPU ms per frame, "
                                  f"{r['frames_left_unread']} frames left unread", file=sys.stderr, flush=True)
    finally:
        if broker is not None:
            broker.stop()
        if smoke_dir is not None:
            smoke_dir.cleanup()
    print_tables(runs)
    n_all = max(cores)
    done = [r for r in runs if not r.get("skipped")]

    def pick(det_pre):
        for sink in ("on", "off"):    # the default config has MQTT on; without a broker, the outbox-only figure
            for r in done:
                if ((r["mode"], r["det_pre"], r["cores"], r["sinks"]) == ("consensus", det_pre, n_all, sink)
                        and r["text_settle"] and r.get("outline_thread", "auto") == outline_threads[0]):
                    return r
        return None
    # The ceiling is what caps a GPU: the default config where a GPU runs the models is the TensorRT path (the
    # letterbox on the GPU, the recognizer's top-3 head, two buffer sets). The ONNX Runtime path's figure is beside it:
    # there the models themselves, on the CPU, take far longer than this ceiling.
    gpu, cpu = pick("gpu"), pick("cpu")
    summary = {
        "ceiling_frames_per_s": gpu["frames_per_s"] if gpu else None,
        "ceiling_loop_wall_ms_p95": gpu["stages_cpu_ms"]["loop_wall"]["p95"] if gpu else None,
        "ceiling_config": {k: gpu[k] for k in ("mode", "det_pre", "streams", "cores", "sinks")} if gpu else None,
        "ceiling_frames_per_s_gpu_letterbox": gpu["frames_per_s"] if gpu else None,
        "ceiling_frames_per_s_cpu_letterbox": cpu["frames_per_s"] if cpu else None,
    }
    print(f"\nceiling_frames_per_s: {summary['ceiling_frames_per_s']}, the work loop's wall ms per frame p95 "
          f"{summary['ceiling_loop_wall_ms_p95']} ({summary['ceiling_config']}); with the detector's letterbox on the "
          f"CPU (ONNX Runtime's path): {summary['ceiling_frames_per_s_cpu_letterbox']}")
    if args.json:
        import cv2
        import numpy as np

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            **summary, "date": time.strftime("%Y-%m-%d"), "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
            "machine": {**_machine(), "numpy": np.__version__, "opencv": cv2.__version__},
            "replay": {k: meta[k] for k in ("labels", "frames_per_label", "seed", "recorded", "model_sha256",
                                            "onnxruntime", "machine")} | {"frames": len(meta["frames"]),
                                                                          "ocr": meta["ocr"]},
            "seconds": args.seconds, "warmup_s": args.warmup_s, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
