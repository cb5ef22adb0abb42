"""Home Assistant MQTT discovery: a sensor per camera whose state is the camera's last text.

On every connection (mqtt_session.py, the mqtt section's broker) it publishes, retained, for each configured camera
    {discovery_prefix}/sensor/{node}/{camera}/config
with the sensor's state topic {prefix}/{device}/{camera}/state, availability = the daemon's status topic
({prefix}/{device}/status, "online"/"offline": the MQTT JSON sink's retained will), a unique_id and one device
for the box. Each reading is then published, retained (so Home Assistant shows the last text after its own
restart), QoS 1, to the state topic:
    {"state": <text, cut to 255 characters>, "text": <full text>, "confidence": ..., "id": ..., "captured_at": ...,
     "seq": ..., "lines": ...}
The sensor's value is "state" (Home Assistant refuses longer states); the rest are its attributes.
A camera first seen in a row (not configured) gets its config before its first state. A camera a reload removes
has its retained config and state cleared (set_cameras: Home Assistant removes the sensor); one removed while the
daemon was stopped leaves its retained config behind: clear it with an empty retained message to that topic.
"""
from __future__ import annotations

import json

from daemon.config import Config
from daemon.config.checks import discovery_id
from daemon.publish.outbox import OutboxRow, SinkQueue
from daemon.publish.payload import status_topic
from daemon.publish.sinks.base import QueueSink, Reading
from daemon.publish.sinks.mqtt_session import MqttSession

HA_STATE_MAX_CHARS = 255   # Home Assistant's limit on a state


_node_id = discovery_id


def state_topic(prefix: str, device_id: str, camera: str) -> str:
    return f"{prefix}/{device_id}/{camera}/state"


def config_topic(discovery_prefix: str, device_id: str, camera: str) -> str:
    return f"{discovery_prefix}/sensor/{_node_id(device_id)}/{_node_id(camera)}/config"


def discovery_config(cfg: Config, camera: str) -> dict:
    """The retained config message of one camera's sensor (pure)."""
    device_id, prefix = cfg.device_id, cfg.mqtt.topic_prefix
    return {
        "name": f"{camera} text",
        "unique_id": f"ocr_{_node_id(device_id)}_{_node_id(camera)}_text",
        # the entity id Home Assistant gives it (object_id until HA 2025.10, which Core 2026.4 no longer takes)
        "default_entity_id": f"sensor.ocr_{_node_id(device_id)}_{_node_id(camera)}",
        "state_topic": state_topic(prefix, device_id, camera),
        "value_template": "{{ value_json.state }}",
        "json_attributes_topic": state_topic(prefix, device_id, camera),
        "availability_topic": status_topic(prefix, device_id),
        "payload_available": "online",
        "payload_not_available": "offline",
        "icon": "mdi:text-recognition",
        "device": {"identifiers": [f"ocr-daemon-{device_id}"], "name": f"OCR {device_id}",
                   "manufacturer": "ocr-daemon", "model": "edge OCR daemon"},
        "origin": {"name": "ocr-daemon"},
    }


def state_message(reading: Reading) -> dict:
    return {"state": reading.text[:HA_STATE_MAX_CHARS], "text": reading.text, "confidence": reading.confidence,
            "id": reading.msg_id, "captured_at": reading.captured_at, "seq": reading.seq, "lines": reading.lines}


class HomeAssistantSink(QueueSink):
    name = "homeassistant"

    def __init__(self, cfg: Config, queue: SinkQueue):
        super().__init__(queue, cfg.mqtt.reconnect_min_s, cfg.mqtt.reconnect_max_s)
        self._cfg = cfg
        self._client_id = cfg.homeassistant.client_id or f"ocr-daemon-{cfg.device_id}-ha"
        self._session = None
        self._announced: set[str] = set()
        self._cameras = [c.name for c in cfg.cameras]   # the configured ones (a reload changes them: set_cameras)
        self._removed: list[str] = []   # cameras a reload removed, whose retained config and state are cleared
        self._gone: set[str] = set()    # ... and whose readings left in the outbox are not shown

    def _connect(self) -> None:
        if self._session is not None:
            self._session.close(graceful=False)
            self._session = None
        session = MqttSession(self._cfg.mqtt, self._client_id, self._lost)
        session.open()
        self._session = session
        self._announced = set()
        self._tick()
        for camera in self._cameras:
            if camera not in self._announced:
                self._announce(camera)

    def _tick(self) -> None:
        """A reload's cameras: a removed one's retained config is cleared (Home Assistant removes the sensor) and
        so is its retained state; an added one is announced now."""
        change = self._camera_change_taken()
        if change is not None:
            self._cameras = list(change[0])
            self._gone = (self._gone | set(change[1])) - set(change[0])
            self._removed = list(dict.fromkeys(self._removed + [c for c in change[1] if c not in change[0]]))
            for camera in self._cameras:
                if camera not in self._announced:
                    self._announce(camera)
        while self._removed:
            camera = self._removed[0]
            prefix, device = self._cfg.homeassistant.discovery_prefix, self._cfg.device_id
            self._session.publish(config_topic(prefix, device, camera), b"", qos=1, retain=True)
            self._session.publish(state_topic(self._cfg.mqtt.topic_prefix, device, camera), b"", qos=1, retain=True)
            self._announced.discard(camera)
            self._removed.pop(0)

    def _announce(self, camera: str) -> None:
        payload = json.dumps(discovery_config(self._cfg, camera), separators=(",", ":"))
        self._session.publish(config_topic(self._cfg.homeassistant.discovery_prefix, self._cfg.device_id, camera),
                              payload, qos=1, retain=True)
        self._announced.add(camera)

    def _deliver(self, row: OutboxRow, reading: Reading) -> None:
        if reading.camera in self._gone:   # a reading a reload's removed camera left: its sensor is gone
            return
        if reading.camera not in self._announced:
            self._announce(reading.camera)
        payload = json.dumps(state_message(reading), ensure_ascii=False, separators=(",", ":"))
        self._session.publish(state_topic(self._cfg.mqtt.topic_prefix, self._cfg.device_id, reading.camera),
                              payload.encode("utf-8"), qos=1, retain=True)

    def _disconnect(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()
