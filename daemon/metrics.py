"""Prometheus metrics and /healthz on one small HTTP server (loopback by default).

Counters that live elsewhere (sources, hub, outbox, publisher) are read at scrape time from one snapshot
function the service provides, so they are never counted twice; stage latencies are observed here into
histograms as frames go through. The snapshot is a plain dict, the same one the stats topic carries:

    {"backend": {"backend", "precision", "reason", "category", "degraded"},   # BackendChoice.as_dict()
     "cameras": {name: {"fps", "frames", "frames_unread", "dropped", "corrupt", "too_large", "not_regular",
                        "reconnects", "watchdog_restarts", "stored", "rejected": {reason: n}, "checks": {outcome: n},
                        "state", "cycles": {status: n}, "cycles_by_recipe": {recipe: {status: n}}, "read_rate", "yield",
                        "triggers": {"accepted", "missed", "state", "recipe", "recipe_changes"}}},   # triggered
     "outbox": {"rows", "bytes", <OutboxCounters>: n},   # dropped_oldest, refused_new, expired, disk_full, ...
     "evidence": {"enabled", "readings", "bytes", <EvidenceCounters>: n},   # daemon/evidence.py
     "mqtt": {"enabled", "connected", <publisher counters>: n},
     "delivery": {"sender_alive", "connected", "oldest_undelivered_age_s", "failing_rows", "dead_letters",
                  "outbox_writable", "last_error"} or None,                  # daemon/health.py's facts
     "sinks": {name: {"up", "alive", "backlog", "dead_letters", "delivered", "failed", ...}},   # sinks/base.py
     "health": {"healthy", "watchdog_ok", "reasons": [...]},
     "latency_ms": {stage: {"p50", "p95", "count"}}}
"""
from __future__ import annotations

import json
import logging
from typing import Callable, Iterable, Optional

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from daemon import http_server

log = logging.getLogger(__name__)
METRICS_RETRY_S = 10.0   # a metrics port another program held at start is tried again this often

# Stage latencies run from ~1 ms (filters) to seconds (a slow CPU under load); seconds, as Prometheus wants.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_CAMERA_COUNTERS = {
    "frames": ("ocr_frames_total", "Frames handled: OCR'd, or left unread (ocr_frames_unread_total)"),
    "frames_unread": ("ocr_frames_unread_total",
                      "Frames left unread because every label in them had settled (text_settle; also in frames)"),
    "dropped": ("ocr_frames_dropped_total", "Frames overwritten by a newer one before inference took them"),
    "corrupt": ("ocr_frames_corrupt_total", "Unreadable frames or images, skipped"),
    "too_large": ("ocr_frames_too_large_total", "Images over the decode limits, set aside unread (also in corrupt)"),
    "not_regular": ("ocr_frames_not_regular_total",
                    "Folder entries named like images that are no regular file, set aside unread (also in corrupt)"),
    "reconnects": ("ocr_source_reconnects_total", "Sources reopened after losing the device"),
    "watchdog_restarts": ("ocr_source_watchdog_restarts_total", "Sources restarted for delivering no frame"),
    "stored": ("ocr_results_stored_total", "Results written to the outbox"),
    "reviewed": ("ocr_results_review_total", "Stored results whose id also went to the review topic"),
}
# The evidence store (daemon/evidence.py): readings not kept, by reason, and readings deleted, by reason.
_EVIDENCE_DROPS = {"queue_full": "dropped_queue_full", "disk_low": "dropped_disk_low", "write_error": "write_errors"}
_EVIDENCE_EVICTIONS = {"size": "evicted_size", "ttl": "evicted_ttl"}
# Readings the outbox let go or could not store: ocr_outbox_lost_total{reason}; its other counters (dead_lettered,
# replayed, corrupt_set_aside, salvaged_rows) are ocr_outbox_<name>_total.
_OUTBOX_LOSSES = ("dropped_oldest", "refused_new", "expired", "disk_full", "io_errors")

Snapshot = dict
HealthFn = Callable[[], tuple[bool, dict]]


