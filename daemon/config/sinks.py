"""The outputs beside MQTT's JSON: opcua (a server for PLCs and SCADA), sparkplug (Sparkplug B on the broker) and
homeassistant (MQTT discovery), and SINKS, the one table of every output's name."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, Optional

from daemon.config.checks import (NAME_RULE, check_address, check_mqtt_text, check_opcua_text, check_topic_prefix,
                                  valid_name)
from daemon.config.errors import require
from daemon.config.secrets import check_named_once, secret

# Every output, in the order the outbox offers a row. A name is at once its config section (cfg.<name>, with an
# `enabled` field), its delivery line in the outbox, its `sink` label in the metrics and its module under
# daemon/publish/sinks/: whatever lists the outputs reads this.
SINKS = ("mqtt", "opcua", "sparkplug", "homeassistant", "modbus")
MIN_OPCUA_PASSWORD_CHARS = 12


def enabled_sinks(cfg) -> tuple[str, ...]:
    """The outputs cfg turns on, in SINKS order (none: ())."""
    return tuple(name for name in SINKS if getattr(cfg, name).enabled)


@dataclass(frozen=True)
class OpcUaConfig:
    # An OPC UA server (daemon/publish/sinks/opcua.py): per camera a folder with the last reading, an event each.
    enabled: bool = False
    # Address the server listens on; PLCs and SCADA reach it over the plant network.
    host: str = "0.0.0.0"
    port: int = 4840
    # The namespace of the daemon's nodes (ns=2 on a fresh server).
    namespace_uri: str = "urn:ocr-daemon"
    # Basic256Sha256 is the only policy offered; Sign alone leaves the readings readable on the wire.
    security_mode: Literal["SignAndEncrypt", "Sign"] = "SignAndEncrypt"
    # Server certificate (DER) and key (PEM): generated on first start when both are absent (under state_dir).
    cert_file: str = "var/opcua/server-cert.der"
    key_file: str = "var/opcua/server-key.pem"
    # The one user; its password, like the MQTT one, only by the name of an environment variable or a file.
    username: str = "ocr"
    password_env: Optional[str] = None
    password_file: Optional[str] = None
    # Anonymous sessions (no user) are refused unless this is true.
    allow_anonymous: bool = False
    # null: any client certificate valid now and for its application URI; a folder: only the certificates in it
    # (DER or PEM) or those signed by a CA certificate in it.
    trusted_clients_dir: Optional[str] = None
    # Per triggered camera, the last results a client can fetch by id; one pushed out before a client acknowledged
    # it is an overrun (counted, signalled). A PLC that acknowledges each part never needs more than a few.
    result_buffer: int = 32
    # Connections at most; a new one past that closes the oldest connection without an activated session (a
    # silent socket, a client still handshaking), so idle sockets cannot lock a PLC out; with none to close, refused.
    max_connections: int = 64

    def check(self, key: str) -> None:
        """Checked only when enabled: a server that is off reads no certificate and no password."""
        if not self.enabled:
            return
        check_address(key, self.host, self.port)
        require(bool(self.namespace_uri), f"{key}.namespace_uri", self.namespace_uri, "must not be empty")
        check_opcua_text(f"{key}.namespace_uri", self.namespace_uri)
        require(bool(self.cert_file) and bool(self.key_file), f"{key}.cert_file", self.cert_file,
                f"and {key}.key_file must both be set")
        require(bool(self.username), f"{key}.username", self.username, "must not be empty")
        check_opcua_text(f"{key}.username", self.username)
        require(bool(self.password_env or self.password_file), f"{key}.password_env", self.password_env,
                f"or {key}.password_file must name the password of {key}.username")
        check_named_once(f"{key}.password", self.password_env, self.password_file)
        require(self.trusted_clients_dir is None or os.path.isdir(self.trusted_clients_dir),
                f"{key}.trusted_clients_dir", self.trusted_clients_dir, "is not a directory")
        require(1 <= self.result_buffer <= 1024, f"{key}.result_buffer", self.result_buffer,
                "must be between 1 and 1024")
        require(1 <= self.max_connections <= 1000, f"{key}.max_connections", self.max_connections,
                "must be between 1 and 1000")
        password = secret(f"{key}.password", self.password_env, self.password_file)
        if password is not None:   # the server answers a login in about 0.1 s: a short password is guessed
            require(len(password) >= MIN_OPCUA_PASSWORD_CHARS,
                    f"{key}.password_env" if self.password_env else f"{key}.password_file",
                    self.password_env or self.password_file,
                    f"holds a password shorter than {MIN_OPCUA_PASSWORD_CHARS} characters (the server is on the "
                    "plant network, and a short one can be guessed)")


@dataclass(frozen=True)
class SparkplugConfig:
    # Sparkplug B on the mqtt broker (host, port, user, TLS of the mqtt section), one device per camera.
    enabled: bool = False
    # spBv1.0/{group_id}/...: the group the edge node belongs to.
    group_id: str = "ocr"
    # null = device_id.
    edge_node_id: Optional[str] = None
    # Sparkplug 3.0 asks for QoS 0 on DDATA; 1 (default) lets the outbox keep a reading until the broker has it.
    qos: Literal[0, 1] = 1
    # null = "ocr-daemon-<device_id>-spb" (a client id of its own: NDEATH is this connection's will).
    client_id: Optional[str] = None
    # The Primary Host Application's id (Ignition's MQTT Engine: its "Primary Host ID"): births and data wait until
    # spBv1.0/STATE/<id> says it is online, and stop (NDEATH) when it goes offline, so nothing is published while
    # the host cannot receive it (the outbox keeps it). null: publish whenever the broker is up.
    primary_host_id: Optional[str] = None

    def check(self, key: str) -> None:
        check_mqtt_text(f"{key}.client_id", self.client_id)
        if self.enabled:
            require(valid_name(self.group_id), f"{key}.group_id", self.group_id, NAME_RULE)
            require(self.edge_node_id is None or valid_name(self.edge_node_id), f"{key}.edge_node_id",
                    self.edge_node_id, NAME_RULE)
            require(self.primary_host_id is None or valid_name(self.primary_host_id), f"{key}.primary_host_id",
                    self.primary_host_id, NAME_RULE)


@dataclass(frozen=True)
class HomeAssistantConfig:
    # Home Assistant MQTT discovery on the mqtt broker: a sensor per camera with its last text (needs mqtt.enabled).
    enabled: bool = False
    # Home Assistant's discovery prefix (its MQTT integration's setting).
    discovery_prefix: str = "homeassistant"
    # null = "ocr-daemon-<device_id>-ha".
    client_id: Optional[str] = None

    def check(self, key: str) -> None:
        """The section's own rules; that it needs mqtt and its topics' length are validate()'s."""
        check_mqtt_text(f"{key}.client_id", self.client_id)
        if self.enabled:
            check_topic_prefix(f"{key}.discovery_prefix", self.discovery_prefix)


