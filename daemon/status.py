"""What the daemon says about itself: the work loop's counters, the snapshot every reader shares (/metrics, the stats
topic, /healthz, the page), the health verdict's wiring and the systemd STATUS= line.

Progress (what the systemd watchdog and /healthz mean): the work loop sends WATCHDOG=1 only while
 - a frame went through OCR and the filters within service.stall_timeout_s, or
 - every camera is idle by design (an image folder with nothing new) and its capture thread polled
   within stall_timeout_s.
So a hung backend, a wedged loop or a capture thread stuck in a driver stop the pings and systemd restarts
the daemon. A single dead camera among working ones does not (the others make progress; its own source
reconnects with backoff and its watchdog restarts it); all cameras dead for stall_timeout_s do, since a
fresh process also re-initializes the capture stack (V4L2, nvargus), the one thing left to try. A reload holds
the work loop: Heartbeat.pinging_meanwhile pings through it, for at most RELOAD_PING_MAX_S.

``Counters`` is written by the work loop and read by the HTTP, MQTT and page threads: it owns the one lock.
``Status`` reads the running parts through a small protocol (the service satisfies it; this module never imports
the service) and asks daemon/health.py for the verdict. ``status_line`` is pure.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import threading
import time
from collections import Counter, deque
from typing import Callable, Optional, Protocol

from daemon.health import DeliveryClock, DeliveryFacts, Verdict, assess, observe

log = logging.getLogger("daemon.service")

FPS_WINDOW_S = 5.0
STATUS_PERIOD_S = 5.0       # systemd STATUS= line
LATENCY_WINDOW = 512        # samples per stage for the p50/p95 in stats
# A reload (models loading, TensorRT engines deserializing) is pinged for at most this long, the unit's
# TimeoutStartSec: one that hangs longer is left to the watchdog.
RELOAD_PING_MAX_S = 300.0
# Source counters kept across a camera's restart by a reload (the stopped source's are added to the new one's).
_SOURCE_COUNTERS = ("corrupt", "too_large", "not_regular", "reconnects", "watchdog_restarts")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a small sample; 0 for none."""
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100.0 * len(s) + 0.5)) - 1))]


def _triggers(state) -> dict:
    """A triggered camera's trigger figures as the stats topic, the page and /healthz all show them. Pure."""
    return {"accepted": state.counters.accepted, "missed": state.counters.missed,
            "state": "busy" if state.busy or state.waiting else "ready",
            "recipe": state.recipe, "recipe_changes": state.counters.recipe_changes}


def cycle_counts(by_recipe_status: Counter) -> dict:
    """The snapshot's read-cycle counts of a camera: by status, by recipe ("": none) and status, and the two
    rates a line is judged by: read rate (something read: not no_read or no_label) and yield (good_read), over
    the cycles since the daemon started; None before the first cycle. Pure."""
    by_status: Counter = Counter()
    by_recipe: dict = {}
    for (recipe, status), n in by_recipe_status.items():
        by_status[status] += n
        by_recipe.setdefault(recipe, {})[status] = n
    total = sum(by_status.values())
    unread = by_status.get("no_read", 0) + by_status.get("no_label", 0)
    return {"cycles": dict(by_status), "cycles_by_recipe": by_recipe,
            "read_rate": round((total - unread) / total, 4) if total else None,
            "yield": round(by_status.get("good_read", 0) / total, 4) if total else None}


@dataclasses.dataclass
class _CameraCounts:
    frames: int = 0
    unread: int = 0     # of the frames, those left unread: every label in them settled (text_settle)
    stored: int = 0
    rejected: Counter = dataclasses.field(default_factory=Counter)
    noted: Counter = dataclasses.field(default_factory=Counter)   # check_digit_corrected, code_confirmed, code_mismatch
    reviewed: int = 0   # stored readings whose id also went to the review topic
    cycles: Counter = dataclasses.field(default_factory=Counter)   # read cycles' stored results: (recipe, status)
    recent: deque = dataclasses.field(default_factory=deque)   # processing times (monotonic) in the fps window

    def fps(self, now: float) -> float:
        while self.recent and now - self.recent[0] > FPS_WINDOW_S:
            self.recent.popleft()
        return len(self.recent) / FPS_WINDOW_S


