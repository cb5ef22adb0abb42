"""The review message (schema ``ocr-review/1``): the id of a stored reading worth a person's look, as pure functions.

A reading whose lowest line confidence is below ``evidence.review_below_confidence`` is published as usual and,
right after it through the same outbox (so it survives a broker outage), its id goes QoS 1 to
``{prefix}/{device}/{camera}/review`` with that confidence and the path of its evidence on the daemon's page
(``/evidence/<id>.jpg``, daemon/evidence.py). JSON Schema: daemon/schema/ocr-review-1.json.
"""
from __future__ import annotations

import json
from typing import Optional, Sequence
from urllib.parse import quote

from daemon.ocr.results import TextLine
from daemon.publish.payload import format_captured_at

SCHEMA_ID = "ocr-review/1"


def review_topic(prefix: str, device_id: str, camera: str) -> str:
    return f"{prefix}/{device_id}/{camera}/review"


def lowest_confidence(lines: Sequence[TextLine]) -> Optional[float]:
    """The reading's weakest line; None for a reading without lines (publish_empty), which is never reviewed."""
    return min((float(line.confidence) for line in lines), default=None)


def needs_review(lines: Sequence[TextLine], below: float) -> bool:
    """Whether a stored reading goes to the review topic; below 0 means off."""
    low = lowest_confidence(lines)
    return below > 0 and low is not None and low < below


def evidence_path(msg_id: str) -> str:
    """Where the daemon's page serves the reading's frame (percent-encoded: ids hold ':')."""
    return f"/evidence/{quote(msg_id, safe='')}.jpg"


def review_message(*, msg_id: str, device_id: str, camera: str, captured_at: float,
                   lines: Sequence[TextLine], below: float) -> bytes:
    low = lowest_confidence(lines)
    doc = {"schema": SCHEMA_ID, "id": msg_id, "device": device_id, "camera": camera,
           "captured_at": format_captured_at(captured_at),
           "lowest_confidence": round(float(low if low is not None else 0.0), 4),
           "threshold": round(float(below), 4),
           "texts": [line.text for line in lines],
           "evidence": evidence_path(msg_id)}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
