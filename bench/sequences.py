"""Single-frame vs consensus readings on rendered sequences of moving parcel labels.

Each label (daemon/samples/render.py, 960x720 with a white strip on top carrying its key number: a UPU S10
number with a valid check digit or a carrier waybill number, and on some labels a Code 128 or QR code with the
same value, daemon/samples/codes.py) moves left to right across a 1280x960 view (a textured belt) for
``--frames`` frames, each with its own perspective jitter, blur (Gaussian or motion) and sensor noise. Layouts:
``single``, one full-size label in view at a time, the next one entering as the last one leaves; ``pair``, two
labels at half size side by side with 40 px of belt between them (less where the perspective jitter tilts their
corners together), crossing together. ``--cross``: the labels enter the view across its left edge and leave it
across its right edge (a tunnel camera's view: each label is seen cut by the border first and last), one pass
after the other, the next entering once the last has left. Every frame goes through the real OCR pipeline
(OcrPipeline.from_config) and the real code reader; then, per label:

- first:      the lines and codes on the label (centre inside its quad) in its first frame through
              ResultFilter.decide (what publish_mode "first" publishes for it, ignoring later re-publications);
- first+dedup: every frame, all its lines, through ResultFilter.apply with the default dedup window: what
              publish_mode "first" really stores (a frame whose texts changed is published again);
- consensus:  every frame, with its image, into LabelTracker.observe (as daemon/service.py feeds it), the
              finished labels' voted lines and codes through ResultFilter.decide; a finished label counts for the
              label in view (in its first or best frame) whose printed lines it reads like.

CER: each ground-truth line is paired (greedily, most similar first) with one read line; an unpaired truth line
counts its full length (a read line that matches nothing costs nothing: CER is blind to extra lines); texts
NFKC-folded, whitespace removed (daemon/ocr/evaluate.py). Key values: the filter accepts the s10 format and the
waybill pattern only, so a published line is a key value; it is wrong when its text is printed on none of the
labels in view (the rendered label below the strip may print a waybill number of its own). Timings are median
ms per frame: OCR and codes wall time, the tracker (label outlines included) CPU time of its thread and wall time.

    .venv/bin/python bench/sequences.py [--layout single|pair] [--labels 12] [--frames 6] [--json FILE]
                                        [--ocr-cache FILE] [--unreadable-every N] [--codes listed|default]
                                        [--codes-settle] [--text-settle] [--cross]
"""
from __future__ import annotations

import argparse
import json
import pickle
import random
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon import config as config_mod                      # noqa: E402
from daemon.codes import CODE_FORMATS                        # noqa: E402
from daemon.codes.reader import CodeReader                   # noqa: E402
from daemon.readings.consensus import LabelTracker, label_outlines, similarity  # noqa: E402
from daemon.readings.lane import CODE_WATCH_EVERY, TEXT_WATCH_EVERY   # noqa: E402
from daemon.readings.settle import SettledLabels             # noqa: E402
from daemon.readings.lane import label_seen, label_status    # noqa: E402
from daemon.formats import s10_check_digit, s10_is_valid     # noqa: E402
from daemon.ocr.evaluate import fold_text, levenshtein        # noqa: E402
from daemon.ocr.pipeline import OcrPipeline                  # noqa: E402
from daemon.readings.results_filter import CHECK_DIGIT_FAILED, CORRECTED, FilterRules, ResultFilter  # noqa: E402
from daemon.samples.codes import paste_code                  # noqa: E402
from daemon.samples.render import render_label               # noqa: E402

VIEW_W, VIEW_H = 1280, 960
LABEL_W, LABEL_H = 960, 720          # the rendered label photo, before the key strip is added on top
STRIP_H = 130
FPS = 5.0                            # captured_at step: 0.2 s per frame
MONO_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"
WAYBILL_PATTERN = r"(SF|YT|JDVA)\d{11,13}"
TRACKER_DEFAULTS = {f.name: f.default for f in fields(config_mod.CameraConfig)   # the config's defaults
                    if f.name in ("leave_after_frames", "leave_after_s", "max_wait_s")}
PAIR_GAP_PX = 40
CROSS_IN = 120    # --cross: how far into the view the row reaches in its first frame (and its last)
LAYOUTS = {"single": (1, 1.0, 0), "pair": (2, 0.5, PAIR_GAP_PX)}   # labels per pass, their scale, belt between
KINDS = ("s10+Code128", "waybill+QRCode", "s10", "waybill+Code128", "s10+QRCode", "waybill")


