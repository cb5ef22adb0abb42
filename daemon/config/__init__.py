"""Typed configuration: every tunable of config.yaml, its default and its check, one module per section.

Loading reads the file within bounds (size, encoding, nesting, aliases, number length, duplicate keys) and builds
the frozen section dataclasses; each section checks its own fields as it is built, and validate() then checks the
rules that span sections. An unknown key, a wrong type, a value out of range or one that MQTT, OPC UA or the OS
cannot carry is a ConfigError of one line that names the key path (``cameras[1].roi``) and shows the value, cut
to SHOWN_VALUE_CHARS. Nothing else in the package reads environment variables for settings; the secrets (the MQTT
and OPC UA passwords, the page's token) are read from the environment or a file, only by name, only in secrets.py.

errors.py     ConfigError and how a value is shown in its one line
files.py      files a config names: regular files only, read within a bound
yaml_load.py  the file's text and its YAML, within bounds
walker.py     the typed walk from YAML to the dataclasses; each section's check(key) is called there
checks.py     field checks several sections share (names, hosts, paths, MQTT and OPC UA text)
secrets.py    secret(): the one reader of passwords and tokens
ocr.py        ocr, engines, gpu
cameras.py    cameras (each camera, and the rules of the list)
mqtt.py       mqtt and its tls
sinks.py      opcua, sparkplug, homeassistant, modbus, and SINKS, the table of every output
outbox.py, web.py, evidence.py, service.py (service and metrics)
config.py     Config, validate() (the cross-section rules), from_dict(), load()
"""
from __future__ import annotations

from daemon.config.walker import INT64_MAX, MAX_DURATION_S, build
from daemon.config.cameras import (LIVE_KINDS, MAX_PATTERN_CHARS, MAX_PATTERN_REPEAT, MAX_PATTERNS_TOTAL_CHARS,
                                   V4L2_DEVICES, CameraConfig, publish_mode)
from daemon.config.checks import (MQTT_MAX_STRING_BYTES, NAME_MAX_BYTES, NAME_RULE, OPCUA_MAX_STRING_BYTES,
                                  PATH_MAX_BYTES, valid_name)
from daemon.config.config import (Config, config_option, config_warnings, from_dict, load, load_or_defaults,
                                  machine_device_id, one_shot_path, resolve_device_id, resolve_state_paths, validate)
from daemon.config.errors import MAX_MESSAGE_CHARS, SHOWN_VALUE_CHARS, ConfigError
from daemon.config.evidence import EvidenceConfig
from daemon.config.mqtt import (MAX_KEEPALIVE_S, MQTT_MAX_PACKET_IDS, SQLITE_MAX_VARIABLES, MqttConfig, TlsConfig,
                                max_inflight_limit)
from daemon.config.ocr import EnginesConfig, GpuConfig, OcrConfig
from daemon.config.outbox import OutboxConfig
from daemon.config.secrets import (MAX_SECRET_BYTES, mqtt_password, opcua_password, secret, secret_digests,
                                   web_token)
from daemon.config.service import MetricsConfig, ServiceConfig
from daemon.config.recipes import RecipeConfig
from daemon.config.sinks import (SINKS, HomeAssistantConfig, ModbusSectionConfig, OpcUaConfig, SparkplugConfig,
                                 enabled_sinks)
from daemon.config.web import MIN_TOKEN_CHARS, WebConfig, is_loopback_host
from daemon.config.yaml_load import MAX_CONFIG_BYTES, MAX_NUMBER_CHARS, MAX_YAML_DEPTH, MAX_YAML_VALUES

__all__ = [
    "CameraConfig", "Config", "ConfigError", "EnginesConfig", "EvidenceConfig", "GpuConfig", "HomeAssistantConfig",
    "MetricsConfig", "ModbusSectionConfig", "MqttConfig", "OcrConfig", "OpcUaConfig", "OutboxConfig", "RecipeConfig",
    "ServiceConfig",
    "SparkplugConfig", "TlsConfig", "WebConfig",
    "build", "config_option", "config_warnings", "enabled_sinks", "from_dict", "is_loopback_host", "load",
    "load_or_defaults",
    "machine_device_id", "one_shot_path", "max_inflight_limit", "mqtt_password", "opcua_password", "publish_mode",
    "resolve_device_id", "resolve_state_paths", "secret", "secret_digests", "valid_name", "validate", "web_token",
    "INT64_MAX", "LIVE_KINDS", "MAX_CONFIG_BYTES", "MAX_DURATION_S", "MAX_KEEPALIVE_S", "MAX_MESSAGE_CHARS",
    "MAX_NUMBER_CHARS", "MAX_PATTERN_CHARS", "MAX_PATTERN_REPEAT", "MAX_PATTERNS_TOTAL_CHARS", "MAX_SECRET_BYTES",
    "MAX_YAML_DEPTH", "MAX_YAML_VALUES", "MIN_TOKEN_CHARS", "MQTT_MAX_PACKET_IDS", "MQTT_MAX_STRING_BYTES",
    "NAME_MAX_BYTES", "NAME_RULE", "OPCUA_MAX_STRING_BYTES", "PATH_MAX_BYTES", "SHOWN_VALUE_CHARS", "SINKS",
    "SQLITE_MAX_VARIABLES", "V4L2_DEVICES",
]
