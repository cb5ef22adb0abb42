"""Decoding image files into the BGR uint8 frames the pipeline expects, whatever form they come in.

Pillow does the decoding because it applies EXIF rotation and understands palettes, 16-bit grey and
alpha; a known peer's loader ignores the palette and turns palette PNGs almost black.
"""
from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class ImageError(ValueError):
    """An image that cannot be decoded; the message names the file and why."""


def read_image(path: str | os.PathLike) -> np.ndarray:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror})") from None
    return decode_image(data, name=str(path))


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Encoded bytes -> HxWx3 BGR uint8, upright per EXIF, alpha composited on white."""
    if not data:
        raise ImageError(f"{name}: empty file")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()   # decodes now, so a truncated file fails here and not later
            im = ImageOps.exif_transpose(im)
            rgb = _to_rgb8(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{name}: not a readable image ({exc})") from None
    if rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise ImageError(f"{name}: image is {rgb.shape[1]}x{rgb.shape[0]} px, too small to read")
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _to_rgb8(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        if mode == "F" or a.max() > 65535:
            lo, hi = float(a.min()), float(a.max())       # no fixed range: stretch what is there
            a = (a - lo) * (255.0 / max(hi - lo, 1e-9))
        else:
            a = a * (255.0 / 65535.0)
        grey = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if mode != "RGB":
        im = im.convert("RGB")   # 1, L, CMYK, YCbCr, LAB, HSV
    return np.asarray(im)
