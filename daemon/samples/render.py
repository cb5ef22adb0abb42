"""Deterministic parcel-label images with ground truth: the test, benchmark and calibration data.

``render_label(seed)`` draws a waybill label (waybill numbers, dates, weights, phones, Chinese and English
addresses, lot codes) on a textured background and returns the image with one ground-truth quad per text
line. The same seed gives the same pixels on any machine with the same fonts and Pillow. Variants apply
the distortions a conveyor camera sees (rotation, upside down, blur, perspective, low contrast, a larger
frame); every ground-truth box goes through the same geometric transform as the pixels.

Fonts come from Debian packages (fonts-dejavu-core, fonts-noto-cjk); nothing is downloaded.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

DEJAVU_DIR = Path("/usr/share/fonts/truetype/dejavu")
NOTO_CJK = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
NOTO_CJK_BOLD = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc")
_NOTO_SC_INDEX = 2          # face index of "Noto Sans CJK SC" (simplified Chinese glyph forms) in the .ttc

VARIANTS = ("plain", "rotated", "upside_down", "blurred", "perspective", "low_contrast", "large")
# Frames that break INT8 detectors (bench/RESULTS-int8.md, hard frames), not in the default mix: strong motion blur, defocus, tilt of
# up to 25 degrees, a dim label, heavy sensor noise, text at about 0.6 of its usual size, and "mixed" (two or
# three of these at once, upside down one time in three).
HARD_VARIANTS = ("motion", "defocus", "tilted", "dim", "noisy", "small", "mixed")
ALL_VARIANTS = VARIANTS + HARD_VARIANTS
_HARD_EFFECTS = ("motion", "defocus", "tilted", "dim", "noisy", "small")
LARGE_SIZE = (2048, 1536)   # width, height of the "large" variant
LABELS_FILE = "labels.jsonl"


class FontMissingError(RuntimeError):
    """A font file the renderer needs is not installed; the message names the Debian package."""


@dataclass(frozen=True)
class GroundTruthLine:
    text: str
    box: tuple[tuple[float, float], ...]   # 4 corners in image pixels: top-left, top-right, bottom-right, bottom-left


@dataclass(frozen=True)
class Sample:
    name: str
    image: np.ndarray                       # BGR uint8
    lines: tuple[GroundTruthLine, ...]
    kind: str = ""                          # the variant it was rendered as (labels.jsonl "kind")


# ---------------------------------------------------------------- fonts

_FONT_FILES = {
    # kind -> (path, face index, Debian package)
    "sans": (DEJAVU_DIR / "DejaVuSans.ttf", 0, "fonts-dejavu-core"),
    "sans_bold": (DEJAVU_DIR / "DejaVuSans-Bold.ttf", 0, "fonts-dejavu-core"),
    "mono": (DEJAVU_DIR / "DejaVuSansMono.ttf", 0, "fonts-dejavu-core"),
    "mono_bold": (DEJAVU_DIR / "DejaVuSansMono-Bold.ttf", 0, "fonts-dejavu-core"),
    "cjk": (NOTO_CJK, _NOTO_SC_INDEX, "fonts-noto-cjk"),
    "cjk_bold": (NOTO_CJK_BOLD, _NOTO_SC_INDEX, "fonts-noto-cjk"),
}
_LATIN_KINDS = ("sans", "sans_bold", "mono", "mono_bold", "cjk")
_CJK_KINDS = ("cjk", "cjk_bold")


@lru_cache(maxsize=512)
def _font(kind: str, size_px: int) -> ImageFont.FreeTypeFont:
    path, index, package = _FONT_FILES[kind]
    if not path.is_file():
        raise FontMissingError(
            f"font {path} is missing: install the Debian package {package} (apt-get install {package})")
    return ImageFont.truetype(str(path), size_px, index=index)


def check_fonts() -> None:
    """Raises FontMissingError naming the Debian package when any font is absent."""
    for kind in _FONT_FILES:
        _font(kind, 12)


def _cap_to_size(kind: str, cap_height_px: float) -> int:
    """Font size (em, px) whose capital 'H' is cap_height_px tall in this font."""
    ref = 100
    left, top, right, bottom = _font(kind, ref).getbbox("H")
    return max(6, int(round(ref * cap_height_px / max(1, bottom - top))))


# ---------------------------------------------------------------- text content (all in PP-OCRv4's dictionary)

_SURNAMES = "张王李赵刘陈杨黄周吴徐孙马朱胡郭何林高罗"
_GIVEN = ["伟", "芳", "娜", "敏", "静", "磊", "洋", "杰", "军", "霞", "明", "华", "强", "丽", "文", "涛", "红", "平"]
_CITIES = [
    ("上海市", ["浦东新区", "徐汇区", "闵行区", "静安区"], ["张江路", "世纪大道", "漕溪北路", "南京西路"]),
    ("北京市", ["朝阳区", "海淀区", "东城区", "丰台区"], ["建国路", "中关村大街", "东四北大街", "丽泽路"]),
    ("深圳市", ["南山区", "福田区", "宝安区", "龙岗区"], ["科技园南路", "深南大道", "新安六路", "龙翔大道"]),
    ("广州市", ["天河区", "越秀区", "番禺区", "白云区"], ["体育西路", "中山五路", "市桥大道", "机场路"]),
    ("杭州市", ["西湖区", "滨江区", "余杭区", "拱墅区"], ["文三路", "江南大道", "文一西路", "莫干山路"]),
    ("成都市", ["武侯区", "锦江区", "高新区", "青羊区"], ["人民南路", "春熙路", "天府大道", "西御街"]),
]
_EN_STREETS = ["Harbour Road", "Nanjing West Rd", "Science Park Ave", "Industrial Blvd", "Keyuan Road",
               "Riverside Drive", "Jianguo Road", "Tianhe North Rd"]
_EN_CITIES = ["Shanghai", "Shenzhen", "Beijing", "Guangzhou", "Hangzhou", "Chengdu", "Suzhou", "Ningbo"]
_EN_NAMES = ["Li Ming", "Wang Fang", "Zhang Wei", "Chen Jie", "Anna Schmidt", "John Carter", "Maria Rossi",
             "Liu Yang", "Kim Park", "Tom Becker"]
_CARRIERS_CN = ["顺丰速运", "中通快递", "圆通速递", "申通快递", "韵达快递", "京东物流", "邮政EMS"]
_ITEMS_CN = ["文件", "电子产品", "服装", "食品", "配件", "图书", "日用品"]
_NOTES_CN = ["易碎物品 小心轻放", "请勿倒置", "保持干燥", "当日达", "到付", "已验视"]
_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]


def _digits(r: random.Random, n: int) -> str:
    return "".join(r.choice("0123456789") for _ in range(n))


def _upper(r: random.Random, n: int) -> str:
    return "".join(r.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(n))  # no I/O: they read as 1/0


def _waybill(r: random.Random) -> str:
    kind = r.randrange(6)
    if kind == 0:
        return "SF" + _digits(r, 13)
    if kind == 1:
        return f"ZTO {_digits(r, 4)} {_digits(r, 4)} {_digits(r, 4)}"
    if kind == 2:
        return "YT" + _digits(r, 13)
    if kind == 3:
        return "JDVA" + _digits(r, 11)
    if kind == 4:
        return f"{_digits(r, 4)} {_digits(r, 4)} {_digits(r, 4)}"
    return "EMS " + _upper(r, 2) + _digits(r, 9) + "CN"


def _date(r: random.Random) -> str:
    y, m, d = r.randint(2024, 2027), r.randint(1, 12), r.randint(1, 28)
    kind = r.randrange(4)
    if kind == 0:
        return f"{y}-{m:02d}-{d:02d} {r.randint(0, 23):02d}:{r.randint(0, 59):02d}"
    if kind == 1:
        return f"{y}/{m:02d}/{d:02d}"
    if kind == 2:
        return f"{d:02d} {_MONTHS[m - 1]} {y}"
    return f"{y}年{m}月{d}日"


def _phone(r: random.Random) -> str:
    if r.random() < 0.6:
        return f"1{r.choice('3456789')}{_digits(r, 1)} {_digits(r, 4)} {_digits(r, 4)}"
    return f"+86 {r.choice(['21', '10', '755', '20', '571'])} {_digits(r, 4)} {_digits(r, 4)}"


def _weight(r: random.Random) -> str:
    return f"{r.randint(0, 29)}.{_digits(r, 2)} kg"


def _name_cn(r: random.Random) -> str:
    return r.choice(_SURNAMES) + "".join(r.choice(_GIVEN) for _ in range(r.randint(1, 2)))


def _address_cn(r: random.Random) -> str:
    city, districts, streets = r.choice(_CITIES)
    return f"{city}{r.choice(districts)}{r.choice(streets)}{r.randint(1, 999)}号"


def _address_en(r: random.Random) -> str:
    return f"{r.randint(1, 399)} {r.choice(_EN_STREETS)}, {r.choice(_EN_CITIES)}"


def _lot(r: random.Random) -> str:
    kind = r.randrange(3)
    if kind == 0:
        return f"LOT {_upper(r, 1)}{_digits(r, 2)}{_upper(r, 1)}-{_digits(r, 4)}"
    if kind == 1:
        return f"Batch: {_digits(r, 8)}-{_digits(r, 2)}"
    return f"P/N {_upper(r, 3)}-{_digits(r, 5)}"


# Each generator returns (text, script) where script picks the fonts: "latin" or "cjk".
# Chinese field names take the full-width colon "：" (as printed labels do, and as PP-OCRv4 reads it).
_Line = tuple[str, str]


def _gen_waybill(r):    return (r.choice(["", "运单号：", "No. "]) + _waybill(r), "cjk")
def _gen_date(r):       return (r.choice(["", "日期：", "Date: ", "MFG "]) + _date(r), "cjk")
def _gen_weight(r):     return (r.choice(["重量：", "Weight: ", "W: "]) + _weight(r), "cjk")
def _gen_phone(r):      return (r.choice(["电话：", "Tel: ", "TEL "]) + _phone(r), "cjk")
def _gen_to_cn(r):      return (f"收件人：{_name_cn(r)} {_address_cn(r)}", "cjk")
def _gen_from_cn(r):    return (f"寄件人：{_name_cn(r)}", "cjk")
def _gen_addr_cn(r):    return (_address_cn(r), "cjk")
def _gen_addr_en(r):    return (_address_en(r), "latin")
def _gen_to_en(r):      return (f"Ship to: {r.choice(_EN_NAMES)}", "latin")
def _gen_mixed(r):      return (f"{r.choice(_EN_NAMES)} {_name_cn(r)} {r.choice(_CITIES)[0]}", "cjk")
def _gen_lot(r):        return (_lot(r), "latin")
def _gen_item(r):       return (f"物品：{r.choice(_ITEMS_CN)} x{r.randint(1, 12)}", "cjk")
def _gen_note(r):       return (r.choice(_NOTES_CN), "cjk")
def _gen_pieces(r):     return (f"件数：{r.randint(1, 5)}/{r.randint(5, 9)} Pcs", "cjk")


_BODY_GENERATORS: tuple[Callable[[random.Random], _Line], ...] = (
    _gen_waybill, _gen_date, _gen_weight, _gen_phone, _gen_to_cn, _gen_from_cn, _gen_addr_cn, _gen_addr_en,
    _gen_to_en, _gen_mixed, _gen_lot, _gen_item, _gen_note, _gen_pieces,
)
# Short items that may share a row with another one (left and right column of a label).
_SHORT_GENERATORS = (_gen_date, _gen_weight, _gen_lot, _gen_pieces, _gen_note)


# ---------------------------------------------------------------- label layout (pixels drawn on a flat canvas)

@dataclass(frozen=True)
class _Placed:
    text: str
    x: float
    y: float
    kind: str
    size_px: int
    ink: tuple[int, int, int]


def _text_box(p: _Placed) -> np.ndarray:
    """Ground-truth quad of a placed line: the ink box padded by a fraction of its height."""
    font = _font(p.kind, p.size_px)
    left, top, right, bottom = font.getbbox(p.text, anchor="ls")
    cap = font.getbbox("H", anchor="ls")
    height = max(bottom - top, cap[3] - cap[1])
    pad_x, pad_y = 0.12 * height, 0.12 * height
    x0, x1 = p.x + left - pad_x, p.x + right + pad_x
    y0, y1 = p.y + top - pad_y, p.y + bottom + pad_y
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _paper_texture(rng: np.random.Generator, h: int, w: int, base: float, amp: float, grain: bool) -> np.ndarray:
    """Low-frequency blotches (plus fine grain when asked) around a base grey level; float32 HxW."""
    coarse = rng.normal(0.0, 1.0, (max(2, h // 64), max(2, w // 64))).astype(np.float32)
    coarse = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    if not grain:   # smooth paper compresses well: the bundled PNGs stay small
        return base + amp * coarse
    fine = rng.normal(0.0, 1.0, (h, w)).astype(np.float32)
    return base + amp * coarse + 0.4 * amp * fine


def _layout(r: random.Random, label_w: int, label_h: int, scale: float) -> list[_Placed]:
    """Rows of text top to bottom inside a label of label_w x label_h; 6-12 lines, no overlaps."""
    margin = 0.05 * label_w
    usable_w = label_w - 2 * margin
    n_target = r.randint(6, 12)
    lines: list[_Placed] = []
    # Header: the carrier and its waybill number, large.
    rows: list[list[_Line]] = [[(r.choice(_CARRIERS_CN), "cjk")], [_gen_waybill(r)]]
    count = 2
    while count < n_target:
        if count + 2 <= n_target and r.random() < 0.25:
            rows.append([r.choice(_SHORT_GENERATORS)(r), r.choice(_SHORT_GENERATORS)(r)])
            count += 2
        else:
            rows.append([r.choice(_BODY_GENERATORS)(r)])
            count += 1
    caps = [r.uniform(30, 40) * scale, r.uniform(24, 34) * scale] + [r.uniform(14, 26) * scale for _ in rows[2:]]
    gaps = [r.uniform(0.9, 1.5) for _ in rows]
    total = sum(c * (1.9 + g) for c, g in zip(caps, gaps))
    if total > 0.9 * label_h:      # too tall: shrink every row, never below a 14 px cap (scaled)
        shrink = 0.9 * label_h / total
        caps = [max(14 * scale, c * shrink) for c in caps]
    else:                          # room to spare: spread the rows down the label, as printed labels are
        spare = (0.85 * label_h - total) / sum(caps)
        gaps = [g + min(spare, 2.5) for g in gaps]
    y = 0.06 * label_h
    for row, cap, gap in zip(rows, caps, gaps):
        ink = _ink(r)
        placed_row = []
        for col, (text, script) in enumerate(row):
            kinds = _CJK_KINDS if script == "cjk" else _LATIN_KINDS
            kind = r.choice(kinds)
            this_cap = cap
            size = _cap_to_size(kind, this_cap)
            slot_w = usable_w if len(row) == 1 else usable_w * 0.42
            # Too wide for its slot: smaller font down to a 14 px cap, then drop words from the end.
            while _font(kind, size).getlength(text) > slot_w and this_cap > 14 * scale:
                this_cap = max(14 * scale, this_cap * 0.9)
                size = _cap_to_size(kind, this_cap)
            while _font(kind, size).getlength(text) > slot_w and " " in text.strip():
                text = text.rstrip().rsplit(" ", 1)[0]
            x = margin if col == 0 else margin + usable_w * 0.55
            x += r.uniform(0, 0.03 * label_w)
            placed_row.append(_Placed(text.strip(), x, y + cap * 1.4, kind, size, ink))
        row_bottom = max(_text_box(p)[2, 1] for p in placed_row)
        if row_bottom > label_h * 0.97:
            break
        lines.extend(placed_row)
        y += cap * (1.9 + gap)
    return lines


def _ink(r: random.Random) -> tuple[int, int, int]:
    v = r.randint(5, 45)
    return (v, v, v + r.randint(0, 10))   # near-black, sometimes slightly blue (RGB)


def _draw_barcode(draw: ImageDraw.ImageDraw, r: random.Random, x: float, y: float, w: float, h: float) -> None:
    pos = x
    while pos < x + w:
        bar = r.choice((1, 1, 2, 3)) * max(1.0, w / 220)
        if r.random() < 0.55:
            draw.rectangle([pos, y, pos + bar - 1, y + h], fill=(20, 20, 20))
        pos += bar


def _render_canvas(seed: int, width: int, height: int, low_contrast: bool, grain: bool
                   ) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """The un-distorted photo: a label on a cardboard background; returns BGR and (text, quad) per line."""
    r = random.Random(seed)
    rng = np.random.default_rng(seed)
    scale = width / 1280.0
    # Cardboard background (BGR brownish) with texture.
    tex = _paper_texture(rng, height, width, base=0.0, amp=10.0, grain=grain)
    board = np.stack([tex + 95, tex + 140, tex + 180], axis=-1)
    # The label: white paper covering most of the frame, offset a little.
    lw, lh = int(width * r.uniform(0.78, 0.9)), int(height * r.uniform(0.8, 0.9))
    lx, ly = int((width - lw) * r.uniform(0.3, 0.7)), int((height - lh) * r.uniform(0.3, 0.7))
    paper_level = r.uniform(225, 245) if not low_contrast else r.uniform(185, 205)
    paper = _paper_texture(rng, lh, lw, base=paper_level, amp=3.0, grain=grain)
    board[ly:ly + lh, lx:lx + lw, :] = paper[..., None] + np.array([0.0, 1.0, 3.0], dtype=np.float32)

    canvas = Image.fromarray(np.clip(board, 0, 255).astype(np.uint8)[..., ::-1].copy(), "RGB")
    draw = ImageDraw.Draw(canvas)
    placed = _layout(r, lw, lh, scale)
    # A barcode in the free space right of the header, like most waybills (not text: no ground truth).
    if r.random() < 0.6 and len(placed) >= 2:
        header_box = _text_box(placed[0])
        bx = lx + max(header_box[1, 0] + 0.08 * lw, 0.55 * lw)
        bw = lx + 0.95 * lw - bx
        if bw > 60 * scale:
            _draw_barcode(draw, r, bx, ly + header_box[0, 1], bw, max(20.0, header_box[2, 1] - header_box[0, 1]))
    # Thin rules between sections.
    for _ in range(r.randint(1, 3)):
        if len(placed) < 3:
            break
        i = r.randrange(1, len(placed) - 1)
        y_rule = ly + (_text_box(placed[i])[2, 1] + _text_box(placed[i + 1])[0, 1]) / 2
        if _text_box(placed[i + 1])[0, 1] - _text_box(placed[i])[2, 1] > 6 * scale:
            draw.line([(lx + 0.03 * lw, y_rule), (lx + 0.97 * lw, y_rule)], fill=(40, 40, 40), width=max(1, int(2 * scale)))
    lines: list[tuple[str, np.ndarray]] = []
    for p in placed:
        ink = p.ink if not low_contrast else tuple(int(v + 95) for v in p.ink)
        draw.text((lx + p.x, ly + p.y), p.text, font=_font(p.kind, p.size_px), fill=ink, anchor="ls")
        lines.append((p.text, _text_box(p) + np.array([lx, ly], dtype=np.float64)))
    bgr = np.asarray(canvas)[..., ::-1].astype(np.float32)
    return bgr, lines


# ---------------------------------------------------------------- camera-like distortions

def _fit_about_center(h_mat: np.ndarray, quads: Sequence[np.ndarray], width: int, height: int,
                      margin_px: float) -> np.ndarray:
    """Shrinks a homography about the image centre until every quad lands inside the frame."""
    c = np.array([[1, 0, width / 2], [0, 1, height / 2], [0, 0, 1]], dtype=np.float64)
    c_inv = np.linalg.inv(c)
    pts = np.concatenate(quads).reshape(-1, 1, 2)
    for _ in range(40):
        out = cv2.perspectiveTransform(pts, h_mat).reshape(-1, 2)
        if (out[:, 0].min() >= margin_px and out[:, 1].min() >= margin_px
                and out[:, 0].max() <= width - 1 - margin_px and out[:, 1].max() <= height - 1 - margin_px):
            return h_mat
        h_mat = c @ np.diag([0.97, 0.97, 1.0]) @ c_inv @ h_mat
    raise AssertionError("ground truth does not fit the frame")   # cannot happen: 0.97**40 ~ 0.3


def _geometry(variant: str, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """3x3 homography from the canvas to the output image for a variant."""
    cx, cy = width / 2, height / 2
    if variant in ("rotated", "upside_down"):
        angle = rng.uniform(-8, 8) if variant == "rotated" else 180.0 + rng.uniform(-2, 2)
        m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
        return np.vstack([m, [0, 0, 1]])
    if variant == "perspective":
        src = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
        jitter = rng.uniform(-0.07, 0.07, (4, 2)) * np.array([width, height])
        return cv2.getPerspectiveTransform(src, (src + jitter).astype(np.float32)).astype(np.float64)
    return np.eye(3)


def _blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        return cv2.GaussianBlur(img, (0, 0), sigmaX=float(rng.uniform(1.0, 1.8)))
    length = int(rng.integers(5, 10))   # motion blur along a random direction, like a moving conveyor
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    return cv2.filter2D(img, -1, kernel / kernel.sum())


def _hard_geometry(effects: Sequence[str], rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Homography of the hard effects that move pixels: a tilt (upside down one time in three when mixed)
    and a shrink to 0.55-0.7 about a random point (the label further from the camera: smaller text)."""
    h_mat = np.eye(3)
    cx, cy = width / 2, height / 2
    if "tilted" in effects:
        angle = float(rng.uniform(8, 25) * rng.choice((-1, 1)))
        if len(effects) > 1 and rng.random() < 1 / 3:
            angle += 180.0
        h_mat = np.vstack([cv2.getRotationMatrix2D((cx, cy), angle, 1.0), [0, 0, 1]]) @ h_mat
    if "small" in effects:
        s = float(rng.uniform(0.55, 0.7))
        tx, ty = rng.uniform(0.3, 0.7) * width * (1 - s), rng.uniform(0.3, 0.7) * height * (1 - s)
        h_mat = np.array([[s, 0, tx], [0, s, ty], [0, 0, 1]]) @ h_mat
    return h_mat


