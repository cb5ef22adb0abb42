"""The JSON the page polls (/api/state): chosen fields of the service's snapshot, never the whole of it.

Pure. Only named fields are copied (an allow-list), so whatever is added to the snapshot later (an error text, a
broker address) reaches the page only when added here; a camera's source is shown through redact_uri, so an
RTSP password never does. The MQTT password and the page's token are never in the snapshot to begin with.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

from daemon.sources.redact import redact_uri

_CAMERA_FIELDS = ("fps", "frames", "dropped", "corrupt", "reconnects", "watchdog_restarts", "stored", "state",
                  "error")
_EVIDENCE_FIELDS = ("enabled", "readings", "bytes", "max_bytes", "queued", "written", "dropped_queue_full",
                    "dropped_disk_low", "write_errors", "evicted_size", "evicted_ttl")


def camera_config_view(cam) -> dict:
    """What the page says of a configured camera: kind, source (redacted), ROI, publish mode."""
    from daemon.config import publish_mode

    return {"kind": cam.kind, "source": redact_uri(cam.uri) if cam.uri else cam.kind, "roi": list(cam.roi),
            "publish_mode": publish_mode(cam), "min_confidence": cam.min_confidence}


def _cycles_view(stats: dict) -> Optional[dict]:
    """A triggered or status-reporting camera's results by status, read rate, yield, triggers and active recipe;
    None for a camera without any."""
    triggers = stats.get("triggers") or {}
    if not stats.get("cycles") and not triggers:
        return None
    return {"by_status": dict(stats.get("cycles") or {}), "read_rate": stats.get("read_rate"),
            "yield": stats.get("yield"), "missed": triggers.get("missed"), "recipe": triggers.get("recipe"),
            "triggered": bool(triggers), "busy": triggers.get("state") == "busy"}


def _with_crops(reading: dict, crops: Optional[Sequence[int]]) -> dict:
    return {**reading, "evidence_lines": None if crops is None else len(crops),
            "evidence_crops": None if crops is None else list(crops)}


def page_state(snapshot: dict, cameras: dict[str, dict], live_views: dict[str, dict],
               evidence: Optional[dict], configured: dict, refresh_ms: int,
               evidence_crops: Callable[[str], Optional[Sequence[int]]] = lambda msg_id: None) -> dict:
    """snapshot: Service.snapshot(); cameras: name -> camera_config_view(); live_views: name ->
    LiveView.camera_view(); evidence: EvidenceStore.snapshot(); configured: {"backend", "precision"} as
    the config file asks; evidence_crops: msg_id -> the lines with a crop kept (EvidenceStore.crops), None without
    evidence. Each reading and fail gets evidence_lines (how many crops there are) and evidence_crops (which
    lines have one: a line with no box in the kept frame has none, and the page shows no image for it)."""
    backend = snapshot.get("backend") or {}
    category = str(backend.get("category", ""))
    outbox = snapshot.get("outbox") or {}
    mqtt = snapshot.get("mqtt") or {}
    health = snapshot.get("health") or {}
    cams = {}
    for name, view in cameras.items():
        stats = (snapshot.get("cameras") or {}).get(name, {})
        live = dict(live_views.get(name, {}))
        for key in ("readings", "fails"):
            live[key] = [_with_crops(r, evidence_crops(r["id"])) for r in live.get(key, [])]
        cams[name] = {**view, **{k: stats.get(k) for k in _CAMERA_FIELDS},
                      "rejected_total": dict(stats.get("rejected") or {}), **live,
                      "cycles": _cycles_view(stats)}
    return {
        "device": snapshot.get("device"),
        "uptime_s": snapshot.get("uptime_s"),
        "refresh_ms": refresh_ms,
        "backend": {"backend": backend.get("backend"), "precision": backend.get("precision"),
                    "degraded": bool(backend.get("degraded")), "category": category,
                    # the sentence only when it is not what the config file asked for
                    "reason": None if category in ("configured", "loaded") else backend.get("reason"),
                    "configured": dict(configured)},
        "health": {"healthy": bool(health.get("healthy", True)), "reasons": list(health.get("reasons") or [])},
        "outbox": {"rows": int(outbox.get("rows", 0)), "bytes": int(outbox.get("bytes", 0))},
        "broker": {"enabled": bool(mqtt.get("enabled")), "connected": bool(mqtt.get("connected"))},
        "evidence": {k: (evidence or {}).get(k) for k in _EVIDENCE_FIELDS if k in (evidence or {})},
        "cameras": cams,
    }
