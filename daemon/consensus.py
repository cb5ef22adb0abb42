"""One consensus reading per label: a label in view is followed across frames and published once.

Pure: no clock, no threads, no models; the caller passes the time (epoch seconds) with every call.
One ``LabelTracker`` per camera (cameras[].publish_mode: consensus).

A frame's lines and codes are grouped into labels (elements whose boxes lie within ``GROUP_GAP`` of the smaller
one's height of each other: lines of one label are stacked closely, two labels side by side are not). Each
label of the frame joins the track it overlaps and reads alike (``match_score``), or starts a new one. A track
is finished, and returned once, when it has not been seen for ``leave_after_frames`` frames of its camera or
``leave_after_s``, or when it has waited ``max_wait_s`` since its first frame (the bound on added latency); a
track finished by the wait stays as a silent placeholder until it leaves, so a label parked in view is published
once. ``flush`` finishes every open track (SIGTERM's drain, SIGHUP's reload).

Voting (``vote_line``): the readings of one line across frames are grouped by length; the length with the most
confidence behind it wins, and its strings are voted position by position, each character weighted by the
confidence of the reading it comes from; the result's confidence is the group's mean confidence times the mean
share of the weight its characters won. Lines are followed within a track by text similarity (``LINE_MATCH``);
a line read in fewer than a third of the track's frames is flicker and dropped.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any, Optional, Sequence

from daemon.ocr.results import TextLine

GROUP_GAP = 1.5        # elements this many (smaller) box heights apart or closer belong to one label
LINE_MATCH = 0.6       # a reading joins a line of its track when it is at least this similar (difflib ratio)
MIN_IOU = 0.05         # a label joins a track it overlaps by this much and reads at least MIN_TEXT_SIM alike ...
MIN_TEXT_SIM = 0.4
STRONG_TEXT_SIM = 0.8  # ... or, without overlap (a fast conveyor), reads this alike
MIN_LINE_SHARE = 1 / 3  # a line seen in fewer of its track's frames than this is dropped


Rect = tuple[float, float, float, float]   # x0, y0, x1, y1


def rect_of(box) -> Rect:
    xs = [float(p[0]) for p in box]
    ys = [float(p[1]) for p in box]
    return min(xs), min(ys), max(xs), max(ys)


def union(a: Rect, b: Rect) -> Rect:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def iou(a: Rect, b: Rect) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area > 0 else 0.0


def _gap(a: Rect, b: Rect) -> float:
    dx = max(0.0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0.0, max(a[1], b[1]) - min(a[3], b[3]))
    return max(dx, dy)


def similarity(a: str, b: str) -> float:
    return SequenceMatcher(None, a, b, autojunk=False).ratio() if a or b else 1.0


@dataclass(frozen=True)
class LabelView:
    """One label as one frame shows it: its lines (reading order kept) and codes."""
    lines: tuple[TextLine, ...]
    codes: tuple = ()
    rect: Rect = (0.0, 0.0, 0.0, 0.0)

    @property
    def texts(self) -> list[str]:
        return [t for t in (line.text.strip() for line in self.lines) if t] + [c.text for c in self.codes]


def group_labels(lines: Sequence[TextLine], codes: Sequence = ()) -> list[LabelView]:
    """The frame's lines and codes as labels: connected components of elements closer than GROUP_GAP heights."""
    items = [(rect_of(x.box), x) for x in (*lines, *codes)]
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, (a, _) in enumerate(items):
        for j in range(i + 1, len(items)):
            b = items[j][0]
            height = max(1.0, min(a[3] - a[1], b[3] - b[1]))
            if _gap(a, b) <= GROUP_GAP * height:
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(items)):
        groups[find(i)].append(i)
    views = []
    for members in sorted(groups.values()):   # in the order of their first element: reading order
        rect = items[members[0]][0]
        for i in members[1:]:
            rect = union(rect, items[i][0])
        views.append(LabelView(tuple(items[i][1] for i in members if i < len(lines)),
                               tuple(items[i][1] for i in members if i >= len(lines)), rect))
    return views


def text_similarity(a: Sequence[str], b: Sequence[str]) -> float:
    """How alike two labels read: each text of a matched to its most similar in b, weighted by length."""
    if not a or not b:
        return 0.0
    total = sum(len(t) for t in a) or 1
    return sum(len(t) * max(similarity(t, u) for u in b) for t in a) / total


def match_score(track_rect: Rect, track_texts: Sequence[str], view: LabelView) -> Optional[float]:
    """The score of a label view joining a track (higher is better); None when it must not."""
    overlap = iou(track_rect, view.rect)
    sim = text_similarity(view.texts, track_texts)
    if (overlap >= MIN_IOU and sim >= MIN_TEXT_SIM) or sim >= STRONG_TEXT_SIM:
        return overlap + sim
    return None


