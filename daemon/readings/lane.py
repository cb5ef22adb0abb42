"""A Lane: what happens to one camera's OCR'd frames before the recorder: its codes, its filter, its grouping.

Grouping is ``first`` (each frame is a reading: the identity) or ``consensus`` (frames join the labels in view,
daemon/readings/consensus.py; a label that leaves, waits too long or is flushed becomes one voted reading).
Readings come out decided by the camera's filter; the filter records a reading as published only when the recorder
commits it (stored), so a reading the outbox refused is no duplicate of its retry.

Pure apart from the code reader (zxing-cpp, which releases the GIL) and the clock the caller passes: no outbox, no
page, no threads. The work loop's thread calls it; ``look`` (the frame's codes) may run on another thread beside the
frame's OCR (daemon/readings/look_pool.py): it keeps nothing but what the code reader learns.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Optional

from daemon.config import CameraConfig, publish_mode
from daemon.ocr.print_quality import equalized, join_dots
from daemon.ocr.results import OcrResult
from daemon.readings.consensus import NOT_LOOKED, FinishedLabel, LabelTracker, LookedOutlines, label_outlines
from daemon.readings.reading import FrameContext, Reading
from daemon.readings.results_filter import EMPTY, Decision, FilterRules, ResultFilter
from daemon.readings.settle import SettledLabels
from daemon.sources import Frame

log = logging.getLogger(__name__)

GOOD_READ, NO_READ = "good_read", "no_read"   # as daemon/readings/cycle.py's statuses
NOTE_TEXT = 160   # a no-read's note quotes at most this many characters of what was read
# A voting lane with cameras[].codes_settle leaves out the code search of a frame whose labels all have their codes
# settled, but searches every CODE_WATCH_EVERY frames all the same; one with text_settle leaves a frame whose labels
# all have their text settled unread, but reads every TEXT_WATCH_EVERY frames (daemon/readings/settle.py).
CODE_WATCH_EVERY = 3
TEXT_WATCH_EVERY = 4


@dataclass(frozen=True)
class FrameLook:
    """What a frame's image alone gives its lane: its codes, the ms their reading took (None: the camera reads none),
    a voting lane's label outlines (None: none found; NOT_LOOKED: not a voting lane) and whether the codes were
    searched for (False: every label in the frame had its codes settled)."""
    codes: list
    codes_ms: Optional[float]
    outlines: LookedOutlines = NOT_LOOKED
    searched: bool = True


class Lane:
    def __init__(self, cam: CameraConfig):
        self.camera = cam.name
        self.code_formats = tuple(cam.codes)
        self._readers: dict = {}   # code formats -> CodeReader (a read cycle's recipe may name other formats)
        # A folder camera's scans are read once each: a format left out of one (the default list learns which
        # formats a camera's labels carry, for a stream where a label stays in view) would be lost for good.
        self._learn_codes = cam.kind != "folder"
        rules = FilterRules.from_camera(cam)
        self.join_dots_px = cam.join_dots_px
        self.equalize_detection = cam.equalize_detection
        self.tracker: Optional[LabelTracker] = None
        self.label_status = False
        if publish_mode(cam) == "consensus":
            self.tracker = LabelTracker(cam.leave_after_frames, cam.leave_after_s, cam.max_wait_s)
            self.label_status = cam.label_status
            rules = dataclasses.replace(rules, dedup_same_only=True)
        self.filter = ResultFilter(rules)
        self.settle: Optional[SettledLabels] = None   # a voting lane's only
        if self.tracker is not None:
            codes = cam.codes_settle and bool(cam.codes)
            if codes or cam.text_settle:
                self.settle = SettledLabels(CODE_WATCH_EVERY, TEXT_WATCH_EVERY, codes, cam.text_settle)

    @property
    def voting(self) -> bool:
        """A consensus lane: frames are voted on, readings come when labels finish."""
        return self.tracker is not None

    @property
    def pending(self) -> int:
        """Labels being voted on (not yet a reading); 0 for a first-mode lane."""
        return self.tracker.pending if self.tracker is not None else 0

    def read_codes(self, image) -> tuple[list, Optional[float]]:
        """The frame's codes per cameras[].codes (the frame has its ROI applied, like the text) and the ms taken;
        ([], None) when the camera reads none. A reader failure costs the codes of this frame, not its text."""
        from daemon.codes.reader import CodeReader

        formats = self.code_formats
        if not formats:
            return [], None
        t0 = time.perf_counter()
        try:
            # The camera's own reader: what the default list learns (the formats its labels carry) is this camera's.
            reader = self._readers.get(formats) or self._readers.setdefault(
                formats, CodeReader(formats, learn=self._learn_codes))
            codes = reader.read(image)
        except Exception:
            log.exception("%s: reading codes failed", self.camera)
            codes = []
        return codes, (time.perf_counter() - t0) * 1000.0

    @property
    def looks(self) -> bool:
        """Whether ``look`` finds anything: codes, or label outlines for voting."""
        return bool(self.code_formats) or self.tracker is not None

    def outline(self, image) -> FrameLook:
        """The first part of a voting lane's look, before its codes: the frame's label outlines, and whether it is
        searched for codes (``codes_settle``: a frame whose outlines show only labels with their codes settled is
        not, but for one frame in CODE_WATCH_EVERY). Counted: once a frame."""
        outlines = label_outlines(image)
        return FrameLook([], None, outlines, self.settle.search(outlines) if self.settle is not None else True)

    def unread(self, outlines: LookedOutlines) -> bool:
        """Whether the frame with these outlines is left unread (``text_settle``: every label in it had its text
        settled, but for one frame in TEXT_WATCH_EVERY); the work loop's thread asks, once a frame, before the frame's
        post-processing, so the labels are judged on every frame voted on so far."""
        return self.settle is not None and not self.settle.read(outlines)

    def look(self, image, first: Optional[FrameLook] = None) -> FrameLook:
        """The frame's codes (read_codes) and, for a voting lane, what ``outline`` found (first: found already, on the
        work loop's thread), so the look pool reads the codes beside the frame's OCR."""
        if self.tracker is None:
            codes, codes_ms = self.read_codes(image)
            return FrameLook(codes, codes_ms)
        first = first or self.outline(image)
        if not first.searched:
            return dataclasses.replace(first, codes_ms=0.0 if self.code_formats else None)
        codes, codes_ms = self.read_codes(image)
        return dataclasses.replace(first, codes=codes, codes_ms=codes_ms)

    def readings(self, frame: Frame, result, codes: list, codes_ms: Optional[float],
                 outlines: LookedOutlines = NOT_LOOKED, searched: bool = True) -> list[Reading]:
        """The readings this frame makes: first mode, the frame itself (decided); consensus, the labels it
        finished (the frame itself needs no acknowledgement: it is done here). outlines: what look found (None:
        none), so the tracker does not look again; NOT_LOOKED: the tracker looks. searched: the look's. result:
        None for a voting lane's frame left unread (``text_settle``)."""
        if self.tracker is None:
            context = FrameContext.of(frame, result, codes_ms)
            decision = self.filter.decide(result.lines, frame.captured_at, codes)
            return [Reading(self.camera, decision, context, frame.captured_at, tuple(result.lines),
                            [line.box for line in decision.lines], ack=frame.ack, seq=frame.seq)]
        context = FrameContext.of(frame, result if result is not None else OcrResult([], {}), codes_ms)
        finished = self.tracker.observe(frame.captured_at, result.lines if result is not None else (), codes, context,
                                        image=frame.image, outlines=outlines, searched=searched,
                                        read=result is not None)   # its label outlines group the lines
        frame.ack.done()
        return self._finished(finished)

    def due(self, now: float, waiting_since: Optional[float] = None) -> list[Reading]:
        """Labels that left view or waited max_wait_s while the camera sent no frame. waiting_since: when the frame
        waiting for the OCR was captured (a read cycle's lane uses it)."""
        return self._finished(self.tracker.due(now)) if self.tracker else []

    def in_cycle(self) -> bool:
        """Whether a read cycle is in progress or waits to start (its frames go to the OCR first)."""
        return False

    def flush(self, why: str = "", final: bool = False) -> list[Reading]:
        """Every label still being voted on, as a reading now (SIGTERM's drain, SIGHUP's reload: why; final: the
        stop, after which this lane reads nothing more)."""
        return self._finished(self.tracker.flush()) if self.tracker else []

    def _finished(self, labels: list[FinishedLabel]) -> list[Reading]:
        if self.settle is not None:   # a voting lane's: its tracker is there
            self.settle.update(self.tracker)
        return [self._label_reading(label) for label in labels]

    def wants(self, frame: Frame) -> bool:
        """Whether the frame is worth OCR: every frame of a continuous camera is."""
        return True

    def view(self, frame: Frame) -> Optional[Frame]:
        """A wanted frame as it is read: a dot-matrix print's dots joined (join_dots_px), and the copy the detector
        looks in equalized (equalize_detection); a read cycle's recipe may also name an roi. None: no part of it."""
        if self.join_dots_px > 0:
            frame = dataclasses.replace(frame, image=join_dots(frame.image, self.join_dots_px))
        if self.equalize_detection:
            frame = dataclasses.replace(frame, detect_image=equalized(frame.image))
        return frame

    def recorded(self, reading: Reading, result_id: Optional[int]) -> None:
        """The recorder stored the reading (result_id) or could not (None); only a read cycle cares."""

    def commit(self, decision: Decision) -> None:
        """The reading is durably stored: later ones with the same texts within the window are duplicates."""
        self.filter.commit(decision)

    def _label_reading(self, label: FinishedLabel) -> Reading:
        """A finished label through the filter (codes of any of its frames confirm it); captured_at is its first
        frame's, latency, source and evidence its best frame's."""
        first, best = label.first_context, label.best_context
        decision = self.filter.decide(label.lines, first.captured_at, label.codes)
        best_box = {_box_key(line.box): box for line, box in zip(label.lines, label.best_boxes)}
        boxes = [best_box.get(_box_key(line.box)) for line in decision.lines]
        status = label_status(decision, label_seen(label)) if self.label_status else None
        cycle = None if status is None else {"status": status, "trigger_id": None, "trigger_source": None,
                                             "recipe": None, "verification": None}
        if status == NO_READ:
            decision = dataclasses.replace(decision, publish=True)   # a no-read is an output, not an absence
            cycle["note"] = no_read_note(label, decision)
        return Reading(self.camera, decision, best, first.captured_at, tuple(label.lines), boxes,
                       frames=label.frames, cycle=cycle)


