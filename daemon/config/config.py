"""The whole config: Config, its sections in file order, the rules that span sections (validate()), and the way
in (load(), from_dict()). Each section checks its own fields when it is built (its check(key)); what is left here
needs more than one section: names and topics that combine the device and the cameras, the outbox's query bounds
against the camera count, the daemon's own ports, and every path as resolved against state_dir."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import logging
import os
import re
import shlex
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from daemon.config.walker import build
from daemon.config.cameras import CameraConfig, check_cameras
from daemon.config.checks import NAME_RULE, check_path, check_topic_length, discovery_id, valid_name
from daemon.config.errors import ConfigError, require
from daemon.config.evidence import EvidenceConfig
from daemon.config.mqtt import LONGEST_TOPIC_LEVEL, SQLITE_MAX_VARIABLES, MqttConfig, max_inflight_limit
from daemon.config.ocr import EnginesConfig, GpuConfig, OcrConfig
from daemon.config.outbox import OutboxConfig
from daemon.config.secrets import secrets_unread
from daemon.config.service import MetricsConfig, ServiceConfig
from daemon.config.recipes import RecipeConfig, check_recipes
from daemon.config.sinks import HomeAssistantConfig, ModbusSectionConfig, OpcUaConfig, SparkplugConfig
from daemon.config.web import WebConfig
from daemon.config.yaml_load import parse_yaml, read_config_text

log = logging.getLogger("daemon.config")


@dataclass(frozen=True)
class Config:
    # Appears in topics, payloads and the MQTT client id: {prefix}/{device_id}/...; must be unique per box.
    # null = derived from /etc/machine-id (ocr-<8 hex>, stable across restarts), else the hostname.
    device_id: Optional[str] = None
    # auto = TensorRT where it loads and the engines match, else ONNX Runtime on the CPU.
    backend: Literal["auto", "tensorrt", "onnxruntime"] = "auto"
    # Absolute directory that relative outbox.path, engines.dir, engines.timing_cache, evidence.dir and
    # web.saved_frames_dir resolve against,
    # so `calibrate`/`build-engine` write where the service reads; null = the working directory.
    state_dir: Optional[str] = None
    ocr: OcrConfig = field(default_factory=OcrConfig)
    engines: EnginesConfig = field(default_factory=EnginesConfig)
    gpu: GpuConfig = field(default_factory=GpuConfig)
    cameras: tuple[CameraConfig, ...] = (CameraConfig(name="sample", kind="sample"),)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    opcua: OpcUaConfig = field(default_factory=OpcUaConfig)
    sparkplug: SparkplugConfig = field(default_factory=SparkplugConfig)
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    modbus: ModbusSectionConfig = field(default_factory=ModbusSectionConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    # Read cycles: named expectations a trigger may name (docs/read-cycles.md).
    recipes: tuple[RecipeConfig, ...] = ()
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    web: WebConfig = field(default_factory=WebConfig)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    # Not a setting: the file load() read (absolute), so that a hint can name `--config <it>`; None for defaults.
    # Not compared: the same settings from another path are the same config.
    source_path: Optional[str] = field(default=None, compare=False, metadata={"not_a_key": True})


def config_option(path: Optional[str]) -> str:
    """`--config <path>` for a command a message suggests; `--config FILE` where the path is not known (defaults,
    a config built in code). Under systemd the path decides state_dir, and so where engines and kernels land."""
    return f"--config {shlex.quote(path)}" if path else "--config FILE"


def validate(cfg: Config) -> Config:
    """The rules that span sections (each section checked its own fields when built); returns cfg unchanged or
    raises ConfigError."""
    require(cfg.device_id is not None and valid_name(cfg.device_id), "device_id", cfg.device_id, NAME_RULE)
    require(cfg.state_dir is None or os.path.isabs(cfg.state_dir), "state_dir", cfg.state_dir,
            "must be an absolute path (or null for the working directory)")
    check_cameras(cfg.cameras)
    check_recipes(cfg.recipes, cfg.cameras)
    m, h, device = cfg.mqtt, cfg.homeassistant, cfg.device_id or ""
    camera = max((c.name for c in cfg.cameras), key=len, default="")
    check_topic_length("mqtt.topic_prefix", m.topic_prefix, f"{m.topic_prefix}/{device}/{camera}/{LONGEST_TOPIC_LEVEL}")
    if h.enabled:
        check_topic_length("homeassistant.discovery_prefix", h.discovery_prefix,
                           f"{h.discovery_prefix}/sensor/{device}/{camera}/config")
    limit = max_inflight_limit(len(cfg.cameras))
    require(1 <= m.max_inflight <= limit, "mqtt.max_inflight", m.max_inflight,
            f"must be between 1 and {limit} (MQTT packet ids; SQLite binds up to 2 x max_inflight + cameras + 1 "
            f"of its {SQLITE_MAX_VARIABLES} parameters in one outbox query)")
    if cfg.modbus.enabled:
        require(any(c.mode == "triggered" for c in cfg.cameras), "modbus.enabled", cfg.modbus.enabled,
                "needs at least one camera with mode: triggered (the PLC triggers read cycles)")
    if h.enabled:
        require(m.enabled, "homeassistant.enabled", h.enabled,
                "needs mqtt.enabled: true (the sensors' availability is the mqtt status topic)")
        _check_discovery_ids(cfg.cameras)
    _check_listeners(cfg)
    _check_paths(resolve_state_paths(cfg))
    return cfg


def _check_discovery_ids(cameras) -> None:
    """Home Assistant discovery ids carry only [A-Za-z0-9_-]: two cameras that differ only in a '.' and a '_'
    would be one sensor, each announcement replacing the other's."""
    seen: dict[str, str] = {}
    for i, cam in enumerate(cameras):
        node = discovery_id(cam.name)
        require(node not in seen, f"cameras[{i}].name", cam.name,
                f"is one Home Assistant sensor with camera {seen.get(node)!r} (discovery ids replace '.' by '_'): "
                "rename one")
        seen[node] = cam.name