class _SnapshotCollector:
    def __init__(self, snapshot: Callable[[], Snapshot]):
        self._snapshot = snapshot

    def collect(self) -> Iterable:
        snap = self._snapshot()
        backend = snap.get("backend")
        if backend:
            # The reason label is the bounded category (configured, loaded, engine_stale, ...); the sentence
            # is in /healthz and the stats topic.
            info = GaugeMetricFamily("ocr_backend_info", "The backend that runs OCR, its precision and why (1)",
                                     labels=["backend", "precision", "reason"])
            info.add_metric([str(backend.get("backend", "")), str(backend.get("precision", "")),
                             str(backend.get("category", ""))], 1.0)
            yield info
        cams = snap.get("cameras", {})
        fps = GaugeMetricFamily("ocr_camera_fps", "Frames per second OCR'd, per camera", labels=["camera"])
        up = GaugeMetricFamily("ocr_source_up", "1 while the source delivers frames or is idle by design",
                               labels=["camera"])
        for name, c in cams.items():
            if c.get("state") == "removed":   # by a reload: its counters go on below, it is no source that is down
                continue
            fps.add_metric([name], float(c.get("fps", 0.0)))
            up.add_metric([name], 1.0 if c.get("state") in ("streaming", "idle") else 0.0)
        yield fps
        yield up
        for key, (metric, help_text) in _CAMERA_COUNTERS.items():
            fam = CounterMetricFamily(metric, help_text, labels=["camera"])
            for name, c in cams.items():
                fam.add_metric([name], float(c.get(key, 0)))
            yield fam
        rejected = CounterMetricFamily("ocr_results_rejected_total", "Lines or frames not published, by reason",
                                       labels=["camera", "reason"])
        for name, c in cams.items():
            for reason, n in c.get("rejected", {}).items():
                rejected.add_metric([name, reason], float(n))
        yield rejected
        checks = CounterMetricFamily("ocr_results_checked_total",
                                     "Lines corrected by a check digit or compared with a code, by outcome "
                                     "(check_digit_corrected, code_confirmed, code_mismatch)",
                                     labels=["camera", "outcome"])
        for name, c in cams.items():
            for outcome, n in c.get("checks", {}).items():
                checks.add_metric([name, outcome], float(n))
        yield checks
        cycles = CounterMetricFamily("ocr_cycles_total", "Read cycles' results stored, by the recipe judged by (empty: "
                                     "none) and status (good_read, no_read, no_label, mismatch, multiple)",
                                     labels=["camera", "recipe", "status"])
        triggers = CounterMetricFamily("ocr_triggers_total", "Read-cycle triggers, accepted or missed (busy)",
                                       labels=["camera", "outcome"])
        changes = CounterMetricFamily("ocr_recipe_changes_total", "Changes of a triggered camera's active recipe",
                                      labels=["camera"])
        for name, c in cams.items():
            for recipe, statuses in c.get("cycles_by_recipe", {}).items():
                for status, n in statuses.items():
                    cycles.add_metric([name, recipe, status], float(n))
            t = c.get("triggers")
            if t:
                triggers.add_metric([name, "accepted"], float(t.get("accepted", 0)))
                triggers.add_metric([name, "missed"], float(t.get("missed", 0)))
                changes.add_metric([name], float(t.get("recipe_changes", 0)))
        yield cycles
        yield triggers
        yield changes

        ob = snap.get("outbox", {})
        yield GaugeMetricFamily("ocr_outbox_rows", "Results waiting in the outbox", value=float(ob.get("rows", 0)))
        yield GaugeMetricFamily("ocr_outbox_bytes", "Payload bytes waiting in the outbox",
                                value=float(ob.get("bytes", 0)))
        lost = CounterMetricFamily("ocr_outbox_lost_total",
                                   "Results the outbox let go (policy, TTL) or could not store (disk full, I/O error)",
                                   labels=["reason"])
        for reason in _OUTBOX_LOSSES:
            lost.add_metric([reason], float(ob.get(reason, 0)))
        yield lost
        for key, n in ob.items():
            if key in ("rows", "bytes") or key in _OUTBOX_LOSSES or isinstance(n, bool) or not isinstance(n, (int, float)):
                continue
            yield CounterMetricFamily(f"ocr_outbox_{key}_total", f"Outbox: {key.replace('_', ' ')}", value=float(n))

        health = snap.get("health")
        if health is not None:
            yield GaugeMetricFamily("ocr_healthy", "1 while /healthz answers 200", value=float(bool(health["healthy"])))
        delivery = snap.get("delivery")
        if delivery is not None:
            if snap.get("mqtt", {}).get("enabled"):
                yield GaugeMetricFamily("ocr_sender_alive", "1 while the thread that publishes the outbox runs",
                                        value=float(bool(delivery.get("sender_alive"))))
            yield GaugeMetricFamily("ocr_outbox_writable", "0 while results cannot be stored (disk full)",
                                    value=float(bool(delivery.get("outbox_writable", True))))
            age = delivery.get("oldest_undelivered_age_s")
            yield GaugeMetricFamily("ocr_outbox_oldest_age_seconds", "Age of the oldest undelivered result (0: none)",
                                    value=float(age or 0.0))
            yield GaugeMetricFamily("ocr_outbox_failing_rows", "Results whose last delivery attempt failed",
                                    value=float(delivery.get("failing_rows") or 0))
            yield GaugeMetricFamily("ocr_dead_letters", "Results set aside in the dead-letter table",
                                    value=float(delivery.get("dead_letters") or 0))

        ev = snap.get("evidence") or {}
        if ev.get("enabled"):
            yield CounterMetricFamily("ocr_evidence_written_total", "Readings whose frame and crops were kept",
                                      value=float(ev.get("written", 0)))
            dropped = CounterMetricFamily("ocr_evidence_dropped_total", "Readings whose evidence was not kept, "
                                          "by reason (queue_full, disk_low, write_error)", labels=["reason"])
            for reason, key in _EVIDENCE_DROPS.items():
                dropped.add_metric([reason], float(ev.get(key, 0)))
            yield dropped
            evicted = CounterMetricFamily("ocr_evidence_evicted_total", "Readings' evidence deleted, oldest first, "
                                          "by reason (size, ttl)", labels=["reason"])
            for reason, key in _EVIDENCE_EVICTIONS.items():
                evicted.add_metric([reason], float(ev.get(key, 0)))
            yield evicted
            yield GaugeMetricFamily("ocr_evidence_bytes", "Bytes in the evidence folder", value=float(ev.get("bytes", 0)))
            yield GaugeMetricFamily("ocr_evidence_readings", "Readings with evidence kept",
                                    value=float(ev.get("readings", 0)))

        yield from _sink_families(snap.get("sinks") or {})

        mq = snap.get("mqtt", {})
        yield GaugeMetricFamily("ocr_broker_connected", "1 while the MQTT broker accepted our connection",
                                value=1.0 if mq.get("connected") else 0.0)
        for key, n in mq.items():
            if key in ("enabled", "connected") or isinstance(n, bool) or not isinstance(n, (int, float)):
                continue
            yield CounterMetricFamily(f"ocr_mqtt_{key}_total", f"MQTT publisher: {key.replace('_', ' ')}",
                                      value=float(n))


