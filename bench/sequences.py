"""Single-frame vs consensus readings on rendered sequences of moving parcel labels (issue 11, deliverable 5).

Each label (daemon/samples/render.py, 960x720 with a white strip on top carrying its key number: a UPU S10
number with a valid check digit or a carrier waybill number, and on some labels a Code 128 or QR code with the
same value, daemon/samples/codes.py) moves left to right across a 1280x960 view for ``--frames`` frames, each
with its own perspective jitter, blur (Gaussian or motion) and sensor noise. Every frame goes through the real
OCR pipeline (OcrPipeline.from_config) and the real code reader; then, per label:

- first:      the first frame's lines and codes through ResultFilter.decide (what publish_mode "first" publishes
              for a label, ignoring the later frames' re-publications);
- first+dedup: every frame through ResultFilter.apply with the default dedup window: what publish_mode "first"
              really stores (a frame whose texts changed is published again);
- consensus:  every frame into LabelTracker.observe (as daemon/service.py feeds it), the finished labels'
              voted lines and codes through ResultFilter.decide.

CER: each ground-truth line is paired (greedily, most similar first) with one read line; an unpaired truth line
counts its full length; texts NFKC-folded, whitespace removed (daemon/ocr/evaluate.py). Key values: the filter
accepts the s10 format and the waybill pattern only, so a published line is a key value; it is wrong when its
text is none of the label's printed numbers
(the rendered label below the strip may print a waybill number of its own). Timings are median ms per frame.

    .venv/bin/python bench/sequences.py [--labels 12] [--frames 6] [--json bench/sequences.json]
"""
from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon import config as config_mod                      # noqa: E402
from daemon.codes.reader import CodeReader                   # noqa: E402
from daemon.consensus import LabelTracker                    # noqa: E402
from daemon.formats import s10_check_digit, s10_is_valid     # noqa: E402
from daemon.ocr.evaluate import fold_text, levenshtein        # noqa: E402
from daemon.ocr.pipeline import OcrPipeline                  # noqa: E402
from daemon.results_filter import CHECK_DIGIT_FAILED, CORRECTED, FilterRules, ResultFilter  # noqa: E402
from daemon.samples.codes import paste_code                  # noqa: E402
from daemon.samples.render import render_label               # noqa: E402

VIEW_W, VIEW_H = 1280, 960
LABEL_W, LABEL_H = 960, 720          # the rendered label photo, before the key strip is added on top
STRIP_H = 130
FPS = 5.0                            # captured_at step: 0.2 s per frame
MONO_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"
WAYBILL_PATTERN = r"(SF|YT|JDVA)\d{11,13}"
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
    label: int
    frame: int
    lines: list
    codes: list
    ocr_ms: float
    codes_ms: float


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