def vote_line(readings: Sequence[TextLine]) -> TextLine:
    """The consensus of one line's readings across frames (see the module doc); its box is the box of the most
    confident reading of the winning text, else of the winning length."""
    by_len: dict[int, list[TextLine]] = defaultdict(list)
    for r in readings:
        by_len[len(r.text)].append(r)
    group = max(by_len.values(), key=lambda g: (sum(r.confidence for r in g), len(g)))
    chars, shares = [], []
    for i in range(len(group[0].text)):
        weight: dict[str, float] = defaultdict(float)
        for r in group:
            weight[r.text[i]] += max(r.confidence, 1e-6)
        ch, w = max(weight.items(), key=lambda kv: kv[1])
        chars.append(ch)
        shares.append(w / sum(weight.values()))
    text = "".join(chars)
    mean_conf = sum(r.confidence for r in group) / len(group)
    confidence = mean_conf * (sum(shares) / len(shares) if shares else 1.0)
    same = [r for r in group if r.text == text]
    best = max(same or group, key=lambda r: r.confidence)
    return TextLine(text, confidence, best.box)


@dataclass
class _Line:
    readings: list[TextLine] = field(default_factory=list)
    order: float = 0.0     # summed index in its frames: mean = reading order within the label

    def last_text(self) -> str:
        return self.readings[-1].text


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


@dataclass
class _Track:
    first_seen: float
    last_seen: float
    rect: Rect
    texts: list[str]
    first_context: Any
    best_context: Any
    best_score: float
    lines: list[_Line] = field(default_factory=list)
    codes: dict = field(default_factory=dict)   # (format, text) -> first Code seen
    frames: int = 0
    missed: int = 0        # frames of the camera since it was last seen
    published: bool = False

    def add(self, now: float, view: LabelView, context: Any) -> None:
        self.frames += 1
        self.last_seen = now
        self.missed = 0
        self.rect = view.rect
        self.texts = view.texts
        score = sum(line.confidence for line in view.lines) + len(view.codes)
        if score > self.best_score:
            self.best_score, self.best_context = score, context
        for code in view.codes:
            self.codes.setdefault((code.format, code.text), code)
        taken: set[int] = set()
        for index, reading in enumerate(view.lines):
            best, best_sim = None, 0.0
            for k, line in enumerate(self.lines):   # the most similar line not yet taken by this frame
                sim = similarity(reading.text, line.last_text())
                if k not in taken and sim >= LINE_MATCH and sim > best_sim:
                    best, best_sim = k, sim
            if best is None:
                self.lines.append(_Line())
                best = len(self.lines) - 1
            taken.add(best)
            self.lines[best].readings.append(reading)
            self.lines[best].order += index

    def finish(self, reason: str) -> FinishedLabel:
        floor = self.frames * MIN_LINE_SHARE
        kept = [line for line in self.lines if len(line.readings) >= floor]
        kept.sort(key=lambda line: line.order / len(line.readings))
        return FinishedLabel([vote_line(line.readings) for line in kept], list(self.codes.values()), self.frames,
                             self.first_seen, self.first_context, self.best_context, reason)


class LabelTracker:
    """Per-camera tracks of the labels in view; see the module doc."""

    def __init__(self, leave_after_frames: int = 3, leave_after_s: float = 1.0, max_wait_s: float = 3.0):
        self.leave_after_frames = leave_after_frames
        self.leave_after_s = leave_after_s
        self.max_wait_s = max_wait_s
        self._tracks: list[_Track] = []

    @property
    def pending(self) -> int:
        """Labels being voted on (not yet published)."""
        return sum(1 for t in self._tracks if not t.published)

    def observe(self, now: float, lines: Sequence[TextLine], codes: Sequence = (),
                context: Any = None) -> list[FinishedLabel]:
        """One frame of the camera (its time, lines, codes and an opaque context returned with the label);
        the labels finished by it."""
        views = [v for v in group_labels(lines, codes) if v.texts]
        pairs = []
        for ti, track in enumerate(self._tracks):
            for vi, view in enumerate(views):
                score = match_score(track.rect, track.texts, view)
                if score is not None:
                    pairs.append((score, ti, vi))
        used_t: set[int] = set()
        used_v: set[int] = set()
        for score, ti, vi in sorted(pairs, reverse=True):   # greedy: the best pairs first
            if ti in used_t or vi in used_v:
                continue
            used_t.add(ti)
            used_v.add(vi)
            self._tracks[ti].add(now, views[vi], context)
        for ti, track in enumerate(self._tracks):
            if ti not in used_t:
                track.missed += 1
        for vi, view in enumerate(views):
            if vi not in used_v:
                track = _Track(now, now, view.rect, view.texts, context, context, -1.0)
                track.add(now, view, context)
                self._tracks.append(track)
        return self.due(now)

    def due(self, now: float) -> list[FinishedLabel]:
        """The labels finished by time alone (the service asks between frames too)."""
        done: list[FinishedLabel] = []
        keep: list[_Track] = []
        for track in self._tracks:
            gone = track.missed >= self.leave_after_frames or now - track.last_seen >= self.leave_after_s
            if gone:
                if not track.published:
                    done.append(track.finish("left"))
                continue
            if not track.published and now - track.first_seen >= self.max_wait_s:
                done.append(track.finish("max_wait"))
                track.published = True   # kept until it leaves, so the same label is not published again
            keep.append(track)
        self._tracks = keep
        return done

    def flush(self) -> list[FinishedLabel]:
        """Every label still being voted on, finished now; the tracker is empty afterwards."""
        done = [t.finish("flush") for t in self._tracks if not t.published]
        self._tracks = []
        return done
