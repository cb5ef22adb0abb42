"""Real barcodes and 2D codes on test images, drawn with zxing-cpp's writer (no other dependency).

``paste_code`` draws a code onto a BGR image (a rendered label from daemon/samples/render.py, say);
``code_label`` makes a small white label with one text line and a code below it: quick to OCR;
``code_scene`` puts one code of any common format on a rendered 1280x960 label, as a camera sees it (small,
blurred, at an angle, under glare, turned, light on dark): the codes tests' and bench/codes_cost.py's frames.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def code_image(content: str, fmt: str = "Code128", scale: int = 2, gs1: bool = False) -> np.ndarray:
    """The code alone, grayscale uint8 with its quiet zone; GS1 content is written in HRI form "(00)..."."""
    import zxingcpp
    kwargs = {"gs1": True} if gs1 else {}
    barcode = zxingcpp.create_barcode(content, getattr(zxingcpp.BarcodeFormat, fmt), **kwargs)
    return np.array(zxingcpp.write_barcode_to_image(barcode, scale=scale))


def paste_code(image: np.ndarray, content: str, x: int, y: int, fmt: str = "Code128", scale: int = 2,
               gs1: bool = False, height_px: int = 0) -> np.ndarray:
    """A copy of the BGR image with the code drawn at (x, y); a 1D code is stretched to height_px if set."""
    code = code_image(content, fmt, scale, gs1)
    if height_px and code.shape[0] < height_px:
        code = np.repeat(code[:1], height_px, axis=0) if fmt in _LINEAR else code
    h, w = code.shape[:2]
    out = image.copy()
    region = out[y:y + h, x:x + w]
    region[...] = code[:region.shape[0], :region.shape[1], None]
    return out


_LINEAR = ("Code128", "Code39", "Code93", "Codabar", "ITF", "EAN13", "EAN8", "UPCA", "UPCE")


def code_label(text: str, content: str, fmt: str = "Code128", gs1: bool = False, width: int = 640) -> np.ndarray:
    """A white BGR label: ``text`` in 36 px DejaVu, the code below it."""
    code = code_image(content, fmt, 2, gs1)
    if fmt in _LINEAR:
        code = np.repeat(code[:1], 80, axis=0)
    h = 96 + code.shape[0] + 20
    im = Image.new("RGB", (max(width, code.shape[1] + 40), h), "white")
    ImageDraw.Draw(im).text((20, 24), text, font=ImageFont.truetype(FONT, 36), fill=(20, 20, 20))
    bgr = np.asarray(im)[..., ::-1].copy()
    return paste_code(bgr, content, 20, 96, fmt, 2, gs1, height_px=80)


# ---------------------------------------------------------------- one code of each format in a camera frame

@dataclass(frozen=True)
class FormatSample:
    content: str            # what is written (GS1 element strings in HRI form "(01)...")
    text: str               # what a reader returns as Code.text
    reported: tuple         # the format names a reader may report for it (cameras[].codes names)


FORMAT_SAMPLES = {
    "Code128": FormatSample("EE123456785CN", "EE123456785CN", ("Code128",)),
    "Code39": FormatSample("PART-4711-A", "PART-4711-A", ("Code39",)),
    "Code93": FormatSample("LOT93X17", "LOT93X17", ("Code93",)),
    "Codabar": FormatSample("A40156B", "A40156B", ("Codabar",)),
    "ITF": FormatSample("15400141288763", "15400141288763", ("ITF",)),             # ITF-14 of a carton
    "EAN13": FormatSample("4006381333931", "4006381333931", ("EAN13",)),
    "EAN8": FormatSample("96385074", "96385074", ("EAN8",)),
    "UPCA": FormatSample("036000291452", "0036000291452", ("EAN13", "UPCA")),    # UPC-A is EAN-13 with a 0
    "UPCE": FormatSample("01234565", "0012345000065", ("UPCE",)),                 # reported expanded
    "DataBar": FormatSample("0100012345678905", "(01)00012345678905", ("DataBar",)),
    "DataBarExpanded": FormatSample("(01)98898765432106(3103)001750(17)261130",
                                    "(01)98898765432106(3103)001750(17)261130", ("DataBarExpanded",)),
    "QRCode": FormatSample("EE123456785CN", "EE123456785CN", ("QRCode",)),
    "DataMatrix": FormatSample("(01)04006381333931(10)AB12(17)261130",
                               "(01)04006381333931(10)AB12(17)261130", ("DataMatrix",)),
    "PDF417": FormatSample("1Z999AA10123456784 SHIP TO 4711", "1Z999AA10123456784 SHIP TO 4711", ("PDF417",)),
    "Aztec": FormatSample("TKT-2026-0042-DOCK7", "TKT-2026-0042-DOCK7", ("Aztec",)),
    "MaxiCode": FormatSample("1Z999AA10123456784", "1Z999AA10123456784", ("MaxiCode",)),
}
"""One code per common format as it appears on labels (GS1 DataMatrix on pharma, ITF-14 on cartons, ...)."""

SCENE_VARIANTS = ("plain", "small", "blurred", "perspective", "glare", "turned", "inverted")
"""How a code sits in ``code_scene``'s frame: at an ordinary size (3 px per module); small (2 px per module); out
of focus; seen at an angle; under a specular highlight; turned 90 degrees (a bar code read top to bottom); light
on a dark ground (laser-marked, or a dark label)."""

_MAXICODE_FACTOR = 0.3     # its writer draws about 5.3 px per module at scale 1; the symbol is an inch wide
_PX_PER_MODULE = {"plain": 3.0, "small": 2.0, "blurred": 3.0, "perspective": 3.0, "glare": 3.0, "turned": 2.5,
                  "inverted": 3.0}


def code_scene(fmt: str, seed: int, variant: str = "plain", content: str | None = None,
               gs1: bool | None = None) -> np.ndarray:
    """A 1280x960 BGR camera frame: rendered label ``seed`` with a real ``fmt`` code stuck on it, as ``variant``
    (SCENE_VARIANTS) says; ``content`` defaults to FORMAT_SAMPLES'. Deterministic in its arguments."""
    import random

    import cv2
    content = content if content is not None else FORMAT_SAMPLES[fmt].content
    gs1 = gs1 if gs1 is not None else content.startswith("(")     # GS1 element strings in HRI form
    r = random.Random(f"{fmt}/{seed}/{variant}")
    # Drawn large, then shrunk with area averaging as a camera's pixels would see it.
    writer_scale = 1 if fmt == "MaxiCode" else 4
    code = code_image(content, fmt, writer_scale, gs1)
    if fmt in _LINEAR:                                  # bars as tall as about a fifth of their length
        code = np.repeat(code[:1], code.shape[1] // 5, axis=0)
    factor = _PX_PER_MODULE[variant] / writer_scale
    if fmt == "MaxiCode":                               # a one-inch symbol: larger modules than the others
        factor *= _MAXICODE_FACTOR
    h, w = code.shape[:2]
    code = cv2.resize(code, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)
    pad = 12
    code = cv2.copyMakeBorder(code, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=255)
    if variant == "turned":
        code = np.ascontiguousarray(np.rot90(code, 1 if r.random() < 0.5 else 3))
    if variant == "perspective":                        # each corner moved by up to 12 % of the side
        h, w = code.shape[:2]
        src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        dst = src + np.float32([[r.uniform(-.12, .12) * w, r.uniform(-.12, .12) * h] for _ in range(4)])
        dst -= dst.min(axis=0)
        size = tuple(int(v) + 1 for v in dst.max(axis=0))
        m = cv2.getPerspectiveTransform(src, dst)
        code = cv2.warpPerspective(code, m, size, flags=cv2.INTER_LINEAR, borderValue=255)
    frame = _scene_label(seed).copy()
    h, w = code.shape[:2]
    x, y = r.randint(40, frame.shape[1] - w - 40), r.randint(40, frame.shape[0] - h - 40)
    region = frame[y:y + h, x:x + w].astype(np.float32)
    light, dark = np.float32([r.uniform(225, 250)] * 3), np.float32([25, 25, 30])
    if variant == "inverted":
        light, dark = dark, light
    ink = code.astype(np.float32)[..., None] / 255.0
    region[...] = light * ink + dark * (1.0 - ink)
    frame[y:y + h, x:x + w] = np.clip(region, 0, 255).astype(np.uint8)
    out = frame.astype(np.float32)
    if variant == "blurred":
        out = cv2.GaussianBlur(out, (0, 0), 1.3)
    if variant == "glare":                               # a bright ellipse over part of the code
        yy, xx = np.mgrid[0:out.shape[0], 0:out.shape[1]].astype(np.float32)
        cx, cy = x + r.uniform(0.2, 0.8) * w, y + r.uniform(0.2, 0.8) * h
        rad = 0.35 * max(w, h)
        spot = np.exp(-(((xx - cx) / rad) ** 2 + ((yy - cy) / (0.6 * rad)) ** 2))
        out = out + (255.0 - out) * 0.75 * spot[..., None]
    noise = np.random.default_rng(zlib.crc32(f"{fmt}/{seed}/{variant}".encode())).normal(0.0, 3.0, out.shape)
    return np.clip(np.round(out + noise), 0, 255).astype(np.uint8)


@lru_cache(maxsize=8)
def _scene_label(seed: int) -> np.ndarray:
    from daemon.samples.render import render_label
    return render_label(seed, noise_sigma=0).image
