"""Secrets (the MQTT and OPC UA passwords, the page's token): never written in config.yaml, named there by an
environment variable or a file (a systemd credential), and read here and only here.

One behaviour for all three: the secret is the variable's or the file's text with surrounding whitespace stripped
(the newline an editor or `echo` adds, a stray space or CR). A secret the config names must be there: a variable
that is not set, or a variable or file that is empty or only whitespace, is a ConfigError naming the key, at load
and again when the daemon reads it at start. A secret nobody named is None.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
from typing import TYPE_CHECKING, Iterator, Optional

from daemon.config.checks import check_env_name
from daemon.config.errors import ConfigError, require, shown
from daemon.config.files import read_regular_file

if TYPE_CHECKING:   # the sections import this module
    from daemon.config.mqtt import MqttConfig
    from daemon.config.sinks import OpcUaConfig
    from daemon.config.web import WebConfig

# A password or token file (a systemd credential) is a few dozen bytes; a bound keeps /dev/zero or a log file named
# by mistake from being read into memory.
MAX_SECRET_BYTES = 4096

# Set while a config is loaded for a command that uses no secret (the outbox's dead letters, `once`, the engine
# builds): run by hand outside the unit, it cannot read the unit's systemd credentials, and need not.
_UNREAD = contextvars.ContextVar("secrets_unread", default=False)


@contextlib.contextmanager
def secrets_unread() -> Iterator[None]:
    """Within it secret() reads nothing and answers None (the names are still checked)."""
    token = _UNREAD.set(True)
    try:
        yield
    finally:
        _UNREAD.reset(token)


def check_named_once(key: str, env: Optional[str], file: Optional[str]) -> None:
    """A secret is named by an environment variable or a file, not both (key: the section and the secret's name,
    "mqtt.password", whose fields are mqtt.password_env and mqtt.password_file)."""
    require(not (env and file), f"{key}_file", file, f"cannot be set together with {key}_env")
    check_env_name(f"{key}_env", env)


def secret(key: str, env: Optional[str], file: Optional[str]) -> Optional[str]:
    """The secret in the environment variable env or the file (the variable first), stripped; None when neither
    is named. Not set, not UTF-8, empty or only whitespace: a ConfigError naming {key}_env or {key}_file.
    Never logged. None within secrets_unread()."""
    if _UNREAD.get():
        return None
    if env:
        raw = os.environb.get(os.fsencode(env))
        require(raw is not None, f"{key}_env", env, "is not set in the environment")
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ConfigError(f"{key}_env", f"{shown(env)} does not hold UTF-8 text") from None
        require(bool(text), f"{key}_env", env, "is empty (or only whitespace) in the environment")
        return text
    if file:
        text = _read_secret_file(f"{key}_file", file)
        require(bool(text), f"{key}_file", file, "is empty")
        return text
    return None


def _read_secret_file(key: str, path: str) -> str:
    """The stripped text of a secret file: a regular file of at most MAX_SECRET_BYTES, UTF-8."""
    data = read_regular_file(key, path, MAX_SECRET_BYTES, shown(path))
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(key, f"{shown(path)} is not UTF-8 text") from None


def mqtt_password(m: MqttConfig) -> Optional[str]:
    """The broker password (mqtt.password_env or mqtt.password_file); None when neither is set."""
    return secret("mqtt.password", m.password_env, m.password_file)


def opcua_password(o: OpcUaConfig) -> Optional[str]:
    """The OPC UA user's password (opcua.password_env or opcua.password_file)."""
    return secret("opcua.password", o.password_env, o.password_file)


def web_token(w: WebConfig) -> Optional[str]:
    """The page's access token (web.token_env or web.token_file); None when neither is set."""
    return secret("web.token", w.token_env, w.token_file)


def secret_digests(cfg) -> dict[str, str]:
    """Per part that holds a secret ("web", "sinks"), a digest of what its secrets read now (not the values): a reload
    that finds one changed (a token or password file rotated, the config itself unchanged) restarts that part."""
    import hashlib

    def read(get, section) -> str:
        try:
            return get(section) or ""
        except ConfigError as exc:   # gone since the config was loaded: load() says so at the reload
            return f"unreadable: {exc}"

    def digest(*values: str) -> str:
        return hashlib.sha256("\0".join(values).encode("utf-8", "surrogatepass")).hexdigest()
    mqtt_used = cfg.mqtt.enabled or cfg.sparkplug.enabled or cfg.homeassistant.enabled
    return {"web": digest(read(web_token, cfg.web) if cfg.web.enabled else ""),
            "sinks": digest(read(mqtt_password, cfg.mqtt) if mqtt_used else "",
                            read(opcua_password, cfg.opcua) if cfg.opcua.enabled else "")}
