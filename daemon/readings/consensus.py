"""One consensus reading per label: a label in view is followed across frames and published once.

Pure: no clock, no threads, no models; the caller passes the time (epoch seconds) with every call, and the frame
itself when the label outlines should come from it. One ``LabelTracker`` per camera (cameras[].publish_mode:
consensus).

Grouping (``group_labels``): a frame's lines and codes are grouped into labels by the label's outline where the
frame is given (``label_outlines``: the frame sampled about ``OUTLINE_WIDTH_PX`` across and blurred, the
background taken as the median colour of its border, every blob that differs from it by ``OUTLINE_CONTRAST``,
eroded by a pixel, is a label or a parcel: its paper against the belt; cheap: bench/RESULTS.md section 13), so every
line and code on one label are one group and two labels with belt between them are two. Elements on no blob
(no frame given, a label filling the view, a border that is not one background) fall back to the layout: boxes
within ``GROUP_GAP`` line heights of each other are one label.

Following (``match_score``): each label of the frame joins the open track it overlaps where the track's motion
predicts it and reads alike (all the track's lines so far against the frame's, measured from the side with less
text, so a frame that read two of its lines still reads like it), or lies right where it is predicted with little
text (``STRONG_IOU``, ``BAD_READ_SHARE``: a frame that read it badly), or reads very alike anywhere; else it starts
a new track. Two labels
whose codes differ never join. Two labels followed apart whose outlines touch in one frame are split again by where
each was predicted (``split_by_tracks``). The whole group moves together: the frame's shift is the median
displacement of the lines that read alike, each line of a track keeps its place on the label, and a reading joins
the line of its track it reads most like near where that line should be (``LINE_NEAR`` line heights), or one that
reads alike anywhere (``LINE_MATCH``).

The frame's border: a label crossing it (entering or leaving the view) shows a part of itself, and the lines cut by
the border read as fragments of themselves ('6', 'P', 'DI'). A label view or a line whose box lies within ``EDGE_PX``
of the border is clipped. A clipped view joins the track whose predicted place, cut by the border, holds most of it
or most of which it holds (``CLIPPED_CONTAIN``), where it reads alike or the clipped one of the two is a part of the
other (``PART_AREA`` of its area, ``BAD_READ_SHARE`` of its text: a label entering, or leaving), so
a label crossing the border is one track, not a fragment entering, the label, and a fragment leaving. In the vote a
line's unclipped readings alone count where it has any, and a line a moving label only showed cut is dropped.

Finishing: a track is finished, and returned once, when it has not been seen for ``leave_after_frames`` frames of
its camera or ``leave_after_s``, or when it has waited ``max_wait_s`` since its first frame clear of the border
(its first frame plus ``max_wait_s`` where none was: the bound on added latency); a track finished by the wait
stays as a silent placeholder until it leaves, following the label's place but keeping no more of its readings, so
a label parked in view is published once. ``flush`` finishes every open track (SIGTERM's drain, SIGHUP's reload).

Voting (``vote_line``): the readings of one line across frames are grouped by length; the length with the most
confidence behind it wins, and its strings are voted position by position, each character weighted by the
confidence of the reading it comes from; the result's confidence is the group's mean confidence times the mean
share of the weight its characters won. A line read in fewer than a third of the track's frames read is flicker
and dropped.

Settling (daemon/readings/settle.py decides with ``settled``): a frame left unread (``observe(read=False)``: every
label in it had its text settled) keeps the labels in view by their outlines alone; it counts in a label's frames,
not in its votes.

Thresholds tuned on bench/sequences.py (bench/RESULTS.md section 13).
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from functools import lru_cache
from typing import Any, NamedTuple, Optional, Sequence, Union

import numpy as np

from daemon.ocr.results import CharCandidate, TextLine

OUTLINE_WIDTH_PX = 160     # outlines are found in the frame shrunk to about this width (1280x960 -> 160x120)
OUTLINE_BLUR_PX = 0.6      # Gaussian sigma at that width: belt texture and print melt, a gap of belt stays
OUTLINE_CONTRAST = 28      # a pixel this far from the background (max over B, G, R) lies on a label
OUTLINE_MIN_AREA = 0.02    # a blob smaller than this share of the frame is no label (glare, a strap)
OUTLINE_MIN_BORDER = 0.5   # the border's median is the background only when this share of the border is near it
GROUP_GAP = 1.5            # layout fallback: elements this many line heights apart or closer are one label
LINE_MATCH = 0.6           # a reading joins a line of its track that reads at least this alike (difflib ratio) ...
LINE_NEAR = 2.0            # ... or, within this many line heights of where that line should be, ...
LINE_MATCH_NEAR = 0.3      # ... reads at least this alike
SHIFT_TEXT_SIM = 0.8       # lines reading this alike measure the label's shift between frames
MIN_IOU = 0.05             # a label joins a track it overlaps (where the track's motion puts it) by this much ...
MIN_TEXT_SIM = 0.5         # ... and reads at least this alike ...
STRONG_TEXT_SIM = 0.8      # ... or, without overlap (a fast conveyor), reads this alike ...
STRONG_IOU = 0.6           # ... or lies where the track's motion puts it, with under BAD_READ_SHARE of its text
BAD_READ_SHARE = 0.5       #     (a frame that read it badly; a label with as much text of its own is another one)
FEW_CHARS = 2              #     or with this many characters or fewer (a blurred label's stray '1' or '7' is no text
                           #     of its own either)
MIN_LINE_SHARE = 1 / 3     # a line read in fewer of its track's frames read than this is dropped
SETTLE_SEARCHES = 2        # a label with a code, searched for codes in this many of its frames, has its codes settled
SETTLED_IOU = 0.5          # a frame's outline this close to where a label in view is predicted is that label ...
SETTLED_STEPS = 3          # ... predicted this many frames ahead at most (the look runs a frame or two behind)
TEXT_SETTLED_IOU = 0.8     # a frame is left unread only where each outline lies this close to a settled label's place
                           # (another label taking a settled one's place a frame later is read, not taken for it)
EDGE_PX = 2.0              # a box this close to the frame's border is cut by it (the detector's boxes reach it)
CLIPPED_CONTAIN = 0.5      # a clipped view joins a track whose predicted place (cut by the border) overlaps it by this
                           # share of the smaller of the two, where it reads alike or one is a part of the other:
PART_AREA = 0.8            # at most this share of the other's area, and BAD_READ_SHARE of its text
STALL_FRAMES = 3           # no frame for this many of the camera's usual intervals (leave_after_s at least): an outage


Rect = tuple[float, float, float, float]   # x0, y0, x1, y1


def rect_of(box) -> Rect:
    xs = [float(p[0]) for p in box]
    ys = [float(p[1]) for p in box]
    return min(xs), min(ys), max(xs), max(ys)


def union(a: Rect, b: Rect) -> Rect:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def shifted(r: Rect, dx: float, dy: float) -> Rect:
    return r[0] + dx, r[1] + dy, r[2] + dx, r[3] + dy


def centre(r: Rect) -> tuple[float, float]:
    return (r[0] + r[2]) / 2.0, (r[1] + r[3]) / 2.0


def iou(a: Rect, b: Rect) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area > 0 else 0.0


def predicted_overlap(rect: Rect, last: Rect, vx: float, vy: float) -> float:
    """How well rect lies where a label last at `last`, moving (vx, vy) a frame, is one to SETTLED_STEPS frames
    on: the best IoU of those."""
    return max(iou(rect, shifted(last, vx * k, vy * k)) for k in range(1, SETTLED_STEPS + 1))


def clipped(r: Rect, frame: Optional[Rect]) -> bool:
    """Whether r lies within EDGE_PX of the frame's border (frame: 0, 0, width, height; None: not known)."""
    return bool(border_sides(r, frame))


