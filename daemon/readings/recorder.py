"""The Recorder: the one way a reading leaves the work loop. decide -> outbox row -> commit -> ack -> evidence,
review, page -> wake the sinks.

A reading the filter let through gets its seq (reserved with the frame's ack first, so a folder image read again
after a crash keeps its message id), its payload (daemon/publish/payload.py) and its outbox row, durable on return.
Only then is it committed to its lane's filter (a later duplicate is measured against stored readings only), is
the frame acknowledged (a folder image may go), and do the evidence store, the review topic and the page hear of it.
A reading the outbox refused is released (a folder image is read again later) or, when it can never fit, set aside.

Called from the work loop's thread only. The page and the evidence store are null objects when off.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from daemon.config import Config
from daemon.readings.lane import Lane
from daemon.readings.reading import Reading
from daemon.sources import NO_ACK

log = logging.getLogger("daemon.service")   # the journal has always named the service for stored readings


class Recorder:
    def __init__(self, cfg: Config, outbox, status, unstored, engine: Callable[[], dict],
                 evidence: Callable[[], object], page: Callable[[], object], wake: Callable[[], None]):
        """status: daemon/status.Counters; unstored: daemon/publish/unstored.UnstoredReadings (refusals that are
        losses only once nothing offers the reading again); engine: the pipeline's describe() now; evidence and
        page: the current store and live view (a reload may replace them); wake: tells every sink a row is new."""
        self.cfg = cfg
        self.outbox = outbox
        self.status = status
        self.unstored = unstored
        self._engine = engine
        self._evidence = evidence
        self._page = page
        self._wake = wake

    def record(self, lane: Lane, reading: Reading) -> bool:
        """Stores the reading when its decision says publish; True once it is durable in the outbox."""
        cam, decision = reading.camera, reading.decision
        self.status.decided(cam, decision)
        self._page().rejected(cam, reading.captured_at, decision.rejected, reading.all_lines, decision.lines)
        if reading.triggered_mono is not None and reading.frames:   # a read cycle that read frames has ended,
            self._page().settled(cam, reading.all_lines, decision.lines)   # stored or not: its lines vote no more
        if not decision.publish:
            reading.ack.done()
            return False
        seq = reading.seq if reading.seq is not None else self.outbox.next_seq(cam)
        reading.ack.reserve(seq)   # folder: seq is recorded with the file, so a re-run after a crash keeps the id
        return self._store(lane, reading, seq)

    def _store(self, lane: Lane, reading: Reading, seq: int) -> bool:
        from daemon.publish.payload import result_message, result_topic

        cam, ctx, decision = reading.camera, reading.context, reading.decision
        latency_ms = dict(ctx.timing_ms)
        if ctx.codes_ms is not None:
            latency_ms["codes"] = ctx.codes_ms
        latency_ms["capture_to_outbox"] = max(0.0, (time.time() - ctx.captured_at) * 1000.0)
        if reading.triggered_mono is not None:   # a read cycle: what the PLC waits, from its trigger to the result
            latency_ms["trigger_to_outbox"] = max(0.0, (time.monotonic() - reading.triggered_mono) * 1000.0)
        cycle = {**reading.cycle, "result_id": seq} if reading.cycle is not None else None   # seq: monotonic
        msg_id, payload = result_message(device_id=self.cfg.device_id, camera=cam, seq=seq,
                                         captured_at=reading.captured_at, lines=decision.lines,
                                         latency_ms=latency_ms, engine=self._engine(),
                                         source=ctx.source, codes=decision.codes, frames=reading.frames,
                                         cycle=cycle)
        topic = result_topic(self.cfg.mqtt.topic_prefix, self.cfg.device_id, cam)
        stored = self.outbox.put(cam, topic, msg_id, payload)
        if reading.cycle is not None:   # the trigger board is ready again either way
            lane.recorded(reading, seq if stored else None)
        if not stored:
            reason = getattr(stored, "reason", "")
            if reason == "too_large":
                reading.ack.reject("its reading is larger than outbox.max_bytes")   # can never fit: set aside
            elif reading.ack is NO_ACK:   # a live camera's: lost only if no later frame offers it again
                self.unstored.refused(cam, decision.key, reason, self._window_s(cam), time.monotonic())
            else:
                reading.ack.release()   # a folder image stays and is read again: nothing lost
            return False
        self.unstored.stored(cam, decision.key)
        self.status.stored(cam, latency_ms["capture_to_outbox"])
        if reading.cycle is not None:
            self.status.cycle(cam, reading.cycle["status"], reading.cycle.get("recipe"))
        lane.commit(decision)   # only a stored reading makes later ones duplicates
        reading.ack.done()      # durable: now the file may go
        self._after_store(reading, msg_id)
        # One line per stored reading (de-duplication, or consensus, keeps it to one per label in view).
        texts = " | ".join(line.text for line in decision.lines)
        frames = reading.frames
        log.info("%s #%d stored%s: %s", cam, seq, f" ({frames} frames)" if frames else "",
                 texts if len(texts) <= 160 else texts[:157] + "...")
        self._wake()
        return True

    def _after_store(self, reading: Reading, msg_id: str) -> None:
        """The stored reading's frame and line boxes to the evidence store (queued, never waited for), its id to
        the review topic when a line is below evidence.review_below_confidence, and the reading to the page; a
        failed result's summary (why it failed) to both."""
        from daemon.publish.review import needs_review, review_message, review_topic
        from daemon.readings.fail_summary import fail_summary

        cam, lines = reading.camera, reading.decision.lines
        why = fail_summary(reading.cycle)   # None for a good read: what the page and the evidence say of a fail
        if reading.context.image is not None:
            self._evidence().submit(msg_id, reading.context.image, reading.evidence_boxes, why)
        below = self.cfg.evidence.review_below_confidence
        review = needs_review(lines, below)
        if review:   # after the reading, through the same outbox: a broker outage loses neither
            payload = review_message(msg_id=msg_id, device_id=self.cfg.device_id, camera=cam,
                                     captured_at=reading.captured_at, lines=lines, below=below)
            put = self.outbox.put(cam, review_topic(self.cfg.mqtt.topic_prefix, self.cfg.device_id, cam),
                                  f"{msg_id}/review", payload)
            if put:
                self.status.reviewed(cam)
            else:   # nothing offers a review message again
                self.unstored.lost(getattr(put, "reason", ""))
        self._page().reading(cam, msg_id, reading.captured_at, lines, reading.frames, review,
                             reading.cycle["status"] if reading.cycle else None, why)

    def _window_s(self, cam: str) -> float:
        return next((c.dedup_window_s for c in self.cfg.cameras if c.name == cam), 0.0)