def _hard_optics(img: np.ndarray, effects: Sequence[str], rng: np.random.Generator) -> np.ndarray:
    if "motion" in effects:   # a conveyor faster than the shutter: 9-15 px along a random direction
        length = int(rng.integers(9, 16))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (length, length))
        img = cv2.filter2D(img, -1, kernel / kernel.sum())
    if "defocus" in effects:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=float(rng.uniform(1.8, 2.6)))
    if "dim" in effects:      # under-exposed: a third of the contrast, darker
        img = 0.35 * img + 0.45 * float(img.mean())
    return img


def render_label(seed: int, *, width: int = 1280, height: int = 960, variant: str = "plain",
                 noise_sigma: float = 3.0) -> Sample:
    """A parcel-label photo with ground truth; deterministic in (seed, width, height, variant, noise_sigma)."""
    if variant not in ALL_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(ALL_VARIANTS)}")
    if variant == "large" and (width, height) == (1280, 960):
        width, height = LARGE_SIZE
    check_fonts()
    img, lines = _render_canvas(seed, width, height, low_contrast=variant == "low_contrast",
                                 grain=noise_sigma > 0)
    rng = np.random.default_rng([seed, ALL_VARIANTS.index(variant)])
    effects: tuple[str, ...] = ()
    if variant == "mixed":
        effects = tuple(rng.choice(_HARD_EFFECTS, size=int(rng.integers(2, 4)), replace=False))
    elif variant in HARD_VARIANTS:
        effects = (variant,)
    if effects:
        h_mat = _hard_geometry(effects, rng, width, height)
    else:
        h_mat = _geometry(variant, rng, width, height)
    if variant in ("rotated", "upside_down", "perspective") or "tilted" in effects:
        h_mat = _fit_about_center(h_mat, [q for _, q in lines], width, height, margin_px=2.0)
    if "small" in effects:    # reflected borders would repeat the shrunk label: fill with the board's colour
        board = tuple(float(v) for v in np.median(img[:4].reshape(-1, 3), axis=0))
        img = cv2.warpPerspective(img, h_mat, (width, height), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=board)
    elif not np.allclose(h_mat, np.eye(3)):
        img = cv2.warpPerspective(img, h_mat, (width, height), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT)
    if variant == "blurred":
        img = _blur(img, rng)
    if variant == "low_contrast":
        img = 0.6 * img + 0.4 * float(img.mean())
    img = _hard_optics(img, effects, rng)
    if "noisy" in effects:    # a high-gain sensor in a dark hall
        noise_sigma = max(noise_sigma, float(rng.uniform(9, 13)))
    if noise_sigma > 0:   # sensor noise, after the optics
        img = img + rng.normal(0.0, noise_sigma, img.shape).astype(np.float32)
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    gt = []
    for text, quad in lines:
        q = cv2.perspectiveTransform(quad.reshape(-1, 1, 2), h_mat).reshape(4, 2)
        gt.append(GroundTruthLine(text, tuple((float(x), float(y)) for x, y in q)))
    return Sample(f"label_{seed:05d}_{variant}", out, tuple(gt), variant)