def _check_listeners(cfg: Config) -> None:
    """The daemon's own servers (metrics, the page, OPC UA) do not ask for one port on one address: the second
    would fail to bind at start, and the page and metrics only log that."""
    listeners = [(key, host, port) for key, host, port, on in (
        ("metrics.port", cfg.metrics.host, cfg.metrics.port, cfg.metrics.enabled),
        ("web.port", cfg.web.host, cfg.web.port, cfg.web.enabled and cfg.web.port != 0),
        ("opcua.port", cfg.opcua.host, cfg.opcua.port, cfg.opcua.enabled),
        ("modbus.port", cfg.modbus.host, cfg.modbus.port, cfg.modbus.enabled)) if on]
    for i, (key, host, port) in enumerate(listeners):
        for other_key, other_host, other_port in listeners[:i]:
            require(port != other_port or not _same_listen_address(host, other_host), key, port,
                    f"is {other_key} too (on {other_host!r} and {host!r})")


def _same_listen_address(a: str, b: str) -> bool:
    """Whether two listen addresses can collide: equal, either one all interfaces, or localhost and what it names."""
    return (a == b or bool({a, b} & {"", "0.0.0.0", "::", "[::]"})
            or ("localhost" in (a, b) and bool({a, b} & {"127.0.0.1", "::1", "[::1]"})))


def _check_paths(cfg: Config) -> None:
    """Every path the daemon opens or creates, as resolved against state_dir."""
    o, e, m = cfg.ocr, cfg.engines, cfg.mqtt
    check_path("state_dir", cfg.state_dir, writes_into=True)
    for name in ("det_model", "rec_model", "cls_model", "dictionary"):
        check_path(f"ocr.{name}", getattr(o, name))
    check_path("ocr.cpu_fold_dir", o.cpu_fold_dir, writes_into=True)
    check_path("engines.dir", e.dir, writes_into=True)
    check_path("engines.timing_cache", e.timing_cache)
    for i, cam in enumerate(cfg.cameras):
        if cam.kind in ("file", "folder") or (cam.kind == "v4l2" and not cam.uri.isdigit()):
            check_path(f"cameras[{i}].uri", cam.uri, writes_into=cam.kind == "folder")
        check_path(f"cameras[{i}].done_dir", cam.done_dir, writes_into=True)
    for name in ("ca_file", "cert_file", "key_file"):
        check_path(f"mqtt.tls.{name}", getattr(m.tls, name))
    check_path("mqtt.password_file", m.password_file)
    for name in ("cert_file", "key_file", "password_file"):
        check_path(f"opcua.{name}", getattr(cfg.opcua, name))
    check_path("opcua.trusted_clients_dir", cfg.opcua.trusted_clients_dir)
    check_path("outbox.path", cfg.outbox.path, suffix="-journal")
    outbox = Path(cfg.outbox.path)
    require(not outbox.exists() or outbox.is_file(), "outbox.path", cfg.outbox.path,
            "is not a regular file (a directory or a device): name the SQLite file itself")
    check_path("web.token_file", cfg.web.token_file)
    check_path("web.saved_frames_dir", cfg.web.saved_frames_dir, writes_into=True)
    check_path("evidence.dir", cfg.evidence.dir, writes_into=True)
    _check_folders_apart(cfg)


