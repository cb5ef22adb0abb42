"""The web section: the local page, where it listens and the access token it needs off loopback."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Optional

from daemon.config.checks import check_host
from daemon.config.errors import require
from daemon.config.secrets import check_named_once, secret

# An access token for the page shorter than this is refused: guessable over a plant network.
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class WebConfig:
    # The local page (daemon/web): each camera's latest frame with its readings drawn, recent readings, rejects.
    enabled: bool = True
    # Loopback by default (reach it over an SSH tunnel); any other address needs an access token below.
    host: str = "127.0.0.1"
    # TCP port of the page; 0 = any free port (logged at start).
    port: int = 8088
    # The access token, like the MQTT password never in this file: the name of an environment variable ...
    token_env: Optional[str] = None
    # ... or a file holding it (a systemd credential); at least MIN_TOKEN_CHARS characters.
    token_file: Optional[str] = None
    # Readings listed per camera on the page, newest first.
    recent_readings: int = 20
    # Rejects (reasons and the lines not kept) listed per camera; a repeated reject is one entry with a count.
    recent_rejects: int = 20
    # How often the page asks for new state and, when it changed, the camera's frame.
    refresh_ms: int = 1000
    # Requests served at once (the page server's worker threads); the page costs one request per camera per refresh.
    threads: int = 4
    # The longest side of the drawn frame the page shows, in pixels (drawn and encoded only when asked for).
    frame_max_side_px: int = 1280
    # Where the page's "save frame" button writes PNGs; at most max_saved_frames, the oldest deleted first.
    saved_frames_dir: str = "var/saved-frames"
    # Saved PNGs kept in saved_frames_dir.
    max_saved_frames: int = 200

    def check(self, key: str) -> None:
        require(bool(self.host), f"{key}.host", self.host, "must not be empty")
        check_host(f"{key}.host", self.host)
        require(0 <= self.port < 65536, f"{key}.port", self.port, "must be between 0 and 65535 (0 = any free port)")
        check_named_once(f"{key}.token", self.token_env, self.token_file)
        token = secret(f"{key}.token", self.token_env, self.token_file)
        if token is not None:
            require(len(token) >= MIN_TOKEN_CHARS, f"{key}.token_env" if self.token_env else f"{key}.token_file",
                    self.token_env or self.token_file, f"holds a token shorter than {MIN_TOKEN_CHARS} characters")
        require(not self.enabled or is_loopback_host(self.host) or bool(self.token_env or self.token_file),
                f"{key}.host", self.host, f"is not a loopback address: set {key}.token_env or {key}.token_file "
                "(an access token), or keep 127.0.0.1 and reach the page over an SSH tunnel")
        for name in ("recent_readings", "recent_rejects"):
            v = getattr(self, name)
            require(1 <= v <= 1000, f"{key}.{name}", v, "must be between 1 and 1000")
        require(100 <= self.refresh_ms <= 60_000, f"{key}.refresh_ms", self.refresh_ms, "must be between 100 and 60000")
        require(1 <= self.threads <= 32, f"{key}.threads", self.threads, "must be between 1 and 32")
        require(self.frame_max_side_px >= 64, f"{key}.frame_max_side_px", self.frame_max_side_px, "must be at least 64")
        require(bool(self.saved_frames_dir), f"{key}.saved_frames_dir", self.saved_frames_dir, "must not be empty")
        require(self.max_saved_frames >= 1, f"{key}.max_saved_frames", self.max_saved_frames, "must be at least 1")


def is_loopback_host(host: str) -> bool:
    """Whether a listen address only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
