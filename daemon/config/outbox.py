"""The outbox section: the SQLite file every reading waits in until each output has it, and its bounds."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from daemon.config.errors import require


@dataclass(frozen=True)
class OutboxConfig:
    # SQLite file holding every result until the broker acknowledged it.
    path: str = "var/outbox.sqlite3"
    max_rows: int = 100_000
    max_bytes: int = 256 * 1024 * 1024
    # When a cap is reached: drop_oldest deletes the oldest rows, refuse_new drops the new result.
    full_policy: Literal["drop_oldest", "refuse_new"] = "drop_oldest"
    # Rows older than this are dropped (counted); 0 = keep until published.
    ttl_s: float = 7 * 24 * 3600.0
    # A row whose delivery failed this many times (refusing PUBACK, or the broker cutting us off) is dead-lettered.
    dead_letter_after_failures: int = 5

    def check(self, key: str) -> None:
        require(bool(self.path), f"{key}.path", self.path, "must not be empty")
        require(self.max_rows >= 1, f"{key}.max_rows", self.max_rows, "must be at least 1")
        require(self.max_bytes >= 4096, f"{key}.max_bytes", self.max_bytes, "must be at least 4096")
        require(self.ttl_s >= 0, f"{key}.ttl_s", self.ttl_s, "must not be negative")
        require(self.dead_letter_after_failures >= 1, f"{key}.dead_letter_after_failures",
                self.dead_letter_after_failures, "must be at least 1")