def _check_folders_apart(cfg: Config) -> None:
    """The folders the daemon reads images from or writes files into are different folders: evidence written into
    a watched folder is read as scans, and saved frames pruned in a done_dir would delete archived scans."""
    folders = []
    for i, cam in enumerate(cfg.cameras):
        if cam.kind == "folder":
            folders.append((f"cameras[{i}].uri", cam.uri))
            if cam.done_action == "move" and cam.done_dir:
                folders.append((f"cameras[{i}].done_dir", cam.done_dir))
    if cfg.web.enabled:
        folders.append(("web.saved_frames_dir", cfg.web.saved_frames_dir))
    if cfg.evidence.enabled:
        folders.append(("evidence.dir", cfg.evidence.dir))
    seen: dict[str, str] = {}
    for key, folder in folders:
        where = os.path.normpath(os.path.abspath(folder))
        require(where not in seen or seen[where] == key, key, folder,
                f"is {seen.get(where)} too: the daemon's folders must be apart")
        seen.setdefault(where, key)


# systemd/ocr-daemon.service's TimeoutStopSec, and what a stop needs beyond the drain (the cameras, the models, the
# outbox: docs/operations.md) before systemd's SIGKILL.
UNIT_TIMEOUT_STOP_S = 30.0
STOP_MARGIN_S = 5.0


def config_warnings(cfg: Config) -> list[tuple[str, str]]:
    """(key path, message) for values that work but are risky; load() logs each at WARNING. Pure."""
    found = []
    drain = cfg.service.drain_timeout_s
    if drain > UNIT_TIMEOUT_STOP_S - STOP_MARGIN_S:
        found.append(("service.drain_timeout_s", f"{drain:g} s leaves less than {STOP_MARGIN_S:g} s of the unit's "
                      f"TimeoutStopSec={UNIT_TIMEOUT_STOP_S:g} for the rest of a stop: systemd may SIGKILL the daemon "
                      f"mid-stop; raise TimeoutStopSec in a drop-in to at least drain_timeout_s + {STOP_MARGIN_S:g}"))
    m = cfg.mqtt
    if m.enabled and not m.tls.enabled:
        for key in ("password_env", "password_file"):
            if getattr(m, key):
                found.append((f"mqtt.{key}", f"{getattr(m, key)!r}: the MQTT password goes to "
                              f"{m.host}:{m.port} in clear text (mqtt.tls.enabled is false)"))
    return found


# An app-specific id instead of the raw machine id, which is meant to stay private (machine-id(5)): the same
# HMAC that `systemd-id128 machine-id --app-specific=d4fe280a3c034496bd9a9c0e3cbfcce4` prints.
_DEVICE_APP_ID = bytes.fromhex("d4fe280a3c034496bd9a9c0e3cbfcce4")


def machine_device_id(machine_id: Optional[str], hostname: str) -> str:
    """The default device_id: ``ocr-<first 8 hex of the app-specific machine id>``; the hostname (cut to a
    valid topic level) when there is no usable machine id (containers, an empty /etc/machine-id on a first
    boot image). Pure: the caller reads the file and the hostname."""
    text = (machine_id or "").strip().lower()
    if re.fullmatch(r"[0-9a-f]{32}", text) and text != "0" * 32:
        digest = hmac.new(bytes.fromhex(text), _DEVICE_APP_ID, hashlib.sha256).hexdigest()
        return f"ocr-{digest[:8]}"
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", hostname.split(".", 1)[0])[:64]
    return name if valid_name(name) else "ocr-edge"


