"""Real barcodes and 2D codes on test images, drawn with zxing-cpp's writer (no other dependency).

``paste_code`` draws a code onto a BGR image (a rendered label from daemon/samples/render.py, say);
``code_label`` makes a small white label with one text line and a code below it: quick to OCR.
"""
from __future__ import annotations

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
