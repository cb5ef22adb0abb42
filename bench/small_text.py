"""Small text in large frames: rendered analogs of issue 33's photographs, ours (with ocr.* overrides) against
RapidOCR 1.4.4 and 3.10, CER, line recall and images/s, all in one process.

    python bench/small_text.py [--n 6] [--sets plates1080,plates4000,packs,receipts,receipt_photos]
        [--photos bench/photos ...]
        [--ours 'before={"tiles": "off"}' --ours 'tiles={"tiles": "on"}'] [--peers 1.4.4,3.10] [--out DIR]

Sets (deterministic: the same seeds give the same pixels with the same fonts and Pillow):
  plates1080  1920x1080 street-like scenes, two or three plates each, capitals 10-18 px (1-1.7 % of the height);
  plates4000  4000x3000 scenes, plates with capitals 18-34 px (0.6-1.1 %);
  packs       2592x1944 photos of a pack: a large product name, a use-by date and a lot line, capitals 13-20 px;
  receipts    1000x3000 till receipts, about 70 lines of monospaced 8-point-like print (capitals 12-14 px);
  receipt_photos  1512x2016 phone photos of a receipt on a table, turned and in perspective under uneven light:
              a header, items with prices flush right (quantity lines "2 x 1.49" below some), totals.
Each system reads each image in turn (the order rotates per image, so a noisy neighbour on a shared machine
hits all alike); images/s is images over the summed read time of one system on one set. --out writes the
rendered sets as image folders with labels.jsonl (bench/sets_cer.py, bench/process_bench.py read them).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daemon import config  # noqa: E402
from daemon.ocr import evaluate  # noqa: E402
from daemon.samples.render import GroundTruthLine, Sample, load_dataset  # noqa: E402

FONTS = Path("/usr/share/fonts/truetype/dejavu")
PLATE_FONTS = ("DejaVuSans-Bold.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansCondensed-Bold.ttf")
LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"
ITEMS = ("MILK 1L", "BREAD WHOLEMEAL", "EGGS FREE RANGE 12", "APPLES 1KG", "COFFEE BEANS", "TOMATOES", "RICE 2KG",
         "OLIVE OIL", "CHEESE CHEDDAR", "BANANAS", "YOGHURT NAT", "PASTA PENNE", "ORANGE JUICE", "BUTTER 250G",
         "CHICKEN BREAST", "WATER 6X1.5L", "TEA BAGS 80", "CEREAL OATS", "SOAP BAR", "TOILET ROLL 9")


def _font(name: str, cap_px: float) -> ImageFont.FreeTypeFont:
    """The font at the size whose capital H is cap_px tall."""
    ref = ImageFont.truetype(str(FONTS / name), 100)
    top, bottom = ref.getbbox("H")[1], ref.getbbox("H")[3]
    return ImageFont.truetype(str(FONTS / name), max(6, round(100 * cap_px / (bottom - top))))


def _text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font, fill) -> GroundTruthLine:
    """Draws text with its top-left at xy; the truth box is its ink box grown by a third of the capital height
    on every side (a detector box is looser than the ink, evaluate wants half of it inside)."""
    draw.text(xy, text, font=font, fill=fill)
    x0, y0, x1, y1 = draw.textbbox(xy, text, font=font)
    pad = 0.35 * (y1 - y0)
    x0, y0, x1, y1 = x0 - pad, y0 - pad, x1 + pad, y1 + pad
    return GroundTruthLine(text, ((x0, y0), (x1, y0), (x1, y1), (x0, y1)))


def _noisy(base: np.ndarray, rng: np.random.Generator, sigma: float) -> Image.Image:
    """base (h x w x 3) with Gaussian noise of sigma grey levels, as an 8-bit image."""
    return Image.fromarray(np.clip(base + rng.normal(0, sigma, base.shape), 0, 255).astype(np.uint8))


def _scene(rng: np.random.Generator, r: random.Random, w: int, h: int) -> Image.Image:
    """A street-like background: sky and road gradients, buildings, windows, cars' bodies, noise."""
    sky = np.linspace(r.uniform(150, 220), r.uniform(90, 150), h // 2)[:, None, None] * np.ones((1, w, 3))
    road = np.linspace(r.uniform(60, 90), r.uniform(100, 130), h - h // 2)[:, None, None] * np.ones((1, w, 3))
    img = Image.fromarray(np.clip(np.concatenate([sky, road]), 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(r.randint(6, 12)):         # buildings with windows
        bx, bw = r.uniform(-0.1, 1.0) * w, r.uniform(0.08, 0.25) * w
        by = r.uniform(0.05, 0.35) * h
        d.rectangle((bx, by, bx + bw, 0.55 * h), fill=tuple(r.randint(60, 180) for _ in range(3)))
        for _ in range(r.randint(4, 16)):
            wx, wy = bx + r.uniform(0, bw), by + r.uniform(0, 0.5 * h - by)
            d.rectangle((wx, wy, wx + 0.015 * w, wy + 0.02 * h), fill=tuple(r.randint(20, 90) for _ in range(3)))
    return _noisy(np.asarray(img).astype(np.float32), rng, 6)


def _plate_text(r: random.Random) -> str:
    kind = r.randrange(3)
    if kind == 0:
        return "".join(r.choices(LETTERS, k=2)) + f"{r.randint(10, 99)} " + "".join(r.choices(LETTERS, k=3))
    if kind == 1:
        return "".join(r.choices(LETTERS, k=2)) + f" {r.randint(1000, 9999)} " + r.choice(LETTERS)
    return f"{r.randint(1, 9)}" + "".join(r.choices(LETTERS, k=3)) + f"{r.randint(100, 999)}"


def _finish(img: Image.Image, rng: np.random.Generator, blur: float) -> np.ndarray:
    out = cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR).astype(np.float32)
    if blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), blur)
    out += rng.normal(0, 3, out.shape)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def plates(seed: int, w: int, h: int, cap: tuple[float, float]) -> Sample:
    r, rng = random.Random(seed), np.random.default_rng(seed)
    img = _scene(rng, r, w, h)
    d = ImageDraw.Draw(img)
    lines, taken = [], []
    for _ in range(r.randint(2, 3)):
        text, font = _plate_text(r), _font(r.choice(PLATE_FONTS), r.uniform(*cap))
        x0, y0, x1, y1 = d.textbbox((0, 0), text, font=font)
        tw, th = x1 - x0, y1 - y0
        for _try in range(50):      # a place on the lower half not overlapping another plate
            x, y = r.uniform(0.05, 0.9) * w - tw / 2, r.uniform(0.5, 0.9) * h
            if all(abs(x - a) > tw + 40 or abs(y - b) > 3 * th for a, b in taken):
                break
        taken.append((x, y))
        car = tuple(r.randint(20, 230) for _ in range(3))
        d.rectangle((x - 3 * th, y - 2.5 * th, x + tw + 3 * th, y + 3.5 * th), fill=car)      # the car's back
        yellow = r.random() < 0.4
        d.rectangle((x - 0.6 * th, y - 0.5 * th - y0, x + tw + 0.6 * th, y + y1 + 0.5 * th),
                    fill=(240, 200, 30) if yellow else (235, 235, 235), outline=(20, 20, 20), width=2)
        lines.append(_text(d, (x - x0, y - y0), text, font, (15, 15, 15)))
    return Sample(f"plates_{w}x{h}_{seed}", _finish(img, rng, r.uniform(0.4, 1.0)), tuple(lines))


def pack(seed: int, w: int = 2592, h: int = 1944) -> Sample:
    r, rng = random.Random(seed), np.random.default_rng(seed)
    img = _noisy(np.full((h, w, 3), r.uniform(90, 160)), rng, 5)
    d = ImageDraw.Draw(img)
    px0, py0 = r.uniform(0.1, 0.3) * w, r.uniform(0.1, 0.25) * h
    pw, ph = r.uniform(0.45, 0.6) * w, r.uniform(0.55, 0.7) * h
    d.rectangle((px0, py0, px0 + pw, py0 + ph), fill=tuple(r.randint(150, 250) for _ in range(3)))
    name = r.choice(("FRESH MILK", "GREEK YOGHURT", "CHEDDAR", "ORANGE JUICE", "HAM SLICES", "SALAD MIX"))
    lines = [_text(d, (px0 + 0.08 * pw, py0 + 0.1 * ph), name, _font("DejaVuSans-Bold.ttf", r.uniform(60, 90)),
                   tuple(r.randint(0, 80) for _ in range(3)))]
    day, month, year = r.randint(1, 28), r.randint(1, 12), r.randint(26, 29)
    date = r.choice((f"USE BY {day:02d}.{month:02d}.{year}", f"BEST BEFORE {day:02d}/{month:02d}/20{year}",
                     f"EXP {day:02d} {('JAN','FEB','MAR','APR','MAY','JUN','JUL','AUG','SEP','OCT','NOV','DEC')[month-1]} 20{year}"))
    lot = f"LOT L{r.randint(1000, 9999)}{r.choice(LETTERS)}"
    font = _font(r.choice(("DejaVuSansMono.ttf", "DejaVuSans.ttf", "DejaVuSansMono-Bold.ttf")), r.uniform(13, 20))
    x, y = px0 + r.uniform(0.1, 0.5) * pw, py0 + r.uniform(0.6, 0.8) * ph
    lines.append(_text(d, (x, y), date, font, (20, 20, 20)))
    lines.append(_text(d, (x, y + 2.2 * font.size), lot, font, (20, 20, 20)))
    return Sample(f"pack_{seed}", _finish(img, rng, r.uniform(0.5, 1.1)), tuple(lines))


def receipt(seed: int, w: int = 1000, h: int = 3000) -> Sample:
    r, rng = random.Random(seed), np.random.default_rng(seed)
    img = _noisy(np.full((h, w, 3), r.uniform(225, 248)), rng, 4)
    d = ImageDraw.Draw(img)
    font = _font("DejaVuSansMono.ttf", r.uniform(12, 14))
    pitch = r.uniform(2.8, 3.2) * font.size * 0.72
    lines, y, total = [], 0.04 * h, 0.0
    while y < 0.96 * h - pitch:
        price = r.uniform(0.3, 40)
        total += price
        text = f"{r.choice(ITEMS):<22}{r.randint(1, 4)} x {price:6.2f}"
        lines.append(_text(d, (0.06 * w, y), text, font, (35, 35, 35)))
        y += pitch
    return Sample(f"receipt_{seed}", _finish(img, rng, r.uniform(0.3, 0.7)), tuple(lines))


def _receipt_paper(r: random.Random, rng: np.random.Generator, w: int) -> tuple[Image.Image, list[GroundTruthLine]]:
    """A till receipt as its printer made it: a header, items with prices flush right (some with a quantity line
    below), totals, a card line and a footer, in one monospaced thermal font whose darkness varies line to line."""
    font = _font(r.choice(("DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf")), r.uniform(13, 18))
    big = _font("DejaVuSansMono-Bold.ttf", font.size * 1.1)
    spacing = r.uniform(1.3, 1.55)
    store = r.choice(("FRESHMART", "CORNER GROCER", "MARKT 24"))
    street = f"{r.randint(1, 199)} {r.choice(('HIGH ST', 'MAIN RD', 'BAHNHOFSTR'))}"
    stamp = (f"{r.randint(1, 28):02d}/{r.randint(1, 12):02d}/2026 {r.randint(7, 21):02d}:{r.randint(0, 59):02d}"
             f"  #{r.randint(1000, 9999)}")
    rows: list[tuple[str, str, object]] = [("center", store, big), ("center", street, font), ("center", stamp, font)]
    total = 0.0
    for _ in range(r.randint(18, 34)):
        qty, unit = r.randint(1, 4), r.uniform(0.3, 12)
        total += qty * unit
        rows.append(("pair", f"{r.choice(ITEMS)}|{qty * unit:.2f}", font))
        if qty > 1:
            rows.append(("left", f"  {qty} x {unit:.2f}", font))
    rows += [("pair", f"SUBTOTAL|{total:.2f}", font), ("pair", f"VAT 20%|{total / 6:.2f}", font),
             ("pair", f"TOTAL|{total:.2f}", big), ("left", f"CARD ****{r.randint(1000, 9999)}", font),
             ("center", "THANK YOU", font)]
    h = int(0.08 * w + spacing * sum(f.size for _, _, f in rows))
    paper = _noisy(np.full((h, w, 3), r.uniform(238, 252)), rng, 2)
    d = ImageDraw.Draw(paper)
    lines, y, margin = [], 0.04 * w, 0.05 * w
    for how, text, f in rows:
        ink = (r.randint(10, 70),) * 3
        if how == "pair":
            left, right = text.split("|")
            lines.append(_text(d, (margin, y), left, f, ink))
            lines.append(_text(d, (w - margin - d.textlength(right, font=f), y), right, f, ink))
        else:
            x = (w - d.textlength(text, font=f)) / 2 if how == "center" else margin
            lines.append(_text(d, (x, y), text, f, ink))
        y += spacing * f.size
    return paper, lines


def receipt_photo(seed: int, w: int = 1512, h: int = 2016) -> Sample:
    """A phone's photo of a receipt on a table: the paper turned a few degrees and seen in perspective, filling
    most of the frame's height, under uneven light; the truth boxes go through the same projection."""
    r, rng = random.Random(seed), np.random.default_rng(seed)
    paper, flat_lines = _receipt_paper(r, rng, 720)
    ph, pw = paper.height, paper.width
    table = cv2.GaussianBlur(rng.normal(r.uniform(70, 140), 25, (h, w, 3)).astype(np.float32), (0, 0), 3)
    tall = r.uniform(0.78, 0.94) * h
    scale = tall / ph
    cx, cy, turn = r.uniform(0.45, 0.55) * w, r.uniform(0.47, 0.53) * h, np.radians(r.uniform(-5, 5))
    corners = []
    for px, py in ((0, 0), (pw, 0), (pw, ph), (0, ph)):
        dx, dy = (px - pw / 2) * scale, (py - ph / 2) * scale
        dx *= 1 + r.uniform(-0.06, 0.06) * (py / ph - 0.5)        # one end nearer the camera: a trapezoid
        corners.append((cx + dx * np.cos(turn) - dy * np.sin(turn), cy + dx * np.sin(turn) + dy * np.cos(turn)))
    m = cv2.getPerspectiveTransform(np.float32([(0, 0), (pw, 0), (pw, ph), (0, ph)]), np.float32(corners))
    flat = cv2.cvtColor(np.asarray(paper), cv2.COLOR_RGB2BGR).astype(np.float32)
    seen = cv2.warpPerspective(flat, m, (w, h), flags=cv2.INTER_AREA)
    inside = cv2.warpPerspective(np.ones((ph, pw), np.float32), m, (w, h), flags=cv2.INTER_LINEAR)[..., None]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 1.0 - r.uniform(0.1, 0.3) * ((xx / w) * r.uniform(-1, 1) + (yy / h) * r.uniform(-1, 1)) ** 2
    out = (seen * inside + table * (1 - inside)) * light[..., None]
    out = cv2.GaussianBlur(out, (0, 0), r.uniform(0.5, 1.0)) + rng.normal(0, 3, out.shape)
    _, jpg = cv2.imencode(".jpg", np.clip(np.round(out), 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 88])
    lines = tuple(GroundTruthLine(t.text, tuple(tuple(float(v) for v in p) for p in
                                                cv2.perspectiveTransform(np.float32([t.box]), m)[0]))
                  for t in flat_lines)
    return Sample(f"receipt_photo_{seed}", cv2.imdecode(jpg, cv2.IMREAD_COLOR), lines)


SETS = {
    "plates1080": lambda i: plates(3300 + i, 1920, 1080, (10, 18)),
    "plates4000": lambda i: plates(3400 + i, 4000, 3000, (18, 34)),
    "packs": lambda i: pack(3500 + i),
    "receipts": lambda i: receipt(3600 + i),
    "receipt_photos": lambda i: receipt_photo(3700 + i),
}


def ours(overrides: dict):
    from daemon.ocr.pipeline import OcrPipeline

    pipeline = OcrPipeline.from_config(config.from_dict({"backend": "onnxruntime", "ocr": overrides}))
    return lambda image: [(line.text, line.box) for line in pipeline.run(image).lines]


def peer(version: str):
    sys.path.insert(0, str(ROOT / "bench"))
    from peer_once import engine

    return engine(version)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=6, help="images per rendered set (receipts: a third of it)")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--photos", nargs="*", default=[], help="folders of photographs with a labels.jsonl")
    ap.add_argument("--ours", action="append", default=[], help="NAME=JSON of ocr.* overrides (repeatable)")
    ap.add_argument("--peers", default="1.4.4,3.10", help="RapidOCR releases to run ('' for none)")
    ap.add_argument("--out", help="write the rendered sets here as image folders with labels.jsonl")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    systems = {}
    for spec in args.ours or ['default={}']:
        name, _, overrides = spec.partition("=")
        systems[f"ours {name}"] = ours(json.loads(overrides or "{}"))
    for version in filter(None, args.peers.split(",")):
        systems[f"RapidOCR {version}"] = peer(version)
    sets: dict[str, list[Sample]] = {}
    for name in filter(None, args.sets.split(",")):
        n = max(1, args.n // 3) if name == "receipts" else args.n
        sets[name] = [SETS[name](i) for i in range(n)]
    for folder in args.photos:
        sets[folder] = load_dataset(folder)
    if args.out:
        _write(Path(args.out), {k: v for k, v in sets.items() if k in SETS})
    figures: dict = {}
    for set_name, samples in sets.items():
        scores = {s: [] for s in systems}
        seconds = {s: 0.0 for s in systems}
        names = list(systems)
        for k, sample in enumerate(samples):
            truth = [(line.text, line.box) for line in sample.lines]
            for s in names[k % len(names):] + names[: k % len(names)]:
                t0 = time.perf_counter()
                found = systems[s](sample.image)
                seconds[s] += time.perf_counter() - t0
                scores[s].append(evaluate.score_image(truth, found))
        figures[set_name] = {}
        lines = sum(len(s.lines) for s in samples)
        print(f"\n{set_name}: {len(samples)} images, {lines} lines, {samples[0].image.shape[1]}x{samples[0].image.shape[0]}")
        for s in names:
            acc = evaluate.combine(scores[s])
            row = {"cer": acc.cer, "line_recall": acc.line_recall, "exact_lines": acc.exact_lines,
                   "images_per_s": len(samples) / seconds[s]}
            figures[set_name][s] = row
            print(f"  {s:<28} CER {acc.cer:7.2%}  line recall {acc.line_recall:7.2%}  exact {acc.exact_lines:7.2%}"
                  f"  {row['images_per_s']:.2f} images/s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


def _write(out: Path, sets: dict[str, list[Sample]]) -> None:
    for name, samples in sets.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "labels.jsonl", "w") as f:
            for s in samples:
                cv2.imwrite(str(folder / f"{s.name}.png"), s.image)
                f.write(json.dumps({"image": f"{s.name}.png", "kind": name,
                                    "lines": [{"text": l.text, "box": [list(p) for p in l.box]} for l in s.lines]},
                                   ensure_ascii=False) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
