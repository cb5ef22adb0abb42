"""systemd's notify protocol in plain Python: datagrams to $NOTIFY_SOCKET (no systemd package needed).

Outside systemd (no NOTIFY_SOCKET) every call is a cheap no-op, so the daemon runs the same by hand.
"""
from __future__ import annotations

import logging
import os
import socket
from typing import Mapping, Optional

log = logging.getLogger(__name__)


def _address(env: Mapping[str, str]) -> Optional[str]:
    addr = env.get("NOTIFY_SOCKET", "")
    if not addr or addr[0] not in "/@":   # vsock addresses are not used by service units
        return None
    return "\0" + addr[1:] if addr[0] == "@" else addr   # '@' = Linux abstract namespace


def watchdog_interval_s(env: Mapping[str, str] = os.environ) -> Optional[float]:
    """WatchdogSec of the unit, when it is meant for this process; ping at half of it or faster."""
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1e6
    except ValueError:
        return None


class Notifier:
    def __init__(self, env: Mapping[str, str] = os.environ):
        self._addr = _address(env)
        self._sock: Optional[socket.socket] = None
        if self._addr:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *assignments: str) -> bool:
        """Sends 'KEY=value' lines in one datagram; False when not under systemd or the send failed."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto("\n".join(assignments).encode("utf-8"), self._addr)
            return True
        except OSError as exc:   # systemd gone or restarting: never fatal for the daemon
            log.debug("sd_notify failed: %s", exc)
            return False

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text.replace(chr(10), ' ')}")

    def stopping(self, status: str = "") -> bool:
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
