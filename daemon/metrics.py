"""Prometheus metrics and /healthz on one small HTTP server (loopback by default).

Counters that live elsewhere (sources, hub, outbox, publisher) are read at scrape time from one snapshot
function the service provides, so they are never counted twice; stage latencies are observed here into
histograms as frames go through. The snapshot is a plain dict, the same one the stats topic carries:

    {"backend": {"backend", "precision", "reason", "category", "degraded"},   # BackendChoice.as_dict()
     "cameras": {name: {"fps", "frames", "dropped", "corrupt", "reconnects", "watchdog_restarts",
                        "stored", "rejected": {reason: n}, "state"}},
     "outbox": {"rows", "bytes", "dropped_oldest", "refused_new", "expired"},
     "mqtt": {"enabled", "connected", <publisher counters>: n},
     "latency_ms": {stage: {"p50", "p95", "count"}}}
"""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable, Optional

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

# Stage latencies run from ~1 ms (filters) to seconds (a slow CPU under load); seconds, as Prometheus wants.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_CAMERA_COUNTERS = {
    "frames": ("ocr_frames_total", "Frames OCR'd"),
    "dropped": ("ocr_frames_dropped_total", "Frames overwritten by a newer one before inference took them"),
    "corrupt": ("ocr_frames_corrupt_total", "Unreadable frames or images, skipped"),
    "reconnects": ("ocr_source_reconnects_total", "Sources reopened after losing the device"),
    "watchdog_restarts": ("ocr_source_watchdog_restarts_total", "Sources restarted for delivering no frame"),
    "stored": ("ocr_results_stored_total", "Results written to the outbox"),
}
_OUTBOX_LOSSES = ("dropped_oldest", "refused_new", "expired")

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

        ob = snap.get("outbox", {})
        yield GaugeMetricFamily("ocr_outbox_rows", "Results waiting in the outbox", value=float(ob.get("rows", 0)))
        yield GaugeMetricFamily("ocr_outbox_bytes", "Payload bytes waiting in the outbox",
                                value=float(ob.get("bytes", 0)))
        lost = CounterMetricFamily("ocr_outbox_lost_total", "Results the outbox let go on purpose, by policy",
                                   labels=["reason"])
        for reason in _OUTBOX_LOSSES:
            lost.add_metric([reason], float(ob.get(reason, 0)))
        yield lost

        mq = snap.get("mqtt", {})
        yield GaugeMetricFamily("ocr_broker_connected", "1 while the MQTT broker accepted our connection",
                                value=1.0 if mq.get("connected") else 0.0)
        for key, n in mq.items():
            if key in ("enabled", "connected") or isinstance(n, bool) or not isinstance(n, (int, float)):
                continue
            yield CounterMetricFamily(f"ocr_mqtt_{key}_total", f"MQTT publisher: {key.replace('_', ' ')}",
                                      value=float(n))


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


class MetricsServer:
    """GET /metrics (Prometheus text) and GET /healthz (200 or 503 with a JSON reason), in a daemon thread."""

    def __init__(self, metrics: Metrics, health: HealthFn, host: str = "127.0.0.1", port: int = 9108):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:   # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                try:
                    if path == "/metrics":
                        self._reply(200, CONTENT_TYPE_LATEST, outer.metrics.exposition())
                    elif path == "/healthz":
                        ok, detail = outer.health()
                        body = json.dumps({"healthy": ok, **detail}, separators=(",", ":")).encode()
                        self._reply(200 if ok else 503, "application/json", body)
                    else:
                        self._reply(404, "text/plain", b"not found: try /metrics or /healthz\n")
                except Exception:   # a scrape must never take the daemon down
                    log.exception("metrics request %s failed", path)
                    self._reply(500, "text/plain", b"internal error\n")

            def _reply(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args) -> None:   # scrapes every 15 s would flood the journal
                log.debug("metrics: " + fmt, *args)

        self.metrics = metrics
        self.health = health
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> "MetricsServer":
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
