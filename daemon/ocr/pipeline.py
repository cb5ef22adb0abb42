"""The OCR pipeline: frames -> detector -> DB boxes -> crops -> [0/180 classifier] -> recognizer -> lines.

Every network runs at a fixed shape (detector det_batch x 3 x H x W, recognizer rec_batch x 3 x 48 x 320),
so the same code feeds ONNX Runtime and TensorRT engines. The backend is chosen once, at construction.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from daemon.backends import cpu_backend, create_backend
from daemon.backends.base import Backend, BackendError, Model, ModelSpec
from daemon.config import Config, OcrConfig
from daemon.ocr import models
from daemon.ocr.crops import warp_crop
from daemon.ocr.ctc import ctc_greedy_batch
from daemon.ocr.db_post import DbParams, boxes_from_prob
from daemon.ocr.det_pre import Letterbox, to_frame_coords
from daemon.ocr.reading_order import reading_order
from daemon.ocr.rec_pre import fixed_batches, to_pieces
from daemon.ocr.results import OcrResult, TextLine

log = logging.getLogger(__name__)

CLS_HEIGHT, CLS_WIDTH = 48, 192     # the PP-OCR mobile v2.0 line classifier's input


@dataclass
class Submitted:
    """A detector batch on its way: the frames and either the detector's output or a ticket for it."""
    frames: list[np.ndarray]
    ticket: object = None
    probs: np.ndarray | None = None          # N x 1 x H x W probability maps
    boxes: list[Letterbox] | None = None     # each frame's letterbox
    det_ms: float = 0.0


@dataclass(frozen=True)
class _Crop:
    frame: int
    quad: np.ndarray
    image: np.ndarray