@dataclass
class LabelTruth:
    index: int
    key: str                         # the printed number (no spaces), also the code's content
    code_format: str                 # "" = no code
    lines: list[str]                 # every printed line, key first
    kind: str


@dataclass
class FrameRun:
    labels: list[int]                # the labels in view, left to right
    frame: int                       # the step of their pass
    lines: list
    codes: list
    ocr_ms: float
    codes_ms: float
    quads: list = field(default_factory=list)   # each label's quad in the frame

    def on(self, label: int) -> tuple[list, list]:
        """The lines and codes whose centre lies on the label's quad."""
        quad = self.quads[self.labels.index(label)].reshape(-1, 1, 2).astype(np.float32)

        def inside(box) -> bool:
            cx = sum(float(p[0]) for p in box) / len(box)
            cy = sum(float(p[1]) for p in box) / len(box)
            return cv2.pointPolygonTest(quad, (cx, cy), False) >= 0
        return [x for x in self.lines if inside(x.box)], [c for c in self.codes if inside(c.box)]


def _s10(r: random.Random) -> str:
    serial = "".join(r.choice("0123456789") for _ in range(8))
    value = r.choice(["EE", "EA", "RR", "CP", "LX"]) + serial + s10_check_digit(serial) + r.choice(["CN", "DE", "US"])
    assert s10_is_valid(value)
    return value


def _waybill(r: random.Random) -> str:
    prefix = r.choice(["SF", "YT", "JDVA"])
    return prefix + "".join(r.choice("0123456789") for _ in range(15 - len(prefix) if prefix != "JDVA" else 11))


def make_label(index: int, seed: int) -> tuple[np.ndarray, LabelTruth]:
    """The label patch (BGR) and its truth: a white strip with the key number (and code) above a rendered label."""
    r = random.Random(seed)
    kind = KINDS[index % len(KINDS)]
    key = _s10(r) if kind.startswith("s10") else _waybill(r)
    code_format = kind.split("+")[1] if "+" in kind else ""
    sample = render_label(seed, width=LABEL_W, height=LABEL_H, noise_sigma=0.0)
    strip = Image.new("RGB", (LABEL_W, STRIP_H), (240, 240, 238))
    ImageDraw.Draw(strip).text((30, 40), key, font=ImageFont.truetype(MONO_BOLD, 44), fill=(20, 20, 20))
    strip_bgr = np.asarray(strip)[..., ::-1].copy()
    if code_format == "Code128":
        strip_bgr = paste_code(strip_bgr, key, 470, 20, "Code128", 2, height_px=86)
    elif code_format == "QRCode":
        strip_bgr = paste_code(strip_bgr, key, 800, 8, "QRCode", 4)
    patch = np.vstack([strip_bgr, sample.image])
    return patch, LabelTruth(index, key, code_format, [key] + [g.text for g in sample.lines], kind)


