"""Read cycles through the whole daemon (in-process Service) on real parts: a real RTSP camera (gst-rtsp-server)
showing a rendered lot code, a real Mosquitto, the real models. Triggers over MQTT, the page's HTTP server and
Modbus TCP (pymodbus's client as the PLC);
each cycle ends in exactly one ocr-result/5 message on the camera's text topic; a trigger while busy is answered
as missed. Bounded by deadlines, no timing assertions."""
import json
import urllib.error
import urllib.request
from pathlib import Path

import jsonschema
import pytest

from broker import Recorder, free_port, wait_until
from daemon import config
from daemon.service import Service
from service_support import mqtt_client, render_label, work_loop
from test_sources_rtsp import PASSWORD, USER, RtspServer, _server_available

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "daemon/schema/ocr-result-5.json").read_text())
LOT = "LOT 4711A"
SKIP = _server_available()


@pytest.mark.skipif(bool(SKIP), reason=SKIP or "ok")
def test_triggers_over_mqtt_and_http_each_get_one_verified_result(tmp_path, broker):
    image = tmp_path / "lot.png"
    render_label(image, LOT)
    rtsp = RtspServer(free_port(), image, tmp_path / "rtsp.log").start()
    rec = Recorder(broker.port, "ocr/#", client_id="plc-view")
    modbus_port = free_port()
    cfg = config.from_dict({
        "device_id": "st1", "backend": "onnxruntime",
        "ocr": {"det_input_size": [128, 640], "use_angle_classifier": False, "threads": 1},
        "cameras": [{"name": "cam", "kind": "rtsp", "uri": f"rtsp://{USER}:{PASSWORD}@127.0.0.1:{rtsp.port}/label",
                     "watchdog_s": 0, "codes": [], "mode": "triggered", "cycle_frames": 2,
                     "cycle_window_ms": 20000, "expect_text": LOT}],
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
        "web": {"enabled": True, "port": 0}, "metrics": {"enabled": False},
        "modbus": {"enabled": True, "port": modbus_port},
        "recipes": [{"name": "cans", "expect_text": LOT}, {"name": "jars", "expect_text": "LOT 4711B"}],
        "evidence": {"dir": str(tmp_path / "evidence")},
        "outbox": {"path": str(tmp_path / "outbox.sqlite3")}})
    service = Service(cfg, str(tmp_path / "unused.yaml"))
    service.start()
    try:
        with work_loop(service), mqtt_client(broker.port, "plc") as plc:
            rec.wait_subscribed()
            assert wait_until(lambda: service.publisher is not None and service.publisher.connected, 30)
            assert wait_until(lambda: service.snapshot()["cameras"]["cam"]["state"] == "streaming", 60)
            assert service.snapshot()["cameras"]["cam"]["frames"] == 0          # idle: nothing OCR'd
            assert wait_until(lambda: service.boards["cam"].state().camera_error is None, 30)   # the loop told it

            plc.publish("ocr/st1/cam/trigger", json.dumps({"trigger_id": "part-1"}), qos=1)
            assert wait_until(lambda: len(rec.results()) == 1, 120)
            plc.publish("ocr/st1/cam/trigger", json.dumps({"trigger_id": "part-2", "expected": "LOT 4711B"}), qos=1)
            plc.publish("ocr/st1/cam/trigger", json.dumps({"trigger_id": "part-3"}), qos=1)   # while part-2 waits
            assert wait_until(lambda: len(rec.results()) == 2, 120)

            port = service.page.server.port
            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/cameras/cam/trigger", method="POST",
                                         data=json.dumps({"trigger_id": "part-4"}).encode(),
                                         headers={"X-OCR-Page": "1", "Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                assert r.status == 202 and json.loads(r.read())["accepted"] is True
            assert wait_until(lambda: len(rec.results()) == 3, 120)
            with pytest.raises(urllib.error.HTTPError) as err:   # not a triggered camera
                urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/api/cameras/nope/trigger",
                                                              method="POST", data=b"{}", headers={"X-OCR-Page": "1"}),
                                       timeout=10)
            assert err.value.code == 404
            too_big = json.dumps({"trigger_id": "part-x", "expected": "L" * 5000}).encode()
            with pytest.raises(urllib.error.HTTPError) as err:   # refused by the server before it is read
                urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/api/cameras/cam/trigger",
                                                              method="POST", data=too_big,
                                                              headers={"X-OCR-Page": "1"}), timeout=10)
            assert err.value.code == 413 and b"4096 bytes" in err.value.read()
            assert service.boards["cam"].state().counters.triggers == 4   # nothing offered for it

            # The PLC over Modbus TCP: trigger coil -> trigger_ack -> result_valid with the id -> result_ack.
            from pymodbus.client import ModbusTcpClient

            from daemon.publish.sinks import modbus as mb
            plc_mb = ModbusTcpClient("127.0.0.1", port=modbus_port, timeout=5, retries=1)
            assert wait_until(plc_mb.connect, 30)

            def inputs():
                return plc_mb.read_discrete_inputs(0, count=mb.DISCRETE_INPUTS, device_id=1).bits

            def result_id():
                return plc_mb.read_input_registers(0, count=2, device_id=1).registers[1]

            shown = []
            for _ in range(3):   # the results of the other triggers come first, one at a time, each acknowledged
                assert wait_until(lambda: inputs()[mb.DI_RESULT_VALID], 30)
                shown.append(result_id())
                plc_mb.write_coil(mb.COIL_RESULT_ACK, True, device_id=1)
                assert wait_until(lambda: not inputs()[mb.DI_RESULT_VALID], 30)
                plc_mb.write_coil(mb.COIL_RESULT_ACK, False, device_id=1)
            assert shown == [1, 2, 3]
            assert wait_until(lambda: inputs()[mb.DI_TRIGGER_READY], 30)
            plc_mb.write_coil(mb.COIL_TRIGGER, True, device_id=1)
            assert wait_until(lambda: inputs()[mb.DI_TRIGGER_ACK], 30)
            plc_mb.write_coil(mb.COIL_TRIGGER, False, device_id=1)
            assert wait_until(lambda: inputs()[mb.DI_RESULT_VALID], 120)
            assert result_id() == 4 and inputs()[mb.DI_PASS]
            plc_mb.close()

            # A changeover: jars over HTTP, a recipe nobody defined over MQTT (refused; jars stays), then a part.
            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/cameras/cam/recipe", method="POST",
                                         data=b'{"recipe": "jars"}', headers={"X-OCR-Page": "1"})
            with urllib.request.urlopen(req, timeout=10) as r:
                assert r.status == 200 and json.loads(r.read())["recipe"] == "jars"
            plc.publish("ocr/st1/cam/recipe", json.dumps({"recipe": "bottles"}), qos=1)
            assert wait_until(lambda: rec.on_topic("ocr/st1/cam/recipe/answer"), 30)
            plc.publish("ocr/st1/cam/trigger", json.dumps({"trigger_id": "part-5"}), qos=1)
            assert wait_until(lambda: len(rec.results()) == 5, 120)
    finally:
        rtsp.stop()
    docs = [m.json() for m in rec.results()]
    rec.close()
    for d in docs:
        jsonschema.validate(d, SCHEMA)
    assert [(d["trigger_id"], d["status"], d["trigger_source"]) for d in docs] == [
        ("part-1", "good_read", "mqtt"), ("part-2", "mismatch", "mqtt"), ("part-4", "good_read", "http"),
        (None, "good_read", "modbus"), ("part-5", "mismatch", "mqtt")]
    assert [d["result_id"] for d in docs] == [1, 2, 3, 4, 5]
    assert [d["recipe"] for d in docs] == [None] * 4 + ["jars"]
    refused = json.loads(rec.on_topic("ocr/st1/cam/recipe/answer")[0].payload)
    assert refused == {"camera": "cam", "recipe": "jars", "accepted": False,
                       "reason": "unknown recipe 'bottles': one of cans, jars"}
    assert (tmp_path / "evidence" / f"{docs[1]['id']}.jpg").is_file()   # the failed part's frame is kept
    assert (tmp_path / "evidence" / f"{docs[1]['id']}.line0.jpg").is_file()   # and the crop of the line checked
    why = json.loads((tmp_path / "evidence" / f"{docs[1]['id']}.json").read_text(encoding="utf-8"))
    assert why["status"] == "mismatch" and why["words"].startswith("expected LOT 4711B · read ")
    assert why["words"].endswith(" · char 9: A instead of B"), why
    bad = [c for c in docs[1]["verification"]["chars"] if c["status"] != "ok"]
    assert [(c["expected"], c["read"]) for c in bad] == [("B", "A")]
    answers = [json.loads(m.payload) for m in rec.on_topic("ocr/st1/cam/trigger/answer")]
    assert [(a["trigger_id"], a["accepted"]) for a in answers] == [("part-1", True), ("part-2", True),
                                                                     ("part-3", False), ("part-5", True)]
    snap_cam = service.snapshot()["cameras"]["cam"]
    assert snap_cam["cycles"] == {"good_read": 3, "mismatch": 2} and snap_cam["triggers"]["missed"] == 1
    assert snap_cam["cycles_by_recipe"] == {"": {"good_read": 3, "mismatch": 1}, "jars": {"mismatch": 1}}
    assert (snap_cam["read_rate"], snap_cam["yield"]) == (1.0, 0.6)
    assert snap_cam["triggers"]["recipe"] == "jars" and snap_cam["triggers"]["recipe_changes"] == 1
    _, detail = service.health()
    assert detail["read_cycles"]["cam"]["recipe"] == "jars" and detail["read_cycles"]["cam"]["yield"] == 0.6
    health_cam = detail["read_cycles"]["cam"]   # /healthz carries what the stats topic does, and the board's state
    assert {k: health_cam[k] for k in ("cycles", "cycles_by_recipe", "read_rate", "yield", "triggers")} == {
        k: snap_cam[k] for k in ("cycles", "cycles_by_recipe", "read_rate", "yield", "triggers")}