# ---------------------------------------------------------------- single line crops (recognizer tests)

def random_line_text(seed: int) -> str:
    r = random.Random(seed)
    return r.choice(_BODY_GENERATORS)(r)[0]


def render_line(seed: int, text: str | None = None, *, height: int = 48, blur_sigma: float = 0.0,
                noise_sigma: float = 2.0) -> Sample:
    """One text line cropped like a detector crop: text about 0.6-0.7 of the height, small margins."""
    r = random.Random(seed)
    rng = np.random.default_rng(seed)
    if text is None:
        text = random_line_text(seed)
    is_cjk = any(ord(ch) > 0x2E80 for ch in text)
    kind = r.choice(_CJK_KINDS if is_cjk else _LATIN_KINDS)
    size = _cap_to_size(kind, height * r.uniform(0.5, 0.58))
    font = _font(kind, size)
    left, top, right, bottom = font.getbbox(text, anchor="ls")
    margin_x = int(round(0.25 * height))
    width = int(np.ceil(right - left)) + 2 * margin_x
    baseline = (height - (bottom - top)) / 2 - top
    paper = _paper_texture(rng, height, width, base=r.uniform(215, 245), amp=3.0, grain=noise_sigma > 0)
    canvas = Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8), "L").convert("RGB")
    ImageDraw.Draw(canvas).text((margin_x - left, baseline), text, font=font, fill=_ink(r), anchor="ls")
    img = np.asarray(canvas)[..., ::-1].astype(np.float32)
    if blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=blur_sigma)
    if noise_sigma > 0:
        img = img + rng.normal(0.0, noise_sigma, img.shape).astype(np.float32)
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    box = ((0.0, 0.0), (float(width - 1), 0.0), (float(width - 1), float(height - 1)), (0.0, float(height - 1)))
    return Sample(f"line_{seed:05d}", out, (GroundTruthLine(text, box),))


