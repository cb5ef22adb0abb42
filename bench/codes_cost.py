"""What reading codes costs per 1280x960 frame, and what it reads, format by format (issue 33 item 2).

Frames: every format of daemon/samples/codes.py's FORMAT_SAMPLES as a real code (zxing-cpp's writer) on a rendered
label, in each SCENE_VARIANT (plain, small, blurred, perspective, glare, turned, inverted), ``--seeds`` labels
each; and rendered labels with no code (text and a drawn bar pattern only: the frame that costs zxing-cpp most).

Single frames, the ways timed interleaved on the same frames (the order rotates per frame):

- ``old default``: Code 128 + QR in one zxing-cpp call with its default options, as the daemon read them
  before issue 33 (and as a config listing them still does);
- ``all, naive``: every format of the default list in one call with zxing-cpp's default options;
- ``default, one image``: the daemon's reader of the default list, fresh for each frame (nothing learned, its
  search budget saved up): what ``once`` and a camera's first frames get.

Camera streams (``--fps``, simulated clock): a camera sees labels one after another, each for ``--hold`` frames,
with ``--gap`` frames of a label without a code between them; ``per format``: one camera per format (its
labels carry that format); ``mixed``: one camera, every format's labels in a shuffled order. ``default`` is the
daemon's reader (learning, its search within the CPU budget) against ``old default`` on the same frames. A
label counts as read when any of its frames reads its code (a consensus camera publishes the codes of all of a
label's frames).

Also reads bench/photos-b/4_barcodes.jpg (four photographed ISBN EAN-13 codes). Prints markdown tables; ``--json``
writes every figure.

    .venv/bin/python bench/codes_cost.py [--seeds 3] [--seconds 30] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

import cv2

from daemon.codes import CODE_FORMATS
from daemon.codes.reader import CodeReader, config_name
from daemon.samples.codes import FORMAT_SAMPLES, SCENE_VARIANTS, code_scene
from daemon.samples.render import render_label

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "bench" / "photos-b" / "4_barcodes.jpg"
STEADY_AFTER_S = 10.0     # camera streams: "steady" figures leave out the first seconds (the saved-up search)
PHOTO_CODES = {"9787564350840", "9783319200064", "9787118081473", "9787122276124"}


def _zxing(formats):
    import zxingcpp
    wanted = zxingcpp.barcode_formats_from_str(",".join(formats))
    return lambda image: [(config_name(b.format.name), b.text) for b in zxingcpp.read_barcodes(image, formats=wanted)]


def _reader(reader: CodeReader):
    return lambda image: [(c.format, c.text) for c in reader.read(image)]


def strategies() -> dict:
    return {
        "old default": _zxing(["Code128", "QRCode"]),
        "all, naive": _zxing(CODE_FORMATS),
        "default, one image": lambda image: [(c.format, c.text) for c in CodeReader(CODE_FORMATS).read(image)],
    }


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def stream(labels, blanks, fps, hold, gap, seconds) -> dict:
    """One simulated camera for ``seconds``: labels [(format, sample, frame)] in turn (again from the first when
    all were shown), each held ``hold`` frames, ``gap`` blank frames after each; the daemon's default reader
    against the old default, interleaved."""
    clock = _Clock()
    learned = CodeReader(CODE_FORMATS, clock)
    old = _zxing(["Code128", "QRCode"])
    ways = {"old default": old, "default": lambda im: [(c.format, c.text) for c in learned.read(im)]}
    ms = {n: [] for n in ways}
    labels_read = {n: 0 for n in ways}
    frames_read = {n: 0 for n in ways}
    turn = 0
    shown = 0
    for i in range(max(len(labels), round(seconds * fps / (hold + gap)))):
        fmt, sample, frame = labels[i % len(labels)]
        shown += 1
        seen = {n: False for n in ways}
        for k in range(hold + gap):
            image = frame if k < hold else blanks[(i + k) % len(blanks)]
            turn += 1
            for n in (list(ways) if turn % 2 else list(ways)[::-1]):
                t0 = time.perf_counter()
                got = ways[n](image)
                ms[n].append((time.perf_counter() - t0) * 1000.0)
                if k < hold and any(f in sample.reported and t == sample.text for f, t in got):
                    seen[n] = True
                    frames_read[n] += 1
            clock.now += 1.0 / fps
        for n in ways:
            labels_read[n] += seen[n]
    steady = round(STEADY_AFTER_S * fps)
    return {n: {"ms_p50": statistics.median(ms[n]), "ms_p95": _q(ms[n], 95), "ms_mean": statistics.fmean(ms[n]),
                "steady_ms_p50": statistics.median(ms[n][steady:]), "steady_ms_p95": _q(ms[n][steady:], 95),
                "steady_ms_mean": statistics.fmean(ms[n][steady:]),
                "labels_read": labels_read[n], "labels": shown, "frames_read": frames_read[n],
                "frames_with_code": shown * hold} for n in ways} | {"resident_at_end": list(learned.resident())}


def _q(values, p):
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if len(values) > 1 else values[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3, help="labels per format and variant")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--fps", type=float, default=15.0, help="camera streams: frames per second")
    ap.add_argument("--hold", type=int, default=6, help="camera streams: frames each label is in view")
    ap.add_argument("--gap", type=int, default=2, help="camera streams: frames without a code after each label")
    ap.add_argument("--seconds", type=float, default=30.0, help="camera streams: simulated seconds per camera")
    args = ap.parse_args()
    ways = strategies()
    names = list(ways)
    reads = {n: {} for n in names}                      # name -> (format, variant) -> [bool]
    ms_code = {n: [] for n in names}
    ms_none = {n: [] for n in names}
    turn = 0

    def timed(name, image):
        t0 = time.perf_counter()
        got = ways[name](image)
        return got, (time.perf_counter() - t0) * 1000.0

    scenes = {(fmt, variant, seed): code_scene(fmt, seed, variant) for fmt in FORMAT_SAMPLES
              for variant in SCENE_VARIANTS for seed in range(300, 300 + args.seeds)}
    for (fmt, variant, _), frame in scenes.items():
        sample = FORMAT_SAMPLES[fmt]
        turn += 1
        for name in names[turn % len(names):] + names[:turn % len(names)]:
            got, ms = timed(name, frame)
            ms_code[name].append(ms)
            hit = any(f in sample.reported and t == sample.text for f, t in got)
            reads[name].setdefault((fmt, variant), []).append(hit)
    blanks = [render_label(seed).image for seed in range(100, 110)]
    for _ in range(3):
        for frame in blanks:
            turn += 1
            for name in names[turn % len(names):] + names[:turn % len(names)]:
                ms_none[name].append(timed(name, frame)[1])
    per_format = {fmt: stream([(f, FORMAT_SAMPLES[f], im) for (f, _, _), im in scenes.items() if f == fmt], blanks,
                              args.fps, args.hold, args.gap, args.seconds) for fmt in FORMAT_SAMPLES}
    shuffled = [(f, FORMAT_SAMPLES[f], im) for (f, _, _), im in scenes.items()]
    random.Random(33).shuffle(shuffled)
    mixed = stream(shuffled, blanks, args.fps, args.hold, args.gap, 2 * args.seconds)
    photo = cv2.imread(str(PHOTO))
    photo_read = {n: sorted({t for _, t in ways[n](photo)} & PHOTO_CODES) for n in names}

    def rate(name, fmt=None, variant=None):
        hits = [h for (f, v), hs in reads[name].items() if fmt in (None, f) and variant in (None, v) for h in hs]
        return sum(hits), len(hits)

    print(f"zxing-cpp reading 1280x960 frames, {args.seeds} labels per format and variant; "
          f"{platform.processor() or platform.machine()}, {len(ms_code[names[0]])} code frames, "
          f"{len(ms_none[names[0]])} frames without a code\n")
    print("| way | frames with a code: ms p50 | p95 | frames without: ms p50 | p95 | codes read | photo ISBNs |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for n in names:
        hit, total = rate(n)
        print(f"| {n} | {statistics.median(ms_code[n]):.1f} | {_q(ms_code[n], 95):.1f} | "
              f"{statistics.median(ms_none[n]):.1f} | {_q(ms_none[n], 95):.1f} | {hit}/{total} | "
              f"{len(photo_read[n])}/{len(PHOTO_CODES)} |")
    print("\nRead per format (all variants):\n")
    print("| format | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names))
    for fmt in FORMAT_SAMPLES:
        print(f"| {fmt} | " + " | ".join("{}/{}".format(*rate(n, fmt=fmt)) for n in names) + " |")
    print("\nRead per variant (all formats):\n")
    print("| variant | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names))
    for variant in SCENE_VARIANTS:
        print(f"| {variant} | " + " | ".join("{}/{}".format(*rate(n, variant=variant)) for n in names) + " |")
    print(f"\nCamera streams at {args.fps:g} frames/s for {args.seconds:g} s each (mixed: twice as long), each label "
          f"{args.hold} frames then {args.gap} without a code (ms over all frames; labels read = read in any of its "
          f"frames):\n")
    print("| camera | old default ms p50 / p95 / mean | default ms p50 / p95 / mean | default after "
          f"{STEADY_AFTER_S:g} s: p50 / p95 / mean | labels read: old | default | resident at the end |\n"
          "|---|---:|---:|---:|---:|---:|---|")
    for name, res in [*per_format.items(), ("mixed (every format)", mixed)]:
        o, d = res["old default"], res["default"]
        print(f"| {name} | {o['ms_p50']:.1f} / {o['ms_p95']:.1f} / {o['ms_mean']:.1f} | "
              f"{d['ms_p50']:.1f} / {d['ms_p95']:.1f} / {d['ms_mean']:.1f} | "
              f"{d['steady_ms_p50']:.1f} / {d['steady_ms_p95']:.1f} / {d['steady_ms_mean']:.1f} | "
              f"{o['labels_read']}/{o['labels']} | {d['labels_read']}/{d['labels']} | "
              f"{', '.join(res['resident_at_end'])} |")
    if args.json:
        doc = {"seeds": args.seeds, "machine": platform.node(), "processor": platform.processor(),
               "streams": {"fps": args.fps, "hold": args.hold, "gap": args.gap, "seconds": args.seconds,
                           "per_format": per_format,
                           "mixed": mixed},
               "formats": list(FORMAT_SAMPLES), "variants": list(SCENE_VARIANTS),
               "ways": {n: {"ms_with_code_p50": statistics.median(ms_code[n]), "ms_with_code_p95": _q(ms_code[n], 95),
                            "ms_without_code_p50": statistics.median(ms_none[n]),
                            "ms_without_code_p95": _q(ms_none[n], 95),
                            "read": dict(zip(("hits", "frames"), rate(n))),
                            "read_per_format": {f: dict(zip(("hits", "frames"), rate(n, fmt=f)))
                                                for f in FORMAT_SAMPLES},
                            "read_per_variant": {v: dict(zip(("hits", "frames"), rate(n, variant=v)))
                                                 for v in SCENE_VARIANTS},
                            "photo_isbns_read": photo_read[n]} for n in names}}
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
