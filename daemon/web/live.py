"""What the page shows of each camera: its latest frame with what was read on it, the last readings, the last
fails (read cycles' and consensus labels' results that are not good_read), the rejects.

The work loop writes here (``frame``, ``settled``, ``reading``, ``rejected``): a few references and a deque append
under one lock, nothing drawn or encoded. The page's threads read it (``latest``, ``camera_view``) and draw only
when asked (daemon/web/draw.py). Nothing here knows the service: it is handed plain values.
"""
from __future__ import annotations

import dataclasses
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class LiveFrame:
    seq: int                        # per camera, counts frames and settled cycles: the page's cache key
    captured_at: float              # epoch s
    image: np.ndarray = field(repr=False, compare=False)   # BGR, as OCR saw it (ROI applied); never written
    lines: tuple = ()               # every TextLine the pipeline read
    accepted: Optional[tuple] = None   # per line, whether the camera's filter kept it; None: consensus, voting
    codes: tuple = ()               # daemon/codes/reader.Code


@dataclass(frozen=True)
class Reading:
    msg_id: str
    captured_at: float
    texts: tuple                    # (text, confidence) per line
    frames: Optional[int] = None    # consensus: frames voted
    review: bool = False            # its id went to the review topic
    status: Optional[str] = None    # a read cycle's or a consensus label's: good_read, no_read, mismatch, ...
    why: Optional[dict] = None      # a fail's: why (daemon/readings/fail_summary.py), shown under the last fails


@dataclass
class Reject:
    at: float
    reasons: dict                   # reason -> lines (or 1 frame)
    texts: tuple                    # the lines not kept, (text, confidence)
    repeats: int = 1                # the same reject on consecutive frames is one entry


def accepted_flags(lines: Sequence, kept: Optional[Sequence]) -> Optional[tuple]:
    """Per line, whether it is among the kept lines, matched by box (the filter may correct a line's text, but
    it carries the line's own box tuple over)."""
    if kept is None:
        return None
    boxes = {_box_key(k.box) for k in kept}
    return tuple(_box_key(line.box) in boxes for line in lines)


def _box_key(box) -> tuple:
    return tuple(map(tuple, box))


class _Camera:
    def __init__(self, readings: int, rejects: int):
        self.latest: Optional[LiveFrame] = None
        self.seq = 0
        self.readings: deque = deque(maxlen=readings)
        self.rejects: deque = deque(maxlen=rejects)
        self.fails: deque = deque(maxlen=readings)   # results whose status is not good_read: kept apart, so a
        #                                              run of good parts does not push the last fail off the page


