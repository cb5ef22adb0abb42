"""What the page and the evidence store cost per frame, on the bundled sample frames (1280x960) with the
lines the real OCR pipeline reads on them.

- loop:     what the OCR work loop itself pays per frame: LiveView.frame + LiveView.rejected + EvidenceStore.submit
            (references and a put_nowait; the JPEG work is elsewhere);
- draw:     the page's picture of a new frame: draw.annotate + encode_jpeg (a request thread, once per new frame,
            only while a page is open);
- state:    one /api/state document (page_state over a snapshot, through Flask's test client);
- evidence: the writer thread's work per stored reading: scale, encode the frame and every line crop, write, evict;
            and the bytes a reading takes on disk.

Median and p95 in ms over --repeat runs each, one process, side by side (FIELD-NOTES: this box's timings jump
between runs). Usage: .venv/bin/python bench/web_cost.py [--repeat 200] [--json]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.config import EvidenceConfig, from_dict  # noqa: E402
from daemon.evidence import EvidenceStore  # noqa: E402
from daemon.web.app import PageFeed, create_app  # noqa: E402
from daemon.web.draw import annotate, encode_jpeg  # noqa: E402
from daemon.web.live import LiveView  # noqa: E402
from daemon.web.state import camera_config_view, page_state  # noqa: E402


def timed(fn, repeat: int) -> dict:
    ms = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1000.0)
    ms.sort()
    return {"median_ms": round(ms[len(ms) // 2], 3), "p95_ms": round(ms[int(len(ms) * 0.95) - 1], 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from daemon.ocr.pipeline import OcrPipeline
    from daemon.sources.sample import SAMPLES_DIR
    from daemon.imageio import read_image

    cfg = from_dict({"device_id": "bench", "backend": "onnxruntime", "ocr": {"use_angle_classifier": False}})
    pipeline = OcrPipeline.from_config(cfg)
    frames = []
    for path in sorted(Path(SAMPLES_DIR).glob("*.png")):
        image = read_image(str(path))
        frames.append((image, pipeline.run(image).lines if hasattr(pipeline, "run") else
                       pipeline.finish([pipeline.submit([image])])[0].lines))
    pipeline.close()

    out: dict = {"frames": [f"{im.shape[1]}x{im.shape[0]}" for im, _ in frames],
                 "lines_per_frame": [len(lines) for _, lines in frames]}
    with tempfile.TemporaryDirectory() as tmp:
        store = EvidenceStore(dataclasses.replace(EvidenceConfig(), dir=tmp + "/ev", min_free_bytes=0,
                                                  queue_size=1_000_000))   # no drops: the loop's own cost only
        live = LiveView()
        i = [0]

        def loop():
            image, lines = frames[i[0] % len(frames)]
            i[0] += 1
            live.frame("cam", image, time.time(), lines, lines[:-1], ())
            live.rejected("cam", time.time(), {"low_confidence": 1}, lines, lines[:-1])
            store.submit(f"bench:cam:{i[0]}:1", image, [line.box for line in lines])

        out["loop"] = timed(loop, args.repeat * 5)

        k = [0]

        def draw():
            image, lines = frames[k[0] % len(frames)]
            k[0] += 1
            encode_jpeg(annotate(image, lines, [True] * len(lines), (), (), 1280), 80)

        out["draw"] = timed(draw, args.repeat)

        views = {"cam": live.camera_view("cam")}
        snap = {"device": "bench", "backend": {"backend": "onnxruntime", "precision": "fp32", "category": "configured"},
                "cameras": {"cam": {"fps": 2.0, "frames": 10, "state": "streaming"}}, "outbox": {"rows": 0},
                "mqtt": {"enabled": True, "connected": True}, "health": {"healthy": True, "reasons": []}}
        cams = {"cam": camera_config_view(cfg.cameras[0])}
        feed = PageFeed(state=lambda: page_state(snap, cams, {"cam": live.camera_view("cam")}, store.snapshot(),
                                                 {}, 1000, store.crops),
                        latest=live.latest, roi=lambda c: (), save=lambda c: None,
                        evidence_path=store.path)
        client = create_app(feed).test_client()
        out["state"] = timed(lambda: client.get("/api/state"), args.repeat)
        del views

        ev = EvidenceStore(dataclasses.replace(EvidenceConfig(), dir=tmp + "/ev2", min_free_bytes=0))
        j = [0]

        def write():
            image, lines = frames[j[0] % len(frames)]
            j[0] += 1
            ev.write(f"bench:cam:{j[0]}:1", image, [line.box for line in lines])

        out["evidence"] = timed(write, args.repeat)
        snap_ev = ev.snapshot()
        out["evidence"]["bytes_per_reading"] = round(snap_ev["bytes"] / max(1, snap_ev["readings"]))
        out["evidence"]["readings_in_512_mib"] = int(512 * 1024 * 1024 / max(1, out["evidence"]["bytes_per_reading"]))

    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"frames {out['frames']} lines {out['lines_per_frame']}")
        for key in ("loop", "draw", "state", "evidence"):
            print(f"{key:9s} {out[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
