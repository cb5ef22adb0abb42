"""Small text at fixed shapes: a frame much larger than the detector's input, read as overlapping input-size tiles.

A letterboxed frame shows its text at the input's scale: 4000x3000 in 736x960 shrinks a plate's characters four
times, below what the detector finds. Tiles keep the engines' fixed shape and see the text closer to native size:

- ``tile_grid``: the frame cut into tiles of the input's aspect at one scale (native where ``max_tiles`` allows,
  else the largest scale that fits; a frame whose short side is shorter than the input's is enlarged until it
  fills it, as far as the letterbox would enlarge it), neighbours overlapping by ``OVERLAP`` of a tile;
- ``stitch``: the tiles' probability maps pasted into one map of the whole frame at that scale, each seam in the
  middle of its overlap, so a line that crosses a seam is one region of the map and DB finds it as one box;
- ``contrast_mask``: the stitched map cleared where the frame has no local contrast (the detector's response to a
  tile of one flat colour);
- ``merge_whole_frame``: the letterboxed whole frame is detected too (one more batch slot), for text too tall to
  lie whole in an overlap; its boxes thicker than half an overlap replace the tiles' boxes inside them, its
  thinner boxes are dropped (the tiles see that text larger).

Lines are then cut from the full-resolution frame as always. Pure functions of shapes and arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from daemon.ocr.db_post import DbBox, DbParams, boxes_from_prob
from daemon.ocr.det_pre import MAX_UPSCALE, Letterbox, letterbox_geometry, to_frame_coords

# Neighbouring tiles share this share of a tile. A line at most half an overlap tall that crosses a seam lies
# whole in both tiles (the seam is the overlap's middle), so each side of the seam comes from a tile that saw it
# all; taller text is left to the whole-frame pass.
OVERLAP = 0.25
# Tiles only when they show the text at least this many times larger than the letterboxed frame does: a smaller
# gain reads little more and costs a batch of tiles.
MIN_GAIN = 1.5
# A grid of fewer tiles is taken when its scale is at least this share of the largest scale max_tiles allow.
NEAR_BEST = 0.9
# A small frame (no longer than the input's long side: a small photograph, a portrait one in a landscape input)
# is tiled when the tiles show it this many times larger than the letterbox: its text is small in the frame's own
# pixels, and RapidOCR and PaddleOCR enlarge such frames until their short side fills the detector's
# (bench/RESULTS.md section 37). A 640x480 frame, which the letterbox already enlarges that far, is not tiled.
SMALL_MIN_GAIN = 1.15


@dataclass(frozen=True)
class TileGrid:
    """Tiles of one frame: rectangles in frame pixels (y0, x0, y1, x1), row by row, at ``scale`` input pixels
    per frame pixel, and where each tile's part of the stitched map begins and ends (its seams)."""
    scale: float
    ys: tuple[tuple[int, int], ...]      # rows of tiles: (y0, y1) in frame pixels
    xs: tuple[tuple[int, int], ...]      # columns of tiles: (x0, x1)
    y_cuts: tuple[int, ...]              # seams between rows in frame pixels, 0 and frame height at the ends
    x_cuts: tuple[int, ...]
    overlap_px: int                      # the smaller of the two overlaps, frame pixels

    @property
    def rects(self) -> list[tuple[int, int, int, int]]:
        return [(y0, x0, y1, x1) for y0, y1 in self.ys for x0, x1 in self.xs]

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)