def _read_machine_id(path: str = "/etc/machine-id") -> Optional[str]:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace")
    except OSError:
        return None


def resolve_device_id(cfg: Config, machine_id: Optional[str], hostname: str) -> Config:
    """cfg with a null device_id replaced by machine_device_id(); a configured one is kept. Pure."""
    if cfg.device_id is not None:
        return cfg
    return dataclasses.replace(cfg, device_id=machine_device_id(machine_id, hostname))


def resolve_state_paths(cfg: Config) -> Config:
    """cfg with relative outbox.path, engines.dir, engines.timing_cache, ocr.cpu_fold_dir, evidence.dir and
    web.saved_frames_dir joined onto state_dir.

    Absolute paths are kept; with state_dir null nothing changes (relative paths stay relative to the
    working directory, which is the state directory under systemd). Pure: touches no file.
    """
    if cfg.state_dir is None:
        return cfg

    def under_state(path: str) -> str:
        return path if os.path.isabs(path) else os.path.join(cfg.state_dir, path)

    ocr = dataclasses.replace(cfg.ocr, cpu_fold_dir=None if cfg.ocr.cpu_fold_dir is None
                              else under_state(cfg.ocr.cpu_fold_dir))
    engines = dataclasses.replace(
        cfg.engines, dir=under_state(cfg.engines.dir),
        timing_cache=None if cfg.engines.timing_cache is None else under_state(cfg.engines.timing_cache))
    outbox = dataclasses.replace(cfg.outbox, path=under_state(cfg.outbox.path))
    evidence = dataclasses.replace(cfg.evidence, dir=under_state(cfg.evidence.dir))
    web = dataclasses.replace(cfg.web, saved_frames_dir=under_state(cfg.web.saved_frames_dir))
    opcua = dataclasses.replace(cfg.opcua, cert_file=under_state(cfg.opcua.cert_file),
                                key_file=under_state(cfg.opcua.key_file),
                                trusted_clients_dir=None if cfg.opcua.trusted_clients_dir is None
                                else under_state(cfg.opcua.trusted_clients_dir))
    return dataclasses.replace(cfg, ocr=ocr, engines=engines, outbox=outbox, evidence=evidence, web=web,
                               opcua=opcua)


def from_dict(data: Any) -> Config:
    cfg = build(Config, data, "")
    if cfg.device_id is None:   # read only when needed: /etc/machine-id, the hostname
        cfg = resolve_device_id(cfg, _read_machine_id(), socket.gethostname())
    return resolve_state_paths(validate(cfg))


def load(path: str | os.PathLike, read_secrets: bool = True) -> Config:
    """Reads and validates a config file; relative state paths resolve against state_dir (resolve_state_paths).
    A ConfigError carries the file's path (its report() names it). read_secrets False: for a command that uses no
    password or token, which are then neither read nor checked (a systemd credential exists only in the unit)."""
    try:
        with contextlib.nullcontext() if read_secrets else secrets_unread():
            data = parse_yaml(read_config_text(path))
            # An empty file would run on every default (another device id, outbox and broker): more likely an
            # editor's save caught half done than a config anyone wrote.
            if data is None or data == {}:
                raise ConfigError("", "the file holds no settings (empty, or only comments)")
            cfg = from_dict(data)
    except ConfigError as exc:
        exc.path = os.fspath(path)
        raise
    cfg = dataclasses.replace(cfg, source_path=os.path.abspath(path))
    for key, message in config_warnings(cfg):
        log.warning("config %s: %s: %s", path, key, message)
    return cfg


# The config file `run` reads when none is named, in the working directory.
DEFAULT_PATH = "config.yaml"


def load_or_defaults(path: str | os.PathLike | None, read_secrets: bool = True) -> Config:
    """For the one-shot commands: the config file named, else ./config.yaml where there is one (what `run` and
    `doctor` read there: `once` in a station's folder reads as its daemon does), else the built-in defaults."""
    path = one_shot_path(path)
    return load(path, read_secrets) if path else from_dict({})


def one_shot_path(path: str | os.PathLike | None) -> str | os.PathLike | None:
    """The config file a one-shot command reads: the one named, else ./config.yaml where there is one, else None
    (the built-in defaults)."""
    return path or (DEFAULT_PATH if os.path.isfile(DEFAULT_PATH) else None)
