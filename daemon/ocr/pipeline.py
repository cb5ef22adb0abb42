"""The OCR pipeline: frames -> detector -> DB boxes -> crops -> [0/180 classifier] -> recognizer -> lines.

Every network runs at a fixed shape (detector det_batch x 3 x H x W, recognizer rec_batch x 3 x 48 x 320
and its tail batch rec_tail_batch x 3 x 48 x 320), so the same code feeds ONNX Runtime and TensorRT
engines. The backend is chosen once, at construction.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TypeVar

import numpy as np

from daemon.backends import BackendChoice, choose_backend, cpu_rec_batch, fall_back, gpu_failure, refusal
from daemon.backends.base import Backend, Model, ModelSpec
from daemon.config import Config, OcrConfig
from daemon.config.cameras import grades_print
from daemon.engines.plan import specs_for
from daemon.ocr import models, rec_head
from daemon.ocr.crops import warp_crop
from daemon.ocr.ctc import (BLANK, ctc_candidates_ranges, ctc_candidates_top3_ranges, drop_unseen_runner_ups,
                            exclude_columns, exclude_top3, excluded_best, rescale_excluded)
from daemon.ocr.db_post import DbParams
from daemon.ocr.det_pre import Letterbox
from daemon.ocr.detector import Detector, NoTiles, Tiler
from daemon.ocr.line_join import Emission, PieceReading, join_line_chars
from daemon.ocr.print_quality import grade_chars
from daemon.ocr.reading_order import reading_order
from daemon.ocr.rec_pre import (CLS_HEIGHT, CLS_WIDTH, batch_plan, classifier_inputs, fill_slots, fixed_batches,
                                pack_slots, piece_steps, resize_to_height, to_pieces)
from daemon.ocr.results import CharCandidate, OcrResult, TextLine
from daemon.ocr.tiles import frame_boxes, tile_policy

log = logging.getLogger(__name__)

K = TypeVar("K")

# Two readings of one character at a seam lie closer than this (line heights); two real neighbours do not.
SEAM_TOLERANCE = 0.25

# The 0/180 classifier alone turned upright lines whose glyphs look alike turned half a turn (N, X, 0, 1, 6/9, 8,
# S, Z, H, ...: "N0001X" read "XT000N"), most of all short lines in plain stroke fonts (OpenCV's Hershey ones),
# sure of itself, and left such lines upside down when it only leaned towards 180 (bench/RESULTS.md section 60).
# So the recognizer has a say where the classifier is not sure: a line turned with p(180) below CLS_SURE is also
# read as found, and one not turned that the classifier leans towards turning (p(180) at least CLS_LEAN, below
# cls_threshold) is also read turned. The other reading replaces the line's when it has as many characters or
# more (a line read upside down often loses some, and a single sure character must not win) and a confidence
# higher by more than CLS_RECHECK_MARGIN; a near tie keeps the classifier's choice.
CLS_SURE = 0.999
CLS_LEAN = 0.5
CLS_RECHECK_MARGIN = 0.002


@dataclass
class Submitted:
    """A detector batch on its way: the frames and the detector's ticket, then (collected) its output."""
    frames: list[np.ndarray]
    ticket: object = None
    seen: list[np.ndarray] | None = None     # what the detector looks in (held while a GPU reads them)
    probs: np.ndarray | None = None          # N x 1 x H x W probability maps (a tiled frame's: tiles.TiledMaps)
    boxes: list[Letterbox] | None = None     # each frame's letterbox
    det_ms: float = 0.0


@dataclass(frozen=True)
class _Crop:
    frame: int
    box: np.ndarray       # reported: where the text lies
    image: np.ndarray     # read: the crop of the recognizer's (looser) quad


