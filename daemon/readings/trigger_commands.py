"""A read-cycle trigger as it comes over MQTT or HTTP: a small JSON object, parsed with bounds, and its answer.

    {"trigger_id": "part-4711", "expected": "LOT 4711A", "recipe": "cans-330", "fields": {"lot": "4711A"}}

Every key is optional; an empty body is a trigger too. What the network sends is never trusted: at most
MAX_BODY_BYTES, a JSON object, strings of at most MAX_TEXT characters without control characters, at most
MAX_FIELDS template fields. A bad command is answered with the reason and triggers nothing.

The answer (published on ``{prefix}/{device}/{camera}/trigger/answer`` for MQTT, the response body for HTTP):
``{"camera", "trigger_id", "accepted": true|false, "reason"}``; the result itself comes later, once, on the camera's
text topic (ocr-result/5) like every reading.
"""
from __future__ import annotations

import json
import time
from typing import Callable, Collection, Mapping, Optional

from daemon.printable import printable
from daemon.readings.triggers import Trigger

MAX_BODY_BYTES = 4096
MAX_TEXT = 256
MAX_FIELDS = 32


class BadCommand(ValueError):
    """A trigger command that cannot be used; the message says why (safe to send back)."""


def parse_trigger(camera: str, body: bytes, source: str) -> Trigger:
    """The Trigger a command body asks for; BadCommand with the reason otherwise."""
    if len(body) > MAX_BODY_BYTES:
        raise BadCommand(f"the command is {len(body)} bytes; at most {MAX_BODY_BYTES}")
    doc: object = {}
    if body.strip():
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise BadCommand(f"the command is not JSON in UTF-8 ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise BadCommand("the command must be a JSON object")
    unknown = sorted(set(doc) - {"trigger_id", "expected", "recipe", "fields"})
    if unknown:
        raise BadCommand(f"unknown key {printable(str(unknown[0]))[:40]!r}: use trigger_id, expected, recipe, fields")
    fields = doc.get("fields") or {}
    if not isinstance(fields, dict) or len(fields) > MAX_FIELDS:
        raise BadCommand(f"fields must be an object of at most {MAX_FIELDS} entries")
    now = time.time()
    return Trigger(camera=camera, source=source, trigger_id=_text(doc, "trigger_id"),
                   expected=_text(doc, "expected"), recipe=_text(doc, "recipe"),
                   fields={_checked(str(k), "fields key"): _checked(_scalar(v), f"fields.{k}") for k, v in fields.items()},
                   received_at=now, received_mono=time.monotonic())


def offer_command(boards: Mapping, camera: str, body: bytes, source: str,
                  recipes: Collection[str] = ()) -> tuple[str, bytes]:
    """A command for camera, offered to its trigger board: ("accepted" | "missed" | "bad" | "unknown", the answer).
    A recipe not in recipes is refused (nothing triggered). Called from a protocol's thread (paho's, the page's
    workers); the board is thread-safe."""
    board = boards.get(camera)
    if board is None:
        return "unknown", answer(camera, None, False, f"camera {printable(camera)[:64]!r} is not a triggered camera")
    try:
        trigger = parse_trigger(camera, body, source)
        if trigger.recipe is not None and trigger.recipe not in recipes:
            raise BadCommand(f"unknown recipe {trigger.recipe[:64]!r}: one of {', '.join(sorted(recipes)) or 'none'}")
    except BadCommand as exc:
        return "bad", answer(camera, None, False, str(exc))
    got = board.offer(trigger)
    return ("accepted" if got.accepted else "missed"), answer(camera, trigger.trigger_id, got.accepted, got.reason)


def listen_for_triggers(publisher, prefix: str, device_id: str, boards: Mapping,
                        recipes: Callable[[], Collection[str]]) -> None:
    """Before the MQTT publisher starts: each triggered camera's command topic offers to its board, and the
    answer goes to the topic + "/answer" (daemon/publish/mqtt_client.Publisher.listen)."""
    from daemon.publish.payload import trigger_topic

    for name in boards:
        topic = trigger_topic(prefix, device_id, name)
        publisher.listen(topic, lambda body, name=name: offer_command(boards, name, body, "mqtt", recipes())[1],
                         topic + "/answer")


def answer(camera: str, trigger_id: Optional[str], accepted: bool, reason: str = "") -> bytes:
    return json.dumps({"camera": camera, "trigger_id": trigger_id, "accepted": accepted, "reason": reason},
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _text(doc: dict, key: str) -> Optional[str]:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadCommand(f"{key} must be a string")
    return _checked(str(value), key)


def _scalar(value) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise BadCommand("a field's value must be a string or a number")


def _checked(text: str, key: str) -> str:
    if len(text) > MAX_TEXT:
        raise BadCommand(f"{printable(key)[:40]} is {len(text)} characters; at most {MAX_TEXT}")
    if printable(text) != text:
        raise BadCommand(f"{printable(key)[:40]} holds control characters")
    return text
