"""One MQTT connection used synchronously from a sink's thread (Sparkplug B, Home Assistant).

Unlike the JSON publisher (mqtt_client.py), these sinks wait for each PUBACK before the next message and use a
fresh paho client for every connection: paho never re-sends a message of an old connection after a reconnect,
which for Sparkplug would put data with old sequence numbers before the new NBIRTH. Rows not acknowledged when a
connection drops are still in the outbox and go out again on the next one, after the births.
The broker settings (host, port, user, password, TLS, protocol, keepalive) are the mqtt section's.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional

from daemon.config import MqttConfig
from daemon.publish.mqtt_client import apply_credentials
from daemon.publish.sinks.base import SinkDown

log = logging.getLogger(__name__)

_ACK_TIMEOUT_S = 10.0   # a PUBACK not back by then: the connection is treated as lost
_NEVER_S = 3600         # paho's own reconnect is pushed out of the way: each connection is a new client


class MqttSession:
    def __init__(self, cfg: MqttConfig, client_id: str, on_lost: Callable[[str], None],
                 will: Optional[tuple[str, bytes, int, bool]] = None,
                 subscriptions: tuple[str, ...] = (), on_message: Optional[Callable[[str, bytes], None]] = None):
        """will: (topic, payload, qos, retain); on_lost(why) runs on paho's thread when the connection goes;
        on_message(topic, payload) too, for the subscriptions."""
        self._cfg = cfg
        self._client_id = client_id
        self._on_lost = on_lost
        self._will = will
        self._subscriptions = subscriptions
        self._on_message_cb = on_message
        self._client: Any = None
        self._connected = threading.Event()
        self._refused = ""
        self._failed: dict[int, str] = {}   # mid -> failing PUBACK reason (MQTT 5)
        self._closing = False

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def open(self) -> None:
        """Connects (blocking, at most connect timeout + keepalive); raises SinkDown when it cannot."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        cfg = self._cfg
        v5 = cfg.protocol == "5"
        kwargs: dict[str, Any] = {"callback_api_version": CallbackAPIVersion.VERSION2, "client_id": self._client_id,
                                  "protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311}
        if not v5:
            kwargs["clean_session"] = True
        client = mqtt.Client(**kwargs)
        client.reconnect_delay_set(_NEVER_S, _NEVER_S)
        apply_credentials(client, cfg)
        if self._will is not None:
            topic, payload, qos, retain = self._will
            client.will_set(topic, payload, qos=qos, retain=retain)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._connected.clear()
        self._refused = ""
        self._closing = False
        self._client = client
        try:
            client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        except (OSError, ValueError) as exc:
            self._client = None
            raise SinkDown(f"cannot reach the broker at {cfg.host}:{cfg.port}: {exc}") from None
        client.loop_start()
        if not self._connected.wait(timeout=max(5.0, float(cfg.keepalive_s))) or self._refused:
            why = self._refused or "no CONNACK"
            self.close(graceful=False)
            raise SinkDown(f"broker at {cfg.host}:{cfg.port} refused the connection: {why}")

    def publish(self, topic: str, payload: bytes | str, qos: int, retain: bool = False) -> None:
        """Returns once the broker has it (QoS 1: its PUBACK; QoS 0: written to the socket). SinkDown when the
        connection is gone or the PUBACK does not come; RuntimeError for a failing PUBACK (MQTT 5)."""
        client = self._client
        if client is None or not self._connected.is_set():
            raise SinkDown("not connected")
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != 0:
            raise SinkDown(f"publish failed locally (rc {info.rc})")
        try:
            info.wait_for_publish(timeout=_ACK_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:
            raise SinkDown(f"publish failed: {exc}") from None
        if not info.is_published():
            raise SinkDown(f"no PUBACK within {_ACK_TIMEOUT_S:.0f} s")
        why = self._failed.pop(info.mid, None)
        if why:
            raise RuntimeError(f"broker refused {topic}: {why}")

    def close(self, graceful: bool = True) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        self._closing = True
        try:
            if graceful and self._connected.is_set():
                client.disconnect()
        finally:
            client.loop_stop()
            self._connected.clear()

    # paho's thread

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
        else:
            for topic in self._subscriptions:
                client.subscribe(topic, qos=1)
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self._connected.is_set() and not self._refused
        self._connected.clear()
        if was and not self._closing:
            self._on_lost(f"disconnected ({reason_code})")

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if getattr(reason_code, "is_failure", False):
            self._failed[mid] = f"{reason_code} (0x{reason_code.value:02x})"

    def _on_message(self, client, userdata, msg) -> None:
        if self._on_message_cb is not None:
            try:
                self._on_message_cb(msg.topic, msg.payload)
            except Exception:
                log.exception("mqtt session: handling a message on %s failed", msg.topic)
