"""The result payload and topics: schema ocr-result/4 (ocr-result/3 plus the optional frames of a consensus reading;
/3 is /2 plus codes and line checks; /2 is /1 plus source),
stable ids, RFC 3339 times."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from daemon.ocr.results import TextLine
from daemon.publish.payload import (SCHEMA_ID, format_captured_at, result_message, result_topic, stats_topic,
                                    status_topic)

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "daemon/schema"
SCHEMA = json.loads((SCHEMA_DIR / "ocr-result-4.json").read_text())
SCHEMA_3 = json.loads((SCHEMA_DIR / "ocr-result-3.json").read_text())
SCHEMA_2 = json.loads((SCHEMA_DIR / "ocr-result-2.json").read_text())
SCHEMA_1 = json.loads((SCHEMA_DIR / "ocr-result-1.json").read_text())


def _lines():
    return [TextLine("SF1234567890123", 0.987654, ((10, 20), (210.04, 20), (210, 52), (10, 52.26))),
            TextLine("上海市浦东新区", 0.91, ((5.0, 60.0), (150.0, 60.0), (150.0, 90.0), (5.0, 90.0)))]


def _message(**over):
    kw = dict(device_id="dock-3", camera="belt_1", seq=42, captured_at=1795000000.1234,
              lines=_lines(), latency_ms={"capture_to_publish": 31.23456, "det": 12.0},
              engine={"backend": "tensorrt", "precision": "int8"},
              source={"kind": "folder", "file": "scan_0042.png"})
    kw.update(over)
    return result_message(**kw)


def test_message_matches_schema_and_design():
    msg_id, payload = _message()
    doc = json.loads(payload.decode("utf-8"))
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert doc["schema"] == SCHEMA_ID == "ocr-result/4"
    assert doc["id"] == msg_id
    assert (doc["device"], doc["camera"], doc["seq"]) == ("dock-3", "belt_1", 42)
    assert doc["captured_at"] == "2026-11-18T11:06:40.123Z"
    assert doc["texts"][0] == {"text": "SF1234567890123", "confidence": 0.9877,
                               "box": [[10.0, 20.0], [210.0, 20.0], [210.0, 52.0], [10.0, 52.3]]}
    assert doc["texts"][1]["text"] == "上海市浦东新区"
    assert "上海" in payload.decode("utf-8")   # readable UTF-8, not \\u escapes
    assert doc["latency_ms"] == {"capture_to_publish": 31.235, "det": 12.0}
    assert doc["engine"] == {"backend": "tensorrt", "precision": "int8"}
    assert doc["source"] == {"kind": "folder", "file": "scan_0042.png"}


@pytest.mark.parametrize("source, expected", [
    ({"kind": "folder", "file": "a.png"}, {"kind": "folder", "file": "a.png"}),
    ({"kind": "file", "frame": 1234}, {"kind": "file", "frame": 1234}),
    ({"kind": "rtsp"}, {"kind": "rtsp"}),
    (None, {"kind": "unknown"}),
])
def test_source_names_the_scan_or_the_frame(source, expected):
    doc = json.loads(_message(source=source)[1])
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert doc["source"] == expected


def test_version_2_keeps_every_field_of_version_1():
    doc = json.loads(_message()[1])
    assert set(SCHEMA_1["required"]) <= set(SCHEMA_2["required"])
    assert set(SCHEMA_2["required"]) - set(SCHEMA_1["required"]) == {"source"}
    for name, spec in SCHEMA_1["properties"].items():
        if name != "schema":
            assert SCHEMA_2["properties"][name] == spec, name
    # A version-1 reader that ignores the schema field and the extra keys sees the same document.
    old = {k: v for k, v in doc.items() if k not in ("source", "codes")}
    old["schema"] = "ocr-result/1"
    jsonschema.validate(old, SCHEMA_1, cls=jsonschema.Draft202012Validator)


def test_version_3_keeps_every_field_of_version_2_and_adds_codes():
    assert set(SCHEMA_3["required"]) - set(SCHEMA_2["required"]) == {"codes"}
    for name, spec in SCHEMA_2["properties"].items():
        if name not in ("schema", "texts"):
            assert SCHEMA_3["properties"][name] == spec, name
    old_line, new_line = SCHEMA_2["properties"]["texts"]["items"], SCHEMA_3["properties"]["texts"]["items"]
    assert old_line["required"] == new_line["required"]
    for name, spec in old_line["properties"].items():
        assert new_line["properties"][name] == spec, name
    # A plain reading (no codes, no checks) is a version-2 document but for the schema name and "codes": [].
    doc = json.loads(_message()[1])
    assert doc["codes"] == []
    old = {k: v for k, v in doc.items() if k != "codes"}
    old["schema"] = "ocr-result/2"
    jsonschema.validate(old, SCHEMA_2, cls=jsonschema.Draft202012Validator)


def test_version_4_keeps_every_field_of_version_3_and_adds_optional_frames():
    assert SCHEMA["required"] == SCHEMA_3["required"]
    assert set(SCHEMA["properties"]) - set(SCHEMA_3["properties"]) == {"frames"}
    for name, spec in SCHEMA_3["properties"].items():
        if name not in ("schema", "engine"):
            assert SCHEMA["properties"][name] == spec, name
    # engine gains one optional key, which version 3 already allows (it does not close engine's properties)
    engine, engine_3 = SCHEMA["properties"]["engine"], SCHEMA_3["properties"]["engine"]
    assert engine["required"] == engine_3["required"] and "additionalProperties" not in engine_3
    assert {k: v for k, v in engine["properties"].items() if k != "int8_models"} == engine_3["properties"]
    first = json.loads(_message()[1])
    assert "frames" not in first   # a first-reading camera: a version-3 document but for the schema name
    jsonschema.validate({**first, "schema": "ocr-result/3"}, SCHEMA_3, cls=jsonschema.Draft202012Validator)
    voted = json.loads(_message(frames=7)[1])
    jsonschema.validate(voted, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert voted["frames"] == 7
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**voted, "frames": 0}, SCHEMA, cls=jsonschema.Draft202012Validator)


def test_codes_and_line_checks_are_published_and_valid():
    from daemon.codes.reader import Code
    from daemon.readings.results_filter import PublishedLine
    box = ((10.0, 20.0), (210.0, 20.0), (210.0, 52.0), (10.0, 52.0))
    lines = [PublishedLine("EE123456785CN", 0.9, box, format="s10", corrected_from="EE12345678SCN",
                           confirmed_by="code"),
             PublishedLine("SF7300000001", 0.9, box, code_value="SF7300000007")]
    codes = [Code("Code128", "EE123456785CN", box),
             Code("Code128", "(00)340123451234567894(17)261130", box,
                  gs1={"00": "340123451234567894", "17": "2026-11-30"}, gs1_error="(00) Invalid SSCC check digit")]
    doc = json.loads(_message(lines=lines, codes=codes)[1])
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert doc["texts"][0]["corrected_from"] == "EE12345678SCN" and doc["texts"][0]["format"] == "s10"
    assert doc["texts"][0]["confirmed_by"] == "code" and doc["texts"][1]["code_value"] == "SF7300000007"
    assert doc["codes"][0] == {"format": "Code128", "text": "EE123456785CN", "box": [list(p) for p in box]}
    assert doc["codes"][1]["gs1"] == {"00": "340123451234567894", "17": "2026-11-30"}
    assert "check digit" in doc["codes"][1]["gs1_error"]


def test_id_is_a_function_of_device_camera_seq_and_time():
    a, _ = _message()
    b, _ = _message(lines=[], latency_ms={})   # a replay re-reads the stored payload; the id never depends on texts
    assert a == b
    assert _message(seq=43)[0] != a and _message(camera="belt_2")[0] != a
    assert _message(captured_at=1795000000.2)[0] != a   # a reset outbox (seq back to 1) still gives new ids


def test_empty_reading_is_valid():
    _, payload = _message(lines=[])
    jsonschema.validate(json.loads(payload), SCHEMA, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("bad", [{"seq": 0}, {"captured_at": "2026-11-18 08:26:40"}, {"extra": 1}, {"source": {}},
                                 {"source": {"kind": "file", "frame": -1}},
                                 {"texts": [{"text": "x", "confidence": 1.5, "box": [[0, 0]] * 4}]},
                                 {"texts": [{"text": "x", "confidence": 0.5, "box": [[0, 0]] * 3}]}])
def test_schema_rejects_malformed_payloads(bad):
    doc = json.loads(_message()[1])
    doc.update(bad)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)


def test_captured_at_rounds_to_milliseconds_in_utc():
    assert format_captured_at(0.0) == "1970-01-01T00:00:00.000Z"
    assert format_captured_at(1.9996) == "1970-01-01T00:00:02.000Z"


def test_topics():
    assert result_topic("ocr", "dock-3", "belt_1") == "ocr/dock-3/belt_1/text"
    assert status_topic("plant/a", "dock-3") == "plant/a/dock-3/status"
    assert stats_topic("ocr", "dock-3") == "ocr/dock-3/stats"