# ---------------------------------------------------------------- datasets on disk

def make_dataset(out_dir: Path | str, n: int, seed: int = 0, variants: Sequence[str] = VARIANTS,
                 noise_sigma: float = 3.0) -> list[Path]:
    """Writes n label PNGs (variants in turn, seeds seed..seed+n-1) and labels.jsonl; returns the PNG paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with open(out_dir / LABELS_FILE, "w", encoding="utf-8") as f:
        for i in range(n):
            sample = render_label(seed + i, variant=variants[i % len(variants)], noise_sigma=noise_sigma)
            path = out_dir / f"{sample.name}.png"
            if not cv2.imwrite(str(path), sample.image, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
                raise OSError(f"cannot write {path}")
            f.write(json.dumps(_record(path.name, sample), ensure_ascii=False) + "\n")
            paths.append(path)
    return paths


def _record(image_name: str, sample: Sample) -> dict:
    return {"image": image_name, **({"kind": sample.kind} if sample.kind else {}),
            "lines": [{"text": ln.text, "box": [[round(x, 2), round(y, 2)] for x, y in ln.box]} for ln in sample.lines]}


def read_labels(dir_path: Path | str) -> dict[str, tuple[GroundTruthLine, ...]]:
    """labels.jsonl of a folder: image file name -> ground-truth lines (empty dict when there is no file)."""
    labels_path = Path(dir_path) / LABELS_FILE
    if not labels_path.is_file():
        return {}
    out = {}
    with open(labels_path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                out[rec["image"]] = tuple(
                    GroundTruthLine(ln["text"], tuple((float(x), float(y)) for x, y in ln["box"]))
                    for ln in rec["lines"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{labels_path}:{n}: malformed record ({exc})") from None
    return out


def read_kinds(dir_path: Path | str) -> dict[str, str]:
    """labels.jsonl of a folder: image file name -> its "kind" (a rendered variant, or any name a user gives
    a group of frames: "night", "hard"), for the images whose record has one."""
    labels_path = Path(dir_path) / LABELS_FILE
    if not labels_path.is_file():
        return {}
    with open(labels_path, encoding="utf-8") as f:
        records = [json.loads(raw) for raw in f if raw.strip()]
    return {rec["image"]: str(rec["kind"]) for rec in records if isinstance(rec, dict) and rec.get("kind")}


def load_dataset(dir_path: Path | str) -> list[Sample]:
    """The samples listed in a folder's labels.jsonl, in file order."""
    dir_path = Path(dir_path)
    labels = read_labels(dir_path)
    if not labels:
        raise FileNotFoundError(f"{dir_path / LABELS_FILE} is missing or empty")
    kinds = read_kinds(dir_path)
    samples = []
    for image_name, lines in labels.items():
        image = cv2.imread(str(dir_path / image_name), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot read image {dir_path / image_name}")
        samples.append(Sample(Path(image_name).stem, image, lines, kinds.get(image_name, "")))
    return samples


def sample_dir() -> Path:
    """The bundled samples (daemon/samples/*.png with labels.jsonl)."""
    return Path(__file__).resolve().parent


BUNDLED_SEED = 100
BUNDLED_VARIANTS = ("plain", "rotated", "upside_down", "perspective")


def write_bundled_samples(out_dir: Path | str | None = None) -> list[Path]:
    """Regenerates daemon/samples/*.png + labels.jsonl (no sensor grain: each PNG stays under 300 KB)."""
    return make_dataset(out_dir or sample_dir(), len(BUNDLED_VARIANTS), seed=BUNDLED_SEED,
                        variants=BUNDLED_VARIANTS, noise_sigma=0.0)


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m daemon.samples.render",
                                description="write rendered label images with labels.jsonl ground truth")
    p.add_argument("out_dir", nargs="?", help="output folder (omit with --bundled)")
    p.add_argument("-n", type=int, default=len(VARIANTS) * 4, help="number of images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated, used in turn; hard ones: {','.join(HARD_VARIANTS)}")
    p.add_argument("--bundled", action="store_true", help="regenerate daemon/samples/*.png")
    args = p.parse_args(argv)
    if args.bundled:
        paths = write_bundled_samples()
    elif args.out_dir:
        paths = make_dataset(args.out_dir, args.n, args.seed, tuple(args.variants.split(",")))
    else:
        p.error("give OUT_DIR or --bundled")
    print(f"wrote {len(paths)} images to {paths[0].parent if paths else '-'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
