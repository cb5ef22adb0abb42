"""Where our errors come from, line by line, against RapidOCR 3.10: each stage swapped with the peer's.

    python bench/stage_swap.py SET [--json OUT]      SET: a folder with labels.jsonl, or a bench/small_text.py set

Four readings per image, scored per ground-truth line (daemon.ocr.evaluate):
  A ours; B RapidOCR 3.10; C our boxes (crops cut as we cut them) through 3.10's classifier and recognizer;
  D 3.10's boxes through our crop, classifier and recognizer. A line that D fixes and C does not is lost by our
  detection; one that C fixes and D does not, by our recognition path. Uses the pipeline's internals: a one-off.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from daemon import config  # noqa: E402
from daemon.ocr import evaluate  # noqa: E402
from daemon.ocr.crops import warp_crop  # noqa: E402
from daemon.ocr.pipeline import OcrPipeline  # noqa: E402
from daemon.ocr.reading_order import reading_order  # noqa: E402
from daemon.ocr.tiles import frame_boxes  # noqa: E402
from daemon.samples.render import load_dataset  # noqa: E402


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("set")
    ap.add_argument("--json", help="write every line's four readings here")
    args = ap.parse_args(argv)
    import small_text
    from rapidocr import RapidOCR
    from rapidocr.ch_ppocr_rec import TextRecInput

    ours = OcrPipeline.from_config(config.from_dict({"backend": "onnxruntime"}))
    peer = RapidOCR()
    peer_det = RapidOCR(params={"Global.use_rec": False, "Global.use_cls": False})

    def our_boxes(frame):
        sub = ours.submit([frame])
        ours._collect(sub)
        text, quads = frame_boxes(sub.probs[0], sub.boxes[0], frame.shape[0], frame.shape[1], ours.db)
        order = reading_order(text)
        return [text[i] for i in order], [quads[i] for i in order]

    def our_read(crops):
        return [(t.strip(), c) for t, c, _ in ours._recognize(ours.upright(list(crops)))] if crops else []

    def peer_read(crops):
        if not crops:
            return []
        turned = peer._load_cls_model()(list(crops))
        res = peer._load_rec_model()(TextRecInput(img=turned.img_list))
        return list(zip(res.txts, res.scores))

    def peer_all(frame):
        out = peer(frame)
        return [] if out.txts is None else list(zip(out.txts, out.boxes.tolist()))

    def peer_boxes(frame):
        out = peer_det(frame)
        return [] if getattr(out, "boxes", None) is None else [np.asarray(b, np.float32) for b in out.boxes]

    if args.set in small_text.SETS:
        samples = [small_text.SETS[args.set](i) for i in range(2 if args.set == "receipts" else 6)]
    else:
        samples = load_dataset(args.set)
    keep = ours.cfg.drop_score
    totals: dict[str, list] = {k: [] for k in "ABCD"}
    rows = []
    for s in samples:
        truth = [(line.text, line.box) for line in s.lines]
        img = s.image
        text, quads = our_boxes(img)
        theirs = peer_boxes(img)
        readings = {
            "A": [(line.text, line.box) for line in ours.run(img).lines],
            "B": peer_all(img),
            "C": [(t, b) for (t, c), b in zip(peer_read([warp_crop(img, q) for q in quads]), text) if t.strip() and c >= keep],
            "D": [(t, b) for (t, c), b in zip(our_read([warp_crop(img, q) for q in theirs]), theirs) if t and c >= keep],
        }
        scores = {k: evaluate.score_image(truth, v) for k, v in readings.items()}
        for k in "ABCD":
            totals[k].append(scores[k])
        for i, (t, _) in enumerate(truth):
            row = {k: (scores[k].lines[i].predicted, scores[k].lines[i].edits) for k in "ABCD"}
            rows.append({"image": s.name, "truth": t, **row})
            if any(e for _, e in row.values()):
                print(f"{s.name[:24]:24} {t[:30]!r:32} " + " | ".join(f"{k}:{e} {p[:22]!r}" for k, (p, e) in row.items()))
    print("A ours | B RapidOCR 3.10 | C our boxes, 3.10's cls+rec | D 3.10's boxes, our crop+cls+rec")
    for k in "ABCD":
        acc = evaluate.combine(totals[k])
        print(f"{k} CER {acc.cer:.2%}  line recall {acc.line_recall:.1%}  edits {sum(x.edits for x in acc.lines)}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, ensure_ascii=False, indent=0))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
