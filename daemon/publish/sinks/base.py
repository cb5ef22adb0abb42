"""The sink interface, and QueueSink: a sink that takes its own rows from the outbox in a thread of its own.

A sink is one output of the daemon (MQTT JSON, OPC UA, Sparkplug B, Home Assistant). Its surface:
    name                   "mqtt", "opcua", ...: the outbox keeps one delivery line per (sink, row)
    start()                returns at once; connecting (and reconnecting) happens in the sink's own threads
    wake()                 a new row is in the outbox: deliver it
    stop(drain_timeout_s)  delivers what it can for at most that long, then closes; returns its rows left
    health() -> SinkHealth for /healthz and stats; never raises, never waits long
    counters -> SinkCounters delivered / failed / dead-lettered, for /metrics

Delivery rules of QueueSink (the MQTT sink has its own, older and finer ones: daemon/publish/mqtt_client.py):
- rows go out in id order, one batch at a time; a row's delivery line is deleted only after _deliver() returned,
  so a crash or SIGKILL in between sends it again (at least once, same message id);
- _deliver() raising SinkDown (connection lost, server not up) counts nothing against the row: the sink
  reconnects with backoff and sends it again; Undeliverable moves the row to this sink's dead letters at once;
  any other exception is a failed delivery counted against the row (dead-lettered at
  outbox.dead_letter_after_failures), and its camera waits behind it with a backoff;
- a row that is not a reading (the review topic's ocr-review/1 messages) is acknowledged without sending
  (counted as skipped): only the MQTT sink carries them;
- _deliver() returning HELD keeps the row owed after it was sent (a client must acknowledge it first): the
  subclass lists it in _held_rows() until it deletes the row itself, so it is neither sent again nor expired;
- the thread survives any exception, and a sink that is down never blocks the others: each sink's rows are its own.
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Collection, Optional, Protocol, Sequence

from daemon.backoff import backoff_delay_s
from daemon.publish.outbox import OutboxRow, SinkQueue

log = logging.getLogger(__name__)

_IDLE_POLL_S = 0.5          # re-check the outbox at least this often (TTL sweeps, rows replayed by the CLI)
_BATCH_ROWS = 64            # rows taken from the outbox at once
_SENDER_WEDGED_S = 120.0    # a sink thread that has not gone round its loop this long is stuck


HELD = "held"   # _deliver()'s answer for a row sent but still owed (see the module docstring)


class SinkDown(Exception):
    """The output cannot take anything right now (not connected, server not running): retry, count nothing."""


class Undeliverable(Exception):
    """This row can never be delivered by this sink as it is: dead-letter it at once."""


@dataclass
class SinkCounters:
    delivered: int = 0        # rows this sink delivered (their delivery line deleted)
    failed: int = 0           # failed deliveries counted against a row
    dead_lettered: int = 0    # rows this sink gave up on (moved to its dead letters)
    skipped: int = 0          # rows that are not for this sink (review messages), acknowledged unsent
    connects: int = 0         # successful (re)connects or server starts
    connect_failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


@dataclass(frozen=True)
class SinkHealth:
    """One sink's state for /healthz: up is "connected" for a client, "serving" for a server."""
    name: str
    up: bool
    alive: bool                               # its thread runs (False: nothing is delivered until a restart)
    backlog: int                              # rows it still owes
    oldest_undelivered_age_s: Optional[float]
    failing_rows: int
    dead_letters: int
    idle_s: float                             # since its thread last went round its loop
    last_error: str

    @property
    def needs_restart(self) -> bool:
        return not self.alive or self.idle_s > _SENDER_WEDGED_S

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["needs_restart"] = self.needs_restart
        if d["oldest_undelivered_age_s"] is not None:
            d["oldest_undelivered_age_s"] = round(float(d["oldest_undelivered_age_s"]), 1)
        d["idle_s"] = round(float(d["idle_s"]), 1)
        return d


class Sink(Protocol):
    name: str
    counters: SinkCounters

    def start(self) -> None: ...

    def wake(self) -> None: ...

    def stop(self, drain_timeout_s: float) -> int: ...

    def health(self) -> SinkHealth: ...


