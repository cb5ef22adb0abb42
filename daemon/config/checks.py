"""Field checks that several sections share, and the bounds behind them: what a name, a host, a path, an MQTT or
OPC UA string or an environment variable name must be for the OS, the broker or the clients to take it."""
from __future__ import annotations

import ipaddress
import os
import re
from typing import Optional

from daemon.config.errors import ConfigError, require, shown

# fullmatch, not "$": "$" also matches before a final newline ("dock\n" would pass and break the topic).
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
NAME_RULE = "must be 1-64 letters, digits, '_', '-' or '.', and not '.' or '..' (it is an MQTT topic level)"
# Linux's PATH_MAX (with its NUL) and NAME_MAX, in bytes; a directory the daemon writes into keeps room for a name.
PATH_MAX_BYTES = 4095
NAME_MAX_BYTES = 255
# MQTT strings (topics, client ids, user names) are UTF-8 of at most 65535 bytes; brokers refuse control characters
# and non-characters in them (mosquitto_validate_utf8), and '+' and '#' in the topic a message is published to.
MQTT_MAX_STRING_BYTES = 65535
_MQTT_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\ufdd0-\ufdef\ud800-\udfff"
                           + "".join(chr(plane * 0x10000 + low) for plane in range(17) for low in (0xfffe, 0xffff))
                           + "]")
# A namespace URI or OPC UA user name beyond this is a mistake; every client reads them when it browses or logs in.
OPCUA_MAX_STRING_BYTES = 4096
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def valid_name(name: str) -> bool:
    """A device, camera or Sparkplug id: one MQTT topic level of safe characters."""
    return bool(_NAME.fullmatch(name)) and name not in (".", "..")


def check_host(key: str, host: str) -> None:
    """An IP address or a host name the resolver takes (labels of 1-63 characters, 253 in all); empty is left to
    each section's own rule."""
    if not host:
        return
    try:
        ipaddress.ip_address(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
        return
    except ValueError:
        pass
    try:
        ascii_name = host.encode("idna")
    except UnicodeError:
        ascii_name = b""
    require(len(ascii_name) <= 253 and re.fullmatch(rb"[A-Za-z0-9_.-]+", ascii_name) is not None, key, host,
            "is not an IP address or a host name (letters, digits, '-', '.'; labels of 1-63 characters)")


def check_port(key: str, port: int) -> None:
    require(0 < port < 65536, key, port, "must be between 1 and 65535")


def check_address(key: str, host: str, port: int) -> None:
    """A section's host (not empty: a server that must be named, or a listener that must be bound on purpose) and
    port, the errors naming key.host and key.port."""
    require(bool(host), f"{key}.host", host, "must not be empty")
    check_host(f"{key}.host", host)
    check_port(f"{key}.port", port)


def check_path(key: str, path: Optional[str], writes_into: bool = False, suffix: str = "") -> None:
    """A path Linux can open: at most PATH_MAX_BYTES, each name at most NAME_MAX_BYTES. writes_into: a directory the
    daemon creates files in (room for one more name); suffix: what is appended to the name (SQLite's -journal)."""
    if not path:
        return
    raw = os.fsencode(path + suffix)
    room = NAME_MAX_BYTES + 1 if writes_into else 0
    require(len(raw) + room <= PATH_MAX_BYTES, key, path,
            f"is {len(raw)} bytes long; Linux paths end at {PATH_MAX_BYTES}"
            + (f" and files go in it (at most {PATH_MAX_BYTES - room})" if writes_into else ""))
    longest = max(raw.split(b"/"), key=len)
    require(len(longest) <= NAME_MAX_BYTES, key, path,
            f"has a name of {len(longest)} bytes{' with ' + suffix if suffix else ''}; "
            f"Linux file names end at {NAME_MAX_BYTES}")


def mqtt_text_problem(text: str) -> Optional[str]:
    """Why an MQTT string cannot carry this text, or None."""
    bad = _MQTT_REFUSED.search(text)
    if bad:
        return f"holds U+{ord(bad.group()):04X} at character {bad.start() + 1}, which MQTT brokers refuse"
    size = len(text.encode("utf-8"))
    if size > MQTT_MAX_STRING_BYTES:
        return f"is {size} bytes in UTF-8; MQTT strings end at {MQTT_MAX_STRING_BYTES}"
    return None


def check_mqtt_text(key: str, text: Optional[str]) -> None:
    if text is not None:
        problem = mqtt_text_problem(text)
        require(problem is None, key, text, problem or "")


def check_topic_prefix(key: str, prefix: str) -> None:
    """A prefix topics can be published under; check_topic_length() bounds the longest topic made from it."""
    require(bool(prefix) and not re.search(r"[#+]", prefix) and not prefix.startswith(("/", "$"))
            and not prefix.endswith("/"), key, prefix,
            "is not a valid topic prefix (no '#', '+', leading '$', leading or trailing '/')")
    check_mqtt_text(key, prefix)


def check_topic_length(key: str, prefix: str, longest_topic: str) -> None:
    """longest_topic, the longest topic published under the prefix at key, fits an MQTT string."""
    size = len(longest_topic.encode("utf-8"))
    require(size <= MQTT_MAX_STRING_BYTES, key, prefix,
            f"makes topics of {size} bytes (…{longest_topic[-40:]}); MQTT topics end at {MQTT_MAX_STRING_BYTES}")


def check_opcua_text(key: str, text: str) -> None:
    bad = re.search("[\x00-\x1f\x7f-\x9f]", text)
    if bad:
        raise ConfigError(key, f"{shown(text)} holds the control character U+{ord(bad.group()):04X}")
    size = len(text.encode("utf-8"))
    require(size <= OPCUA_MAX_STRING_BYTES, key, text, f"is {size} bytes in UTF-8, more than {OPCUA_MAX_STRING_BYTES}")


def check_env_name(key: str, name: Optional[str]) -> None:
    if name is not None and _ENV_NAME.fullmatch(name) is None:
        # Not echoed: what is not a variable's name here is most likely the password itself, pasted by mistake.
        raise ConfigError(key, f"is not an environment variable name (letters, digits, '_'; not starting with a "
                               f"digit); its value ({len(name)} characters) is not shown, in case it is a secret")


def discovery_id(text: str) -> str:
    """Home Assistant discovery's node_id and entity ids may hold only [a-zA-Z0-9_-]: anything else becomes '_'."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)