class OcrPipeline:
    def __init__(self, ocr: OcrConfig, backend: Backend, paths: models.ModelPaths, engines_dir: str = "engines"):
        self.cfg = ocr
        self.backend = backend
        self.charset = models.load_charset(paths.rec, paths.dictionary)
        det_path, rec_path = paths.det, paths.rec
        if backend.precision == "int8" and backend.name == "onnxruntime":
            det_path, rec_path = (self._int8(engines_dir, p) for p in (paths.det, paths.rec))
        h, w = ocr.det_input_size
        specs = [ModelSpec("det", str(det_path), (ocr.det_batch, 3, h, w)),
                 ModelSpec("rec", str(rec_path), (ocr.rec_batch, 3, ocr.rec_height, ocr.rec_width))]
        if paths.cls is not None:
            specs.append(ModelSpec("cls", str(paths.cls), (ocr.rec_batch, 3, CLS_HEIGHT, CLS_WIDTH)))
        loaded: list[Model] = []
        try:
            for spec in specs:
                loaded.append(backend.load(spec))
            n_classes = loaded[1].outputs[0].shape[-1]
            if n_classes != len(self.charset):
                raise models.ModelFileError(
                    f"the recognizer {str(rec_path)!r} has {n_classes} classes but the dictionary gives "
                    f"{len(self.charset)} (blank + characters + space): set ocr.dictionary to the model's own "
                    f"dictionary")
        except Exception:
            for m in loaded:      # a half-built pipeline must not keep GPU buffers alive
                m.close()
            raise
        self.det: Model = loaded[0]
        self.rec: Model = loaded[1]
        self.cls: Model | None = loaded[2] if len(loaded) > 2 else None
        self.db = DbParams(ocr.det_threshold, ocr.det_box_threshold, ocr.det_unclip_ratio,
                           ocr.det_min_size, ocr.det_max_candidates)

    @staticmethod
    def _int8(engines_dir: str, fp32: Path) -> Path:
        path = models.int8_path(engines_dir, fp32)
        if not path.is_file():
            raise models.ModelFileError(
                f"ocr.precision is int8 but {str(path)!r} does not exist: "
                f"run `ocr-daemon calibrate --config FILE --images DIR` to create it")
        return path

    @classmethod
    def from_config(cls, cfg: Config) -> "OcrPipeline":
        paths = models.resolve(cfg)
        backend = create_backend(cfg)
        try:
            return cls(cfg.ocr, backend, paths, cfg.engines.dir)
        except BackendError as exc:
            if cfg.backend != "auto" or backend.name == "onnxruntime":
                raise
            log.warning("backend auto: TensorRT engines unusable (%s); falling back to ONNX Runtime on the CPU", exc)
            return cls(cfg.ocr, cpu_backend(cfg), paths, cfg.engines.dir)

    @property
    def det_batch(self) -> int:
        return self.cfg.det_batch

    def describe(self) -> dict:
        return self.backend.describe()

    def close(self) -> None:
        for m in (self.det, self.rec, self.cls):
            if m is not None:
                m.close()

    # ------------------------------------------------------------------ running

    def run(self, frame: np.ndarray) -> OcrResult:
        return self.run_batch([frame])[0]

    @property
    def overlaps(self) -> bool:
        """True when submit() returns while the detector still runs (a GPU backend with buffer sets):
        the caller can then submit frame N+1 before finishing frame N, so N+1's upload and
        pre-processing overlap N's inference. On the CPU submit() runs the detector to the end."""
        return hasattr(self.det, "submit_frames")

    def submit(self, frames: Sequence[np.ndarray]) -> Submitted:
        """Starts detection of at most det_batch frames; finish() completes them."""
        if not 0 < len(frames) <= self.det_batch:
            raise ValueError(f"{len(frames)} frames for a detector batch of {self.det_batch}")
        t0 = time.perf_counter()
        if self.overlaps:
            sub = Submitted(list(frames), ticket=self.det.submit_frames(frames))  # type: ignore[attr-defined]
        else:
            probs, boxes = self.det.run_frames(frames)
            sub = Submitted(list(frames), probs=probs, boxes=boxes)
        sub.det_ms = (time.perf_counter() - t0) * 1000.0
        return sub

    def _collect(self, sub: Submitted) -> None:
        if sub.ticket is not None:
            t0 = time.perf_counter()
            sub.probs, sub.boxes = self.det.collect(sub.ticket)  # type: ignore[attr-defined]
            sub.ticket = None
            sub.det_ms += (time.perf_counter() - t0) * 1000.0

    def run_batch(self, frames: Sequence[np.ndarray]) -> list[OcrResult]:
        """OCR of several frames (e.g. one per camera); detector calls take det_batch frames at a time
        and recognition batches are shared by the crops of all frames."""
        subs = []
        for first in range(0, len(frames), self.det_batch):
            sub = self.submit(frames[first:first + self.det_batch])
            self._collect(sub)      # a buffer set is free again before the next chunk takes one
            subs.append(sub)
        return self.finish(subs)

    def finish(self, subs: Sequence[Submitted]) -> list[OcrResult]:
        """Boxes, crops, classifier and recognizer for submitted batches; one result per frame."""
        timing: dict[str, float] = {}
        crops: list[_Crop] = []
        frames: list[np.ndarray] = []
        for sub in subs:
            self._collect(sub)
            timing["det"] = timing.get("det", 0.0) + sub.det_ms
            for frame, lb, prob in zip(sub.frames, sub.boxes, sub.probs):  # type: ignore[arg-type]
                t0 = time.perf_counter()
                found = boxes_from_prob(prob[0, : lb.new_h, : lb.new_w], self.db)
                fh, fw = frame.shape[:2]
                quads = [to_frame_coords(q, lb, fh, fw) for q, _ in found]
                quads = [quads[i] for i in reading_order(quads)]
                _add(timing, "det_post", t0)
                t0 = time.perf_counter()
                crops.extend(_Crop(len(frames), q, warp_crop(frame, q)) for q in quads)
                frames.append(frame)
                _add(timing, "crop", t0)

        images = [c.image for c in crops]
        if self.cls is not None and images:
            t0 = time.perf_counter()
            images = self.upright(images)
            _add(timing, "cls", t0)
        t0 = time.perf_counter()
        readings = self._recognize(images)
        _add(timing, "rec", t0)

        per_frame: list[list[TextLine]] = [[] for _ in frames]
        for crop, (text, conf) in zip(crops, readings):
            text = text.strip()
            if text and conf >= self.cfg.drop_score:
                box = tuple((float(x), float(y)) for x, y in crop.quad)
                per_frame[crop.frame].append(TextLine(text, conf, box))  # type: ignore[arg-type]
        timing = {k: round(v, 3) for k, v in timing.items()}
        return [OcrResult(lines, dict(timing)) for lines in per_frame]

    def upright(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Turns lines the classifier is sure are upside down (0/180 only)."""
        out = list(images)
        for batch, idx in fixed_batches(images, self.cfg.rec_batch, CLS_HEIGHT, CLS_WIDTH):
            probs = self.cls.run1(batch)  # type: ignore[union-attr]
            for slot, i in enumerate(idx):
                if probs[slot].argmax() == 1 and probs[slot, 1] >= self.cfg.cls_threshold:
                    out[i] = np.ascontiguousarray(images[i][::-1, ::-1])
        return out

    def _recognize(self, images: list[np.ndarray]) -> list[tuple[str, float]]:
        """Crops -> (text, confidence) each, via pieces that fit the fixed recognizer width."""
        pieces = to_pieces(images, self.cfg.rec_height, self.cfg.rec_width)
        # Batches of similar widths, as PaddleOCR does; with a fixed width it mostly keeps output stable.
        order = sorted(range(len(pieces)), key=lambda i: pieces[i].image.shape[1])
        decoded: list[tuple[str, float]] = [("", 0.0)] * len(pieces)
        ordered = [pieces[i].image for i in order]
        for batch, idx in fixed_batches(ordered, self.cfg.rec_batch, self.cfg.rec_height, self.cfg.rec_width):
            probs = self.rec.run1(batch)
            for slot, (text, conf) in enumerate(ctc_greedy_batch(probs, self.charset, len(idx))):
                decoded[order[idx[slot]]] = (text, conf)
        return _join_pieces(pieces, decoded, len(images))


def _join_pieces(pieces, decoded, n_crops: int) -> list[tuple[str, float]]:
    """Pieces of one crop -> one reading; confidence weighted by each piece's character count."""
    texts: list[list[str]] = [[] for _ in range(n_crops)]
    weights: list[list[tuple[float, int]]] = [[] for _ in range(n_crops)]
    for piece, (text, conf) in zip(pieces, decoded):
        parts = texts[piece.crop_index]
        if piece.space_before and parts:
            parts.append(" ")
        parts.append(text.strip())
        weights[piece.crop_index].append((conf, max(1, len(text))))
    out = []
    for t, w in zip(texts, weights):
        total = sum(n for _, n in w)
        out.append(("".join(t), sum(c * n for c, n in w) / total if total else 0.0))
    return out


def _add(timing: dict[str, float], stage: str, t0: float) -> None:
    timing[stage] = timing.get(stage, 0.0) + (time.perf_counter() - t0) * 1000.0