@dataclass(frozen=True)
class Reading:
    """What OPC UA, Sparkplug and Home Assistant publish of one ocr-result message (daemon/publish/payload.py)."""
    camera: str
    msg_id: str
    seq: int
    captured_at: str          # RFC 3339 UTC, as in the payload
    captured_at_ms: int       # the same, epoch milliseconds
    text: str                 # the lines joined by "\n"
    confidence: float         # the lowest line confidence (0.0 for a reading without lines)
    lines: int

    @classmethod
    def of_row(cls, row: OutboxRow) -> Optional["Reading"]:
        """None for a message that is not a reading (ocr-review/1); Undeliverable for a broken one."""
        try:
            doc = json.loads(row.payload)
        except ValueError as exc:
            raise Undeliverable(f"payload is not JSON: {exc}") from None
        if not str(doc.get("schema", "")).startswith("ocr-result/"):
            return None
        from datetime import datetime
        try:
            texts = doc.get("texts") or []
            when = datetime.strptime(doc["captured_at"].replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
            return cls(camera=str(doc.get("camera", row.camera)), msg_id=str(doc["id"]), seq=int(doc["seq"]),
                       captured_at=str(doc["captured_at"]), captured_at_ms=int(round(when.timestamp() * 1000)),
                       text="\n".join(str(t.get("text", "")) for t in texts),
                       confidence=min((float(t.get("confidence", 0.0)) for t in texts), default=0.0),
                       lines=len(texts))
        except (KeyError, TypeError, ValueError) as exc:
            raise Undeliverable(f"not a readable ocr-result message: {exc}") from None


class QueueSink:
    """Base of the sinks that deliver one row at a time from their own thread. Subclasses implement
    _connect() (raise SinkDown when it fails), _deliver(row) and _disconnect(); `up` says whether connected."""

    name = "sink"

    def __init__(self, queue: SinkQueue, reconnect_min_s: float = 1.0, reconnect_max_s: float = 30.0,
                 rng: Optional[random.Random] = None):
        self._queue = queue
        self._reconnect_min_s = reconnect_min_s
        self._reconnect_max_s = reconnect_max_s
        self._rng = rng or random.Random()
        self.counters = SinkCounters()
        self._cv = threading.Condition()
        self._dirty = True
        self._stopping = False
        self._drain_deadline: Optional[float] = None
        self._thread: Optional[threading.Thread] = None
        self._beat = time.monotonic()
        self._last_error = ""
        self._up = False
        self._blocked: dict[str, float] = {}   # camera -> when its failed head row is retried
        self._backoff: dict[str, float] = {}
        self._warned_down = False
        self._camera_change: Optional[tuple[tuple[str, ...], tuple[str, ...]]] = None   # set_cameras'

    # ------------------------------------------------------------ the interface

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name=f"sink-{self.name}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        with self._cv:
            self._dirty = True
            self._cv.notify()

    @property
    def up(self) -> bool:
        return self._up

    def stop(self, drain_timeout_s: float) -> int:
        """Delivers for at most drain_timeout_s while connected, then disconnects; returns the rows it still owes."""
        if self._thread is None:
            return self._queue.depth()[0]
        deadline = time.monotonic() + max(0.0, drain_timeout_s)
        while time.monotonic() < deadline and self._up and self._queue.depth()[0] > 0 and self._thread.is_alive():
            self.wake()
            time.sleep(0.02)
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join(timeout=10.0)
        self._thread = None
        left = self._queue.depth()[0]
        log.info("%s: stopped with %d results it has not delivered left in the outbox", self.name, left)
        return left

    def set_cameras(self, cameras: Sequence[str], removed: Sequence[str]) -> None:
        """A reload changed the configured cameras (the work loop's thread): a sink that announces cameras to its
        consumers (Sparkplug births, Home Assistant discovery) takes it on its own thread (_cameras_changed)."""
        with self._cv:
            self._camera_change = (tuple(cameras), tuple(removed))
            self._dirty = True
            self._cv.notify()

    def _camera_change_taken(self) -> Optional[tuple[tuple[str, ...], tuple[str, ...]]]:
        with self._cv:
            change, self._camera_change = self._camera_change, None
        return change

    def health(self) -> SinkHealth:
        ob = self._queue.health()
        thread = self._thread
        return SinkHealth(name=self.name, up=self._up, alive=thread is not None and thread.is_alive(),
                          backlog=ob.rows, oldest_undelivered_age_s=ob.oldest_undelivered_age_s,
                          failing_rows=ob.failing_rows, dead_letters=ob.dead_letters,
                          idle_s=max(0.0, time.monotonic() - self._beat) if thread is not None else 0.0,
                          last_error=self._last_error or ("" if self._up else "not connected"))

    # ------------------------------------------------------------ for subclasses

    def _connect(self) -> None:
        raise NotImplementedError

    def _deliver(self, row: OutboxRow, reading: Reading) -> Optional[str]:
        """Sends one reading; returns None (delivered: the row's line is deleted) or HELD."""
        raise NotImplementedError

    def _before_delete(self) -> None:
        """Called with a batch delivered, before its rows leave the outbox: where a sink keeps what it must show
        after a restart (it must not raise)."""

    def _held_rows(self) -> Collection[int]:
        """Rows sent and still owed (_deliver returned HELD), until the subclass deletes them."""
        return ()

    def _disconnect(self) -> None:
        pass

    def _tick(self) -> None:
        """Called on the sink's thread every time round its loop while up (e.g. a Sparkplug rebirth request).
        May raise SinkDown."""

    def _lost(self, why: str) -> None:
        """A subclass's callback (another thread) saw the connection go: the loop reconnects."""
        if self._up:
            log.warning("%s: connection lost (%s); results wait in the outbox", self.name, why)
        self._up = False
        self._last_error = why
        self.wake()

    # ------------------------------------------------------------ the thread

    def _main(self) -> None:
        attempt = 0
        next_try = 0.0
        while True:
            with self._cv:
                if not self._dirty and not self._stopping:
                    self._cv.wait(timeout=_IDLE_POLL_S)
                self._dirty = False
                if self._stopping:
                    break
            self._beat = time.monotonic()
            try:
                if not self._up:
                    if time.monotonic() < next_try:
                        continue
                    try:
                        self._connect()
                    except SinkDown as exc:
                        self._up = False
                        self.counters.add("connect_failures")
                        self._last_error = str(exc)
                        delay = backoff_delay_s(attempt, self._reconnect_min_s, self._reconnect_max_s, self._rng)
                        next_try = time.monotonic() + delay
                        attempt += 1
                        log.log(logging.DEBUG if self._warned_down else logging.WARNING,
                                "%s: cannot connect (%s); retrying in %.1f s, results wait in the outbox",
                                self.name, exc, delay)
                        self._warned_down = True
                        continue
                    attempt = 0
                    self._warned_down = False
                    self._up = True
                    self._last_error = ""
                    self.counters.add("connects")
                    log.info("%s: up", self.name)
                try:
                    self._tick()
                except SinkDown as exc:
                    self._lost(str(exc))
                    continue
                if self._up:
                    self._send_some()
            except Exception as exc:   # a SQLite error, a bug in a subclass: never kill the thread
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.exception("%s: sink error; retrying", self.name)
                with self._cv:
                    if not self._stopping:
                        self._cv.wait(timeout=1.0)
        try:
            self._disconnect()
        except Exception:
            log.exception("%s: error while disconnecting", self.name)
        self._up = False

    def _send_some(self) -> None:
        now = time.monotonic()
        due = [cam for cam, at in self._blocked.items() if at <= now]
        blocked = [cam for cam in self._blocked if cam not in due]
        rows = self._queue.pending(_BATCH_ROWS, self._held_rows(), blocked)
        delivered: list[int] = []
        seen_failed: set[str] = set(blocked)
        try:
            for row in rows:
                if row.camera in seen_failed or not self._up or self._stopping:
                    continue
                try:
                    reading = Reading.of_row(row)
                    if reading is None:
                        self.counters.add("skipped")
                        delivered.append(row.id)
                    elif self._deliver(row, reading) != HELD:
                        self.counters.add("delivered")
                        delivered.append(row.id)
                    if row.camera in self._blocked:
                        del self._blocked[row.camera]
                        self._backoff.pop(row.camera, None)
                except SinkDown as exc:
                    self._lost(str(exc))
                    break
                except Undeliverable as exc:
                    if self._queue.dead_letter(row.id, str(exc)):
                        self.counters.add("dead_lettered")
                except Exception as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                    self.counters.add("failed")
                    outcome = self._queue.record_failure(row.id, reason)
                    if outcome == "dead_letter":
                        self.counters.add("dead_lettered")
                        continue
                    backoff = min(self._reconnect_max_s, max(self._reconnect_min_s,
                                                             2.0 * self._backoff.get(row.camera, 0.0)))
                    self._backoff[row.camera] = backoff
                    self._blocked[row.camera] = time.monotonic() + backoff
                    seen_failed.add(row.camera)
                    log.warning("%s: delivering %s failed (%s); camera %s retries it in %.1f s", self.name,
                                row.msg_id, reason, row.camera, backoff)
        finally:
            if delivered:
                self._before_delete()
                self._queue.delete_many(delivered)
        if len(rows) >= _BATCH_ROWS and self._up:
            self.wake()   # there may be more