def label_seen(label: FinishedLabel) -> bool:
    """Whether anything of a finished label was seen: a line, a code, or lines only ever cut by the frame's border
    (a label that grazed the view). Pure."""
    return bool(label.lines or label.codes or label.fragments)


def no_read_note(label: FinishedLabel, decision: Decision) -> str:
    """Why a label seen was not read, for the person coding it by hand: what was read of it and why the filter
    refused it (bounded: the message and the evidence's why carry it), or that only fragments cut by the frame's
    border were read. Pure."""
    texts = [line.text for line in label.lines if line.text.strip()]
    if texts:
        why = ", ".join(f"{reason} {n}" for reason, n in sorted(decision.rejected.items()) if reason != EMPTY)
        read = " | ".join(texts)
        read = read if len(read) <= NOTE_TEXT else read[:NOTE_TEXT - 1] + "…"
        return f"read, not accepted ({why or 'refused'}): {read}"
    if label.fragments:
        return "only cut by the frame's border: not read whole in any frame"
    return "seen, nothing read"


def label_status(decision: Decision, seen: bool) -> Optional[str]:
    """A consensus label's status: good_read when the filter publishes something of it (text or a code), no_read
    when something of it was seen and nothing accepted; None when it makes no message (a duplicate of one just
    published). Pure."""
    if decision.publish and decision.key:
        return GOOD_READ
    if not decision.key and seen:
        return NO_READ
    return None


def _box_key(box) -> tuple:
    return tuple(tuple(map(float, p)) for p in box)