class OcrPipeline:
    def __init__(self, ocr: OcrConfig, backend: Backend, paths: models.ModelPaths, engines_dir: str = "engines"):
        if backend.name == "onnxruntime":     # any batch runs there; rec_batch is the engines' shape
            ocr = replace(ocr, rec_batch=cpu_rec_batch(ocr, backend.threads))  # type: ignore[attr-defined]
        self.cfg = ocr
        self.backend = backend
        specs = specs_for(ocr, paths, backend.rec_head)
        if backend.precision == "int8" and backend.name == "onnxruntime":
            # ONNX Runtime runs calibrate's Q/DQ models itself (TensorRT builds engines from them instead);
            # the classifier stays in float.
            specs = [s if s.role == "cls" else replace(s, onnx_path=str(self._int8(engines_dir, Path(s.onnx_path))))
                     for s in specs]
        self.rec_path = next(s.onnx_path for s in specs if s.role == "rec")
        loaded: dict[str, Model] = {}
        try:
            for spec in specs:
                loaded[spec.role] = backend.load(spec)
            # The dictionary, from the recognizer's metadata as its backend read it where it did.
            self.charset = models.load_charset(paths.rec, paths.dictionary, loaded["rec"].metadata())
            self._check_classes(loaded["rec"].class_count())   # -1: declared dynamic, checked per call
        except Exception:
            for m in loaded.values():      # a half-built pipeline must not keep GPU buffers alive
                m.close()
            raise
        self.det: Model = loaded["det"]
        self.detector: Detector = self.det.detector()
        # --- tiles (issue 33 item 1): frames much larger than the input are also read as input-size tiles
        self.tiles = tile_policy(ocr.tiles, ocr.tiles_max, backend.name)
        self.tiler = NoTiles() if self.tiles is None else Tiler(ocr.det_batch, *ocr.det_input_size, self.tiles)
        # --- end tiles
        self.rec: Model = loaded["rec"]
        self.rec_top3 = backend.rec_head == rec_head.TOP3     # the recognizer returns its top 3 classes per step
        # Classes never emitted (ocr.exclude_chars): the recognizer's next best is read in their place.
        self.excluded = np.array([i for i, c in enumerate(self.charset) if c and c in ocr.exclude_chars], np.intp)
        self.rec_tail: Model | None = loaded.get("rec_tail")
        self.cls: Model | None = loaded.get("cls")
        self._rec_buffers: dict[int, np.ndarray] = {}   # one input buffer per recognizer batch size
        # Grade each character's print (CharCandidate.contrast) for verification; off where nothing verifies.
        self.grade_print = False
        self.db = DbParams(ocr.det_threshold, ocr.det_box_threshold, ocr.det_unclip_ratio,
                           ocr.det_min_size, ocr.det_max_candidates)

    def _check_classes(self, n_classes: int) -> None:
        if n_classes > 0 and n_classes != len(self.charset):
            raise models.ModelFileError(
                f"the recognizer {self.rec_path!r} has {n_classes} classes but the dictionary gives "
                f"{len(self.charset)} (blank + characters + space): set ocr.dictionary to the model's own "
                f"dictionary")

    @staticmethod
    def _int8(engines_dir: str, fp32: Path) -> Path:
        path = models.int8_path(engines_dir, fp32)
        if not path.is_file():
            raise models.ModelFileError(
                f"ocr.precision is int8 but {str(path)!r} does not exist: "
                f"run `ocr-daemon calibrate --config FILE --images DIR` to create it")
        return path

    # Which backend runs and why; set by from_config (None for a pipeline built around a given backend).
    choice: BackendChoice | None = None

    @classmethod
    def from_config(cls, cfg: Config) -> "OcrPipeline":
        """The pipeline on the backend cfg.backend asks for. Anything raised while building the TensorRT
        pipeline (pycuda errors, kernels, engine shapes or dtypes) becomes a BackendError naming it:
        `tensorrt` raises it, `auto` falls back to ONNX Runtime with one WARNING line saying why."""
        paths = models.resolve(cfg)
        backend, choice = choose_backend(cfg)
        pipeline = None
        if backend.name == "tensorrt":
            try:
                pipeline = cls(cfg.ocr, backend, paths, cfg.engines.dir)
            except models.ModelFileError:
                backend.close()
                raise                   # the model files themselves: the CPU would refuse them as well
            except Exception as exc:    # the models loaded so far are closed by __init__
                backend.close()
                failure = gpu_failure(cfg, exc)
                if cfg.backend != "auto":
                    raise refusal(failure) from exc
                backend, choice = fall_back(cfg, failure)
        if pipeline is None:
            pipeline = cls(cfg.ocr, backend, paths, cfg.engines.dir)
        pipeline.choice = choice
        pipeline.grade_print = grades_print(cfg.cameras)
        return pipeline

    @property
    def det_batch(self) -> int:
        return self.cfg.det_batch

    def describe(self) -> dict:
        return self.backend.describe()

    def close(self) -> None:
        close_detector = getattr(self.detector, "close", None)
        if close_detector is not None:
            close_detector()
        for m in (self.det, self.rec, self.rec_tail, self.cls):
            if m is not None:
                m.close()

    # ------------------------------------------------------------------ running

    def run(self, frame: np.ndarray) -> OcrResult:
        return self.run_batch([frame])[0]

    @property
    def overlaps(self) -> bool:
        """True when submit() returns while the detector still runs (a GPU detector with two or more
        buffer sets): the caller can then submit frame N+1 before finishing frame N, so N+1's upload
        and pre-processing overlap N's inference. On the CPU, and on a GPU with gpu.streams 1, each
        batch is collected before the next is submitted."""
        return self.detector.overlaps

    def submit(self, frames: Sequence[np.ndarray], detect: Sequence[np.ndarray | None] | None = None
               ) -> Submitted:
        """Starts detection of at most det_batch frames; finish() completes them. detect: per frame, an image of its
        size the detector looks in instead (an equalized copy: cameras[].equalize_detection), or None; the lines are
        still cut from, read in and graded on the frames."""
        if not 0 < len(frames) <= self.det_batch:
            raise ValueError(f"{len(frames)} frames for a detector batch of {self.det_batch}")
        seen = list(frames)
        if detect is not None:
            for i, (frame, other) in enumerate(zip(frames, detect)):
                if other is not None:
                    if other.shape[:2] != frame.shape[:2]:
                        raise ValueError(f"a detection image of {other.shape[:2]} for a frame of {frame.shape[:2]}")
                    seen[i] = other
        t0 = time.perf_counter()
        sub = Submitted(list(frames), ticket=self.tiler.submit(self.detector, seen), seen=seen)
        sub.det_ms = (time.perf_counter() - t0) * 1000.0
        return sub

    def _collect(self, sub: Submitted) -> None:
        if sub.ticket is not None:
            t0 = time.perf_counter()
            sub.probs, sub.boxes = self.tiler.collect(self.detector, sub.ticket)
            sub.ticket = None
            sub.det_ms += (time.perf_counter() - t0) * 1000.0

    def run_stream(self, items: Iterable[tuple[K, np.ndarray | None]]) -> Iterator[tuple[K, OcrResult | None]]:
        """(key, frame) in, (key, result) out, in order; a None frame (one that could not be read) comes
        out as None. When the detector overlaps, frame N+1 is submitted before frame N is finished, so
        its detection runs while N is recognized."""
        in_flight: tuple[K, Submitted] | None = None
        for key, frame in items:
            sub = None
            if frame is not None:
                sub = self.submit([frame])
                if not self.overlaps:
                    self._collect(sub)
            if in_flight is not None:
                yield in_flight[0], self.finish([in_flight[1]])[0]
                in_flight = None
            if sub is None:
                yield key, None
            else:
                in_flight = key, sub
        if in_flight is not None:
            yield in_flight[0], self.finish([in_flight[1]])[0]

    def run_batch(self, frames: Sequence[np.ndarray]) -> list[OcrResult]:
        """OCR of several frames (e.g. one per camera); detector calls take det_batch frames at a time
        and recognition batches are shared by the crops of all frames."""
        subs = []
        for first in range(0, len(frames), self.det_batch):
            sub = self.submit(frames[first:first + self.det_batch])
            self._collect(sub)      # a buffer set is free again before the next chunk takes one
            subs.append(sub)
        return self.finish(subs)

    def finish(self, subs: Sequence[Submitted], unread: Sequence[bool] = ()) -> list[OcrResult | None]:
        """Boxes, crops, classifier and recognizer for submitted batches; one result per frame. unread: per frame of
        the batches in order, True where its detector output is only collected, not read (None in its place: a
        frame whose labels all settled, daemon/readings/settle.py)."""
        timing: dict[str, float] = {}
        crops: list[_Crop] = []
        frames: list[np.ndarray] = []
        count = sum(len(sub.frames) for sub in subs)
        skip = [index < len(unread) and bool(unread[index]) for index in range(count)]
        for sub in subs:
            self._collect(sub)
            timing["det"] = timing.get("det", 0.0) + sub.det_ms
            for frame, lb, prob in zip(sub.frames, sub.boxes, sub.probs):  # type: ignore[arg-type]
                index = len(frames)
                frames.append(frame)
                if skip[index]:
                    continue
                t0 = time.perf_counter()
                text_boxes, quads = frame_boxes(prob, lb, frame.shape[0], frame.shape[1], self.db)
                order = reading_order(text_boxes)
                _add(timing, "det_post", t0)
                t0 = time.perf_counter()
                crops.extend(_Crop(index, text_boxes[i], warp_crop(frame, quads[i])) for i in order)
                _add(timing, "crop", t0)

        images = [c.image for c in crops]
        unsure: list[int] = []
        leaning: list[int] = []
        if self.cls is not None and images:
            t0 = time.perf_counter()
            images, unsure, leaning = self._orient(images, scaled=True)
            _add(timing, "cls", t0)
        t0 = time.perf_counter()
        readings = self._recognize(images)
        _add(timing, "rec", t0)
        if unsure or leaning:
            t0 = time.perf_counter()
            self._recheck(readings, [c.image for c in crops], unsure, leaning)
            _add(timing, "cls", t0)

        per_frame: list[list[TextLine]] = [[] for _ in frames]
        for crop, (read, conf, chars) in zip(crops, readings):
            text = read.strip()
            if text and conf >= self.cfg.drop_score:
                box = tuple((float(x), float(y)) for x, y in crop.box)
                per_frame[crop.frame].append(TextLine(text, conf, box,  # type: ignore[arg-type]
                                                      _stripped_chars(read, text, chars)))
        timing = {k: round(v, 3) for k, v in timing.items()}
        return [None if skipped else OcrResult(lines, dict(timing)) for lines, skipped in zip(per_frame, skip)]

    def upright(self, images: list[np.ndarray], scaled: bool = False) -> list[np.ndarray]:
        """Turns lines the classifier is sure are upside down (0/180 only); the classifier alone decides here (the
        pipeline's finish() also asks the recognizer, _recheck).

        scaled: where the recognizer's line height is the classifier's, the lines not turned come back already
        scaled to it, as the classifier read them: the recognizer's scaling of a line to its own height is then a
        no-op, not a second resize of the same crop. A turned line is its turned crop, scaled by the recognizer
        (a turned scaled line need not equal it to the bit)."""
        return self._orient(images, scaled)[0]

    def _orient(self, images: list[np.ndarray], scaled: bool = False
                ) -> tuple[list[np.ndarray], list[int], list[int]]:
        """upright()'s lines; the indices of those turned with p(180) below CLS_SURE, and of those not turned that
        the classifier leans towards turning (CLS_LEAN <= p(180) < cls_threshold): the lines finish() reads twice."""
        lines = [resize_to_height(im, CLS_HEIGHT) for im in images]     # what normalize_into would scale each to
        out = list(lines) if scaled and self.cfg.rec_height == CLS_HEIGHT else list(images)
        unsure: list[int] = []
        leaning: list[int] = []
        for batch, idx in fixed_batches(classifier_inputs(images, lines, CLS_WIDTH), self.cfg.rec_batch, CLS_HEIGHT,
                                        CLS_WIDTH):
            probs = self.cls.run1(batch)  # type: ignore[union-attr]
            for slot, i in enumerate(idx):
                p180 = float(probs[slot, 1])
                if probs[slot].argmax() == 1 and p180 >= self.cfg.cls_threshold:
                    out[i] = np.ascontiguousarray(images[i][::-1, ::-1])
                    if p180 < CLS_SURE:
                        unsure.append(i)
                elif p180 >= CLS_LEAN:
                    leaning.append(i)
        return out, unsure, leaning

    def _recheck(self, readings: list[tuple[str, float, tuple[CharCandidate, ...]]], crops: list[np.ndarray],
                 unsure: list[int], leaning: list[int]) -> None:
        """In place: the lines turned unsure read as found, those leaning read turned; the other orientation's
        reading replaces the line's where it has as many characters or more and a confidence higher by more than
        CLS_RECHECK_MARGIN."""
        other = self._recognize([crops[i] for i in unsure]
                                + [np.ascontiguousarray(crops[i][::-1, ::-1]) for i in leaning])
        for i, reading in zip(unsure + leaning, other):
            mine = readings[i]
            if len(reading[0].strip()) >= len(mine[0].strip()) and reading[1] > mine[1] + CLS_RECHECK_MARGIN:
                readings[i] = reading

    def _recognize(self, images: list[np.ndarray]) -> list[tuple[str, float, tuple[CharCandidate, ...]]]:
        """Crops -> (text, confidence, one CharCandidate per character of text) each, via pieces that fit the
        fixed recognizer width."""
        height, width = self.cfg.rec_height, self.cfg.rec_width
        pieces = to_pieces(images, height, width)
        piece_images = [p.image for p in pieces]
        # Widest first, as PaddleOCR sorts by aspect ratio. Packed pieces sit half a line height apart
        # (16 to 40 px read alike, bench/RESULTS.md).
        gap = height // 2 if self.cfg.rec_packing else None
        slots = pack_slots([im.shape[1] for im in piece_images], width, gap)
        tail = self.rec_tail.inputs[0].shape[0] if self.rec_tail is not None else 0
        emitted: list[tuple[Emission, ...]] = [()] * len(pieces)
        charset = self.charset
        first = 0
        for size, used in batch_plan(len(slots), self.cfg.rec_batch, tail):
            model = self.rec if size == self.cfg.rec_batch else self.rec_tail
            batch_slots = slots[first:first + used]
            first += used
            batch = self._rec_buffers.get(size)
            if batch is None:
                batch = self._rec_buffers[size] = np.zeros((size, 3, height, width), dtype=np.float32)
            fill_slots(piece_images, batch_slots, batch)
            outputs = model.run({model.input_name: batch})  # type: ignore[union-attr]
            gone = excluded_p = None   # ocr.exclude_chars: per step, the excluded classes' probabilities
            if self.rec_top3:
                values, classes = outputs[rec_head.VALUES], outputs[rec_head.CLASSES]
                if self.excluded.size:
                    gone = excluded_best(values, classes, self.excluded)
                    values, classes = exclude_top3(values, classes, self.excluded)
                n_steps = values.shape[1]
            else:
                probs = outputs[model.output_name]  # type: ignore[union-attr]
                self._check_classes(probs.shape[-1])
                if self.excluded.size:
                    excluded_p = probs[..., self.excluded].copy()    # N x T x k, before they are zeroed
                    gone = excluded_p.max(axis=-1)
                    exclude_columns(probs, self.excluded)
                n_steps = probs.shape[1]
            stride = width / n_steps     # image columns per output step
            placed = [(p, (k, lo, hi)) for k, slot in enumerate(batch_slots)
                      for p, (lo, hi) in zip(slot, piece_steps(slot, width, n_steps))]
            ranges = [r for _, r in placed]
            decoded = (ctc_candidates_top3_ranges(values, classes, ranges) if self.rec_top3
                       else ctc_candidates_ranges(probs, ranges))
            for (p, (k, _, _)), (idx, steps, prob, alt, alt_prob) in zip(placed, decoded):
                if excluded_p is not None:     # what the top-3 head cannot name, neither is named here
                    alt_prob = drop_unseen_runner_ups(alt_prob, steps, excluded_p[k], probs[k, :, BLANK])
                if gone is not None:
                    prob, alt_prob = rescale_excluded(prob, alt_prob, steps, gone[k])
                shift = pieces[p.piece].offset - p.x      # slot columns -> line columns
                emitted[p.piece] = tuple(Emission(charset[c], shift + (step + 0.5) * stride, q,
                                                  charset[a] if q_alt > 0 else "", max(q_alt, 0.0))
                                         for c, step, q, a, q_alt in zip(idx, steps, prob, alt, alt_prob))
        lines: list[list[PieceReading]] = [[] for _ in images]
        for piece, found in zip(pieces, emitted):
            lines[piece.crop_index].append(PieceReading(piece.keep, piece.space_before, found))
        out = []
        for image, readings in zip(images, lines):
            text, confidence, chars = join_line_chars(readings, SEAM_TOLERANCE * height)
            if self.grade_print:
                contrast, blots = grade_chars(image, [e.char for e in chars], [e.pos for e in chars],
                                              image.shape[0] / height)
            else:
                contrast, blots = [1.0] * len(chars), [0.0] * len(chars)
            out.append((text, confidence, tuple(CharCandidate(e.char, e.prob, e.alt, e.alt_prob, c, b)
                                                for e, c, b in zip(chars, contrast, blots))))
        return out


def _stripped_chars(read: str, text: str, chars: tuple[CharCandidate, ...]) -> tuple[CharCandidate, ...]:
    """The candidates of text = read.strip(); () where they do not spell read one character each (a dictionary
    with entries of several characters)."""
    if len(chars) != len(read) or "".join(c.char for c in chars) != read:
        return ()
    start = len(read) - len(read.lstrip())
    return chars[start:start + len(text)]


def _add(timing: dict[str, float], stage: str, t0: float) -> None:
    timing[stage] = timing.get(stage, 0.0) + (time.perf_counter() - t0) * 1000.0