class Counters:
    """Per camera: frames, decisions (rejected, noted), stored and reviewed readings; per stage: latency windows.
    observe_ms(stage, ms) also feeds the Prometheus histograms (daemon/metrics.py) once they exist."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cams: dict[str, _CameraCounts] = {}
        self._latency: dict[str, deque] = {}
        self._retired: Counter = Counter()   # counters of sources that a reload stopped
        self.observe_ms: Callable[[str, float], None] = lambda stage, ms: None

    def add_camera(self, name: str) -> None:
        with self._lock:
            self._cams.setdefault(name, _CameraCounts())

    def frame(self, cam: str, timing_ms: Optional[dict], codes_ms: Optional[float]) -> None:
        """One frame handled: the camera's count and fps window, and each stage's latency; timing_ms None: a frame
        left unread (text_settle), counted apart too, its stages not timed."""
        stages = dict(timing_ms or {})
        if codes_ms is not None and timing_ms is not None:
            stages["codes"] = codes_ms
        with self._lock:
            c = self._cams.setdefault(cam, _CameraCounts())
            c.frames += 1
            c.unread += timing_ms is None
            c.recent.append(time.monotonic())
            for stage, ms in stages.items():
                self._latency.setdefault(stage, deque(maxlen=LATENCY_WINDOW)).append(ms)
        for stage, ms in stages.items():
            self.observe_ms(stage, ms)

    def decided(self, cam: str, decision) -> None:
        with self._lock:
            c = self._cams.setdefault(cam, _CameraCounts())
            c.rejected.update(decision.rejected)
            c.noted.update(decision.noted)

    def stored(self, cam: str, capture_to_outbox_ms: float) -> None:
        with self._lock:
            self._cams.setdefault(cam, _CameraCounts()).stored += 1
            self._latency.setdefault("capture_to_outbox", deque(maxlen=LATENCY_WINDOW)).append(capture_to_outbox_ms)
        self.observe_ms("capture_to_outbox", capture_to_outbox_ms)

    def cycle(self, cam: str, status: str, recipe: Optional[str]) -> None:
        """A read cycle's result stored, by the recipe it was judged by and its status (good_read, no_read,
        no_label, mismatch, multiple)."""
        with self._lock:
            self._cams.setdefault(cam, _CameraCounts()).cycles[(recipe or "", status)] += 1

    def reviewed(self, cam: str) -> None:
        with self._lock:
            self._cams.setdefault(cam, _CameraCounts()).reviewed += 1

    def retire(self, cam: str, source_counters) -> None:
        """A camera's source is stopped (a reload): its counters carry over to the next one of that name."""
        with self._lock:
            for k in _SOURCE_COUNTERS:
                self._retired[(cam, k)] += getattr(source_counters, k)

    def cameras(self, sources: dict, dropped: dict) -> dict:
        """name -> the snapshot's camera entry (sources: name -> running CaptureSource)."""
        now = time.monotonic()
        out = {}
        with self._lock:
            for name, c in self._cams.items():
                src = sources.get(name)
                sc = src.counters if src is not None else None
                entry = {"fps": round(c.fps(now), 2), "frames": c.frames, "frames_unread": c.unread,
                         "dropped": dropped.get(name, 0)}
                for k in _SOURCE_COUNTERS:
                    entry[k] = self._retired[(name, k)] + (getattr(sc, k) if sc else 0)
                health = src.health() if src is not None else None
                entry.update({"stored": c.stored, "reviewed": c.reviewed, "rejected": dict(c.rejected),
                              "checks": dict(c.noted), **cycle_counts(c.cycles),
                              "state": health.state if health is not None else "removed",
                              "error": health.down_because if health is not None else ""})
                out[name] = entry
        return out

    def latency(self) -> dict:
        with self._lock:
            return {stage: {"p50": round(percentile(list(v), 50), 2), "p95": round(percentile(list(v), 95), 2),
                            "count": len(v)} for stage, v in self._latency.items()}


class Parts(Protocol):
    """The running daemon as Status reads it (daemon/service.Service)."""
    cfg: object
    sources: dict
    hub: object
    outbox: object
    publisher: object       # the MQTT sink's publisher; None with MQTT off
    sinks: dict
    pipeline: object
    evidence: object
    boards: dict            # triggered cameras: name -> daemon/readings/triggers.TriggerBoard
    started_at: float       # monotonic
    last_progress: float    # monotonic: the last frame through OCR and the filters


