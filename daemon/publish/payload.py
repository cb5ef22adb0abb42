"""The result message (schema ``ocr-result/4``; a read cycle's result ``ocr-result/5``) and the topics, as pure
functions.

ocr-result/5 (daemon/schema/ocr-result-5.json) is ocr-result/4 plus a triggered camera's ``status`` (good_read,
no_read, no_label, mismatch, multiple), ``result_id`` (monotonic per camera: the seq), ``trigger_id`` (echoed),
``trigger_source``, ``recipe`` and ``verification`` (null when nothing was expected). Continuous cameras publish
ocr-result/4 as before.

The JSON Schema of the payload is daemon/schema/ocr-result-4.json; tests validate every received message against it.
ocr-result/4 is ocr-result/3 (every field kept, same meaning) plus the optional top-level ``frames``: how many frames
of one label a consensus reading (cameras[].publish_mode: consensus) was voted from; ``captured_at`` is then the
first of those frames' capture time. Cameras publishing their first reading leave it out.
ocr-result/3 is ocr-result/2 (every field kept, same meaning) plus ``codes``: the barcodes and 2D codes of the frame
(``[{"format": "Code128", "text": "...", "box": [[x, y], ...4]}]``, GS1 codes with ``gs1``: AI -> value, and
``gs1_error`` when a check digit inside fails), and, on a text line, ``format`` / ``corrected_from`` (the camera's
accept_formats) and ``confirmed_by`` / ``code_value`` (a code of the frame with the same or a near identifier).
ocr-result/2 is ocr-result/1 (every field kept, same meaning) plus ``source``: where the reading comes from, so a
subscriber can match it to a scan: ``{"kind": "folder", "file": "scan_0042.png"}`` for an image folder,
``{"kind": "file", "frame": 1234}`` (0-based index in the video file) for a video file, ``{"kind": "rtsp"}`` (the
camera kind alone) for live cameras. ocr-result-1.json, -2.json and -3.json stay for subscribers of the old versions.
"""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Optional, Sequence

from daemon.ocr.results import TextLine
from daemon.printable import printable

SCHEMA_ID = "ocr-result/4"
CYCLE_SCHEMA_ID = "ocr-result/5"   # a read cycle's result: ocr-result/4 plus its status, ids and verification


def format_captured_at(captured_at: float) -> str:
    """Epoch seconds -> RFC 3339 UTC with milliseconds, e.g. 2026-11-23T21:30:15.123Z."""
    ms = int(math.floor(captured_at * 1000.0 + 0.5))
    dt = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def message_id(device_id: str, camera: str, seq: int, captured_at: float) -> str:
    """Stable across replays (it is stored in the outbox row). The capture time in ms keeps ids unique even if
    the outbox file, and with it the per-camera seq counter, is ever deleted."""
    return f"{device_id}:{camera}:{seq}:{int(math.floor(captured_at * 1000.0 + 0.5))}"


def source_doc(source: Optional[dict]) -> dict:
    """The payload's ``source`` object: kind, plus file (folder) or frame (video file) when known. A file name that
    is not UTF-8 (a Windows share's Latin-1) is spelled with ``\\xNN`` escapes: the payload stays valid UTF-8."""
    source = source or {}
    doc: dict = {"kind": str(source.get("kind") or "unknown")}
    if source.get("file") is not None:
        doc["file"] = printable(str(source["file"]))
    if source.get("frame") is not None:
        doc["frame"] = int(source["frame"])
    return doc


def result_message(*, device_id: str, camera: str, seq: int, captured_at: float, lines: Sequence[TextLine],
                   latency_ms: dict[str, float], engine: dict,
                   source: Optional[dict] = None, codes: Sequence = (),
                   frames: Optional[int] = None, cycle: Optional[dict] = None) -> tuple[str, bytes]:
    """Returns (msg_id, UTF-8 JSON) for one accepted reading; see DESIGN.md's MQTT contract. cycle: a read
    cycle's fields (status, result_id, trigger_id, trigger_source, recipe, verification[, note]), which make the
    message an ocr-result/5."""
    msg_id = message_id(device_id, camera, seq, captured_at)
    doc = {
        "schema": SCHEMA_ID,
        "id": msg_id,
        "device": device_id,
        "camera": camera,
        "seq": int(seq),
        "captured_at": format_captured_at(captured_at),
        "texts": [line.to_json() for line in lines],
        "latency_ms": {str(k): round(float(v), 3) for k, v in latency_ms.items()},
        "engine": dict(engine),
        "source": source_doc(source),
        "codes": [code.to_json() for code in codes],
    }
    if frames is not None:   # a consensus reading: the label's frames voted
        doc["frames"] = int(frames)
    if cycle is not None:    # a read cycle's one result
        doc["schema"] = CYCLE_SCHEMA_ID
        doc.update(cycle)
    # ensure_ascii=False keeps Chinese text readable on the wire; compact separators save bytes on disk.
    return msg_id, json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def result_topic(prefix: str, device_id: str, camera: str) -> str:
    return f"{prefix}/{device_id}/{camera}/text"


def recipe_topic(prefix: str, device_id: str, camera: str) -> str:
    """A triggered camera's recipe selection topic; the answers go to recipe_topic(...) + "/answer"."""
    return f"{prefix}/{device_id}/{camera}/recipe"


def trigger_topic(prefix: str, device_id: str, camera: str) -> str:
    """A triggered camera's command topic; the answers go to trigger_topic(...) + "/answer"."""
    return f"{prefix}/{device_id}/{camera}/trigger"


def status_topic(prefix: str, device_id: str) -> str:
    return f"{prefix}/{device_id}/status"


def stats_topic(prefix: str, device_id: str) -> str:
    return f"{prefix}/{device_id}/stats"
