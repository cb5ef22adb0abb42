"""The evidence section: each stored reading's frame and line crops on disk, and the review topic."""
from __future__ import annotations

from dataclasses import dataclass

from daemon.config.errors import require


@dataclass(frozen=True)
class EvidenceConfig:
    # Per stored reading, its frame and line crops as JPEGs (daemon/evidence.py), fetched as /evidence/<id>.jpg.
    enabled: bool = True
    # The evidence folder (relative paths resolve against state_dir); nothing else should live there.
    dir: str = "var/evidence"
    # Size cap of the folder; the oldest readings' files go first (a reading's size: docs/performance.md).
    max_bytes: int = 512 * 1024 * 1024
    # Files older than this are deleted; 0 = kept until the size cap needs the room.
    ttl_s: float = 7 * 24 * 3600.0
    # Nothing is written while the file system has less free than this: evidence never fills the outbox's disk.
    min_free_bytes: int = 1024 * 1024 * 1024
    # The frame is scaled down to this longest side before encoding; 0 = as captured. Crops are kept at full size.
    frame_max_side_px: int = 1280
    # JPEG quality of the frame and the crops, 1..100.
    jpeg_quality: int = 80
    # Line crops beside the frame (one small JPEG per line).
    crops: bool = True
    # Readings waiting for the writer thread; when full, a reading's evidence is dropped (counted), never waited for.
    # Each holds its frame in memory until written (a 1280x960 frame is 3.7 MB: 16 = 59 MB at most).
    queue_size: int = 16
    # A stored reading with a line below this confidence also sends its id to {prefix}/{device}/{camera}/review
    # (through the outbox, after the reading); 0 = off.
    review_below_confidence: float = 0.0

    def check(self, key: str) -> None:
        require(bool(self.dir), f"{key}.dir", self.dir, "must not be empty")
        require(self.max_bytes >= 1024 * 1024, f"{key}.max_bytes", self.max_bytes, "must be at least 1048576 (1 MiB)")
        require(self.ttl_s >= 0, f"{key}.ttl_s", self.ttl_s, "must not be negative")
        require(self.min_free_bytes >= 0, f"{key}.min_free_bytes", self.min_free_bytes, "must not be negative")
        require(self.frame_max_side_px == 0 or self.frame_max_side_px >= 64, f"{key}.frame_max_side_px",
                self.frame_max_side_px, "must be 0 (as captured) or at least 64")
        require(1 <= self.jpeg_quality <= 100, f"{key}.jpeg_quality", self.jpeg_quality, "must be between 1 and 100")
        require(1 <= self.queue_size <= 1024, f"{key}.queue_size", self.queue_size, "must be between 1 and 1024")
        require(0.0 <= self.review_below_confidence <= 1.0, f"{key}.review_below_confidence",
                self.review_below_confidence, "must be between 0 (off) and 1")