class Status:
    """Health, snapshot and status line of the running parts; safe from any thread."""

    def __init__(self, parts: Parts, counters: Counters):
        self.parts = parts
        self.counters = counters
        # When delivery last moved (ack, connect, empty outbox): wedged vs. draining a backlog (daemon/health.py).
        # The loop, the HTTP thread and the stats read it: one lock.
        self._delivery_lock = threading.Lock()
        self._delivery_clock = DeliveryClock(moved_at=time.monotonic())
        self._watchdog_withheld: tuple[str, ...] = ()   # reasons last logged for not pinging systemd

    def progressing(self, now: Optional[float] = None) -> bool:
        """A frame went through OCR within stall_timeout_s, or every camera is idle by design: a folder polling with
        nothing in it, or a triggered camera streaming between cycles (it reads only when asked)."""
        p = self.parts
        now = time.monotonic() if now is None else now
        stall_s = p.cfg.service.stall_timeout_s
        if now - p.last_progress < stall_s:
            return True
        wall = time.time()
        sources = list(p.sources.items())
        return bool(sources) and all(self._idle_by_design(name, src.health(), wall, stall_s) for name, src in sources)

    def _idle_by_design(self, camera: str, health, wall: float, stall_s: float) -> bool:
        if wall - health.heartbeat_at >= stall_s:   # its capture thread is not alive: not idle, stuck
            return False
        if health.state == "idle":
            return True
        board = self.parts.boards.get(camera)
        if board is None or health.state != "streaming":
            return False
        state = board.state()
        return not (state.busy or state.waiting)   # a cycle owed and no frame through OCR: a stall

    def delivery_facts(self) -> Optional[DeliveryFacts]:
        """The publisher's DeliveryHealth; with MQTT off the outbox's own health; None before start()."""
        p = self.parts
        if p.publisher is not None:
            return p.publisher.delivery_health()
        if p.outbox is not None:
            return OutboxOnly.of(p.outbox.health())
        return None

    def verdict(self, now: Optional[float] = None, facts: Optional[DeliveryFacts] = None) -> Verdict:
        """Healthy? Keep pinging systemd? From the facts of this moment (daemon/health.py decides)."""
        p = self.parts
        now = time.monotonic() if now is None else now
        facts = self.delivery_facts() if facts is None else facts
        pub = p.publisher
        rows = p.outbox.depth("mqtt" if pub is not None else None)[0] if p.outbox is not None else 0
        with self._delivery_lock:
            if pub is not None:
                self._delivery_clock = observe(self._delivery_clock, now, connected=bool(pub.connected),
                                               acked=pub.counters.acked, rows=rows)
            still_s = now - self._delivery_clock.moved_at
        svc = p.cfg.service
        return assess(frames_progressing=self.progressing(now), stall_timeout_s=svc.stall_timeout_s,
                      mqtt_enabled=pub is not None, delivery=facts, rows=rows, delivery_still_s=still_s,
                      max_undelivered_age_s=svc.max_undelivered_age_s,
                      sinks=[s.health() for n, s in list(p.sinks.items()) if n != "mqtt"],
                      lock_lost=getattr(getattr(p, "lock", None), "lost", None))

    def watchdog_ok(self, now: float) -> bool:
        """Whether the work loop may ping systemd now; logs the reasons once each time they change."""
        verdict = self.verdict(now)
        gist = () if verdict.watchdog_ok else _gist(verdict.reasons)
        if gist and gist != self._watchdog_withheld:
            # Once per change: the journal says why systemd is about to restart us.
            log.error("not pinging the systemd watchdog: %s", "; ".join(verdict.reasons))
        self._watchdog_withheld = gist
        return verdict.watchdog_ok

    def health(self) -> tuple[bool, dict]:
        """/healthz: (healthy, detail)."""
        p = self.parts
        healths = {name: src.health() for name, src in list(p.sources.items())}
        cams = {name: h.state for name, h in healths.items()}
        pub = p.publisher
        facts = self.delivery_facts()
        verdict = self.verdict(facts=facts)
        detail = {
            "cameras": cams,
            "camera_errors": {name: h.down_because for name, h in healths.items() if h.down_because},
            "last_frame_age_s": round(time.monotonic() - p.last_progress, 1),
            "broker_connected": bool(pub and pub.connected),
            "outbox_rows": p.outbox.depth()[0] if p.outbox is not None else 0,
            "reasons": list(verdict.reasons),   # empty when healthy
            "watchdog_ok": verdict.watchdog_ok,
            "delivery": facts_dict(facts),
        }
        counts = self.counters.cameras(dict(p.sources), p.hub.dropped)
        if p.boards:   # triggered cameras: the line's own figures (a PLC's view of the reader)
            detail["read_cycles"] = {}
            for name, board in list(p.boards.items()):   # the stats topic's figures, and the board's state
                state = board.state()
                detail["read_cycles"][name] = {
                    **state.as_dict(), "triggers": _triggers(state),
                    **{k: counts.get(name, {}).get(k) for k in ("cycles", "cycles_by_recipe", "read_rate", "yield")}}
        labels = {name: c for name, c in counts.items() if name not in p.boards and c.get("cycles")}
        if labels:   # consensus cameras with label_status: every label seen is a result, its read rate the line's
            detail["label_reads"] = {name: {k: c.get(k) for k in ("cycles", "read_rate", "yield")}
                                     for name, c in labels.items()}
        sinks = self._sinks_health()
        if sinks:   # every output: up or down, what it still owes
            detail["sinks"] = sinks
            detail["sinks_down"] = [n for n, h in sinks.items() if not h["up"]]
        # Running on the CPU by fallback is healthy (readings flow) but degraded: not what the box is for.
        backend = self.backend_info()
        detail["degraded"] = backend["degraded"]
        detail["backend"] = backend
        return verdict.healthy, detail

    def _sinks_health(self) -> dict:
        """name -> SinkHealth.as_dict() with the sink's counters (delivered, failed, dead_lettered, ...)."""
        return {n: {**s.health().as_dict(), **s.counters.as_dict()} for n, s in list(self.parts.sinks.items())}

    def backend_info(self) -> dict:
        """Which backend runs, at which precision and why (BackendChoice.as_dict) for /healthz and stats."""
        pipeline = self.parts.pipeline
        choice = pipeline.choice if pipeline is not None else None
        if choice is not None:
            return choice.as_dict()
        engine = pipeline.describe() if pipeline is not None else {}
        return {"backend": engine.get("backend", "none"), "precision": engine.get("precision", ""),
                "reason": "configured", "category": "configured", "degraded": False}

    def snapshot(self) -> dict:
        """The one dict /metrics, the stats topic and the page read (daemon/metrics.py documents its shape)."""
        p = self.parts
        cams = self.counters.cameras(dict(p.sources), p.hub.dropped)
        for name, board in list(p.boards.items()):   # a triggered camera: its triggers, accepted and missed
            state = board.state()
            if name in cams:
                cams[name]["triggers"] = _triggers(state)
        outbox = {"rows": 0, "bytes": 0}
        if p.outbox is not None:
            rows, nbytes = p.outbox.depth()
            oc = p.outbox.counters
            outbox = {"rows": rows, "bytes": nbytes,   # and every OutboxCounters field (losses, dead letters)
                      **{f.name: getattr(oc, f.name) for f in dataclasses.fields(oc) if not f.name.startswith("_")}}
        mqtt: dict = {"enabled": p.publisher is not None, "connected": False}
        if p.publisher is not None:
            mqtt["connected"] = bool(p.publisher.connected)
            c = p.publisher.counters
            mqtt.update({f.name: getattr(c, f.name) for f in dataclasses.fields(c) if not f.name.startswith("_")})
        facts = self.delivery_facts()
        verdict = self.verdict(facts=facts)
        return {"device": p.cfg.device_id, "uptime_s": round(time.monotonic() - p.started_at, 1),
                "backend": self.backend_info(), "cameras": cams, "outbox": outbox, "mqtt": mqtt,
                "delivery": facts_dict(facts),
                "sinks": self._sinks_health(),
                "evidence": p.evidence.snapshot() if p.evidence is not None else {"enabled": False},
                "health": {"healthy": verdict.healthy, "watchdog_ok": verdict.watchdog_ok,
                           "reasons": list(verdict.reasons)},
                "latency_ms": self.counters.latency()}


