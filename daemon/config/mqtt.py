"""The mqtt section: the broker, its login and TLS, the JSON payload's topics and delivery bounds."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from daemon.config.checks import MQTT_MAX_STRING_BYTES, check_address, check_mqtt_text, check_topic_prefix
from daemon.config.errors import require
from daemon.config.files import check_readable
from daemon.config.secrets import check_named_once, secret

# MQTT's Keep Alive is a 16-bit field; paho's thread dies on a larger one and never connects.
MAX_KEEPALIVE_S = 65535
# SQLite >= 3.32 allows 32766 bound parameters per statement by default (older builds: 999). The outbox's
# pending() binds every id in flight or acknowledged-but-not-yet-deleted (up to 2 x max_inflight), one per
# camera backing off, and the LIMIT. MQTT's 16-bit packet ids (65535) are the other, looser bound.
SQLITE_MAX_VARIABLES = 32766
MQTT_MAX_PACKET_IDS = 65535
# Topics the daemon publishes under mqtt.topic_prefix: {prefix}/{device_id}/{camera}/text, /review, /state,
# /trigger (read cycles' commands) and /trigger/answer, and {prefix}/{device_id}/status, /stats;
# "trigger/answer" is the longest tail.
LONGEST_TOPIC_LEVEL = "trigger/answer"


def max_inflight_limit(cameras: int) -> int:
    """The largest usable mqtt.max_inflight with this many cameras (16382 for one)."""
    return min(MQTT_MAX_PACKET_IDS, (SQLITE_MAX_VARIABLES - 1 - cameras) // 2)


@dataclass(frozen=True)
class TlsConfig:
    enabled: bool = False
    ca_file: Optional[str] = None
    # Client certificate and key: mutual TLS.
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    # Skip hostname verification (a lab broker with a self-signed certificate); never in production.
    insecure: bool = False

    def check(self, key: str) -> None:
        require(self.enabled or not self.insecure, f"{key}.insecure", self.insecure,
                f"needs {key}.enabled: true (without TLS there is no certificate to skip checking)")
        if self.enabled:
            check_readable(f"{key}.ca_file", self.ca_file)
            check_readable(f"{key}.cert_file", self.cert_file)
            check_readable(f"{key}.key_file", self.key_file)
            require(bool(self.cert_file) == bool(self.key_file), f"{key}.key_file", self.key_file,
                    f"and {key}.cert_file must be set together (mutual TLS)")


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool = True
    host: str = "localhost"
    port: int = 1883
    protocol: Literal["3.1.1", "5"] = "5"
    # null = "ocr-daemon-<device_id>"; a stable id keeps the broker's session across reconnects.
    client_id: Optional[str] = None
    topic_prefix: str = "ocr"
    keepalive_s: int = 30
    username: Optional[str] = None
    # The password is never written in this file: name an environment variable or a file holding it.
    password_env: Optional[str] = None
    password_file: Optional[str] = None
    tls: TlsConfig = field(default_factory=TlsConfig)
    # Unacknowledged QoS 1 messages in flight at once (bounded by max_inflight_limit(): packet ids, SQLite).
    max_inflight: int = 20
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    # A reading above this many payload bytes goes to the dead letters at put() (readings are a few KB).
    max_payload_bytes: int = 256 * 1024
    # Period of the {prefix}/{device}/stats message; 0 = off.
    stats_interval_s: float = 30.0

    def check(self, key: str) -> None:
        """The section's own rules; max_inflight and the topics' length depend on the cameras (validate())."""
        check_address(key, self.host, self.port)
        check_topic_prefix(f"{key}.topic_prefix", self.topic_prefix)
        check_mqtt_text(f"{key}.client_id", self.client_id)
        check_mqtt_text(f"{key}.username", self.username)
        require(5 <= self.keepalive_s <= MAX_KEEPALIVE_S, f"{key}.keepalive_s", self.keepalive_s,
                f"must be between 5 and {MAX_KEEPALIVE_S} (MQTT's Keep Alive is 16 bits)")
        require(0 < self.reconnect_min_s <= self.reconnect_max_s, f"{key}.reconnect_min_s", self.reconnect_min_s,
                "must be positive and not above reconnect_max_s")
        require(self.stats_interval_s >= 0, f"{key}.stats_interval_s", self.stats_interval_s, "must not be negative")
        require(1024 <= self.max_payload_bytes <= 268_435_455, f"{key}.max_payload_bytes", self.max_payload_bytes,
                "must be between 1024 and 268435455 (MQTT's largest packet)")
        check_named_once(f"{key}.password", self.password_env, self.password_file)
        password = secret(f"{key}.password", self.password_env, self.password_file)
        if password is not None and self.password_env:
            require(len(password.encode("utf-8")) <= MQTT_MAX_STRING_BYTES, f"{key}.password_env",
                    self.password_env, f"holds a password over {MQTT_MAX_STRING_BYTES} bytes (MQTT's)")
