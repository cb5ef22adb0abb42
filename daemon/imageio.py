"""Decoding image files into the BGR uint8 frames the pipeline expects, whatever form they come in.

Pillow does the decoding because it applies EXIF rotation and understands palettes, 16-bit grey and
alpha; a known peer's loader ignores the palette and turns palette PNGs almost black.

Decode limits: a small file can hold a huge image (a 0.2 MB PNG of 12000x12000 pixels takes 1.5 GiB to
decode, an OOM kill on a 4 GB Jetson). ``DecodeLimits`` caps the file size (checked with fstat before the
file is read) and the pixel count (checked from the header, which Pillow's ``Image.open`` reads without
decoding: PNG IHDR, JPEG SOF, ...) before any pixel is decoded; a file over either is ``ImageTooLarge``.
"""
from __future__ import annotations

import errno
import io
import os
import stat
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


# The file names treated as images where a folder is read (folder source, `once`, bench).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


class ImageError(ValueError):
    """An image that cannot be decoded; the message names the file and why."""


class ImageTooLarge(ImageError):
    """Over the decode limits: refused before decoding, and it will not get smaller by waiting."""


class NotARegularFile(ImageError):
    """A symlink (swapped in after the folder was listed), a FIFO or a device: never opened or followed."""


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int = 0   # width x height; 0 = no limit
    max_bytes: int = 0    # file size; 0 = no limit


NO_LIMITS = DecodeLimits()


def read_image(path: str | os.PathLike, limits: DecodeLimits = NO_LIMITS) -> np.ndarray:
    return read_image_file(path, limits)[0]


def read_image_file(path: str | os.PathLike, limits: DecodeLimits = NO_LIMITS,
                    nofollow: bool = False) -> tuple[np.ndarray, os.stat_result]:
    """Decodes a file; also returns its fstat (size and mtime of what was read). Anything but a regular file is
    refused (opened non-blocking, so a FIFO cannot hang the reader); with nofollow, a symlink too (O_NOFOLLOW)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if nofollow:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if nofollow and exc.errno == errno.ELOOP:
            raise NotARegularFile(f"{path}: is a symbolic link, not followed") from None
        raise ImageError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFile(f"{path}: not a regular file")
        if limits.max_bytes and st.st_size > limits.max_bytes:
            raise ImageTooLarge(f"{path}: file is {st.st_size} bytes, over the limit of {limits.max_bytes} "
                                f"(max_file_bytes)")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(limits.max_bytes + 1 if limits.max_bytes else -1)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror})") from None
    finally:
        os.close(fd)
    if limits.max_bytes and len(data) > limits.max_bytes:   # grew between fstat and read
        raise ImageTooLarge(f"{path}: file is over the limit of {limits.max_bytes} bytes (max_file_bytes)")
    return decode_image(data, name=str(path), limits=limits), st


def decode_image(data: bytes, name: str = "<bytes>", limits: DecodeLimits = NO_LIMITS) -> np.ndarray:
    """Encoded bytes -> HxWx3 BGR uint8, upright per EXIF, alpha composited on white."""
    if not data:
        raise ImageError(f"{name}: empty file")
    if limits.max_bytes and len(data) > limits.max_bytes:
        raise ImageTooLarge(f"{name}: {len(data)} bytes, over the limit of {limits.max_bytes} (max_file_bytes)")
    try:
        with warnings.catch_warnings():
            # Our own limit decides; Pillow's DecompressionBombWarning would only add noise to the log.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im_ctx = Image.open(io.BytesIO(data))   # reads the header only
    except Image.DecompressionBombError as exc:   # Pillow's own ceiling, above ours unless ours is off
        raise ImageTooLarge(f"{name}: {exc}") from None
    except UnidentifiedImageError:   # Pillow's message names its in-memory buffer, not the file
        raise ImageError(f"{name}: not an image format this build reads (PNG, JPEG, TIFF, BMP, WebP, ...)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: not a readable image ({exc})") from None
    with im_ctx as im:
        _check_pixels(im, name, limits)
        try:
            im.load()   # decodes now, so a truncated file fails here and not later
            im = ImageOps.exif_transpose(im)
            rgb = _to_rgb8(im)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise ImageError(f"{name}: not a readable image ({exc})") from None
    if rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise ImageError(f"{name}: image is {rgb.shape[1]}x{rgb.shape[0]} px, too small to read")
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _check_pixels(im: Image.Image, name: str, limits: DecodeLimits) -> None:
    if not limits.max_pixels:
        return
    width, height = im.size
    if width * height > limits.max_pixels:
        raise ImageTooLarge(f"{name}: image is {width}x{height} = {width * height} pixels, over the limit of "
                            f"{limits.max_pixels} (max_frame_pixels); not decoded")


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