def border_sides(r: Rect, frame: Optional[Rect]) -> frozenset:
    """The sides of the frame's border ("left", "top", "right", "bottom") that r reaches within EDGE_PX of, or past."""
    if frame is None:
        return frozenset()
    near = (r[0] <= frame[0] + EDGE_PX, r[1] <= frame[1] + EDGE_PX, r[2] >= frame[2] - 1 - EDGE_PX,
            r[3] >= frame[3] - 1 - EDGE_PX)
    return frozenset(side for side, at in zip(("left", "top", "right", "bottom"), near) if at)


def containment(a: Rect, b: Rect) -> float:
    """The intersection of a and b as a share of the smaller of the two (1: one lies inside the other)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / smaller if smaller > 0 else 0.0


def cut(r: Rect, frame: Rect) -> Rect:
    """r cut by the frame (what of a rect predicted past the border the frame can show)."""
    return max(r[0], frame[0]), max(r[1], frame[1]), min(r[2], frame[2]), min(r[3], frame[3])


def _gap(a: Rect, b: Rect) -> float:
    dx = max(0.0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0.0, max(a[1], b[1]) - min(a[3], b[3]))
    return max(dx, dy)


def similarity(a: str, b: str) -> float:
    """difflib's ratio of two texts (0..1), taken in one order so that either order is one cache entry."""
    return _ratio(a, b) if a <= b else _ratio(b, a)


@lru_cache(maxsize=8192)   # a label's texts are compared with every track's, frame after frame
def _ratio(a: str, b: str) -> float:
    return SequenceMatcher(None, a, b, autojunk=False).ratio() if a or b else 1.0


@lru_cache(maxsize=8192)
def _folded(text: str) -> str:
    """A text as settling compares it: as the CER compares it (a full-width colon is a colon, no whitespace)."""
    from daemon.ocr.evaluate import fold_text   # imported here: that module imports OpenCV, as label_outlines says
    return fold_text(text)


# ---------------------------------------------------------------- outlines: the label paper against the belt

@dataclass(frozen=True)
class Outlines:
    """The label blobs of one frame: a component map at the small scale and each blob's rect in frame pixels."""
    ids: np.ndarray            # int32 (h, w) at OUTLINE_WIDTH_PX; 0 = background
    scale: float               # frame pixels per map pixel
    rects: dict                # blob id -> Rect in frame pixels

    def blob_of(self, r: Rect) -> int:
        """The blob an element lies on: the one under its centre, else the most common under its rect; 0: none."""
        h, w = self.ids.shape
        cx, cy = centre(r)
        x, y = int(cx / self.scale), int(cy / self.scale)
        if 0 <= x < w and 0 <= y < h and self.ids[y, x]:
            return int(self.ids[y, x])
        x0, y0 = max(0, int(r[0] / self.scale)), max(0, int(r[1] / self.scale))
        x1, y1 = min(w, int(math.ceil(r[2] / self.scale))), min(h, int(math.ceil(r[3] / self.scale)))
        under = self.ids[y0:y1, x0:x1]
        under = under[under > 0]
        return int(np.bincount(under).argmax()) if under.size else 0


class _NotLooked:
    """The outlines of a frame nobody looked for yet (observe finds them in its image), as against None: looked for,
    none found (the frame's border is no single background)."""

    def __repr__(self) -> str:
        return "NOT_LOOKED"


NOT_LOOKED = _NotLooked()
# A frame's outlines as a caller hands them on: found, none found (None), or not looked for.
LookedOutlines = Union[Outlines, None, _NotLooked]


