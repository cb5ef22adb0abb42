"""A trigger as it comes over MQTT or HTTP (daemon/readings/trigger_commands.py): bounded, typed, answered."""
import json

import pytest

from daemon.readings.trigger_commands import MAX_BODY_BYTES, BadCommand, answer, offer_command, parse_trigger
from daemon.readings.triggers import TriggerBoard


def test_every_key_is_optional_and_an_empty_body_is_a_trigger():
    t = parse_trigger("cam", b"", "mqtt")
    assert (t.camera, t.source, t.trigger_id, t.expected, t.recipe, dict(t.fields)) == ("cam", "mqtt", None, None,
                                                                                       None, {})
    t = parse_trigger("cam", json.dumps({"trigger_id": 4711, "expected": "LOT 4711A", "recipe": "cans",
                                         "fields": {"lot": "4711A", "n": 3}}).encode(), "http")
    assert (t.trigger_id, t.expected, t.recipe, dict(t.fields)) == ("4711", "LOT 4711A", "cans",
                                                                    {"lot": "4711A", "n": "3"})


def test_an_expected_print_of_several_lines_comes_as_in_expect_text():
    t = parse_trigger("cam", json.dumps({"expected": "LOT 52042K\nEXP 2028-04-05"}).encode(), "mqtt")
    assert t.expected == "LOT 52042K\nEXP 2028-04-05"


@pytest.mark.parametrize("body, why", [
    (b"x" * (MAX_BODY_BYTES + 1), "bytes"),
    (b"\xff\xfe{", "JSON"),
    (b"[1, 2]", "object"),
    (b'{"trigger": 1}', "unknown key"),
    (b'{"trigger_id": true}', "string"),
    (b'{"expected": {"a": 1}}', "string"),
    (json.dumps({"expected": "x" * 300}).encode(), "characters"),
    (json.dumps({"trigger_id": "a\nforged"}).encode(), "control"),
    (json.dumps({"expected": "LOT 1\r\nEXP 2"}).encode(), "control"),     # lines are split by \n alone
    (json.dumps({"expected": "LOT 1\nEXP\t2"}).encode(), "control"),
    (json.dumps({"fields": {str(i): i for i in range(40)}}).encode(), "fields"),
    (json.dumps({"fields": {"lot": [1]}}).encode(), "string or a number"),
    (b"[" * 4000, "JSON"),   # deep nesting within the size bound
])
def test_a_bad_command_is_refused_with_the_reason(body, why):
    with pytest.raises(BadCommand, match=why):
        parse_trigger("cam", body, "mqtt")


def test_a_refused_trigger_answers_with_its_trigger_id_where_it_can_be_read():
    boards = {"cam": TriggerBoard("cam", ("cans",))}
    outcome, body = offer_command(boards, "cam", b'{"trigger_id": "104", "recipe": "nosuch"}', "mqtt")
    doc = json.loads(body)
    assert outcome == "bad" and doc["trigger_id"] == "104" and "unknown recipe" in doc["reason"]
    outcome, body = offer_command(boards, "cam", b'{"trigger_id": 105, "colour": "red"}', "http")
    assert outcome == "bad" and json.loads(body)["trigger_id"] == "105" and "unknown key" in json.loads(body)["reason"]
    for bad_id in (b'{"trigger_id": "a\\nforged", "x": 1}', b'[1]', b'{', b'{"trigger_id": "' + b"x" * 5000 + b'"}'):
        outcome, body = offer_command(boards, "cam", bad_id, "http")
        assert outcome == "bad" and json.loads(body)["trigger_id"] is None
    assert boards["cam"].state().counters.triggers == 0      # none of them triggered anything
    outcome, body = offer_command(boards, "conveyor", b'{"trigger_id": "106"}', "mqtt")   # not a triggered camera
    assert outcome == "unknown" and json.loads(body)["trigger_id"] == "106"


def test_the_answer_is_one_json_object():
    assert json.loads(answer("cam", "p1", False, "busy")) == {"camera": "cam", "trigger_id": "p1",
                                                              "accepted": False, "reason": "busy"}