# Per output (daemon/config/sinks.py SINKS), labelled sink.
_SINK_COUNTERS = {
    "delivered": ("ocr_sink_delivered_total", "Results a sink delivered (acknowledged by its broker or server)"),
    "failed": ("ocr_sink_failed_total", "Failed deliveries counted against a result, per sink"),
    "dead_lettered": ("ocr_sink_dead_lettered_total", "Results a sink gave up on (moved to its dead letters)"),
}
_SINK_GAUGES = {
    "backlog": ("ocr_sink_backlog", "Results a sink still owes (waiting in the outbox for it)"),
    "up": ("ocr_sink_up", "1 while a sink is connected (client) or serving (server)"),
    "dead_letters": ("ocr_sink_dead_letters", "A sink's results in the dead-letter table"),
}


def _sink_families(sinks: dict) -> Iterable:
    for key, (metric, help_text) in _SINK_COUNTERS.items():
        fam = CounterMetricFamily(metric, help_text, labels=["sink"])
        for name, s in sinks.items():
            fam.add_metric([name], float(s.get(key, 0)))
        yield fam
    for key, (metric, help_text) in _SINK_GAUGES.items():
        fam = GaugeMetricFamily(metric, help_text, labels=["sink"])
        for name, s in sinks.items():
            fam.add_metric([name], float(s.get(key, 0) or 0))
        yield fam
    age = GaugeMetricFamily("ocr_sink_oldest_age_seconds", "Age of the oldest result a sink still owes (0: none)",
                            labels=["sink"])
    for name, s in sinks.items():
        age.add_metric([name], float(s.get("oldest_undelivered_age_s") or 0.0))
    yield age


