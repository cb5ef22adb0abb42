"""Read-cycle commands as they come over MQTT or HTTP: a trigger or a recipe selection, each a small JSON object
parsed with bounds, and its answer.

    {"trigger_id": "part-4711", "expected": "LOT 4711A", "recipe": "cans-330", "fields": {"lot": "4711A"}}

Every key is optional; an empty body is a trigger too. What the network sends is never trusted: at most
MAX_BODY_BYTES, a JSON object, strings of at most MAX_TEXT characters without control characters (but the
``\n`` that separates the lines of an ``expected`` print of several lines, as in ``expect_text``), at most
MAX_FIELDS template fields. A bad command is answered with the reason and triggers nothing.

The answer (published on ``{prefix}/{device}/{camera}/trigger/answer`` for MQTT, the response body for HTTP):
``{"camera", "trigger_id", "accepted": true|false, "reason"}``; the result itself comes later, once, on the camera's
text topic (ocr-result/5) like every reading.

A recipe selection (``{prefix}/{device}/{camera}/recipe`` for MQTT, answered on ``.../recipe/answer``;
``POST /api/cameras/<camera>/recipe`` for HTTP): ``{"recipe": "cans-330"}`` (or just ``"cans-330"``;
``{"recipe": null}``: the camera's own expectation, no recipe). Answer: ``{"camera", "recipe" (active now),
"accepted", "reason"}``; an unknown recipe is refused and the active one stays.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Mapping, Optional

from daemon.printable import printable
from daemon.readings.triggers import Trigger

MAX_BODY_BYTES = 4096
MAX_TEXT = 256
MAX_FIELDS = 32

log = logging.getLogger(__name__)


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


def offer_command(boards: Mapping, camera: str, body: bytes, source: str) -> tuple[str, bytes]:
    """A command for camera, offered to its trigger board: ("accepted" | "missed" | "bad" | "unknown", the answer).
    A recipe the board does not know is refused (nothing triggered). Called from a protocol's thread (paho's, the
    page's workers); the board is thread-safe."""
    board = boards.get(camera)
    if board is None:
        return "unknown", answer(camera, _trigger_id_of(body), False, _not_triggered(camera))
    try:
        trigger = parse_trigger(camera, body, source)
    except BadCommand as exc:
        return "bad", answer(camera, _trigger_id_of(body), False, str(exc))
    recipes = board.state().recipes
    if trigger.recipe is not None and trigger.recipe not in recipes:
        reason = f"unknown recipe {trigger.recipe[:64]!r}: one of {', '.join(recipes) or 'none defined'}"
        return "bad", answer(camera, trigger.trigger_id, False, reason)
    got = board.offer(trigger)
    outcome = "accepted" if got.accepted else "bad" if got.refused else "missed"
    return outcome, answer(camera, trigger.trigger_id, got.accepted, got.reason)


def _trigger_id_of(body: bytes) -> Optional[str]:
    """The trigger_id of a command refused for another reason, where it can be read as a valid one: the client
    matches the refusal to its part. None where the body is too large, not a JSON object or the id is not valid."""
    if len(body) > MAX_BODY_BYTES:
        return None
    try:
        doc = json.loads(body.decode("utf-8"))
        return _text(doc, "trigger_id") if isinstance(doc, dict) else None
    except (UnicodeDecodeError, ValueError, RecursionError, BadCommand):
        return None


def parse_recipe(body: bytes) -> Optional[str]:
    """The recipe a selection names (None: the camera's own expectation); BadCommand with the reason otherwise."""
    if len(body) > MAX_BODY_BYTES:
        raise BadCommand(f"the command is {len(body)} bytes; at most {MAX_BODY_BYTES}")
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadCommand(f"the command is not JSON in UTF-8 ({type(exc).__name__}): send {{\"recipe\": name}}") \
            from None
    if isinstance(doc, dict):
        unknown = sorted(set(doc) - {"recipe"})
        if unknown or "recipe" not in doc:
            raise BadCommand('the command must be {"recipe": name} (null: the camera\'s own expectation)')
        doc = doc["recipe"]
    if doc is None:
        return None
    if not isinstance(doc, str) or not doc:
        raise BadCommand("recipe must be a recipe's name or null")
    return _checked(doc, "recipe")


