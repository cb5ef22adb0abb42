"""GS1 element strings (GS1-128, GS1 DataMatrix, GS1 QR) -> Application Identifiers, with biip.

``parse_gs1(raw)`` returns ``(ais, error)``: ``ais`` maps each AI to its value (dates as ISO dates:
``{"00": "340123451234567895", "17": "2026-11-30"}``), ``error`` names a failed check digit (SSCC, GTIN,
GLN) or a message biip cannot parse; None when all is well.
"""
from __future__ import annotations

from typing import Optional

GS = "\x1d"   # FNC1 as a group separator, how zxing-cpp returns the bytes of a GS1 code


def parse_gs1(raw: str) -> tuple[dict[str, str], Optional[str]]:
    from biip.gs1_messages import GS1Message
    try:
        message = GS1Message.parse_hri(raw) if raw.startswith("(") else GS1Message.parse(raw)
    except Exception as exc:   # biip's ParseError and friends: the message itself is malformed
        return {}, str(exc)
    ais: dict[str, str] = {}
    errors: list[str] = []
    for es in message.element_strings:
        value = es.date.isoformat() if es.date is not None else es.value
        ais[es.ai.ai] = value
        for err in (es.sscc_error, es.gtin_error, es.gln_error):
            if err:
                errors.append(f"({es.ai.ai}) {err}")
    return ais, "; ".join(errors) or None
