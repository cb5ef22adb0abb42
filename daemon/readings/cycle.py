"""A read cycle: the lane of a triggered camera (cameras[].mode: triggered). It reads only when asked.

    ready --(a trigger taken from the camera's TriggerBoard)--> collecting: the frames captured after the trigger
    are voted as the consensus tracker votes (daemon/readings/consensus.py), until ``cycle_frames`` frames or
    ``cycle_window_ms`` after the trigger, whichever comes first --> one Reading with a status --> ready

Every cycle ends in exactly one result, whatever was in view: ``good_read`` (read, and what was expected where
something was), ``no_read`` (something in view, nothing accepted, or the expected print not found), ``no_label``
(nothing in view), ``mismatch`` (read, not what was expected: the verification says which characters differ),
``multiple`` (more than one label read where one was expected). The result goes through the recorder and the
outbox like any reading (schema ocr-result/5), so a PLC gets it from every sink and a restart loses none.

A cycle is marked open in a small file (``<state_dir>/cycles/<camera>.json``) from the moment its trigger is
accepted (before any protocol answers "accepted") until its result is stored: a daemon killed in between answers
that trigger after the restart with ``no_read`` and a note, never silence and never a pass. Frames of an idle
triggered camera are not OCR'd at all (``wants``).

Pure apart from that marker file and the code reader; the work loop's thread calls it (``due`` each turn takes the
next trigger and ends a cycle whose window has passed; ``wants`` takes a waiting trigger too, so the first frame
after it is read).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from daemon.atomic_write import write_atomic
from daemon.config import CameraConfig
from daemon.readings.consensus import NOT_LOOKED, FinishedLabel, LabelTracker, LookedOutlines
from daemon.readings.lane import Lane
from daemon.readings.reading import FrameContext, Reading
from daemon.readings.results_filter import FilterRules, ResultFilter
from daemon.readings.verify import (DEFAULT_CONFUSED_MARGIN, DEFAULT_FAINT_BELOW, DEFAULT_SMUDGED_OVER,
                                    NO_READ as VERIFY_NO_READ, PASS, Expectation, ExpectationError, Verification,
                                    verify)
from daemon.sources import CorruptFrame, Frame
from daemon.sources.base import apply_roi

log = logging.getLogger(__name__)

GOOD_READ, NO_READ, NO_LABEL, MISMATCH, MULTIPLE = "good_read", "no_read", "no_label", "mismatch", "multiple"
STATUSES = (GOOD_READ, NO_READ, NO_LABEL, MISMATCH, MULTIPLE)
INTERRUPTED = "interrupted by a daemon restart before its result was stored"
NO_FRAME = ("no frame captured after the trigger was read within cycle_window_ms (is the camera streaming? or the OCR "
            "busy past the window with other cameras' frames: raise cycle_window_ms)")
FRAME_LOST = "the frames taken for this cycle could not be read (the OCR failed: see the log)"
# An open-cycle marker holds a trigger's id, expected text and up to 32 template fields (each bounded by the
# trigger rules), JSON-escaped; read with this bound, so a marker damaged on disk cannot take the memory.
_MARKER_MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class CycleRules:
    frames: int = 5                   # a burst: the cycle ends after this many frames captured after the trigger,
    window_ms: float = 1000.0         # or this long after the trigger, whichever comes first
    expect: Optional[Expectation] = None   # what the camera expects; a trigger's own text replaces it
    one_label: bool = True            # more than one label read is the status multiple
    confused_margin: float = DEFAULT_CONFUSED_MARGIN
    faint_below: float = DEFAULT_FAINT_BELOW
    smudged_over: float = DEFAULT_SMUDGED_OVER
    recipes: Mapping[str, Expectation] = dataclasses.field(default_factory=dict)   # name -> what it expects
    # name -> (code formats, accept_formats) a recipe reads with instead of the camera's; absent: the camera's
    reads: Mapping[str, tuple] = dataclasses.field(default_factory=dict)
    rois: Mapping[str, tuple] = dataclasses.field(default_factory=dict)   # name -> the recipe's roi, where it has one
    # Template field values a trigger need not send: the camera's (key None) and each recipe's (expect_fields)
    fields: Mapping[Optional[str], Mapping[str, str]] = dataclasses.field(default_factory=dict)


def cycle_rules(cam: CameraConfig, recipes=()) -> CycleRules:
    """A triggered camera's rules from its config (cycle_frames, cycle_window_ms, expect_*, one_label) and the
    config's recipes. The active recipe is the board's (daemon/readings/triggers.py)."""
    from daemon.config.recipes import expectation_of

    return CycleRules(frames=cam.cycle_frames, window_ms=cam.cycle_window_ms, expect=expectation_of(cam),
                      one_label=cam.one_label, confused_margin=cam.confused_margin,
                      faint_below=cam.faint_below,
                      # joined dots vary from copy to copy as much as a smudge does (bench/RESULTS.md section 58)
                      smudged_over=cam.smudged_over if cam.join_dots_px == 0 else 0.0,
                      recipes={r.name: expectation_of(r) for r in recipes},
                      reads={r.name: (r.codes, r.accept_formats) for r in recipes
                             if r.codes is not None or r.accept_formats is not None},
                      rois={r.name: tuple(r.roi) for r in recipes if r.roi is not None},
                      fields={holder_name: dict(holder.expect_fields)
                              for holder_name, holder in [(None, cam)] + [(r.name, r) for r in recipes]
                              if holder.expect_fields})


def cycle_status(labels_read: int, anything_in_view: bool, accepted: bool, verification: Optional[Verification],
                 one_label: bool) -> str:
    """The one status of a finished cycle. labels_read: how many labels were read, or where something is expected,
    how many times the expected print is in view (a pack's own other print is not a second label). Pure."""
    if not anything_in_view:
        return NO_LABEL
    if one_label and labels_read > 1:
        return MULTIPLE
    if verification is None:
        return GOOD_READ if accepted else NO_READ
    if verification.verdict == PASS:
        return GOOD_READ
    return NO_READ if verification.verdict == VERIFY_NO_READ else MISMATCH


@dataclass
class _Cycle:
    trigger: object                   # daemon.readings.triggers.Trigger
    tracker: LabelTracker
    frames: int = 0                   # read
    taken: int = 0                    # handed to the OCR: a burst of cycle_frames takes no more
    first: Optional[FrameContext] = None
    last: Optional[FrameContext] = None
    codes: dict = dataclasses.field(default_factory=dict)   # (format, text) -> Code, over the cycle's frames
    recipe: Optional[str] = None      # what it is judged by: the trigger's recipe, else the one active at its start
    note: Optional[str] = None        # why it had no frame to read, where it knows


class CycleLane(Lane):
    def __init__(self, cam: CameraConfig, board, rules: CycleRules, marker_dir: str,
                 today: Callable[[float], datetime.date] = datetime.date.fromtimestamp):
        super().__init__(cam)
        # A cycle's result is never a duplicate and never dropped for being empty: one result per trigger.
        self._rules = dataclasses.replace(FilterRules.from_camera(cam), dedup_window_s=0.0, publish_empty=True)
        self.filter = ResultFilter(self._rules)
        self._camera_codes = self.code_formats
        self.tracker = None
        self.settle = None      # a cycle reads every frame of its burst
        self.board = board
        self.rules = rules
        self._today = today     # the local date of a wall-clock time: a cycle's "today" is its trigger's
        self._kind = cam.kind
        self._cycle: Optional[_Cycle] = None
        self._marker = os.path.join(marker_dir, f"{cam.name}.json")
        state = board.state()
        # A board a reload kept may hold an accepted trigger: the marker is that trigger's, not an interrupted one.
        self._interrupted = None if state.waiting or state.busy else self._read_marker()
        if self._interrupted is not None:
            board.hold()   # busy until the interrupted cycle's answer is stored (recorded)
        board.on_accept = self._write_marker
        board.check = self.check

    # ------------------------------------------------------------ the work loop's calls

    @property
    def voting(self) -> bool:
        return True   # lines seen during a cycle have no verdict until it ends

    @property
    def pending(self) -> int:
        return 1 if self._cycle is not None else 0

    def in_cycle(self) -> bool:
        return self._cycle is not None or self.board.waiting()   # asked every turn of the work loop

    def wants(self, frame: Frame) -> bool:
        """Only frames captured after the trigger of a cycle in progress are OCR'd, and no more than its burst: a
        frame taken while the last one is still in the models would only slow that one down, and be dropped."""
        if self._cycle is None and self._interrupted is None:
            # A trigger accepted while the loop waited for this frame starts its cycle now: due() would start it
            # only after this frame was judged idle and dropped, and the cycle would wait for the next one.
            trigger = self.board.take()
            if trigger is not None:
                self._start(trigger)
        cycle = self._cycle
        return (cycle is not None and frame.captured_at >= cycle.trigger.received_at
                and cycle.taken < self.rules.frames)

    def view(self, frame: Frame) -> Optional[Frame]:
        """The part of a wanted frame the cycle reads: its recipe's roi, where it has one. None: no part of it (the
        roi lies outside this camera's image), and the cycle's result says so."""
        cycle = self._cycle
        roi = self.rules.rois.get(cycle.recipe) if cycle is not None and cycle.recipe else None
        try:
            seen = super().view(frame if roi is None else dataclasses.replace(frame, image=apply_roi(frame.image, roi)))
        except CorruptFrame as exc:
            cycle.note = f"recipe {cycle.recipe}: {exc}"    # type: ignore[union-attr]
            return None
        if cycle is not None and seen is not None:
            cycle.taken += 1
        return seen

    def readings(self, frame: Frame, result, codes: list, codes_ms: Optional[float],
                 outlines: LookedOutlines = NOT_LOOKED, searched: bool = True) -> list[Reading]:
        frame.ack.done()   # live cameras only: nothing to keep
        cycle = self._cycle
        if cycle is None or frame.captured_at < cycle.trigger.received_at:
            return []
        context = FrameContext.of(frame, result, codes_ms)
        cycle.tracker.observe(frame.captured_at, result.lines, codes, context, image=frame.image,
                              outlines=outlines)
        for code in codes:
            cycle.codes.setdefault((code.format, code.text), code)
        cycle.frames += 1
        cycle.first = cycle.first or context
        cycle.last = context
        if cycle.frames >= self.rules.frames:
            return [self._finish()]
        return []

    def due(self, now: float, waiting_since: Optional[float] = None) -> list[Reading]:
        """Ends a cycle whose window has passed, unless a frame captured within it still waits for the OCR (the
        models were busy with another camera's: it is read next, the cycle's camera going first); answers a cycle
        a restart interrupted; starts the next one."""
        out: list[Reading] = []
        if self._interrupted is not None:
            out.append(self._interrupted_reading(self._interrupted))
            self._interrupted = None
        cycle = self._cycle
        if cycle is not None and (now - cycle.trigger.received_at) * 1000.0 >= self.rules.window_ms:
            start, window_s = cycle.trigger.received_at, self.rules.window_ms / 1000.0
            in_window = waiting_since is not None and start <= waiting_since <= start + window_s
            if not (in_window and cycle.taken < self.rules.frames):
                out.append(self._finish())
        if self._cycle is None and not out:
            trigger = self.board.take()
            if trigger is not None:
                self._start(trigger)
        return out

    def flush(self, why: str = "", final: bool = False) -> list[Reading]:
        """A stop or reload during a cycle (why): it ends now, judged on the frames it has; with none, the result's
        note says why it ended, not that no frame came. final (the stop): a trigger accepted and still waiting is
        answered now as well, not left to the next start (a reload's new lane takes it instead)."""
        if self._cycle is None and final and self._interrupted is None:
            trigger = self.board.take()
            if trigger is not None:
                self._start(trigger)
        if self._cycle is None:
            return []
        if why and self._cycle.frames == 0 and not self._cycle.note:
            self._cycle.note = f"ended before a frame was read: {why}"
        return [self._finish()]

    def recorded(self, reading: Reading, result_id: Optional[int]) -> None:
        """The recorder stored the cycle's result as result_id (None: the outbox refused it): the board is ready
        again, and the open-cycle marker goes once the result is durable."""
        status = reading.cycle["status"] if reading.cycle else NO_READ
        self.board.finish(result_id or 0, status)   # a restart's answer too: the board held for it
        if result_id is not None:
            state = self.board.state()
            if not (self._cycle is not None or state.waiting or state.busy):   # else the marker is a newer trigger's
                self._remove_marker()
        else:
            log.error("%s: the result of trigger %s could not be stored; it is answered as interrupted after a "
                      "restart", self.camera, reading.cycle.get("trigger_id") if reading.cycle else None)

    # ------------------------------------------------------------ a cycle

    def _start(self, trigger) -> None:
        # The recipe active when the board accepted the trigger (bound there), not the one active now.
        # repeats: a print expected to carry one line twice is judged on both
        self._cycle = _Cycle(trigger, LabelTracker(leave_after_frames=10 ** 6, leave_after_s=1e9, max_wait_s=1e9,
                                                   repeats=True),
                             recipe=trigger.recipe)
        self._read_as(self._cycle.recipe)
        self._write_marker(trigger)

    def _finish(self) -> Reading:
        cycle, self._cycle = self._cycle, None
        trigger = cycle.trigger
        labels: list[FinishedLabel] = cycle.tracker.flush()
        lines = [line for label in labels for line in label.lines]
        codes = list(cycle.codes.values())
        captured_at = cycle.first.captured_at if cycle.first else trigger.received_at
        decision = self.filter.decide(lines, captured_at, codes)
        verification, note = self._verify(trigger, cycle.recipe, lines, codes)
        if verification is None:
            labels_read = sum(1 for label in labels if any(self._accepted(label, decision)))
        else:
            labels_read = 2 if self._in_view_again(trigger, cycle.recipe, labels, codes, verification) else 1
        status = cycle_status(labels_read, bool(lines or codes), bool(decision.lines), verification,
                              self.rules.one_label)
        if cycle.frames == 0:   # nothing is known of the part: a fail, never no_label (which says "not there")
            status, note = NO_READ, cycle.note or (NO_FRAME if cycle.taken == 0 else FRAME_LOST)
        kept = self._kept(labels, decision, verification)
        context = kept.best_context if kept is not None else (cycle.last or _no_frame(trigger, self._kind))
        boxes = self._boxes(labels, kept, decision.lines + _refused(verification, decision))
        fields = self._fields(trigger, cycle.recipe, status, verification, note)
        return Reading(self.camera, decision, context, captured_at, tuple(lines), boxes, frames=cycle.frames or None,
                       cycle=fields, triggered_mono=trigger.received_mono)

    def _in_view_again(self, trigger, recipe: Optional[str], labels, codes, verification: Verification) -> bool:
        """Whether the expected print is in view twice (one_label's multiple): with the labels the verification
        matched taken away, what is left still holds it; for a code alone, two codes carry its value. The pack's
        brand and product text are other labels, not the expected print again."""
        if verification.kind == "code":
            return sum(1 for code in codes
                       if (self._verify(trigger, recipe, [], [code])[0] or verification).verdict == PASS) > 1
        rest = [line for label in labels if not any(line in verification.lines for line in label.lines)
                for line in label.lines]
        again, _ = self._verify(trigger, recipe, rest, []) if rest else (None, None)
        return again is not None and bool(again.lines) and again.verdict != VERIFY_NO_READ

    def _read_as(self, recipe: Optional[str]) -> None:
        """The code formats and accept_formats this cycle reads with: its recipe's where it names them."""
        codes, formats = self.rules.reads.get(recipe, (None, None)) if recipe else (None, None)
        self.code_formats = tuple(codes) if codes is not None else self._camera_codes
        rules = self._rules if formats is None else dataclasses.replace(self._rules, accept_formats=tuple(formats))
        if rules != self.filter.rules:
            self.filter = ResultFilter(rules)

    def check(self, trigger) -> Optional[str]:
        """Why a trigger about to be accepted could not be judged (a template field it gives no value for), or
        None; the board refuses such a trigger rather than fail its part. Pure: the expectation resolved against
        nothing read."""
        expect = self._expectation(trigger, trigger.recipe)
        if expect is None:
            return None
        try:
            verify(expect, [], [], fields=self._field_values(trigger, trigger.recipe),
                   today=self._today(trigger.received_at))
        except ExpectationError as exc:
            what = f"recipe {trigger.recipe}" if trigger.recipe and not trigger.expected else "the expectation"
            return f"{what} cannot be resolved: {exc}"
        return None

    def _field_values(self, trigger, recipe: Optional[str]) -> dict:
        """The template's field values: the recipe's (or the camera's) expect_fields, the trigger's over them."""
        return {**self.rules.fields.get(recipe or None, {}), **dict(trigger.fields or {})}

    def _expectation(self, trigger, recipe: Optional[str]) -> Optional[Expectation]:
        expect = self.rules.recipes.get(recipe) if recipe else self.rules.expect
        if trigger.expected:   # the PLC's own text for this part
            expect = Expectation(text=trigger.expected, code=expect.code if expect else None)
        return expect

    def _verify(self, trigger, recipe: Optional[str], lines, codes) -> tuple[Optional[Verification], Optional[str]]:
        expect = self._expectation(trigger, recipe)
        if expect is None:
            return None, None
        try:   # dates ("today+30") count from the day the trigger came, not the day the cycle ended
            return verify(expect, lines, codes, fields=self._field_values(trigger, recipe),
                          today=self._today(trigger.received_at),
                          confused_margin=self.rules.confused_margin, faint_below=self.rules.faint_below,
                          smudged_over=self.rules.smudged_over), None
        except ExpectationError as exc:   # refused at acceptance (check); here only after a reload or restart
            return Verification(VERIFY_NO_READ, expect.kind, ""), f"the expectation cannot be resolved: {exc}"

    @staticmethod
    def _accepted(label: FinishedLabel, decision) -> list:
        kept = {_key(line.box) for line in decision.lines}
        return [line for line in label.lines if _key(line.box) in kept]

    @staticmethod
    def _kept(labels: list[FinishedLabel], decision, verification: Optional[Verification]
              ) -> Optional[FinishedLabel]:
        """The label whose best frame is the result's evidence: the one whose frame read the most of the lines the
        verification matched (the line checked must have its crop), then the most of the result's lines, then the
        most confident label. Its frame may read lines of other labels too (_boxes). None: no label."""
        by_frame = _boxes_by_frame(labels)
        checked = [_key(line.box) for line in (verification.lines if verification is not None else ())]
        result = [_key(line.box) for line in decision.lines]

        def read_on(keys, frame: int) -> int:
            return sum(1 for k in keys if frame in by_frame.get(k, {}))

        return max(labels, key=lambda lb: (read_on(checked, lb.best_frame), read_on(result, lb.best_frame),
                                           sum(line.confidence for line in lb.lines)), default=None)

    @staticmethod
    def _boxes(labels: list[FinishedLabel], kept: Optional[FinishedLabel], lines: list) -> list:
        """Each line's box in the kept frame, whichever label it is on; None where that frame did not read it (a
        line voted from the other frames of the burst): no crop, rather than a crop of another frame."""
        if kept is None:
            return [None] * len(lines)
        by_frame = _boxes_by_frame(labels)
        return [by_frame.get(_key(line.box), {}).get(kept.best_frame) for line in lines]

    def _fields(self, trigger, recipe: Optional[str], status: str, verification: Optional[Verification],
                note: Optional[str]) -> dict:
        fields = {"status": status, "trigger_id": trigger.trigger_id, "trigger_source": trigger.source,
                  "recipe": recipe,
                  "verification": verification.to_json() if verification is not None else None}
        if note:
            fields["note"] = note
        return fields

    # ------------------------------------------------------------ the open-cycle marker

    def _write_marker(self, trigger) -> None:
        """The open-cycle marker; its recipe is the one the board bound to the trigger when it accepted it."""
        doc = {"trigger_id": trigger.trigger_id, "source": trigger.source, "recipe": trigger.recipe,
               "expected": trigger.expected, "fields": dict(trigger.fields), "received_at": trigger.received_at}
        try:
            os.makedirs(os.path.dirname(self._marker), exist_ok=True)
            write_atomic(self._marker, json.dumps(doc).encode())
        except OSError as exc:   # the cycle still runs; only a crash in it would go unanswered
            log.error("%s: cannot mark the cycle open (%s): a crash during it would not be answered",
                      self.camera, exc)

    def _remove_marker(self) -> None:
        try:
            os.unlink(self._marker)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error("%s: cannot remove the open-cycle marker %s (%s)", self.camera, self._marker, exc)

    def _read_marker(self) -> Optional[dict]:
        try:
            with open(self._marker, "rb") as f:
                doc = json.loads(f.read(_MARKER_MAX_BYTES))
            return doc if isinstance(doc, dict) else {}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):   # unreadable: still a cycle that was open
            return {}

    def _interrupted_reading(self, marker: dict) -> Reading:
        from daemon.readings.triggers import Trigger

        received = _float_or_none(marker.get("received_at")) or time.time()
        values = marker.get("fields") if isinstance(marker.get("fields"), dict) else {}
        # The monotonic clock does not survive a restart: the trigger's arrival on it, from the wall clock, so the
        # result's trigger_to_outbox says how long the PLC waited, the restart included.
        arrived_mono = time.monotonic() - max(0.0, time.time() - received)
        trigger = Trigger(camera=self.camera, source="restart", trigger_id=_str_or_none(marker.get("trigger_id")),
                          expected=_str_or_none(marker.get("expected")), recipe=_str_or_none(marker.get("recipe")),
                          fields={str(k)[:256]: str(v)[:256] for k, v in list(values.items())[:32]},
                          received_at=received, received_mono=arrived_mono)
        decision = self.filter.decide([], received, [])
        verification, _ = self._verify(trigger, trigger.recipe, [], [])   # what was expected, nothing read
        fields = self._fields(trigger, trigger.recipe, NO_READ, verification, INTERRUPTED)
        return Reading(self.camera, decision, _no_frame(trigger, self._kind), received, (), [], cycle=fields,
                       triggered_mono=arrived_mono)


def _no_frame(trigger, kind: str) -> FrameContext:
    """The context of a result no frame went into (a cycle that saw none, or one a restart interrupted)."""
    return FrameContext(trigger.received_at, {}, None, {"kind": kind})


def _refused(verification: Optional[Verification], decision) -> list:
    """The lines the verification checked that the filter refused (below a confidence, say): not in the message,
    but a fail's evidence shows them, as crops numbered after the message's lines."""
    accepted = {_key(line.box) for line in decision.lines}
    checked = verification.lines if verification is not None else ()
    return [line for line in checked if _key(line.box) not in accepted]


def _key(box) -> tuple:
    return tuple(tuple(map(float, p)) for p in box)


def _boxes_by_frame(labels: list[FinishedLabel]) -> dict:
    """Each voted line (by its box) -> {the tracker's frame number: its box in that frame}, over all labels."""
    return {_key(line.box): boxes for label in labels for line, boxes in zip(label.lines, label.boxes_by_frame)}


def _str_or_none(value) -> Optional[str]:
    return None if value is None else str(value)[:256]


def _float_or_none(value) -> Optional[float]:
    try:
        return float(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None