def block_centres(image: np.ndarray, step: int) -> np.ndarray:
    """The pixel at the centre of each step x step block: ``image[step // 2::step, step // 2::step]``, made by OpenCV's
    exact nearest-neighbour resize where the frame divides into whole blocks (the same pixels in a quarter of numpy's
    time on 1280x960, and without the GIL)."""
    import cv2
    h, w = image.shape[:2]
    if step > 1 and h % step == 0 and w % step == 0:
        return cv2.resize(image, (w // step, h // step), interpolation=cv2.INTER_NEAREST_EXACT)
    return np.ascontiguousarray(image[step // 2::step, step // 2::step])


def label_outlines(image: np.ndarray) -> Optional[Outlines]:
    """The blobs of the frame (BGR or gray) that stand out from its background (see the module doc); None when
    the frame's border is no single background (a label filling the view), so grouping falls back to the layout."""
    import cv2   # imported here: the CLI imports this module before OpenCV is needed
    step = max(1, image.shape[1] // OUTLINE_WIDTH_PX)
    # One pixel per step x step block, then blurred: a tenth of the cost of INTER_AREA, the same blobs.
    small = cv2.GaussianBlur(block_centres(image, step), (0, 0), OUTLINE_BLUR_PX)
    if small.ndim == 2:
        small = small[..., None]
    border = np.concatenate([small[0], small[-1], small[1:-1, 0], small[1:-1, -1]]).astype(np.int16)
    background = np.median(border, axis=0)
    if np.mean(np.abs(border - background).max(axis=1) <= OUTLINE_CONTRAST) < OUTLINE_MIN_BORDER:
        return None
    diff = [np.abs(small[..., c].astype(np.int16) - int(background[c])) for c in range(small.shape[2])]
    mask = (np.maximum.reduce(diff) > OUTLINE_CONTRAST).astype(np.uint8)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8))   # cuts a neck a map pixel wide: two labels almost touching
    count, ids, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    kept = np.zeros(count, np.int32)   # blob id -> itself if large enough, else 0
    rects = {}
    for i in range(1, count):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        if area >= OUTLINE_MIN_AREA * mask.size:
            kept[i] = i
            rects[i] = (float(x * step), float(y * step), float((x + bw) * step), float((y + bh) * step))
    return Outlines(kept[ids], float(step), rects)


# ---------------------------------------------------------------- grouping a frame's elements into labels

@dataclass(frozen=True)
class LabelView:
    """One label as one frame shows it: its lines (reading order kept) and codes."""
    lines: tuple[TextLine, ...]
    codes: tuple = ()
    rect: Rect = (0.0, 0.0, 0.0, 0.0)
    clipped: bool = False      # it lies at the frame's border: a part of the label (LabelTracker.observe sets it)

    @property
    def texts(self) -> list[str]:
        return [t for t in (line.text.strip() for line in self.lines) if t] + [c.text for c in self.codes]


def group_labels(lines: Sequence[TextLine], codes: Sequence = (),
                 outlines: Optional[Outlines] = None) -> list[LabelView]:
    """The frame's lines and codes as labels: one per outline blob, and by GROUP_GAP for elements on none."""
    items = [(rect_of(x.box), x) for x in (*lines, *codes)]
    blobs = [outlines.blob_of(r) if outlines is not None else 0 for r, _ in items]
    line_heights = [r[3] - r[1] for r, _ in items[:len(lines)]]
    typical_h = statistics.median(line_heights) if line_heights else 1.0
    parent = list(range(len(items)))
    blob_of_root = dict(enumerate(blobs))   # a group's blob (0: none yet)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, (a, _) in enumerate(items):
        for j in range(i + 1, len(items)):
            ri, rj = find(i), find(j)
            bi, bj = blob_of_root[ri], blob_of_root[rj]
            if ri == rj or (bi and bj and bi != bj):
                continue   # two blobs are two labels, however close (also through an element on neither)
            if not (bi and bi == bj):   # a tiny line next to a big one is measured in the typical line height
                b = items[j][0]
                height = max(1.0, min(a[3] - a[1], b[3] - b[1]), typical_h)
                if _gap(a, b) > GROUP_GAP * height:
                    continue
            parent[ri] = rj
            blob_of_root[rj] = bi or bj
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(items)):
        groups[find(i)].append(i)
    views = []
    for members in sorted(groups.values()):   # in the order of their first element: reading order
        rect = items[members[0]][0]
        for i in members[1:]:
            rect = union(rect, items[i][0])
        for blob in {blobs[i] for i in members if blobs[i]}:
            rect = union(rect, outlines.rects[blob])
        views.append(LabelView(tuple(items[i][1] for i in members if i < len(lines)),
                               tuple(items[i][1] for i in members if i >= len(lines)), rect))
    return views


def _inside(point: tuple[float, float], r: Rect) -> bool:
    return r[0] <= point[0] <= r[2] and r[1] <= point[1] <= r[3]


def split_by_tracks(view: LabelView, predicted: Sequence[tuple[Rect, Sequence[str]]]) -> list[LabelView]:
    """A view whose elements lie where two labels followed until now are predicted (two labels so close this
    frame that their outlines touch) as one view per label: each element goes to the one predicted rect that
    holds its centre, else to the nearest, and each part must read like its label; otherwise the view stays whole.
    predicted: (rect, texts) of each label followed until now."""
    elements = [*view.lines, *view.codes]
    centres = [centre(rect_of(e.box)) for e in elements]
    claims = []
    for c in centres:
        holders = [k for k, (r, _) in enumerate(predicted) if _inside(c, r)]
        claims.append(holders[0] if len(holders) == 1 else None)
    parts = sorted({k for k in claims if k is not None})
    if len(parts) < 2:
        return [view]
    for i, c in enumerate(centres):
        if claims[i] is None:
            claims[i] = min(parts, key=lambda k: math.dist(c, centre(predicted[k][0])))
    views = []
    for k in parts:
        members = [i for i in range(len(elements)) if claims[i] == k]
        rect = rect_of(elements[members[0]].box)
        for i in members[1:]:
            rect = union(rect, rect_of(elements[i].box))
        part = LabelView(tuple(elements[i] for i in members if i < len(view.lines)),
                         tuple(elements[i] for i in members if i >= len(view.lines)), rect)
        if not part.lines or _alike(part.texts, predicted[k][1]) < MIN_TEXT_SIM:
            return [view]   # not two labels this frame (a label arriving where one is leaving, say)
        views.append(part)
    return views


# ---------------------------------------------------------------- following a label across frames

def text_similarity(a: Sequence[str], b: Sequence[str]) -> float:
    """How alike two labels read: each text of a matched to its most similar in b, weighted by length."""
    if not a or not b:
        return 0.0
    total = sum(len(t) for t in a) or 1
    return sum(len(t) * _best_similarity(t, b) for t in a) / total


def _best_similarity(t: str, candidates: Sequence[str]) -> float:
    """max(similarity(t, u) for u in candidates), skipping the u that cannot beat the best so far: by their
    lengths (difflib's real_quick_ratio) and by the characters they share (its quick_ratio), both cheap bounds."""
    if t in candidates:
        return 1.0

    def bound(u: str) -> float:
        return 2.0 * min(len(t), len(u)) / ((len(t) + len(u)) or 1)

    best = 0.0
    for u in sorted(candidates, key=bound, reverse=True):
        if bound(u) <= best:
            break   # sorted by the bound: no later u can beat it either
        if _shared_bound(t, u) > best:
            best = max(best, similarity(t, u))
    return best


@lru_cache(maxsize=4096)
def _chars(t: str) -> Counter:
    return Counter(t)


def _shared_bound(t: str, u: str) -> float:
    """2 x the characters t and u share (with repeats) / their lengths: an upper bound of their similarity."""
    a, b = _chars(t), _chars(u)
    if len(a) > len(b):
        a, b = b, a
    # What sum((a & b).values()) counts, without building the intersection Counter (the tracker calls this for
    # every reading and line of every frame).
    get = b.get
    shared = 0
    for char, n in a.items():
        m = get(char, 0)
        shared += n if n < m else m
    return 2.0 * shared / ((len(t) + len(u)) or 1)


def _alike(a: Sequence[str], b: Sequence[str], bound_only: bool = False) -> float:
    """How alike two labels read, measured from the one with less text: a frame that read a few of a label's
    lines, or more than it has seen yet, still reads like it. bound_only: an upper bound, from the characters
    the texts share (cheap)."""
    if sum(map(len, a)) > sum(map(len, b)):
        a, b = b, a
    if not bound_only:
        return text_similarity(a, b)
    if not a or not b:
        return 0.0
    return sum(len(t) * max(_shared_bound(t, u) for u in b) for t in a) / (sum(map(len, a)) or 1)


def match_score(predicted_rect: Rect, track_texts: Sequence[str], track_codes: set,
                view: LabelView, frame: Optional[Rect] = None, track_clipped: bool = False,
                last_rect: Optional[Rect] = None, entering: bool = True) -> Optional[float]:
    """The score of a label view joining a track whose motion puts it at predicted_rect (higher is better);
    None when it must not: too little overlap and likeness, or codes that differ. frame: the frame's rect, where
    the view or the track's last view was clipped by its border (track_clipped; last_rect: where it was last;
    entering: the track was never seen clear of the border): see the module doc."""
    view_codes = {c.text for c in view.codes}
    if view_codes and track_codes and not view_codes & track_codes:
        return None   # one label carries one key: another code is another label
    overlap = iou(predicted_rect, view.rect)
    if frame is not None and (view.clipped or track_clipped):
        # At the border a label lies between where it was and where its motion puts it, cut by the border.
        reach = predicted_rect if last_rect is None else union(last_rect, predicted_rect)
        contain = containment(cut(reach, frame), view.rect)
        if contain >= CLIPPED_CONTAIN:
            sim = _alike(view.texts, track_texts)
            if sim >= MIN_TEXT_SIM or _a_part_of(view, track_texts, track_clipped and entering, last_rect, reach,
                                                 frame):
                return max(overlap, contain) + sim
    if MIN_IOU > overlap and _alike(view.texts, track_texts, bound_only=True) < STRONG_TEXT_SIM:
        return None   # apart, and cannot read alike enough: spared the costly comparison
    sim = _alike(view.texts, track_texts)
    if (overlap >= MIN_IOU and sim >= MIN_TEXT_SIM) or sim >= STRONG_TEXT_SIM:
        return overlap + sim
    if overlap >= STRONG_IOU and _lesser(sum(map(len, view.texts)), sum(map(len, track_texts))):
        return overlap + sim   # a badly read frame of it; a label with as much text of its own is another label
    return None


def _a_part_of(view: LabelView, track_texts: Sequence[str], track_entering: bool, last_rect: Optional[Rect],
               reach: Rect, frame: Rect) -> bool:
    """Whether, of a view and a track where the other lies, the one at the frame's border shows a part of the other.
    A label entering (track_entering: its track at the border, never seen clear of it) shows more of itself from
    frame to frame (its last view, last_rect, at most PART_AREA of the next one's area), at the side it came in at
    or clear of the border. A label leaving shows less of itself and of its text (BAD_READ_SHARE, FEW_CHARS), at the
    side its track is heading out of (reach: its last rect and where its motion puts it). A whole label read badly
    beside the border is no part of the next label that comes there (its area is not), nor is a label leaving part
    of one entering at the other side."""
    if last_rect is None:
        return False
    sides = border_sides(view.rect, frame)
    coming_in = not sides or bool(sides & border_sides(last_rect, frame))
    heading_out = bool(sides & border_sides(reach, frame))
    view_area, track_area = _area(view.rect), _area(last_rect)
    entering = coming_in and track_entering and track_area <= PART_AREA * view_area
    leaving = heading_out and view.clipped and view_area <= PART_AREA * track_area and \
        _lesser(sum(map(len, view.texts)), sum(map(len, track_texts)))
    return entering or leaving


def _lesser(text: int, other: int) -> bool:
    """Whether text characters are a lesser read than other's: at most BAD_READ_SHARE of them, or FEW_CHARS."""
    return text <= BAD_READ_SHARE * other or text <= FEW_CHARS


def _area(r: Rect) -> float:
    return max(0.0, r[2] - r[0]) * max(0.0, r[3] - r[1])


def vote_line(readings: Sequence[TextLine]) -> TextLine:
    """The consensus of one line's readings across frames (see the module doc); its box is the box of the most
    confident reading of the winning text, else of the winning length."""
    by_len: dict[int, list[TextLine]] = defaultdict(list)
    for r in readings:
        by_len[len(r.text)].append(r)
    group = max(by_len.values(), key=lambda g: (sum(r.confidence for r in g), len(g)))
    chars, shares, runners_up = [], [], []
    for i in range(len(group[0].text)):
        weight: dict[str, float] = defaultdict(float)
        for r in group:
            weight[r.text[i]] += max(r.confidence, 1e-6)
        ranked = sorted(weight.items(), key=lambda kv: -kv[1])   # stable: ties keep the first reading's character
        total = sum(weight.values())
        chars.append(ranked[0][0])
        shares.append(ranked[0][1] / total)
        runners_up.append((ranked[1][0], ranked[1][1] / total) if len(ranked) > 1 else None)
    text = "".join(chars)
    mean_conf = sum(r.confidence for r in group) / len(group)
    confidence = mean_conf * (sum(shares) / len(shares) if shares else 1.0)
    same = [r for r in group if r.text == text]
    best = max(same or group, key=lambda r: r.confidence)
    return TextLine(text, confidence, best.box, _voted_chars(text, shares, runners_up, best))


def _voted_chars(text: str, shares: list, runners_up: list, best: TextLine) -> tuple:
    """Each voted character's candidate, for verification's "confused": where the frames disagreed, the vote's
    own runner-up and the shares; where they agreed, the recognizer's runner-up in the best reading (none known:
    no candidate, as for a line made by hand)."""
    own = best.chars if best.text == text and len(best.chars) == len(text) else ()
    if not own and not any(runners_up):
        return ()
    graded = best.chars if len(best.chars) == len(text) else ()   # its print at each place, whatever it read
    out = []
    for i, ch in enumerate(text):
        if runners_up[i] is not None:
            out.append(CharCandidate(ch, shares[i], runners_up[i][0], runners_up[i][1],
                                     graded[i].contrast if graded else 1.0, graded[i].blot if graded else 0.0))
        elif own:
            out.append(own[i])
        else:
            out.append(CharCandidate(ch, 1.0))
    return tuple(out)


class SettledLabel(NamedTuple):
    """A label in view whose codes or text a frame need not be searched or read for (``LabelTracker.settled``)."""
    rect: Rect
    vx: float
    vy: float
    codes: bool    # its codes are settled: a frame showing it need not be searched for codes
    text: bool     # its text is settled: a frame showing it need not be read


@dataclass
class _Line:
    readings: list[TextLine] = field(default_factory=list)
    order: float = 0.0     # summed index in its frames: mean = reading order within the label
    place: tuple[float, float] = (0.0, 0.0)   # its centre in the label's frame of reference (frame minus shift)
    alike: Counter = field(default_factory=Counter)   # its readings, folded (_folded) -> how many
    frames: set = field(default_factory=set)   # the label's read frames (_Track.read) it was read in
    seen_in: list[int] = field(default_factory=list)   # per reading, the tracker's frame it came from
    cut: list[bool] = field(default_factory=list)      # per reading, whether the frame's border cut its box

    def last_text(self) -> str:
        return self.readings[-1].text

    def add(self, reading: TextLine, frame: int, frame_no: int = -1, cut: bool = False) -> None:
        self.readings.append(reading)
        self.seen_in.append(frame_no)
        self.cut.append(cut)
        self.alike[_folded(reading.text)] += 1
        self.frames.add(frame)

    def decided(self) -> bool:
        """Read alike at least twice, and in more than half of its readings (text_settle)."""
        most = max(self.alike.values(), default=0)
        return most >= 2 and 2 * most > len(self.readings)


@dataclass
class FinishedLabel:
    """A label to publish: voted lines, every code seen, and the context of its first and best frames."""
    lines: list[TextLine]
    codes: list
    frames: int
    first_seen: float
    first_context: Any
    best_context: Any
    reason: str            # "left", "max_wait" or "flush"
    # Each voted line's box in the best frame (None where that frame did not read it): the evidence crops.
    best_boxes: list = field(default_factory=list)
    best_frame: int = -1   # the tracker's number of the best frame (LabelTracker counts the frames it observes)
    # Each voted line's boxes by the tracker's frame number: where each frame that read it read it (a read cycle
    # keeps one frame for several labels and crops every line that frame read, whichever label it is on)
    boxes_by_frame: list = field(default_factory=list)
    fragments: int = 0     # lines dropped as only ever read cut by the frame's border (the label was seen, though)


@dataclass
class _Track:
    first_seen: float
    last_seen: float
    rect: Rect
    first_context: Any
    best_context: Any
    best_score: float
    lines: list[_Line] = field(default_factory=list)
    codes: dict = field(default_factory=dict)   # (format, text) -> first Code seen
    best_boxes: dict = field(default_factory=dict)   # line index -> its box in the best frame
    best_frame: int = -1   # the tracker's number of the best frame
    frames: int = 0        # frames it was seen in, read or not
    read: int = 0          # of them, those whose text was read (a label whose text settled need not be)
    searched: int = 0      # of them, those searched for codes (a label whose codes settled need not be)
    missed: int = 0        # frames of the camera since it was last seen
    published: bool = False
    offset: tuple[float, float] = (0.0, 0.0)     # how far the label moved since its first frame
    velocity: tuple[float, float] = (0.0, 0.0)   # its last shift per frame of the camera
    clipped: bool = False  # its last view read lay at the frame's border
    whole_since: Optional[float] = None   # when a view read first showed it clear of the border

    def texts(self) -> list[str]:
        """What the label reads as so far: each of its lines' latest reading and its codes (a frame that read
        only one line of it does not make the label that one line)."""
        return [line.last_text() for line in self.lines] + [text for _, text in self.codes]

    def predicted_rect(self) -> Rect:
        """Where the label's motion puts it in the camera's next frame."""
        steps = self.missed + 1
        return shifted(self.rect, self.velocity[0] * steps, self.velocity[1] * steps)

    def _shift(self, whole: Sequence[TextLine]) -> tuple[float, float]:
        """The label's shift since it was last seen: the median displacement of the view's lines that read alike
        (all its boxes move together), else its velocity carried on. whole: the view's lines the frame's border did
        not cut (a cut box moves with the border, not the label)."""
        by_text = {line.last_text(): line for line in self.lines}
        found = [(reading, by_text[reading.text]) for reading in whole if reading.text in by_text]
        if len(found) < 2:   # too few read the same as last time: the ones that read alike (costlier)
            found = []
            for reading in whole:
                best = max(self.lines, key=lambda ln: similarity(reading.text, ln.last_text()), default=None)
                if best is not None and similarity(reading.text, best.last_text()) >= SHIFT_TEXT_SIM:
                    found.append((reading, best))
        if found:
            moves = [(centre(rect_of(r.box))[0] - ln.place[0], centre(rect_of(r.box))[1] - ln.place[1])
                     for r, ln in found]
            return (statistics.median(m[0] for m in moves) - self.offset[0],
                    statistics.median(m[1] for m in moves) - self.offset[1])
        steps = self.missed + 1
        return self.velocity[0] * steps, self.velocity[1] * steps

    def codes_settled(self) -> bool:
        """Whether a code search of its frames can add nothing: it was published (a parked label's placeholder), or
        its frames were searched SETTLE_SEARCHES times and it has a code (a second code of the label is left to the
        searches that keep watch)."""
        return self.published or (bool(self.codes) and self.searched >= SETTLE_SEARCHES)

    def text_settled(self) -> bool:
        """Whether its text is decided, so that a frame more would hardly change the vote: it was published (a
        parked label's placeholder), or each of its lines that the vote keeps so far was read alike (NFKC-folded,
        whitespace aside) at least twice and in more than half of its readings."""
        if self.published:
            return True
        floor = self.read * MIN_LINE_SHARE
        kept = [line for line in self.lines if len(line.readings) >= floor]
        return bool(kept) and all(line.decided() for line in kept)

    def seen(self, now: float, rect: Rect, codes: Sequence, searched: bool) -> None:
        """A frame left unread showed it at rect (its outline), with these codes on it: in view, moved as the outline
        moved; no reading of its text."""
        (cx, cy), (px, py) = centre(rect), centre(self.rect)
        dx, dy = cx - px, cy - py
        steps = self.missed + 1
        self.velocity = (dx / steps, dy / steps)
        self.offset = (self.offset[0] + dx, self.offset[1] + dy)
        self.frames += 1
        self.searched += searched
        self.last_seen = now
        self.missed = 0
        self.rect = rect
        for code in codes:
            self.codes.setdefault((code.format, code.text), code)

    def add(self, now: float, view: LabelView, context: Any, searched: bool = True, frame_no: int = -1,
            frame: Optional[Rect] = None) -> None:
        self.clipped = view.clipped
        if not view.clipped and self.whole_since is None:
            self.whole_since = now
        cut_off = [clipped(rect_of(reading.box), frame) for reading in view.lines]
        if self.frames:
            dx, dy = self._shift([reading for reading, cut in zip(view.lines, cut_off) if not cut])
            steps = self.missed + 1
            self.velocity = (dx / steps, dy / steps)
            self.offset = (self.offset[0] + dx, self.offset[1] + dy)
        self.frames += 1
        self.read += 1
        self.searched += searched
        self.last_seen = now
        self.missed = 0
        self.rect = view.rect
        if self.published:   # a parked label's placeholder: where it is, not its readings (they would grow forever)
            return
        score = sum(line.confidence for line in view.lines) + len(view.codes)
        became_best = score > self.best_score
        if became_best:
            self.best_score, self.best_context, self.best_frame = score, context, frame_no
        for code in view.codes:
            self.codes.setdefault((code.format, code.text), code)
        pairs = []
        places = []
        for i, reading in enumerate(view.lines):
            r = rect_of(reading.box)
            cx, cy = centre(r)
            places.append((cx - self.offset[0], cy - self.offset[1]))
            height = max(1.0, r[3] - r[1])
            for k, line in enumerate(self.lines):
                dist = math.hypot(places[i][0] - line.place[0], places[i][1] - line.place[1]) / height
                near = max(0.0, 1.0 - dist / LINE_NEAR)   # 1 where the line should be, 0 beyond LINE_NEAR
                floor = LINE_MATCH_NEAR if near > 0 else LINE_MATCH
                if _shared_bound(reading.text, line.last_text()) < floor:
                    continue   # cannot read alike enough: spared difflib
                sim = similarity(reading.text, line.last_text())
                if sim >= floor:
                    pairs.append((sim + near, i, k))
        taken_r: set[int] = set()
        taken_l: set[int] = set()
        target = [-1] * len(view.lines)
        for _, i, k in sorted(pairs, reverse=True):   # greedy: the best pairs first, one reading per line
            if i not in taken_r and k not in taken_l:
                taken_r.add(i)
                taken_l.add(k)
                target[i] = k
        for i, reading in enumerate(view.lines):
            if target[i] < 0:
                self.lines.append(_Line())
                target[i] = len(self.lines) - 1
            line = self.lines[target[i]]
            line.add(reading, self.read, frame_no, cut_off[i])
            line.order += i
            if not cut_off[i] or all(line.cut):   # a cut box's centre is not the line's
                line.place = places[i]
        if became_best:
            self.best_boxes = {target[i]: reading.box for i, reading in enumerate(view.lines)}

    def finish(self, reason: str, repeats: bool = False) -> FinishedLabel:
        """The label's voted lines. A text the label carries twice (FRAGILE on two corners) is one line, unless
        repeats: then two lines read alike in one frame stay two (a read cycle verifies a print of two like lines)."""
        floor = self.read * MIN_LINE_SHARE
        kept = [k for k, line in enumerate(self.lines) if len(line.readings) >= floor]
        fragments = [k for k in kept if all(self.lines[k].cut) and self._moved_past(self.lines[k])]
        kept = [k for k in kept if k not in fragments]
        kept.sort(key=lambda k: self.lines[k].order / len(self.lines[k].readings))
        voted: list[list] = []   # [reading, its box, the frames it was read in, its boxes by frame number]
        for k in kept:
            line = self.lines[k]
            whole = [r for r, c in zip(line.readings, line.cut) if not c]
            reading = vote_line(whole or line.readings)   # a reading cut by the border is a fragment of the line
            boxes = {n: r.box for n, r in zip(line.seen_in, line.readings) if n >= 0}
            # One line followed as two (a frame that put it far from its place) is one line; two lines read alike
            # in one frame are two (a print that carries the same line twice).
            same = next((v for v in voted if v[0].text == reading.text and not (repeats and v[2] & line.frames)),
                        None)
            if same is None:
                voted.append([reading, self.best_boxes.get(k), set(line.frames), boxes])
                continue
            same[2] |= line.frames
            if reading.confidence > same[0].confidence:   # in the place of the first, with the more confident box
                same[0], same[1], same[3] = reading, self.best_boxes.get(k), {**same[3], **boxes}
            else:
                same[3] = {**boxes, **same[3]}
        return FinishedLabel([v[0] for v in voted], list(self.codes.values()), self.frames,
                             self.first_seen, self.first_context, self.best_context, reason,
                             [v[1] for v in voted], self.best_frame, [v[3] for v in voted], len(fragments))

    def waits_from(self, max_wait_s: float) -> float:
        """When its max_wait_s counts from: the first frame that showed it clear of the frame's border (a label
        still entering is not published half read), else its first frame plus max_wait_s (one that stays at the
        border waits twice as long)."""
        return self.whole_since if self.whole_since is not None else self.first_seen + max_wait_s

    def _moved_past(self, line: _Line) -> bool:
        """Whether the label moved at least the line's height: a moving label's line read only cut by the border
        is a fragment (it is read whole in the frames where it is in view); a still label's is all there is."""
        r = rect_of(line.readings[0].box)
        return math.hypot(*self.offset) >= max(1.0, r[3] - r[1])


def _frame_rect(image: Optional[np.ndarray], outlines: LookedOutlines) -> Optional[Rect]:
    """The frame's rect (0, 0, width, height) from its image, else from its outline map; None: not known."""
    if image is not None:
        return 0.0, 0.0, float(image.shape[1]), float(image.shape[0])
    if isinstance(outlines, Outlines):
        h, w = outlines.ids.shape
        return 0.0, 0.0, w * outlines.scale, h * outlines.scale
    return None


class LabelTracker:
    """Per-camera tracks of the labels in view; see the module doc."""

    def __init__(self, leave_after_frames: int = 3, leave_after_s: float = 1.0, max_wait_s: float = 3.0,
                 repeats: bool = False):
        self.leave_after_frames = leave_after_frames
        self.repeats = repeats   # a line printed twice stays two lines (_Track.finish)
        self.leave_after_s = leave_after_s
        self.max_wait_s = max_wait_s
        self._tracks: list[_Track] = []
        self._observed = 0     # frames observed: each frame's number, which FinishedLabel.boxes_by_frame goes by
        self._last_frame: Optional[float] = None   # when the last frame came, and the camera's usual interval:
        self._interval = 0.0                       # no frame for STALL_FRAMES intervals is an outage (below)

    @property
    def pending(self) -> int:
        """Labels being voted on (not yet published)."""
        return sum(1 for t in self._tracks if not t.published)

    def observe(self, now: float, lines: Sequence[TextLine], codes: Sequence = (),
                context: Any = None, image: Optional[np.ndarray] = None,
                outlines: LookedOutlines = NOT_LOOKED, searched: bool = True,
                read: bool = True) -> list[FinishedLabel]:
        """One frame of the camera (its time, lines, codes, an opaque context returned with the label, and the
        frame itself, whose label outlines group the lines: see the module doc); the labels finished by it.
        outlines: label_outlines(image) where the caller looked for them already (None among them: none found, so
        they are not looked for again); NOT_LOOKED: found here. searched: whether the frame was searched for codes
        (False: its codes were left out because every label in it had its codes settled, see ``settled``). read:
        whether its text was read (False: left unread because every label in it had its text settled; lines are
        none then, and its outlines keep those labels in view, see ``_seen_unread``)."""
        if self._last_frame is not None:   # a moving mean, so one late frame does not redefine the camera's pace
            step = max(0.0, now - self._last_frame)
            self._interval = step if self._interval == 0.0 else 0.8 * self._interval + 0.2 * step
        self._last_frame = now
        self._observed += 1
        frame_no = self._observed
        if isinstance(outlines, _NotLooked):
            outlines = label_outlines(image) if image is not None else None
        frame = _frame_rect(image, outlines)
        seen: set[int] = set()
        if not read:
            seen, codes = self._seen_unread(now, outlines, codes, searched)
            lines = ()
        views = [v for v in group_labels(lines, codes, outlines) if v.texts]
        recent = [(t.predicted_rect(), t.texts()) for t in self._tracks if t.missed <= 1]
        views = [part for view in views for part in split_by_tracks(view, recent)]
        if frame is not None:
            views = [dataclasses.replace(v, clipped=clipped(v.rect, frame)) for v in views]
        pairs = []
        for ti, track in enumerate(self._tracks):
            if ti in seen:
                continue
            predicted = track.predicted_rect()
            track_codes = {text for _, text in track.codes}
            track_texts = track.texts()
            for vi, view in enumerate(views):
                score = match_score(predicted, track_texts, track_codes, view, frame, track.clipped, track.rect,
                                    entering=track.whole_since is None)
                if score is not None:
                    pairs.append((score, ti, vi))
        used_t: set[int] = set(seen)
        used_v: set[int] = set()
        for score, ti, vi in sorted(pairs, reverse=True):   # greedy: the best pairs first
            if ti in used_t or vi in used_v:
                continue
            used_t.add(ti)
            used_v.add(vi)
            self._tracks[ti].add(now, views[vi], context, searched, frame_no, frame)
        for ti, track in enumerate(self._tracks):
            if ti not in used_t:
                track.missed += 1
        for vi, view in enumerate(views):
            if vi not in used_v:
                track = _Track(now, now, view.rect, context, context, -1.0)
                track.add(now, view, context, searched, frame_no, frame)
                self._tracks.append(track)
        return self.due(now)

    def due(self, now: float) -> list[FinishedLabel]:
        """The labels finished by time alone (the service asks between frames too)."""
        done: list[FinishedLabel] = []
        keep: list[_Track] = []
        # The camera sent nothing for several of its frame intervals (a reconnect, a stall): every label leaves, so
        # one still in view when it is back is a new reading.
        outage = self._last_frame is not None and \
            now - self._last_frame >= STALL_FRAMES * max(self.leave_after_s, self._interval)
        for track in self._tracks:
            # Time alone is no sign a label left: a camera slower than leave_after_s (max_fps 1, a loaded box)
            # sends no frame in between, and a label parked in view was published again with each one. It has
            # to have been missing from a frame since it was last seen, or the camera be out.
            gone = outage or track.missed >= self.leave_after_frames or (
                track.missed >= 1 and now - track.last_seen >= self.leave_after_s)
            if gone:
                if not track.published:
                    done.append(track.finish("left", self.repeats))
                continue
            if not track.published and now - track.waits_from(self.max_wait_s) >= self.max_wait_s:
                done.append(track.finish("max_wait", self.repeats))
                track.published = True   # kept until it leaves, so the same label is not published again
            keep.append(track)
        self._tracks = keep
        return done

    def _seen_unread(self, now: float, outlines: Optional[Outlines], codes: Sequence,
                     searched: bool) -> tuple[set[int], list]:
        """A frame left unread: each outline is the label in view predicted there (``predicted_overlap`` at least
        SETTLED_IOU, the best first, one label an outline), seen there with the codes on that outline and no
        reading of its text (the votes are those of the frames read). Returns those labels' indexes and the codes
        on no such outline (they join or start a label as in a frame read)."""
        if not isinstance(outlines, Outlines):
            return set(), list(codes)
        blobs = list(outlines.rects)
        pairs = []
        for ti, track in enumerate(self._tracks):
            if track.missed <= 1:
                for bi, blob in enumerate(blobs):
                    overlap = predicted_overlap(outlines.rects[blob], track.rect, *track.velocity)
                    if overlap >= SETTLED_IOU:
                        pairs.append((overlap, ti, bi))
        track_of: dict[int, int] = {}   # blob -> track index
        for _, ti, bi in sorted(pairs, reverse=True):
            if ti not in track_of.values() and blobs[bi] not in track_of:
                track_of[blobs[bi]] = ti
        on_blob: dict[int, list] = defaultdict(list)
        stray = []
        for code in codes:
            blob = outlines.blob_of(rect_of(code.box))
            (on_blob[blob] if blob in track_of else stray).append(code)
        for blob, ti in track_of.items():
            self._tracks[ti].seen(now, outlines.rects[blob], on_blob[blob], searched)
        return set(track_of.values()), stray

    def settled(self) -> tuple[SettledLabel, ...]:
        """Each label in view (seen in the last frame or the one before) whose codes or text are settled, with its
        last rect and velocity per frame: what a later frame's outlines are matched against (daemon/readings/
        settle.py). A new tuple each time, so another thread may hold it while the tracker moves on."""
        out = []
        for t in self._tracks:
            if t.missed <= 1:
                codes, text = t.codes_settled(), t.text_settled()
                if codes or text:
                    out.append(SettledLabel(t.rect, t.velocity[0], t.velocity[1], codes, text))
        return tuple(out)

    def flush(self) -> list[FinishedLabel]:
        """Every label still being voted on, finished now; the tracker is empty afterwards."""
        done = [t.finish("flush", self.repeats) for t in self._tracks if not t.published]
        self._tracks = []
        return done