class LiveView:
    def __init__(self, recent_readings: int = 20, recent_rejects: int = 20):
        self._lock = threading.Lock()
        self._readings_n = recent_readings
        self._rejects_n = recent_rejects
        self._cams: dict[str, _Camera] = {}

    def _cam(self, camera: str) -> _Camera:
        c = self._cams.get(camera)
        if c is None:
            c = self._cams[camera] = _Camera(self._readings_n, self._rejects_n)
        return c

    # ------------------------------------------------------------ the work loop's side

    def frame(self, camera: str, image: np.ndarray, captured_at: float, lines: Sequence,
              kept: Optional[Sequence] = None, codes: Sequence = ()) -> None:
        """The camera's newest OCR'd frame; kept = the lines its filter kept (None while consensus votes)."""
        flags = accepted_flags(lines, kept)
        with self._lock:
            c = self._cam(camera)
            c.seq += 1
            c.latest = LiveFrame(c.seq, captured_at, image, tuple(lines), flags, tuple(codes))

    def settled(self, camera: str, lines: Sequence, kept: Sequence) -> None:
        """A read cycle ended: the latest frame (its last) shows the cycle's voted lines, kept or rejected by its
        result, in place of its own lines marked voting. A triggered camera sends the page no frame until its next
        cycle, so without this they would stay voting. The voted boxes are those of the most confident readings,
        from frames of the same burst."""
        flags = accepted_flags(lines, kept)
        with self._lock:
            c = self._cams.get(camera)
            if c is None or c.latest is None:
                return
            c.seq += 1   # a new seq: the page draws the frame again, in the result's colours
            c.latest = dataclasses.replace(c.latest, seq=c.seq, lines=tuple(lines), accepted=flags)

    def reading(self, camera: str, msg_id: str, captured_at: float, lines: Sequence,
                frames: Optional[int] = None, review: bool = False, status: Optional[str] = None,
                why: Optional[dict] = None) -> None:
        texts = tuple((line.text, float(line.confidence)) for line in lines)
        reading = Reading(msg_id, captured_at, texts, frames, review, status, why)
        with self._lock:
            c = self._cam(camera)
            c.readings.appendleft(reading)
            if status not in (None, "good_read"):
                c.fails.appendleft(reading)

    def rejected(self, camera: str, at: float, reasons: dict, lines: Sequence = (),
                 kept: Sequence = ()) -> None:
        """A frame (or label) with rejected lines or not published at all: the reasons and the lines not kept
        (all its lines when the frame as a whole was rejected, e.g. a duplicate). The same reject seen again
        moves to the top with its count raised, so a label in view for a minute is one entry."""
        if not reasons:
            return
        reasons = {str(k): int(v) for k, v in reasons.items() if v}
        flags = accepted_flags(lines, kept) or ()
        not_kept = [line for line, ok in zip(lines, flags) if not ok] or list(lines)
        texts = tuple((line.text, round(float(line.confidence), 3)) for line in not_kept)
        with self._lock:
            rejects = self._cam(camera).rejects
            same = next((r for r in rejects if r.reasons == reasons and r.texts == texts), None)
            if same is not None:
                rejects.remove(same)
                same.at, same.repeats = at, same.repeats + 1
                rejects.appendleft(same)
            else:
                rejects.appendleft(Reject(at, reasons, texts))

    def forget(self, camera: str, history: bool = True) -> None:
        """A camera removed by a reload (history: its readings, fails and rejects too), or restarted by one (its
        last frame only: the new source's come next)."""
        with self._lock:
            if history:
                self._cams.pop(camera, None)
            elif camera in self._cams:
                self._cams[camera].latest = None

    # ------------------------------------------------------------ the page's side

    def latest(self, camera: str) -> Optional[LiveFrame]:
        with self._lock:
            c = self._cams.get(camera)
            return None if c is None else c.latest

    def camera_view(self, camera: str) -> dict:
        """JSON-ready: the latest frame's seq, time, lines and codes; readings and rejects, newest first."""
        with self._lock:
            c = self._cams.get(camera)
            if c is None:
                return {"frame_seq": 0, "frame_at": None, "lines": [], "codes": [], "readings": [], "rejects": [],
                        "fails": []}
            latest, readings, rejects = c.latest, list(c.readings), [dataclass_copy(r) for r in c.rejects]
            fails = list(c.fails)
        lines = []
        if latest is not None:
            for i, line in enumerate(latest.lines):
                state = "voting" if latest.accepted is None else ("kept" if latest.accepted[i] else "rejected")
                lines.append({"text": line.text, "confidence": round(float(line.confidence), 3), "state": state})
        return {
            "frame_seq": latest.seq if latest else 0,
            "frame_at": latest.captured_at if latest else None,
            "lines": lines,
            "codes": [{"format": code.format, "text": code.text} for code in (latest.codes if latest else ())],
            "readings": [_reading_view(r) for r in readings],
            "fails": [{**_reading_view(r), "why": r.why} for r in fails],   # bounded: fail_summary's bounds
            "rejects": [{"at": r.at, "reasons": r.reasons, "repeats": r.repeats,
                         "texts": [{"text": t, "confidence": round(cf, 3)} for t, cf in r.texts]} for r in rejects],
        }


def _reading_view(r: Reading) -> dict:
    return {"id": r.msg_id, "at": r.captured_at, "frames": r.frames, "review": r.review, "status": r.status,
            "texts": [{"text": t, "confidence": round(cf, 3)} for t, cf in r.texts]}


def dataclass_copy(r: Reject) -> Reject:
    return Reject(r.at, dict(r.reasons), r.texts, r.repeats)


class NoLive:
    """web.enabled false: the same calls from the work loop, nothing kept."""

    def frame(self, camera: str, image, captured_at: float, lines: Sequence, kept: Optional[Sequence] = None,
              codes: Sequence = ()) -> None:
        pass

    def settled(self, camera: str, lines: Sequence, kept: Sequence) -> None:
        pass

    def reading(self, camera: str, msg_id: str, captured_at: float, lines: Sequence,
                frames: Optional[int] = None, review: bool = False, status: Optional[str] = None,
                why: Optional[dict] = None) -> None:
        pass

    def rejected(self, camera: str, at: float, reasons: dict, lines: Sequence = (), kept: Sequence = ()) -> None:
        pass

    def forget(self, camera: str, history: bool = True) -> None:
        pass
