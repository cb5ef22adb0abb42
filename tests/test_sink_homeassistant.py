"""Home Assistant MQTT discovery against a real Mosquitto: retained configs under homeassistant/sensor/..., a
retained state per camera with its last text, availability from the daemon's status topic."""
from __future__ import annotations

import dataclasses

import pytest

from broker import Recorder, wait_until
from daemon.config import CameraConfig, Config, HomeAssistantConfig
from daemon.publish.outbox import Outbox
from daemon.publish.sinks.homeassistant import HA_STATE_MAX_CHARS, HomeAssistantSink, discovery_config
from daemon.publish.sinks.mqtt import MqttSink
from publish_support import DEVICE, PREFIX, mqtt_cfg, outbox_cfg, put_result
from publish_support import cleanup  # noqa: F401  (a fixture, shared)


def _cfg(port: int) -> Config:
    return dataclasses.replace(Config(), device_id=DEVICE, mqtt=mqtt_cfg(port),
                               homeassistant=HomeAssistantConfig(enabled=True),
                               cameras=(CameraConfig(name="gate", kind="sample"),
                                        CameraConfig(name="dock.2", kind="sample")))


def test_discovery_config_names_the_state_and_availability_topics():
    c = discovery_config(_cfg(1883), "dock.2")
    assert c["state_topic"] == c["json_attributes_topic"] == f"{PREFIX}/{DEVICE}/dock.2/state"
    assert c["availability_topic"] == f"{PREFIX}/{DEVICE}/status"
    assert (c["payload_available"], c["payload_not_available"]) == ("online", "offline")
    assert c["unique_id"] == "ocr_dev_dock_2_text" and c["value_template"] == "{{ value_json.state }}"
    assert c["device"]["identifiers"] == [f"ocr-daemon-{DEVICE}"]
    assert c["default_entity_id"] == "sensor.ocr_dev_dock_2" and "object_id" not in c   # HA 2026.4 dropped it


def test_retained_configs_and_last_text_per_camera_with_availability_from_the_status_topic(broker, tmp_path,
                                                                                          cleanup):
    cfg = _cfg(broker.port)
    ob = Outbox(outbox_cfg(tmp_path), sinks=("mqtt", "homeassistant"))
    cleanup(ob.close)
    mqtt_sink = MqttSink(cfg.mqtt, DEVICE, ob.for_sink("mqtt"))
    ha = HomeAssistantSink(cfg, ob.for_sink("homeassistant"))
    for s in (mqtt_sink, ha):
        s.start()
    stopped = []
    cleanup(lambda: stopped or [s.stop(0.0) for s in (mqtt_sink, ha)])
    ids = [put_result(ob, "gate", text=f"PALLET-{i}")[0] for i in range(3)]
    put_result(ob, "dock.2", text="X" * 300)
    put_result(ob, "yard", text="NEW-CAMERA")   # not configured: announced before its first state
    for s in (mqtt_sink, ha):
        s.wake()
    assert wait_until(lambda: ob.depth() == (0, 0), 20), (mqtt_sink.health(), ha.health())

    # A Home Assistant that starts now sees everything retained.
    late = Recorder(broker.port, topic="#", client_id="home-assistant", persistent=False)
    cleanup(late.close)
    late.wait_subscribed()
    configs = {"homeassistant/sensor/dev/gate/config", "homeassistant/sensor/dev/dock_2/config",
               "homeassistant/sensor/dev/yard/config"}
    assert wait_until(lambda: configs <= {m.topic for m in late.snapshot()}
                      and len(late.on_topic(f"{PREFIX}/{DEVICE}/gate/state")) == 1, 10), late.snapshot()
    for topic in configs:
        [m] = late.on_topic(topic)
        assert m.retain and m.json()["availability_topic"] == f"{PREFIX}/{DEVICE}/status"
    [state] = late.on_topic(f"{PREFIX}/{DEVICE}/gate/state")
    assert state.retain and state.json()["state"] == "PALLET-2" and state.json()["id"] == ids[-1]
    assert abs(state.json()["confidence"] - 0.98) < 1e-9
    [long] = late.on_topic(f"{PREFIX}/{DEVICE}/dock.2/state")
    assert len(long.json()["state"]) == HA_STATE_MAX_CHARS and len(long.json()["text"]) == 300
    [status] = late.on_topic(f"{PREFIX}/{DEVICE}/status")
    assert status.retain and status.payload == b"online"
    assert ha.counters.delivered == 5 and ha.health().up

    for s in (mqtt_sink, ha):
        assert s.stop(2.0) == 0
    stopped.append(True)
    assert wait_until(lambda: late.on_topic(f"{PREFIX}/{DEVICE}/status")[-1].payload == b"offline", 5)


def test_off_by_default_and_refused_without_mqtt():
    from daemon.config import ConfigError, from_dict
    from daemon.publish.sinks import sink_names

    cfg = from_dict({"device_id": "dev"})
    assert not cfg.homeassistant.enabled and sink_names(cfg) == ("mqtt",)
    with pytest.raises(ConfigError, match="homeassistant.enabled"):
        from_dict({"device_id": "dev", "mqtt": {"enabled": False}, "homeassistant": {"enabled": True}})


def test_a_camera_a_reload_removes_has_its_sensor_cleared_and_an_added_one_is_announced(broker, tmp_path, cleanup):
    """Found from outside: a removed camera's retained config came back on the next reconnect, even after it was
    cleared by hand, and an added camera was announced only at its first reading."""
    cfg = _cfg(broker.port)
    ob = Outbox(outbox_cfg(tmp_path), sinks=("homeassistant",))
    cleanup(ob.close)
    ha = HomeAssistantSink(cfg, ob.for_sink("homeassistant"))
    ha.start()
    cleanup(lambda: ha.stop(0.0))
    put_result(ob, "dock.2", text="PALLET-7")
    ha.wake()
    assert wait_until(lambda: ob.depth() == (0, 0), 20), ha.health()
    ha.set_cameras(["gate", "yard"], ["dock.2"])
    put_result(ob, "dock.2", text="PALLET-8")          # what it left in the outbox: not shown
    ha.wake()
    assert wait_until(lambda: ob.depth() == (0, 0), 20), ha.health()
    ha._lost("test: the broker went away")             # a reconnect announces again: not the removed one
    assert wait_until(lambda: ha.counters.connects == 2, 20), ha.health()

    late = Recorder(broker.port, topic="#", client_id="home-assistant", persistent=False)
    cleanup(late.close)
    late.wait_subscribed()
    assert wait_until(lambda: {"homeassistant/sensor/dev/gate/config", "homeassistant/sensor/dev/yard/config"}
                      <= {m.topic for m in late.snapshot()}, 10), late.snapshot()
    retained = {m.topic for m in late.snapshot() if m.retain}
    assert "homeassistant/sensor/dev/dock_2/config" not in retained
    assert f"{PREFIX}/{DEVICE}/dock.2/state" not in retained