def _axis(length: int, tile: int, n: int) -> tuple[tuple[tuple[int, int], ...], tuple[int, ...]]:
    """n spans of ``tile`` covering 0..length, spread evenly; and the seams: 0, the middle of each overlap,
    length."""
    if n == 1 or length <= tile:
        return ((0, length),), (0, length)
    starts = [round(i * (length - tile) / (n - 1)) for i in range(n)]
    spans = tuple((s, s + tile) for s in starts)
    cuts = (0, *((spans[i + 1][0] + spans[i][1]) // 2 for i in range(n - 1)), length)
    return spans, cuts


def _scale_for(n: int, length: int, side: int) -> float:
    """The largest scale at which n tiles of ``side`` input pixels, overlapping by OVERLAP, cover ``length``."""
    return side * (n - (n - 1) * OVERLAP) / length


def _fewest(scale: float, length: int, side: int) -> int:
    n = 1
    while _scale_for(n, length, side) < scale:
        n += 1
    return n


def top_scale(frame_h: int, frame_w: int, in_h: int, in_w: int) -> float:
    """The largest scale tiles show a frame at: native size, or for a frame no longer than the input's long side
    (a small frame), the scale at which its short side fills the input's, at most the letterbox's MAX_UPSCALE."""
    if max(frame_h, frame_w) > max(in_h, in_w):
        return 1.0
    return min(MAX_UPSCALE, max(1.0, min(in_h, in_w) / min(frame_h, frame_w)))


def tile_grid(frame_h: int, frame_w: int, in_h: int, in_w: int, max_tiles: int, min_gain: float = MIN_GAIN,
              max_whole_scale: float = 1.0, min_gain_above: float = math.inf) -> TileGrid | None:
    """The tiles that show this frame's text largest with at most ``max_tiles`` detector inputs of in_h x in_w,
    never above ``top_scale``, as few as give that scale; None when they would not show it ``min_gain`` times
    larger than the letterbox does: SMALL_MIN_GAIN for a frame they enlarge, ``min_gain_above`` for one the
    letterbox shows above ``max_whole_scale`` of its size."""
    whole = letterbox_geometry(frame_h, frame_w, in_h, in_w).scale
    top = top_scale(frame_h, frame_w, in_h, in_w)
    if top > 1.0:
        min_gain = SMALL_MIN_GAIN
    elif whole > max_whole_scale:
        min_gain = min_gain_above
    if top < whole * min_gain:        # no grid can show it that much larger
        return None
    grids = [(min(top, _scale_for(rows, frame_h, in_h), _scale_for(cols, frame_w, in_w)), rows * cols)
             for rows in range(1, max_tiles + 1) for cols in range(1, max_tiles // rows + 1)]
    best = max(scale for scale, _ in grids)
    # the fewest tiles within NEAR_BEST of the largest scale (a 1000-wide receipt: one column, not two)
    scale = max((s for s, n in grids if s >= NEAR_BEST * best), key=lambda s: (-min(n for t, n in grids if t >= s), s))
    if scale < whole * min_gain:
        return None
    rows, cols = _fewest(scale, frame_h, in_h), _fewest(scale, frame_w, in_w)
    tile_h, tile_w = min(frame_h, math.ceil(in_h / scale)), min(frame_w, math.ceil(in_w / scale))
    ys, y_cuts = _axis(frame_h, tile_h, rows)
    xs, x_cuts = _axis(frame_w, tile_w, cols)
    # the overlap each seam has at least (frame pixels)
    overlaps = [a[1] - b[0] for spans in (ys, xs) for a, b in zip(spans, spans[1:])]
    return TileGrid(scale, ys, xs, y_cuts, x_cuts, min(overlaps, default=min(tile_h, tile_w)))


def stitch(grid: TileGrid, frame_h: int, frame_w: int, maps: Sequence[np.ndarray],
           letterboxes: Sequence[Letterbox]) -> tuple[np.ndarray, Letterbox]:
    """The tiles' probability maps (H x W each, in grid.rects order, the tile in each one's top-left
    new_h x new_w) as one map of the frame at the grid's scale, each tile giving the part between its seams.
    Returns the map and the letterbox that maps its pixels to the frame (to_frame_coords)."""
    out_h, out_w = max(1, round(frame_h * grid.scale)), max(1, round(frame_w * grid.scale))
    out = np.zeros((out_h, out_w), dtype=np.float32)
    ry, rx = out_h / frame_h, out_w / frame_w             # map pixels per frame pixel, per axis
    rects = iter(zip(maps, letterboxes))
    for (y0, y1), cy0, cy1 in zip(grid.ys, grid.y_cuts, grid.y_cuts[1:]):
        for (x0, x1), cx0, cx1 in zip(grid.xs, grid.x_cuts, grid.x_cuts[1:]):
            prob, lb = next(rects)
            # the tile in map pixels, its own map resized where rounding left it a pixel off
            th, tw = round(y1 * ry) - round(y0 * ry), round(x1 * rx) - round(x0 * rx)
            tile = prob[: lb.new_h, : lb.new_w]
            if tile.shape != (th, tw):
                tile = cv2.resize(np.ascontiguousarray(tile), (tw, th), interpolation=cv2.INTER_LINEAR)
            top, bottom = round(cy0 * ry), round(cy1 * ry)
            left, right = round(cx0 * rx), round(cx1 * rx)
            oy, ox = round(y0 * ry), round(x0 * rx)
            out[top:bottom, left:right] = tile[top - oy: bottom - oy, left - ox: right - ox]
    return out, Letterbox(grid.scale, out_h, out_w)


# The detector, shown a tile that is mostly one flat colour (a wall, the face of a pack, the sky: most tiles of a
# large photo), marks much of it as text; the letterboxed frame never shows it that large. So the stitched map
# keeps text only near local contrast: a grey-level range of at least MIN_CONTRAST within CONTRAST_PX map pixels
# (after a 1-pixel blur that takes sensor noise down), the mask grown by TEXT_REACH_PX to cover a line's kernel
# between its strokes.
MIN_CONTRAST = 16
CONTRAST_PX = 9
TEXT_REACH_PX = 15


def contrast_mask(frame: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """uint8 out_h x out_w: 1 where the frame (BGR), scaled to out_h x out_w, has local contrast (see above)."""
    gray = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (out_w, out_h), interpolation=cv2.INTER_AREA)
    gray = cv2.GaussianBlur(gray, (0, 0), 1.0)
    block = np.ones((CONTRAST_PX, CONTRAST_PX), dtype=np.uint8)
    spread = cv2.subtract(cv2.dilate(gray, block), cv2.erode(gray, block))
    mask = (spread >= MIN_CONTRAST).astype(np.uint8)
    return cv2.dilate(mask, np.ones((2 * TEXT_REACH_PX + 1, 2 * TEXT_REACH_PX + 1), dtype=np.uint8))


def thickness(quad: np.ndarray) -> float:
    """The shorter side of a quad's smallest rotated rectangle."""
    return float(min(cv2.minAreaRect(np.asarray(quad, dtype=np.float32).reshape(-1, 1, 2))[1]))


def _inside(quad: np.ndarray, outer: np.ndarray) -> float:
    """The share of quad's area inside outer (both convex, frame pixels)."""
    area = abs(float(cv2.contourArea(quad)))
    if area <= 0:
        return 0.0
    common, _ = cv2.intersectConvexConvex(quad, outer)
    return float(common) / area


def merge_whole_frame(whole: Sequence[np.ndarray], tiled: Sequence[np.ndarray], tall_px: float) -> tuple[list[int], list[int]]:
    """Which boxes (quads in frame pixels) to keep: whole-frame boxes at least ``tall_px`` thick (frame pixels:
    text too tall for the tiles' overlap), and the tiles' boxes except those lying mostly inside one of them.
    Returns (indices into whole, indices into tiled)."""
    tall = [i for i, q in enumerate(whole) if thickness(q) >= tall_px]
    keep = [j for j, q in enumerate(tiled) if not any(_inside(q, whole[i]) >= 0.5 for i in tall)]
    return tall, keep


@dataclass(frozen=True)
class TiledMaps:
    """A tiled frame's detector output: the letterboxed frame's map and the tiles' maps stitched."""
    whole: np.ndarray            # H x W map of the letterboxed frame (its letterbox: the detector's)
    stitched: np.ndarray         # the tiles' maps at grid.scale
    stitched_box: Letterbox
    grid: TileGrid


def frame_boxes(prob: np.ndarray | TiledMaps, lb: Letterbox, frame_h: int, frame_w: int, db: DbParams
                ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """DB boxes of one frame's detector output in frame pixels: (text boxes, the recognizer's looser quads)."""
    if not isinstance(prob, TiledMaps):
        return _in_frame(boxes_from_prob(prob[0, : lb.new_h, : lb.new_w], db), lb, frame_h, frame_w)
    whole_text, whole_quads = _in_frame(boxes_from_prob(prob.whole[: lb.new_h, : lb.new_w], db), lb, frame_h, frame_w)
    text, quads = _in_frame(boxes_from_prob(prob.stitched, db), prob.stitched_box, frame_h, frame_w)
    big, small = merge_whole_frame(whole_quads, quads, prob.grid.overlap_px / 2)
    return [whole_text[i] for i in big] + [text[j] for j in small], [whole_quads[i] for i in big] + [quads[j] for j in small]


# tiles_max: 0, per backend. On a GPU a batch of tiles costs about one input; on a 2-core CPU each tile costs a
# whole detector run, so the CPU takes fewer (bench/RESULTS.md section 35).
AUTO_MAX = {"tensorrt": 16, "onnxruntime": 6}
# ocr.tiles auto on the CPU, where each tile is a whole detector run: frames the letterbox shows at this share of
# their size or less (into 736x960: 4:3 from about 2400x1800, 16:9 from 2400 wide, tall receipts), small frames,
# and larger ones only where the tiles show them CPU_AUTO_GAIN_ABOVE times larger than the letterbox: 1920x1080 at
# native size, not 2048x1536 or 1280x960 labels (bench/RESULTS.md sections 35 and 37).
CPU_AUTO_MAX_SCALE = 0.4
CPU_AUTO_GAIN_ABOVE = 2.0


@dataclass(frozen=True)
class TilePolicy:
    max_tiles: int                     # tiles per frame at most
    max_whole_scale: float             # frames whose letterbox scale is above this ...
    min_gain_above: float = math.inf   # ... are tiled only where the tiles show them this many times larger


def tile_policy(mode: str, configured_max: int, backend: str) -> TilePolicy | None:
    """Which frames are tiled, for ocr.tiles and ocr.tiles_max on this backend; None = none."""
    if mode == "off":
        return None
    max_tiles = configured_max or AUTO_MAX.get(backend, AUTO_MAX["onnxruntime"])
    if mode == "auto" and backend != "tensorrt":
        return TilePolicy(max_tiles, CPU_AUTO_MAX_SCALE, CPU_AUTO_GAIN_ABOVE)
    return TilePolicy(max_tiles, 1.0)


def describe_policy(policy: TilePolicy | None) -> str:
    """One line for doctor: which frames are tiled."""
    if policy is None:
        return "off"
    small = f"small frames whose tiles show text {SMALL_MIN_GAIN}x larger"
    if policy.max_whole_scale < 1.0:
        return (f"frames the letterbox shows at {policy.max_whole_scale:.0%} of their size or less, larger ones "
                f"whose tiles show text {policy.min_gain_above}x larger, and {small}, up to {policy.max_tiles} tiles")
    return (f"frames whose tiles show text {MIN_GAIN}x larger than the letterbox ({small}), "
            f"up to {policy.max_tiles} tiles")


def _in_frame(found: list[DbBox], lb: Letterbox, frame_h: int, frame_w: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if not found:
        return [], []
    return (list(to_frame_coords(np.array([b.text for b in found]), lb, frame_h, frame_w)),
            list(to_frame_coords(np.array([b.quad for b in found]), lb, frame_h, frame_w)))
