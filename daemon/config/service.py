"""The service section (draining, stall and delivery health, log level) and metrics (Prometheus /metrics and
/healthz)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from daemon.config.checks import check_host, check_port
from daemon.config.errors import require


@dataclass(frozen=True)
class ServiceConfig:
    # SIGTERM: how long to drain the pipeline and the outbox before exiting with the rest on disk.
    drain_timeout_s: float = 10.0
    # /healthz turns unhealthy and the systemd watchdog stops being fed when no frame made progress this long.
    stall_timeout_s: float = 60.0
    # /healthz turns unhealthy (503) when the oldest undelivered outbox row is older than this while the broker
    # is connected: delivery is wedged, not merely offline (an unreachable broker never fails health).
    max_undelivered_age_s: float = 300.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def check(self, key: str) -> None:
        require(self.drain_timeout_s >= 0, f"{key}.drain_timeout_s", self.drain_timeout_s, "must not be negative")
        require(self.stall_timeout_s > 0, f"{key}.stall_timeout_s", self.stall_timeout_s, "must be positive")
        require(self.max_undelivered_age_s > 0, f"{key}.max_undelivered_age_s", self.max_undelivered_age_s,
                "must be positive")


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = True
    # Prometheus /metrics and /healthz; loopback by default.
    host: str = "127.0.0.1"
    port: int = 9108

    def check(self, key: str) -> None:
        check_host(f"{key}.host", self.host)
        check_port(f"{key}.port", self.port)
