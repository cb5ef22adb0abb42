"""What "healthy" means, as pure functions: facts in, a verdict with its reasons out; no threads, no I/O.

Two answers, because they are for two readers:
- ``healthy`` is /healthz (200 or 503): is the box doing its job right now? Frames stall, the sender thread is
  dead, the outbox cannot be written (disk full), delivery is wedged: each is a reason.
- ``watchdog_ok`` is whether the work loop keeps pinging systemd: would a restart help? It would for a stalled
  frame loop, a dead sender thread or a wedged delivery (a fresh process reconnects and re-sends); it would not
  for a full disk (the daemon stays up, keeps files in their folder and resumes by itself) nor for a broker
  that is merely down (the outbox queues): those show in /healthz only.

"Wedged" is not "old rows": after an hour offline the oldest row is an hour old the moment the broker is back,
and a restart then would only stop the drain. Delivery is wedged when the broker is connected, rows older than
service.max_undelivered_age_s wait, and delivery has not moved (no acknowledgement, no reconnect, no empty
outbox) for that long either. DeliveryClock keeps "when did delivery last move" from the counters it sees.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol, Sequence


class DeliveryFacts(Protocol):
    """What the publisher and outbox report: daemon.publish.mqtt_client.DeliveryHealth."""
    sender_alive: bool                  # the thread that empties the outbox runs
    network_alive: bool                 # paho's network thread runs
    connected: bool
    oldest_undelivered_age_s: Optional[float]   # None: outbox empty
    failing_rows: int
    dead_letters: int
    outbox_writable: bool               # False while writes fail (disk full)
    outbox_responsive: bool             # False when the outbox lock was not free within health()'s wait
    outbox_stuck_s: float               # how long it has stayed unresponsive (one slow fsync is not stuck)
    sender_idle_s: float                # since the sender last went round its loop
    last_error: str                     # "" when none

    @property
    def needs_restart(self) -> bool:    # the publisher's own word: dead sender, sender or outbox stuck 120 s
        ...


class SinkFacts(Protocol):
    """One output's report: daemon.publish.sinks.base.SinkHealth. A sink that is down (broker or server
    unreachable) is shown, its backlog counted, but is no reason: its rows wait in the outbox, like MQTT's."""
    name: str
    up: bool                            # connected (a client) or serving (a server)
    alive: bool                         # its delivery thread runs
    backlog: int                        # rows it still owes
    idle_s: float                       # since its thread last went round its loop
    last_error: str

    @property
    def needs_restart(self) -> bool:    # dead thread, or stuck 120 s
        ...


@dataclass(frozen=True)
class DeliveryClock:
    """When delivery last moved (monotonic seconds), from successive observations; see observe()."""
    moved_at: float
    acked: int = -1
    connected: bool = False


def observe(clock: DeliveryClock, now: float, *, connected: bool, acked: int, rows: int) -> DeliveryClock:
    """The clock after one look at the publisher: an acknowledgement, an empty outbox or a fresh connect
    moves it to now. Observed rarely, it only moves later than the truth, never earlier."""
    moved = acked != clock.acked or rows == 0 or (connected and not clock.connected)
    return DeliveryClock(moved_at=now if moved else clock.moved_at, acked=acked, connected=connected)


@dataclass(frozen=True)
class Verdict:
    healthy: bool                       # /healthz 200
    watchdog_ok: bool                   # keep sending WATCHDOG=1
    reasons: tuple[str, ...] = field(default=())   # why not, one sentence each; empty when healthy


def assess(*, frames_progressing: bool, stall_timeout_s: float, mqtt_enabled: bool,
           delivery: Optional[DeliveryFacts], rows: int, delivery_still_s: float,
           max_undelivered_age_s: float, sinks: Sequence[SinkFacts] = (),
           lock_lost: Optional[str] = None) -> Verdict:
    """The verdict from the facts. delivery None: nothing known about delivery (no publisher, no report);
    delivery_still_s: seconds since DeliveryClock last moved; sinks: the outputs other than MQTT (whose
    facts are `delivery`); lock_lost: why this daemon no longer holds its outbox's lock (another one took it
    after the file was deleted), which a restart would not mend (it would be refused)."""
    reasons: list[str] = []
    if lock_lost:
        reasons.append(f"another daemon may be running on this outbox: {lock_lost}")
    restart_helps = True
    for sink in sinks:
        error = f" (last error: {sink.last_error})" if sink.last_error else ""
        if not sink.alive:
            reasons.append(f"the {sink.name} sink's thread is dead: nothing is delivered to it "
                           f"({sink.backlog} waiting)" + error)
            restart_helps = False
        elif sink.needs_restart:
            reasons.append(f"the {sink.name} sink is stuck: it has not gone round its loop for {sink.idle_s:.0f} s"
                           + error)
            restart_helps = False
    if not frames_progressing:
        reasons.append(f"no frame made progress within stall_timeout_s={stall_timeout_s:g}")
    if delivery is not None:
        restart_worthy = []
        error = f" (last error: {delivery.last_error})" if delivery.last_error else ""
        if mqtt_enabled and not delivery.sender_alive:
            restart_worthy.append("the MQTT sender thread is dead: nothing is published" + error)
        elif mqtt_enabled and not delivery.network_alive:
            restart_worthy.append("the MQTT network thread (paho) ended: nothing is sent, received or reconnected; "
                                  "its traceback is in the log" + error)
        elif mqtt_enabled and delivery.needs_restart and not delivery.outbox_responsive:
            restart_worthy.append(f"the outbox does not answer: a call has held its lock for "
                                  f"{delivery.outbox_stuck_s:.0f} s" + error)
        elif mqtt_enabled and delivery.needs_restart:
            restart_worthy.append(f"the MQTT sender is stuck: it has not gone round its loop for "
                                  f"{delivery.sender_idle_s:.0f} s" + error)
        elif not delivery.outbox_responsive:
            # A slow fsync (an SD card) or the replay command holding the lock: unhealthy while it lasts, but
            # no restart. (With MQTT off a lock that stays held also stalls the work loop's put(), which
            # the frames-progressing check catches.)
            reasons.append("the outbox is slow to answer: a call holds its lock" + error)
        age = delivery.oldest_undelivered_age_s
        # A disk that cannot be written stalls acknowledgements too (the broker has a message, its row cannot be
        # deleted): that is the reason below, and a restart would only send the same messages again.
        if (mqtt_enabled and delivery.sender_alive and delivery.connected and delivery.outbox_writable and rows > 0
                and age is not None and age > max_undelivered_age_s and delivery_still_s > max_undelivered_age_s):
            restart_worthy.append(
                f"delivery is wedged: connected, but the oldest undelivered result is {age:.0f} s old and nothing "
                f"was acknowledged for {delivery_still_s:.0f} s (max_undelivered_age_s={max_undelivered_age_s:g})")
        if not delivery.outbox_writable:
            reasons.append("the outbox cannot be written (disk full?): new readings are not stored" + error)
        reasons.extend(restart_worthy)
        restart_helps = restart_helps and not restart_worthy
    watchdog_ok = frames_progressing and restart_helps
    return Verdict(healthy=not reasons, watchdog_ok=watchdog_ok, reasons=tuple(reasons))