def select_command(boards: Mapping, camera: str, body: bytes, source: str) -> tuple[str, bytes]:
    """A recipe selection for camera: ("selected" | "refused" | "bad" | "unknown", the answer). Refused: the
    board does not know the recipe, and the active one stays."""
    board = boards.get(camera)
    if board is None:
        return "unknown", recipe_answer(camera, None, False, _not_triggered(camera))
    try:
        name = parse_recipe(body)
    except BadCommand as exc:
        return "bad", recipe_answer(camera, board.state().recipe, False, str(exc))
    got = select_recipe(board, name, source)
    return ("selected" if got.accepted else "refused"), recipe_answer(camera, got.state.recipe, got.accepted,
                                                                       got.reason)


def select_recipe(board, name: Optional[str], source: str):
    """board.select_recipe(name), logged the one way every protocol's selection is (a changeover is worth a line
    in the log: which recipe, from when, who asked)."""
    got = board.select_recipe(name)
    if got.accepted and got.reason != "already active":
        log.info("%s: recipe %s active for the triggers accepted from now on (selected over %s)", board.camera,
                 got.state.recipe or "(none: the camera's own expectation)", source)
    elif not got.accepted:
        log.warning("%s: recipe selection over %s refused: %s", board.camera, source, got.reason)
    return got


def listen_for_commands(publisher, prefix: str, device_id: str, boards: Mapping) -> None:
    """Before the MQTT publisher starts: every camera's trigger and recipe topics (one wildcard subscription each,
    so a camera a reload makes triggered is served too) offer to the camera's board in boards, read when each
    command arrives; each answer goes to the command's topic + "/answer" (Publisher.listen). A camera that is not
    triggered is answered so."""
    from daemon.publish.payload import recipe_topic, trigger_topic

    def camera_of(topic: str) -> str:   # .../<camera>/trigger: camera names hold no "/" (config's NAME_RULE)
        return topic.rsplit("/", 2)[-2]

    publisher.listen(trigger_topic(prefix, device_id, "+"),
                     lambda topic, body: offer_command(boards, camera_of(topic), body, "mqtt")[1])
    publisher.listen(recipe_topic(prefix, device_id, "+"),
                     lambda topic, body: select_command(boards, camera_of(topic), body, "mqtt")[1])


def answer(camera: str, trigger_id: Optional[str], accepted: bool, reason: str = "") -> bytes:
    return json.dumps({"camera": camera, "trigger_id": trigger_id, "accepted": accepted, "reason": reason},
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def recipe_answer(camera: str, recipe: Optional[str], accepted: bool, reason: str) -> bytes:
    return json.dumps({"camera": camera, "recipe": recipe, "accepted": accepted, "reason": reason},
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _not_triggered(camera: str) -> str:
    return f"camera {printable(camera)[:64]!r} is not a triggered camera"


def _text(doc: dict, key: str) -> Optional[str]:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadCommand(f"{key} must be a string")
    return _checked(str(value), key, lines=key == "expected")


def _scalar(value) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise BadCommand("a field's value must be a string or a number")


def _checked(text: str, key: str, lines: bool = False) -> str:
    """text within bounds; lines: it may hold "\n" between lines (no other control character)."""
    if len(text) > MAX_TEXT:
        raise BadCommand(f"{printable(key)[:40]} is {len(text)} characters; at most {MAX_TEXT}")
    if any(printable(part) != part for part in (text.split("\n") if lines else [text])):
        raise BadCommand(f"{printable(key)[:40]} holds control characters")
    return text