class Heartbeat:
    """The work loop's periodic duties, called once per turn: WATCHDOG=1 while the verdict allows it (at half the
    unit's WatchdogSec), STATUS= every STATUS_PERIOD_S, the stats topic every mqtt.stats_interval_s."""

    def __init__(self, status: Status, notifier, watchdog_interval_s: Optional[float]):
        self.status, self.notifier = status, notifier
        self._ping_every_s = watchdog_interval_s / 2.0 if watchdog_interval_s else None
        self._last_ping = self._last_status = self._last_stats = time.monotonic()
        self._pinging = True   # the last verdict allowed pings

    def tick(self, now: float, publisher, stats_interval_s: float) -> None:
        if self._ping_every_s and now - self._last_ping >= self._ping_every_s:
            self._pinging = self.status.watchdog_ok(now)
            if self._pinging:
                self.notifier.watchdog()
                self._last_ping = now
        if now - self._last_status >= STATUS_PERIOD_S:
            self.notifier.status(status_line(self.status.snapshot()))
            self._last_status = now
        if publisher is not None and stats_interval_s > 0 and now - self._last_stats >= stats_interval_s:
            self._last_stats = now
            try:
                publisher.publish_stats(self.status.snapshot())
            except Exception:   # stats are a courtesy; never worth the readings
                log.exception("stats not published")

    @contextlib.contextmanager
    def pinging_meanwhile(self, max_s: float = RELOAD_PING_MAX_S):
        """WATCHDOG=1 from a helper thread while the block holds the work loop (a reload loading models can take
        longer than WatchdogSec), for at most max_s. Only if the last verdict allowed pings: a stalled daemon is
        not kept alive by a reload."""
        if not self._ping_every_s or not self._pinging:
            yield
            return
        done = threading.Event()

        def ping() -> None:
            deadline = time.monotonic() + max_s
            while not done.is_set() and time.monotonic() < deadline:
                self.notifier.watchdog()
                done.wait(self._ping_every_s)

        thread = threading.Thread(target=ping, name="watchdog-meanwhile", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


def status_line(snap: dict) -> str:
    """systemd's STATUS= line from a snapshot: cameras up, fps, outbox rows, broker, sinks down, why unhealthy."""
    cams = [c for c in snap["cameras"].values() if c["state"] != "removed"]   # a reload removed: not down
    fps = sum(c["fps"] for c in cams)
    up = sum(1 for c in cams if c["state"] in ("streaming", "idle"))
    broker = ("connected" if snap["mqtt"]["connected"] else "disconnected") if snap["mqtt"]["enabled"] else "off"
    line = (f"{up}/{len(cams)} cameras up, {fps:.1f} fps, outbox {snap['outbox']['rows']} rows, "
            f"broker {broker}")
    down = [f"{n} ({s['backlog']} waiting)" for n, s in snap.get("sinks", {}).items() if n != "mqtt" and not s["up"]]
    if down:   # the MQTT sink is the broker above
        line += f"; down: {', '.join(down)}"
    reasons = snap["health"]["reasons"]
    return line + (f"; UNHEALTHY: {'; '.join(reasons)}" if reasons else "")


def facts_dict(facts: Optional[DeliveryFacts]) -> Optional[dict]:
    """The delivery report for /healthz, stats and metrics (JSON-ready); None when there is none."""
    if facts is None:
        return None
    d = dataclasses.asdict(facts)
    d["needs_restart"] = bool(facts.needs_restart)
    for key in ("oldest_undelivered_age_s", "sender_idle_s"):
        if d.get(key) is not None:
            d[key] = round(float(d[key]), 1)
    return d


@dataclasses.dataclass(frozen=True)
class OutboxOnly:
    """DeliveryFacts with MQTT off: the outbox's health, no sender (results stay on disk by design)."""
    outbox_writable: bool
    outbox_responsive: bool
    oldest_undelivered_age_s: Optional[float]
    failing_rows: int
    dead_letters: int
    last_error: str
    sender_alive: bool = True
    network_alive: bool = True
    connected: bool = False
    sender_idle_s: float = 0.0
    outbox_stuck_s: float = 0.0

    @property
    def needs_restart(self) -> bool:
        # No sender to be stuck; an outbox lock that stays held stalls the work loop itself (frames check).
        return False

    @classmethod
    def of(cls, h) -> "OutboxOnly":
        return cls(outbox_writable=h.writable, outbox_responsive=h.responsive,
                   oldest_undelivered_age_s=h.oldest_undelivered_age_s, failing_rows=h.failing_rows,
                   dead_letters=h.dead_letters, last_error=h.last_error)


def _gist(reasons) -> tuple[str, ...]:
    """Reasons with their figures left out ("51 s old", "52 s old" are one reason that goes on)."""
    return tuple(re.sub(r"\d+(\.\d+)?", "#", r) for r in reasons)