def make_frame(patch: np.ndarray, k: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    """The patch at step k of its pass across the view, with this frame's perspective, blur and noise."""
    h, w = patch.shape[:2]
    view = np.full((VIEW_H, VIEW_W, 3), (70, 95, 120), np.float32)      # a brownish conveyor belt
    view += rng.normal(0, 6, (VIEW_H // 8, VIEW_W // 8, 1)).repeat(8, 0).repeat(8, 1)
    x0 = int(round((VIEW_W - w - 20) * k / max(1, frames - 1))) + 10
    y0 = (VIEW_H - h) // 2 + int(rng.integers(-12, 13))
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = src + rng.uniform(-0.035, 0.035, (4, 2)).astype(np.float32) * np.float32([w, h])
    dst += np.float32([x0, y0])
    warped = cv2.warpPerspective(patch, cv2.getPerspectiveTransform(src, dst), (VIEW_W, VIEW_H),
                                 flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), cv2.getPerspectiveTransform(src, dst),
                               (VIEW_W, VIEW_H)) > 127
    view[mask] = warped[mask]
    kind = rng.integers(0, 3)
    if kind == 0:
        view = cv2.GaussianBlur(view, (0, 0), sigmaX=float(rng.uniform(0.4, 2.0)))
    elif kind == 1:   # motion blur along the belt
        length = int(rng.integers(3, 12))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0 / length
        view = cv2.filter2D(view, -1, kernel)
    view = view + rng.normal(0.0, float(rng.uniform(2.0, 10.0)), view.shape).astype(np.float32)
    return np.clip(np.round(view), 0, 255).astype(np.uint8)


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

    def add_decision(self, truth: LabelTruth, decision) -> tuple[bool, bool]:
        self.corrected += decision.noted.get(CORRECTED, 0)
        self.check_digit_rejects += decision.rejected.get(CHECK_DIGIT_FAILED, 0)
        self.code_confirmed += decision.noted.get("code_confirmed", 0)
        self.code_mismatch += decision.noted.get("code_mismatch", 0)
        if not decision.publish:
            return False, False
        self.messages += 1
        values = ["".join(line.text.split()) for line in decision.lines]
        printed = {"".join(t.split()) for t in truth.lines}   # the rendered label may print a waybill number too
        wrong = [v for v in values if v not in printed]
        self.wrong_values += len(wrong)
        return truth.key in values, bool(wrong)

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labels", type=int, default=12)
    ap.add_argument("--frames", type=int, default=6, help="frames per label pass")
    ap.add_argument("--seed", type=int, default=1100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    cfg = config_mod.load_or_defaults(None)
    cfg = replace(cfg, ocr=replace(cfg.ocr, use_angle_classifier=False, threads=args.threads))
    pipeline = OcrPipeline.from_config(cfg)
    reader = CodeReader(["Code128", "QRCode"])   # the default cameras[].codes
    rng = np.random.default_rng(args.seed)

    truths: list[LabelTruth] = []
    runs: list[FrameRun] = []
    t_start = time.perf_counter()
    total = args.labels * args.frames
    for i in range(args.labels):
        patch, truth = make_label(i, args.seed + i)
        truths.append(truth)
        for k in range(args.frames):
            frame = make_frame(patch, k, args.frames, rng)
            t0 = time.perf_counter()
            result = pipeline.run(frame)
            ocr_ms = (time.perf_counter() - t0) * 1000.0
            t0 = time.perf_counter()
            codes = reader.read(frame)
            codes_ms = (time.perf_counter() - t0) * 1000.0
            runs.append(FrameRun(i, k, result.lines, codes, ocr_ms, codes_ms))
            done = len(runs)
            print(f"[{done}/{total}] label {i} ({truth.kind}) frame {k}: {len(result.lines)} lines, "
                  f"{len(codes)} codes, ocr {ocr_ms:.0f} ms, codes {codes_ms:.1f} ms "
                  f"({time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)
    pipeline.close()

    # -- first: the first frame of each label
    first = ModeScore()
    filt = ResultFilter(_rules())
    for truth in truths:
        run = next(r for r in runs if r.label == truth.index)
        e, c = cer_parts(truth.lines, [line.text for line in run.lines])
        first.labels += 1
        first.cer_errors += e
        first.cer_chars += c
        first.code_labels += bool(truth.code_format)
        first.code_read += _code_ok(truth, run.codes)
        right, wrong = first.add_decision(truth, filt.decide(run.lines, 1000.0 + 100 * truth.index, run.codes))
        first.key_right += right
        first.key_wrong += wrong
        first.details.append({"label": truth.index, "kind": truth.kind, "key": truth.key,
                              "read": [line.text for line in run.lines[:3]], "cer_errors": e, "chars": c})

    # -- first+dedup: every frame, as publish_mode first stores them (CER: the first frame, as above)
    dedup = ModeScore()
    filt = ResultFilter(_rules())
    per_label: dict[int, list[bool]] = {}
    for run in runs:
        truth = truths[run.label]
        right, wrong = dedup.add_decision(truth, filt.apply(run.lines, 1000.0 + run.label * 100 + run.frame / FPS,
                                                            run.codes))
        got = per_label.setdefault(run.label, [False, False])
        got[0] |= right
        got[1] |= wrong
    dedup.labels = len(truths)
    dedup.cer_errors, dedup.cer_chars = first.cer_errors, first.cer_chars
    dedup.code_labels = first.code_labels
    dedup.code_read = sum(1 for t in truths if any(_code_ok(t, r.codes) for r in runs if r.label == t.index))
    dedup.key_right = sum(v[0] for v in per_label.values())
    dedup.key_wrong = sum(v[1] for v in per_label.values())

    # -- consensus: the tracker as daemon/service.py feeds it
    cons = ModeScore()
    tracker = LabelTracker()   # leave_after_frames 3, leave_after_s 1.0, max_wait_s 3.0: the config defaults
    filt = ResultFilter(_rules())
    finished = []
    tracker_ms = []
    for run in runs:
        now = 1000.0 + len(tracker_ms) / FPS
        t0 = time.perf_counter()
        out = tracker.observe(now, run.lines, run.codes, (run.label, run.frame))
        tracker_ms.append((time.perf_counter() - t0) * 1000.0)
        finished += out
    finished += tracker.flush()
    by_label: dict[int, list] = {}
    for label in finished:
        by_label.setdefault(label.first_context[0], []).append(label)
    cons.labels = len(truths)
    cons.code_labels = first.code_labels
    split = merged = 0
    for truth in truths:
        labels = by_label.get(truth.index, [])
        split += max(0, len(labels) - 1)
        merged += sum(1 for lb in labels if lb.best_context[0] != truth.index)
        # The tracker groups a label's lines by distance (consensus.GROUP_GAP), so one printed label can come out
        # as several published labels: CER and codes are scored on all of them together.
        voted = [line.text for lb in labels for line in lb.lines]
        e, c = cer_parts(truth.lines, voted)
        cons.cer_errors += e
        cons.cer_chars += c
        cons.code_read += _code_ok(truth, [code for lb in labels for code in lb.codes])
        right = wrong = False
        for lb in labels:
            r_, w_ = cons.add_decision(truth, filt.decide(lb.lines, lb.first_seen, lb.codes))
            right |= r_
            wrong |= w_
        cons.key_right += right
        cons.key_wrong += wrong
        cons.details.append({"label": truth.index, "tracks": len(labels),
                             "frames": [lb.frames for lb in labels],
                             "read": voted[:3], "cer_errors": e})

    rows = {"first": first.row(), "first+dedup": dedup.row(), "consensus": cons.row()}
    timing = {"ocr_ms_median": round(statistics.median(r.ocr_ms for r in runs), 1),
              "codes_ms_median": round(statistics.median(r.codes_ms for r in runs), 1),
              "tracker_ms_median": round(statistics.median(tracker_ms), 3),
              "tracker_ms_max": round(max(tracker_ms), 3)}
    frame_code_rate = (sum(_code_ok(truths[r.label], r.codes) for r in runs if truths[r.label].code_format)
                       / max(1, sum(1 for r in runs if truths[r.label].code_format)))

    print(f"\n{args.labels} labels x {args.frames} frames ({len(runs)} frames of {VIEW_W}x{VIEW_H}), "
          f"{sum(1 for t in truths if t.key[:2].isalpha() and s10_is_valid(t.key))} with S10 numbers, "
          f"{first.code_labels} with a code; consensus: {len(finished)} labels published "
          f"({split} extra tracks, {merged} merged with another label)\n")
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
          f"codes {timing['codes_ms_median']}, tracker {timing['tracker_ms_median']} "
          f"(max {timing['tracker_ms_max']})")
    if args.json:
        args.json.write_text(json.dumps({
            "labels": args.labels, "frames_per_label": args.frames, "seed": args.seed,
            "view": [VIEW_W, VIEW_H], "det_input_size": list(cfg.ocr.det_input_size),
            "modes": rows, "timing": timing, "frame_code_read_rate": round(frame_code_rate, 3),
            "consensus_tracks": {"published": len(finished), "extra": split, "merged": merged},
            "truth": [{"label": t.index, "kind": t.kind, "key": t.key, "lines": t.lines} for t in truths],
            "first_details": first.details, "consensus_details": cons.details,
        }, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    main()
