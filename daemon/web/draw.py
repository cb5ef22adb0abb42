"""The page's picture of a frame: its ROI outlined, each line's box, text and confidence, each code, drawn on a
scaled copy. Pure functions of arrays (OpenCV drawing on a new image; the frame itself is never written).

Colours (BGR) say what the filter made of a line: green kept, red rejected, amber still being voted on
(consensus cameras); codes magenta; the ROI outline blue. Labels are drawn with Noto Sans CJK (Debian's
fonts-noto-cjk, which scripts/setup.sh installs) so Chinese text reads as printed; without that font, with
OpenCV's Hershey font, where CJK characters become '?' (the page lists the texts in full beside the picture).
"""
from __future__ import annotations

import functools
import os
from typing import Optional, Sequence

import numpy as np

KEPT = (0, 200, 0)
REJECTED = (0, 0, 255)
VOTING = (0, 190, 255)
CODE = (255, 0, 255)
ROI = (255, 128, 0)
_INK = (255, 255, 255)
# Fonts with CJK glyphs, first found wins (Debian/Ubuntu/JetPack paths of fonts-noto-cjk).
CJK_FONTS = ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc")


@functools.lru_cache(maxsize=8)
def _cjk_font(size_px: int):
    """A PIL font with CJK glyphs at size_px, or None (the Hershey font is used then)."""
    from PIL import ImageFont

    for path in CJK_FONTS:
        if os.path.exists(path):
            try:
                return ImageFont.truetype(path, size_px)
            except OSError:
                continue
    return None


def scale_for(width: int, height: int, max_side: int) -> float:
    """The factor that fits the longer side into max_side (never enlarges)."""
    longest = max(width, height)
    return 1.0 if longest <= max_side or longest == 0 else max_side / float(longest)


def label_text(text: str, confidence: Optional[float] = None, max_chars: int = 32, ascii_only: bool = True) -> str:
    """What is written beside a box: cut to max_chars, the confidence after it; ASCII only for the Hershey font."""
    shown = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text) if ascii_only else \
        "".join(ch for ch in text if ch.isprintable())
    if len(shown) > max_chars:
        shown = shown[:max_chars - 3] + "..."
    return shown if confidence is None else f"{shown} {confidence:.2f}"


def line_colour(accepted: Optional[bool]) -> tuple[int, int, int]:
    return VOTING if accepted is None else (KEPT if accepted else REJECTED)


def annotate(image: np.ndarray, lines: Sequence = (), accepted: Optional[Sequence[bool]] = None,
             codes: Sequence = (), roi: Sequence[int] = (), max_side: int = 1280) -> np.ndarray:
    """A new BGR image: the frame scaled to max_side with the ROI, line boxes and labels, and codes drawn."""
    import cv2

    h, w = image.shape[:2]
    f = scale_for(w, h, max_side)
    out = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA) \
        if f != 1.0 else image.copy()
    thick = max(2, round(max(out.shape[:2]) / 400))
    font_scale = max(0.45, max(out.shape[:2]) / 1600)
    font = _cjk_font(max(12, round(26 * font_scale)))
    labels: list[tuple[str, tuple[int, int], tuple, bool]] = []   # text, anchor, colour, below: drawn last, on top
    if roi:
        # The frame is the ROI crop the OCR saw: its border is the ROI, labelled with the source coordinates.
        cv2.rectangle(out, (0, 0), (out.shape[1] - 1, out.shape[0] - 1), ROI, thick)
        labels.append((f"ROI {roi[0]},{roi[1]} {roi[2]}x{roi[3]}", (thick, thick), ROI, True))
    for i, line in enumerate(lines):
        colour = line_colour(None if accepted is None else bool(accepted[i]))
        pts = _points(line.box, f)
        cv2.polylines(out, [pts], True, colour, thick, cv2.LINE_AA)
        labels.append((label_text(line.text, float(line.confidence), ascii_only=font is None),
                       (int(pts[:, 0, 0].min()), int(pts[:, 0, 1].min())), colour, False))
    for code in codes:
        pts = _points(code.box, f)
        cv2.polylines(out, [pts], True, CODE, thick, cv2.LINE_AA)
        labels.append((label_text(f"{code.format}: {code.text}", ascii_only=font is None),
                       (int(pts[:, 0, 0].min()), int(pts[:, 0, 1].max())), CODE, True))
    if font is None:
        for text, at, colour, below in labels:
            _label(out, text, at, colour, font_scale, below)
    else:
        _labels_pil(out, labels, font)
    return out


def encode_jpeg(image: np.ndarray, quality: int = 80) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def _points(box, f: float) -> np.ndarray:
    return np.array([[round(float(x) * f), round(float(y) * f)] for x, y in box], dtype=np.int32).reshape(-1, 1, 2)


def _labels_pil(out: np.ndarray, labels, font) -> None:
    """The labels with a CJK font: text on a filled bar of the line's colour, above the box (below at the top).
    Each bar is drawn as its own small image and pasted: converting the whole frame to PIL and back costs more."""
    from PIL import Image, ImageDraw

    h, w = out.shape[:2]
    for text, (ax, ay), colour, below in labels:
        x0, y0, x1, y1 = font.getbbox(text)
        tw, th = min(w, x1 - x0 + 6), min(h, y1 - y0 + 6)
        bar = Image.new("RGB", (tw, th), tuple(reversed(colour)))
        ImageDraw.Draw(bar).text((3 - x0, 3 - y0), text, font=font, fill=_INK)
        x = min(max(0, ax), max(0, w - tw))
        top = ay if below or ay - th < 0 else ay - th
        top = min(top, max(0, h - th))
        out[top:top + th, x:x + tw] = np.asarray(bar)[:, :, ::-1]


def _label(out: np.ndarray, text: str, at: tuple[int, int], colour, font_scale: float, below: bool = False) -> None:
    """Text on a filled box of the line's colour, above the point (below it when asked or at the top edge)."""
    import cv2

    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    x = min(max(0, at[0]), max(0, out.shape[1] - tw - 4))
    top = at[1] if below else at[1] - th - base - 4
    if top < 0:
        top = at[1]
    top = min(top, max(0, out.shape[0] - th - base - 4))
    cv2.rectangle(out, (x, top), (x + tw + 4, top + th + base + 4), colour, -1)
    cv2.putText(out, text, (x + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, _INK, 1, cv2.LINE_AA)