def make_frame(patches: list[np.ndarray], k: int, frames: int, rng: np.random.Generator,
               gap_px: int = 0, cross: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
    """The patches side by side (gap_px of belt between them) at step k of their pass across the view, with this
    frame's perspective (per patch), blur and noise; the frame and each patch's quad in it. cross: the pass runs
    from the row's right end just inside the left edge to its left end just inside the right edge."""
    view = np.full((VIEW_H, VIEW_W, 3), (70, 95, 120), np.float32)      # a brownish conveyor belt
    view += rng.normal(0, 6, (VIEW_H // 8, VIEW_W // 8, 1)).repeat(8, 0).repeat(8, 1)
    row_w = sum(p.shape[1] for p in patches) + gap_px * (len(patches) - 1)
    if cross:
        first, last = CROSS_IN - row_w, VIEW_W - CROSS_IN
        x0 = int(round(first + (last - first) * k / max(1, frames - 1)))
    else:
        x0 = int(round((VIEW_W - row_w - 20) * k / max(1, frames - 1))) + 10
    quads = []
    for patch in patches:
        h, w = patch.shape[:2]
        y0 = (VIEW_H - h) // 2 + int(rng.integers(-12, 13))
        src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        dst = src + rng.uniform(-0.035, 0.035, (4, 2)).astype(np.float32) * np.float32([w, h])
        dst += np.float32([x0, y0])
        warped = cv2.warpPerspective(patch, cv2.getPerspectiveTransform(src, dst), (VIEW_W, VIEW_H),
                                     flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), cv2.getPerspectiveTransform(src, dst),
                                   (VIEW_W, VIEW_H)) > 127
        view[mask] = warped[mask]
        quads.append(dst)
        x0 += w + gap_px
    kind = rng.integers(0, 3)
    if kind == 0:
        view = cv2.GaussianBlur(view, (0, 0), sigmaX=float(rng.uniform(0.4, 2.0)))
    elif kind == 1:   # motion blur along the belt
        length = int(rng.integers(3, 12))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0 / length
        view = cv2.filter2D(view, -1, kernel)
    view = view + rng.normal(0.0, float(rng.uniform(2.0, 10.0)), view.shape).astype(np.float32)
    return np.clip(np.round(view), 0, 255).astype(np.uint8), quads


def cer_parts(truth: list[str], read: list[str]) -> tuple[int, int]:
    """(edit errors, truth characters) with truth lines paired greedily, most similar first."""
    t = [fold_text(x) for x in truth if fold_text(x)]
    h = [fold_text(x) for x in read if fold_text(x)]
    pairs = sorted(((levenshtein(a, b) / max(1, len(a)), i, j) for i, a in enumerate(t) for j, b in enumerate(h)))
    used_t: set[int] = set()
    used_h: set[int] = set()
    errors = 0
    for _, i, j in pairs:
        if i in used_t or j in used_h:
            continue
        d = levenshtein(t[i], h[j])
        if d >= len(t[i]):   # no better than reading nothing: leave it unpaired
            continue
        used_t.add(i)
        used_h.add(j)
        errors += d
    errors += sum(len(t[i]) for i in range(len(t)) if i not in used_t)
    return errors, sum(len(x) for x in t)


def _rules() -> FilterRules:
    return FilterRules(min_confidence=0.5, accept_patterns=(re.compile(WAYBILL_PATTERN),),
                       accept_formats=("s10",), dedup_window_s=10.0)


@dataclass
class ModeScore:
    labels: int = 0
    cer_errors: int = 0
    cer_chars: int = 0
    messages: int = 0
    key_right: int = 0               # labels whose published values include the right key
    key_wrong: int = 0               # labels with a published key value that is not printed on them
    wrong_values: int = 0            # published wrong key values (lines)
    code_labels: int = 0             # labels with a code printed ...
    code_read: int = 0               # ... whose code was read with the right value
    corrected: int = 0
    check_digit_rejects: int = 0
    code_confirmed: int = 0
    code_mismatch: int = 0
    details: list = field(default_factory=list)

    def add_decision(self, truths: list[LabelTruth], decision) -> tuple[set, bool]:
        """One decision about what the truths (the labels in view) print: the keys it published, and whether
        it published a value printed on none of them."""
        self.corrected += decision.noted.get(CORRECTED, 0)
        self.check_digit_rejects += decision.rejected.get(CHECK_DIGIT_FAILED, 0)
        self.code_confirmed += decision.noted.get("code_confirmed", 0)
        self.code_mismatch += decision.noted.get("code_mismatch", 0)
        if not decision.publish:
            return set(), False
        self.messages += 1
        values = ["".join(line.text.split()) for line in decision.lines]
        printed = {"".join(t.split()) for truth in truths for t in truth.lines}   # a label may print a waybill too
        wrong = [v for v in values if v not in printed]
        self.wrong_values += len(wrong)
        return {t.key for t in truths if t.key in values}, bool(wrong)

    def row(self) -> dict:
        n = max(1, self.labels)
        return {"labels": self.labels, "cer": round(self.cer_errors / max(1, self.cer_chars), 4),
                "messages_per_label": round(self.messages / n, 2),
                "key_right_rate": round(self.key_right / n, 3), "key_wrong_rate": round(self.key_wrong / n, 3),
                "wrong_values": self.wrong_values,
                "code_read_rate": round(self.code_read / max(1, self.code_labels), 3),
                "check_digit_corrected": self.corrected, "check_digit_rejected": self.check_digit_rejects,
                "code_confirmed": self.code_confirmed, "code_mismatch": self.code_mismatch}


def _code_ok(truth: LabelTruth, codes) -> bool:
    return bool(truth.code_format) and any(c.text == truth.key for c in codes)


def _cache_key(args) -> list:
    return [args.labels, args.frames, args.seed, args.layout, args.unreadable_every, args.codes] + (
        ["cross"] if args.cross else [])


def _load_ocr_cache(path, args):
    if path is None or not path.is_file():
        return None
    cached = pickle.loads(path.read_bytes())   # a file this script wrote
    return cached if cached.get("key") == _cache_key(args) else None


def _owner(label, truths: list[LabelTruth]) -> tuple[int, int]:
    """(the label in view that a finished label reads as, how many other labels it also holds lines of): each
    voted line counts for the truth whose printed line it reads most like (at least 0.8 alike)."""
    votes: Counter = Counter()
    for line in label.lines:
        text = fold_text(line.text)
        best = max(((similarity(text, fold_text(t)), truth.index) for truth in truths for t in truth.lines),
                   default=(0.0, -1))
        if best[0] >= 0.8:
            votes[best[1]] += 1
    for code in label.codes:
        votes.update(t.index for t in truths if t.key == code.text)
    if not votes:
        return truths[0].index, 0
    owner = votes.most_common(1)[0][0]
    return owner, sum(1 for index, n in votes.items() if index != owner and n >= 2)


def score(truths: list[LabelTruth], runs: list[FrameRun], finished: list) -> tuple[dict, dict]:
    """The three modes' rows (see the module doc) and the consensus tracks' counts and details."""
    by_index = {t.index: t for t in truths}
    # -- first: the first frame of each label (its lines: those on it)
    first = ModeScore()
    filt = ResultFilter(_rules())
    for truth in truths:
        run = next(r for r in runs if truth.index in r.labels)
        lines, codes = run.on(truth.index)
        e, c = cer_parts(truth.lines, [line.text for line in lines])
        first.labels += 1
        first.cer_errors += e
        first.cer_chars += c
        first.code_labels += bool(truth.code_format)
        first.code_read += _code_ok(truth, codes)
        keys, wrong = first.add_decision([truth], filt.decide(lines, 1000.0 + 100 * truth.index, codes))
        first.key_right += truth.key in keys
        first.key_wrong += wrong
        first.details.append({"label": truth.index, "kind": truth.kind, "key": truth.key,
                              "read": [line.text for line in lines[:3]], "cer_errors": e, "chars": c})

    # -- first+dedup: every frame as publish_mode first stores it (all its lines; CER: the first frame, as above)
    dedup = ModeScore()
    filt = ResultFilter(_rules())
    right: set = set()
    wrong_labels: set = set()
    for n, run in enumerate(runs):
        in_view = [by_index[i] for i in run.labels]
        keys, wrong = dedup.add_decision(in_view, filt.apply(run.lines, 1000.0 + n / FPS, run.codes))
        right |= keys
        if wrong:
            wrong_labels |= set(run.labels)
    dedup.labels = len(truths)
    dedup.cer_errors, dedup.cer_chars = first.cer_errors, first.cer_chars
    dedup.code_labels = first.code_labels
    dedup.code_read = sum(1 for t in truths if any(_code_ok(t, r.codes) for r in runs if t.index in r.labels))
    dedup.key_right = len(right)
    dedup.key_wrong = len(wrong_labels)

    # -- consensus: the labels the tracker finished, each scored as the label in view it reads as
    cons = ModeScore()
    filt = ResultFilter(_rules())
    by_label: dict[int, list] = defaultdict(list)
    owners: list[int] = []
    merged = 0
    for label in finished:   # the labels in view in its first and its best frame (a track may absorb the next)
        seen = dict.fromkeys(runs[label.first_context].labels + runs[label.best_context].labels)
        in_view = [by_index[i] for i in seen]
        owner, others = _owner(label, in_view)
        by_label[owner].append(label)
        owners.append(owner)
        merged += others > 0
    cons.labels = len(truths)
    cons.code_labels = first.code_labels
    split = 0
    for truth in truths:
        labels = by_label.get(truth.index, [])
        split += max(0, len(labels) - 1)
        # Should the tracker split one printed label into several, CER and codes are scored on all of them.
        voted = [line.text for lb in labels for line in lb.lines]
        e, c = cer_parts(truth.lines, voted)
        cons.cer_errors += e
        cons.cer_chars += c
        cons.code_read += _code_ok(truth, [code for lb in labels for code in lb.codes])
        got_right = got_wrong = False
        for lb in labels:
            keys, wrong = cons.add_decision([truth], filt.decide(lb.lines, lb.first_seen, lb.codes))
            got_right |= truth.key in keys
            got_wrong |= wrong
        cons.key_right += got_right
        cons.key_wrong += got_wrong
        cons.details.append({"label": truth.index, "tracks": len(labels), "frames": [lb.frames for lb in labels],
                             "read": voted[:3], "cer_errors": e})
    rows = {"first": first.row(), "first+dedup": dedup.row(), "consensus": cons.row()}
    missing = sum(1 for t in truths if not by_label.get(t.index))   # labels folded into another label's track
    tracks = {"published": len(finished), "extra": split, "merged": merged, "missing": missing}
    return rows, {"tracks": tracks, "first_details": first.details, "consensus_details": cons.details,
                  "label_results": label_results(truths, finished, owners)}


def label_results(truths: list[LabelTruth], finished: list, owners: list[int]) -> dict:
    """The consensus lane's messages with cameras[].label_status on (daemon/readings/lane.py label_status):
    each finished label, in the order it finished, through one ResultFilter as the lane decides and commits it.
    Per printed label: exactly one message or not, its statuses, and whether a good_read published its key
    (read), only other values (misread) or nothing of it."""
    filt = ResultFilter(_rules())
    statuses: dict[int, list] = defaultdict(list)
    wrong_reads: set = set()
    right_reads: set = set()
    by_index = {t.index: t for t in truths}
    for label, owner in zip(finished, owners):
        decision = filt.decide(label.lines, label.first_seen, label.codes)
        status = label_status(decision, label_seen(label))
        if status is None:
            continue   # a duplicate of a label just published: no message
        filt.commit(decision)
        statuses[owner].append(status)
        if status == "good_read":
            values = {"".join(line.text.split()) for line in decision.lines} | {c.text for c in decision.codes}
            if by_index[owner].key in values:
                right_reads.add(owner)
            printed = {"".join(t.split()) for t in by_index[owner].lines} | {by_index[owner].key}
            if values - printed:
                wrong_reads.add(owner)
    n = len(truths)
    one = sum(1 for t in truths if len(statuses.get(t.index, [])) == 1)
    return {"labels": n, "messages": sum(len(v) for v in statuses.values()), "exactly_one_message": one,
            "no_message": sum(1 for t in truths if not statuses.get(t.index)),
            "good_read": sum(v.count("good_read") for v in statuses.values()),
            "no_read": sum(v.count("no_read") for v in statuses.values()),
            "read_rate": round(len(right_reads) / max(1, n), 3),
            "misread_labels": len(wrong_reads),
            "no_read_labels": sorted(i for i, v in statuses.items() if "no_read" in v)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labels", type=int, default=12)
    ap.add_argument("--frames", type=int, default=6, help="frames per label pass")
    ap.add_argument("--layout", choices=sorted(LAYOUTS), default="single",
                    help="single: one full-size label in view at a time; pair: two half-size labels side by side, "
                         f"{PAIR_GAP_PX} px of belt between them, crossing together")
    ap.add_argument("--seed", type=int, default=1100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--unreadable-every", type=int, default=0, metavar="N",
                    help="every N-th label blurred past reading (sigma 9 px): a label seen and not read, which "
                         "label_status must report as no_read (0: none)")
    ap.add_argument("--codes", choices=("listed", "default"), default="listed",
                    help="listed: a reader of Code 128 and QR, the formats the labels carry; default: a camera's "
                         "reader of the default list (every format, learning what its labels carry) on the frames' "
                         "clock (FPS)")
    ap.add_argument("--codes-settle", action="store_true",
                    help="consensus as a camera with codes_settle reads: a frame whose labels all have their codes "
                    "gets no code search (its codes left out), but for one in CODE_WATCH_EVERY")
    ap.add_argument("--text-settle", action="store_true",
                    help="consensus as a camera with codes_settle and text_settle reads (the defaults): besides "
                    "--codes-settle, a frame whose labels all have their text settled is not read (no lines), but "
                    "for one in TEXT_WATCH_EVERY")
    ap.add_argument("--cross", action="store_true",
                    help="labels enter across the view's left edge and leave across its right edge (use more "
                         "--frames: 12 or so)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--ocr-cache", type=Path, help="keep the frames' OCR and code reads in this file and reuse "
                    "them when labels, frames, seed and layout match (to re-score the tracker without the OCR)")
    args = ap.parse_args()
    per_pass, scale, gap_px = LAYOUTS[args.layout]

    cached = _load_ocr_cache(args.ocr_cache, args)
    pipeline = reader = None
    frame_time = [1000.0]     # the frames' clock (FPS), for a learning code reader
    if cached is None:
        cfg = config_mod.load_or_defaults(None)
        cfg = replace(cfg, ocr=replace(cfg.ocr, use_angle_classifier=False, threads=args.threads))
        pipeline = OcrPipeline.from_config(cfg)
        if args.codes == "listed":
            reader = CodeReader(["Code128", "QRCode"])   # the formats the sequences' labels carry
        else:
            reader = CodeReader(CODE_FORMATS, clock=lambda: frame_time[0])
        det_input_size = list(cfg.ocr.det_input_size)
    else:
        det_input_size = cached["det_input_size"]
    rng = np.random.default_rng(args.seed)

    # consensus: every frame into the tracker as daemon/service.py feeds it (with the frame, for the outlines)
    tracker = LabelTracker(**TRACKER_DEFAULTS)
    settle = (SettledLabels(CODE_WATCH_EVERY, TEXT_WATCH_EVERY, codes=True, text=args.text_settle)
              if args.codes_settle or args.text_settle else None)
    searches = reads = 0
    finished, tracker_ms, tracker_wall_ms, outline_ms = [], [], [], []
    truths: list[LabelTruth] = []
    runs: list[FrameRun] = []
    unreadable: set = set()
    t_start = time.perf_counter()
    total = -(-args.labels // per_pass) * args.frames
    for first_index in range(0, args.labels, per_pass):
        patches, in_view = [], []
        for i in range(first_index, min(args.labels, first_index + per_pass)):
            patch, truth = make_label(i, args.seed + i)
            if args.unreadable_every and i % args.unreadable_every == args.unreadable_every - 1:
                patch = cv2.GaussianBlur(patch, (0, 0), 9)
                unreadable.add(i)
            if scale != 1.0:
                patch = cv2.resize(patch, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            truths.append(truth)
            patches.append(patch)
            in_view.append(i)
        for k in range(args.frames):
            frame, quads = make_frame(patches, k, args.frames, rng, gap_px, args.cross)
            frame_time[0] = 1000.0 + len(runs) / FPS
            if cached is None:
                t0 = time.perf_counter()
                result = pipeline.run(frame)
                ocr_ms = (time.perf_counter() - t0) * 1000.0
                t0 = time.perf_counter()
                codes = reader.read(frame)
                codes_ms = (time.perf_counter() - t0) * 1000.0
                run = FrameRun(in_view, k, result.lines, codes, ocr_ms, codes_ms, quads)
            else:
                run = cached["runs"][len(runs)]
            runs.append(run)
            # CPU time of this thread: what the tracker costs, whatever else the shared machine runs meanwhile
            t0 = time.thread_time()
            outlines = label_outlines(frame)
            outline_ms.append((time.thread_time() - t0) * 1000.0)
            lines, codes, searched, read = run.lines, run.codes, True, True
            if settle is not None:   # the look's question first, then the loop's (daemon/readings/lane.py)
                searched, read = settle.search(outlines), settle.read(outlines)
                if not searched:
                    codes = []       # what a camera with codes_settle would not have searched for
                if not read:
                    lines = []       # ... and one with text_settle not read
            searches += searched
            reads += read
            now = 1000.0 + len(tracker_ms) / FPS
            t0, w0 = time.thread_time(), time.perf_counter()
            # outlines found again inside (their CPU is the tracker's), unless settle looked already
            finished += tracker.observe(now, lines, codes, len(runs) - 1, image=frame,
                                        **({"outlines": outlines, "searched": searched, "read": read}
                                           if settle else {}))
            if settle is not None:
                settle.update(tracker)
            tracker_ms.append((time.thread_time() - t0) * 1000.0)
            tracker_wall_ms.append((time.perf_counter() - w0) * 1000.0)
            print(f"[{len(runs)}/{total}] labels {in_view} frame {k}: {len(run.lines)} lines, "
                  f"{len(run.codes)} codes, ocr {run.ocr_ms:.0f} ms, codes {run.codes_ms:.1f} ms "
                  f"({time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)
    finished += tracker.flush()
    if pipeline is not None:
        pipeline.close()
        if args.ocr_cache:
            args.ocr_cache.write_bytes(pickle.dumps({"key": _cache_key(args), "det_input_size": det_input_size,
                                                     "runs": runs}))

    rows, extra = score(truths, runs, finished)
    tracks = extra["tracks"]
    timing = {"ocr_ms_median": round(statistics.median(r.ocr_ms for r in runs), 1),
              "codes_ms_median": round(statistics.median(r.codes_ms for r in runs), 1),
              "tracker_cpu_ms_median": round(statistics.median(tracker_ms), 3),
              "tracker_cpu_ms_p95": round(float(np.percentile(tracker_ms, 95)), 3),
              "tracker_cpu_ms_max": round(max(tracker_ms), 3),
              "tracker_wall_ms_median": round(statistics.median(tracker_wall_ms), 3),
              "outline_cpu_ms_median": round(statistics.median(outline_ms), 3)}
    results = extra["label_results"]
    code_frames = [(truths[i], r) for r in runs for i in r.labels if truths[i].code_format]
    frame_code_rate = sum(_code_ok(t, r.codes) for t, r in code_frames) / max(1, len(code_frames))

    print(f"\n{args.layout}: {args.labels} labels x {args.frames} frames ({len(runs)} frames of {VIEW_W}x{VIEW_H}), "
          f"{sum(1 for t in truths if t.key[:2].isalpha() and s10_is_valid(t.key))} with S10 numbers, "
          f"{sum(1 for t in truths if t.code_format)} with a code; consensus: "
          f"{tracks['published']} labels finished ({tracks['extra']} extra tracks, {tracks['merged']} holding "
          f"lines of another label, {tracks['missing']} labels without a track of their own)\n")
    print("| mode | CER | messages / label | right key published | wrong key published (labels) "
          "| wrong values | code read (labels) | check-digit corrected | check-digit rejected "
          "| confirmed by code | code mismatch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['cer']:.2%} | {r['messages_per_label']:.2f} | {r['key_right_rate']:.0%} "
              f"| {r['key_wrong_rate']:.0%} | {r['wrong_values']} | {r['code_read_rate']:.0%} "
              f"| {r['check_digit_corrected']} | {r['check_digit_rejected']} | {r['code_confirmed']} "
              f"| {r['code_mismatch']} |")
    print(f"\ncode read rate per frame: {frame_code_rate:.0%}; median ms per frame: OCR {timing['ocr_ms_median']}, "
          f"codes {timing['codes_ms_median']}; tracker CPU {timing['tracker_cpu_ms_median']} "
          f"(p95 {timing['tracker_cpu_ms_p95']}, max {timing['tracker_cpu_ms_max']}; of it outlines "
          f"{timing['outline_cpu_ms_median']}), tracker wall {timing['tracker_wall_ms_median']}")
    print(f"\nconsensus code searches: {searches} of {len(runs)} frames, frames read: {reads}"
          + (" (codes_settle)" if settle is not None else "") + (" (text_settle)" if args.text_settle else ""))
    print(f"\nconsensus labels as results (label_status): {results['messages']} messages for {results['labels']} "
          f"labels, {results['exactly_one_message']} labels with exactly one, {results['no_message']} with none; "
          f"{results['good_read']} good_read, {results['no_read']} no_read (labels {results['no_read_labels']}); "
          f"read rate {results['read_rate']:.1%}, {results['misread_labels']} labels misread"
          + (f"; blurred past reading: labels {sorted(unreadable)}" if unreadable else ""))
    if args.json:
        args.json.write_text(json.dumps({
            "layout": args.layout, "cross": args.cross, "labels": args.labels, "frames_per_label": args.frames,
            "seed": args.seed,
            "codes": args.codes, "codes_settle": args.codes_settle, "code_searches": searches,
            "text_settle": args.text_settle, "frames_read": reads,
            "view": [VIEW_W, VIEW_H], "det_input_size": det_input_size,
            "tracker": TRACKER_DEFAULTS, "ocr_reused": cached is not None,
            "modes": rows, "timing": timing, "frame_code_read_rate": round(frame_code_rate, 3),
            "consensus_tracks": tracks, "label_results": results, "unreadable_labels": sorted(unreadable),
            "truth": [{"label": t.index, "kind": t.kind, "key": t.key, "lines": t.lines} for t in truths],
            "first_details": extra["first_details"], "consensus_details": extra["consensus_details"],
        }, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    main()