@dataclass(frozen=True)
class ModbusSectionConfig:
    # A Modbus TCP server for PLCs (daemon/publish/sinks/modbus.py): each triggered camera's trigger coil, its
    # handshake bits and its last result, camera i of the triggered ones at base address i * 100 (docs/read-cycles.md).
    enabled: bool = False
    # Modbus has no authentication: whoever reaches the port can trigger and acknowledge. Bind to the PLC-side
    # network card's address, never an office or internet-facing one.
    host: str = "127.0.0.1"
    # 502 is Modbus's port but needs root or CAP_NET_BIND_SERVICE; 5020 does not.
    port: int = 5020
    unit_id: int = 1
    # Connections at once (a PLC, an HMI, a poller, room for reconnects); a newcomer closes the oldest idle one.
    max_connections: int = 16
    # A connection without a complete request this long is closed (Modbus masters reconnect by themselves).
    idle_timeout_s: float = 60.0

    def check(self, key: str) -> None:
        if not self.enabled:
            return
        check_address(key, self.host, self.port)
        require(1 <= self.unit_id <= 255, f"{key}.unit_id", self.unit_id, "must be between 1 and 255")
        require(1 <= self.max_connections <= 1024, f"{key}.max_connections", self.max_connections,
                "must be between 1 and 1024")
        require(0 < self.idle_timeout_s <= 86400, f"{key}.idle_timeout_s", self.idle_timeout_s,
                "must be above 0 and at most 86400")
