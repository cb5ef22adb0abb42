"""Readings before and after a change to the CPU side: what the real pipeline and code reader give, frame by frame.

Runs the real OcrPipeline (ONNX Runtime, the default config) and a camera's code reading (Lane.read_codes, the
default cameras[].codes) on the bundled sample labels (daemon/samples/label_*.png) and on bench/sequences.py's
moving labels (the frames bench/cpu_ceiling.py records: 1280x960, JPEG round trip), and writes every frame's
lines (text, confidence, box, character candidates) and codes to a JSON file. Written once from the old tree
and once from the new one, `--compare` says whether they are the same, to the last bit of every float:

    .venv/bin/python bench/readings_same.py --json /tmp/new.json
    (cd OLD_CHECKOUT && python /path/to/bench/readings_same.py --json /tmp/old.json)
    .venv/bin/python bench/readings_same.py --compare /tmp/old.json /tmp/new.json

`--rec-head top3` reads with the recognizer's top-3 head (TensorRT's) on ONNX Runtime: compared with a run without
it, the GPU path's CTC decoding against the softmax's on the same probabilities.

The daemon imported is the one of the checkout the script sits in (copy it into the old checkout's bench/).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def frames(labels: int, frames_per_label: int, seed: int):
    """(name, BGR frame): the bundled samples, then the sequences' frames as bench/cpu_ceiling.py records them."""
    import cv2
    import numpy as np

    import sequences as seq
    from daemon.imageio import read_image

    for path in sorted((ROOT / "daemon" / "samples").glob("label_*.png")):
        yield path.name, read_image(path)
    rng = np.random.default_rng(seed)
    for label in range(labels):
        patch, _ = seq.make_label(label, seed + label)
        for k in range(frames_per_label):
            view, _ = seq.make_frame([patch], k, frames_per_label, rng)
            ok, jpeg = cv2.imencode(".jpg", view, [cv2.IMWRITE_JPEG_QUALITY, 85])
            yield f"sequence-{label}-{k}", cv2.imdecode(jpeg, cv2.IMREAD_COLOR)


def read_all(labels: int, frames_per_label: int, seed: int, rec_head: str | None = None) -> dict:
    from daemon import config as config_mod
    from daemon.ocr.pipeline import OcrPipeline
    from daemon.readings.lane import Lane

    cfg = config_mod.from_dict({"backend": "onnxruntime", "cameras": [{"name": "cam", "kind": "sample"}]})
    if rec_head is None:
        pipeline = OcrPipeline.from_config(cfg)
    else:   # the CPU backend as the daemon makes it, with the recognizer head TensorRT engines have
        from daemon.backends import cpu_backend
        from daemon.ocr import models

        backend = cpu_backend(cfg)
        backend.rec_head = rec_head
        pipeline = OcrPipeline(cfg.ocr, backend, models.resolve(cfg), cfg.engines.dir)
    lane = Lane(cfg.cameras[0])
    out = {}
    t0 = time.perf_counter()
    try:
        for name, frame in frames(labels, frames_per_label, seed):
            result = pipeline.run(frame)
            codes, _ = lane.read_codes(frame)
            out[name] = {
                "lines": [{"text": ln.text, "confidence": float(ln.confidence).hex(),
                           "box": [[float(x).hex(), float(y).hex()] for x, y in ln.box],
                           "chars": [[c.char, float(c.p).hex(), c.alt, float(c.alt_p).hex()] for c in ln.chars]}
                          for ln in result.lines],
                "codes": [repr(c) for c in codes],
            }
    finally:
        pipeline.close()
    print(f"read {len(out)} frames in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return out


def compare(old: dict, new: dict) -> list[str]:
    """What differs between two files' readings; [] when every frame reads the same."""
    diffs = []
    for name in sorted(set(old["frames"]) | set(new["frames"])):
        a, b = old["frames"].get(name), new["frames"].get(name)
        if a != b:
            diffs.append(f"{name}: {json.dumps(a)[:300]} != {json.dumps(b)[:300]}")
    return diffs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the readings here")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("OLD", "NEW"), help="compare two written files")
    ap.add_argument("--labels", type=int, default=8, help="sequence labels (default 8, as cpu_ceiling records)")
    ap.add_argument("--frames", type=int, default=6, help="frames per label (default 6)")
    ap.add_argument("--seed", type=int, default=3100, help="the sequences' seed (default cpu_ceiling's)")
    ap.add_argument("--rec-head", choices=("top3",), default=None,
                    help="read with the recognizer's top-3 head (what TensorRT engines return, daemon/ocr/rec_head.py) "
                         "run by ONNX Runtime, to compare with the softmax head's readings")
    args = ap.parse_args()
    if args.compare:
        old, new = (json.loads(p.read_text()) for p in args.compare)
        diffs = compare(old, new)
        lines = sum(len(f["lines"]) for f in new["frames"].values())
        codes = sum(len(f["codes"]) for f in new["frames"].values())
        print(f"{len(new['frames'])} frames, {lines} lines, {codes} codes: "
              f"{'the same' if not diffs else f'{len(diffs)} frames differ'}")
        for d in diffs:
            print(d)
        return 1 if diffs else 0
    if not args.json:
        ap.error("--json FILE or --compare OLD NEW")
    import daemon

    readings = {"daemon": str(Path(daemon.__file__).parent), "labels": args.labels, "frames_per_label": args.frames, "seed": args.seed,
                "frames": read_all(args.labels, args.frames, args.seed, args.rec_head)}
    args.json.write_text(json.dumps(readings, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