class Metrics:
    def __init__(self, snapshot: Callable[[], Snapshot]):
        self.registry = CollectorRegistry(auto_describe=False)
        self.stage_latency = Histogram("ocr_stage_latency_seconds", "Time spent per pipeline stage", ["stage"],
                                       buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.registry.register(_SnapshotCollector(snapshot))

    def observe_ms(self, stage: str, ms: float) -> None:
        self.stage_latency.labels(stage=stage).observe(max(0.0, ms) / 1000.0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


# The HTTP server (daemon/http_server.py) gives a connection no thread until its request is complete, which it
# must be within REQUEST_TIMEOUT_S of the accept however it trickles in; a few workers answer in milliseconds, and
# a flood of idle or slow connections closes its own oldest ones, not the newest probe's.
HTTP_WORKERS = 4            # requests answered at once; a scrape takes milliseconds
MAX_CONNECTIONS = http_server.MAX_CONNECTIONS


def _http_app(metrics: Metrics, health: HealthFn):
    """/metrics and /healthz as a WSGI app."""

    def app(environ: dict, start_response) -> list:
        path = environ["PATH_INFO"]
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            code, ctype, body = "405 Method Not Allowed", "text/plain", b"GET /metrics or /healthz\n"
        else:
            try:
                if path == "/metrics":
                    code, ctype, body = "200 OK", CONTENT_TYPE_LATEST, metrics.exposition()
                elif path == "/healthz":
                    ok, detail = health()
                    code, ctype = ("200 OK" if ok else "503 Service Unavailable"), "application/json"
                    body = json.dumps({"healthy": ok, **detail}, separators=(",", ":")).encode()
                else:
                    code, ctype, body = "404 Not Found", "text/plain", b"not found: try /metrics or /healthz\n"
            except Exception:   # a scrape must never take the daemon down
                log.exception("metrics request %s failed", path)
                code, ctype, body = "500 Internal Server Error", "text/plain", b"internal error\n"
        headers = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
        if code.startswith("405"):
            headers.append(("Allow", "GET, HEAD"))
        start_response(code, headers)
        return [body]

    return app


class MetricsServer:
    """GET /metrics (Prometheus text) and GET /healthz (200 or 503 with a JSON reason).

    Thread count is 1 + workers whatever the clients do (daemon/http_server.py); a client too slow to send its
    request within request_timeout_s, or to take its reply, is cut off without costing a thread."""

    def __init__(self, metrics: Metrics, health: HealthFn, host: str = "127.0.0.1", port: int = 9108,
                 workers: int = HTTP_WORKERS, request_timeout_s: float = http_server.REQUEST_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS):
        self.metrics = metrics
        self.health = health
        self._http = http_server.HttpServer(_http_app(metrics, health), host, port, name="metrics-http",
                                            workers=workers, request_timeout_s=request_timeout_s,
                                            max_connections=max_connections)

    @property
    def port(self) -> int:
        return self._http.port

    def stats(self) -> dict:
        """What clients did to the server: see HttpServer.stats()."""
        return self._http.stats()

    def start(self) -> "MetricsServer":
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()


def start_metrics_server(cfg, metrics: Metrics, health: HealthFn, retry: bool = False) -> Optional[MetricsServer]:
    """The metrics endpoint per the config's metrics section; None when off or when its port cannot be had
    (metrics are for looking at; the readings matter more: the error is logged, the daemon runs on and tries the
    port again, retry=True, quietly)."""
    if not cfg.enabled:
        return None
    try:
        server = MetricsServer(metrics, health, cfg.host, cfg.port).start()
    except OSError as exc:
        log.log(logging.DEBUG if retry else logging.ERROR, "metrics server on %s:%d not started: %s%s", cfg.host,
                cfg.port, exc, "" if retry else f"; tried again every {METRICS_RETRY_S:g} s")
        return None
    log.info("metrics on http://%s:%d/metrics and /healthz", cfg.host, server.port)
    return server
