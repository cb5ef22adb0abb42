"""MQTT commands on one wildcard topic per kind, read against the trigger boards when each arrives (in-process
Service, real Mosquitto, the sample camera): a trigger for a camera that is not triggered is answered so and
triggers nothing (before, nobody listened and the PLC heard nothing), and once a reload makes the camera triggered
its triggers are served."""
from __future__ import annotations

import json

from broker import Recorder, wait_until
from daemon import config
from daemon.service import Service
from service_support import mqtt_client, small_ocr, work_loop, write_config


def _config(tmp_path, broker_port: int, belt_mode: str) -> dict:
    return {"device_id": "st1", "backend": "onnxruntime", "ocr": small_ocr(),
            "cameras": [{"name": "belt", "kind": "sample", "mode": belt_mode, "codes": [], "max_fps": 4,
                         "cycle_frames": 1, "cycle_window_ms": 60000, "one_label": False,
                         **({"publish_mode": "consensus"} if belt_mode == "continuous" else {})}],
            "mqtt": {"host": "127.0.0.1", "port": broker_port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
            "web": {"enabled": False}, "metrics": {"enabled": False},
            "outbox": {"path": str(tmp_path / "outbox.sqlite3")}, "evidence": {"dir": str(tmp_path / "ev")}}


def test_a_camera_made_triggered_by_a_reload_takes_mqtt_triggers(tmp_path, broker):
    path = write_config(tmp_path / "config.yaml", _config(tmp_path, broker.port, "continuous"))
    rec = Recorder(broker.port, "ocr/st1/belt/#", client_id="plc-view")
    service = Service(config.load(path), str(path))
    service.start()
    try:
        with work_loop(service), mqtt_client(broker.port, "plc") as plc:
            rec.wait_subscribed()
            assert wait_until(lambda: service.publisher is not None and service.publisher.connected, 30)
            plc.publish("ocr/st1/belt/trigger", json.dumps({"trigger_id": "early"}), qos=1)
            assert wait_until(lambda: rec.on_topic("ocr/st1/belt/trigger/answer"), 30)
            early = json.loads(rec.on_topic("ocr/st1/belt/trigger/answer")[0].payload)
            assert early["accepted"] is False and "not a triggered camera" in early["reason"]
            # Found from outside: /healthz had no read figures for a consensus camera's labels (label_status)
            assert wait_until(lambda: "belt" in service.status.health()[1].get("label_reads", {}), 120)
            reads = service.status.health()[1]["label_reads"]["belt"]
            assert sum(reads["cycles"].values()) >= 1 and 0.0 <= reads["read_rate"] <= 1.0

            write_config(path, _config(tmp_path, broker.port, "triggered"))
            service.request_reload()   # what SIGHUP sets (the triggered cameras changed: the sinks start anew)
            assert wait_until(lambda: "belt" in service.boards, 60)
            # The reload started the sinks anew: a trigger sent before the new session has subscribed reaches no one
            # (MQTT keeps nothing for a clean session). A command for another camera is answered once it listens.
            probe = Recorder(broker.port, "ocr/st1/probe/trigger/answer", client_id="plc-probe")
            try:
                probe.wait_subscribed()

                def answered() -> bool:
                    plc.publish("ocr/st1/probe/trigger", "{}", qos=1)
                    return wait_until(lambda: probe.on_topic("ocr/st1/probe/trigger/answer"), 1)
                assert wait_until(answered, 60)
            finally:
                probe.close()
            plc.publish("ocr/st1/belt/trigger", json.dumps({"trigger_id": "after-reload"}), qos=1)
            assert wait_until(lambda: any(m.json().get("trigger_id") == "after-reload" for m in rec.results()), 120)
    finally:
        rec.close()
    answers = [json.loads(m.payload) for m in rec.on_topic("ocr/st1/belt/trigger/answer")]
    assert [(a["trigger_id"], a["accepted"]) for a in answers] == [("early", False), ("after-reload", True)]
    [result] = [m.json() for m in rec.results() if m.json().get("trigger_id") == "after-reload"]
    assert result["trigger_source"] == "mqtt" and result["status"] == "good_read"   # the sample labels read


def test_a_stop_answers_the_waiting_trigger_now_and_misses_every_trigger_after_it(tmp_path, broker):
    """Found from outside: a trigger sent during a SIGTERM's drain was acknowledged, and answered only at the next
    start ("interrupted by a daemon restart"), so the PLC waited for a part no camera could read."""
    from daemon.publish.outbox import Outbox
    from daemon.readings.triggers import MISSED_STOPPING, Trigger

    cfg = config.from_dict({**_config(tmp_path, broker.port, "triggered"), "mqtt": {"enabled": False}})
    service = Service(cfg, str(tmp_path / "unused.yaml"))
    service.start()
    board = service.boards["belt"]
    assert board.state().camera_error == "the camera is not running yet"   # no turn of the work loop yet
    waiting = board.offer(Trigger(camera="belt", source="modbus", trigger_id="last-part"))
    assert waiting.accepted
    service.request_stop()
    assert service._shutdown() == 0                   # what run() does after its loop: no turn took the trigger
    late = board.offer(Trigger(camera="belt", source="modbus", trigger_id="too-late"))
    assert (late.accepted, late.reason) == (False, MISSED_STOPPING)
    assert board.state().camera_error == "the daemon is stopping"
    outbox = Outbox(cfg.outbox)
    try:
        [row] = outbox.pending(10)
    finally:
        outbox.close()
    doc = json.loads(row.payload)
    assert (doc["trigger_id"], doc["status"]) == ("last-part", "no_read")
    assert doc["note"] == "ended before a frame was read: stopping"
    assert not (tmp_path / "cycles" / "belt.json").exists()   # nothing left for the next start to answer
