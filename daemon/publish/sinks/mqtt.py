"""The MQTT JSON sink: today's publisher (daemon/publish/mqtt_client.py) behind the sink interface.

The publisher keeps its own delivery rules (in-flight window, per-camera blocks, probes, dead letters); this adapter
only gives it the sink's name, health and counters. It reads the outbox through its own SinkQueue, so the other
sinks' rows never reach it and its acknowledgements delete only its own delivery lines.
"""
from __future__ import annotations

from typing import Callable, Optional

from daemon.config import MqttConfig
from daemon.publish.mqtt_client import Publisher
from daemon.publish.outbox import SinkQueue
from daemon.publish.sinks.base import SinkCounters, SinkHealth


class _PublisherCounters(SinkCounters):
    """The sink counters read from the publisher's own (never counted twice)."""

    def __init__(self, publisher: Publisher):
        super().__init__()
        self._publisher = publisher

    def as_dict(self) -> dict:
        c = self._publisher.counters
        return {"delivered": c.acked, "failed": c.delivery_failures, "dead_lettered": c.dead_lettered,
                "skipped": 0, "connects": c.reconnects,   # MQTT counts reconnects after the first connect
                "connect_failures": c.connect_failures}


class MqttSink:
    name = "mqtt"

    def __init__(self, cfg: MqttConfig, device_id: str, queue: SinkQueue,
                 on_acked: Optional[Callable[[str], None]] = None):
        self._queue = queue
        self.publisher = Publisher(cfg, device_id, queue, on_acked=on_acked)
        self.counters = _PublisherCounters(self.publisher)

    @property
    def up(self) -> bool:
        return self.publisher.connected

    def start(self) -> None:
        self.publisher.start()   # connect_async: starts even while the broker is down

    def wake(self) -> None:
        self.publisher.wake()

    def stop(self, drain_timeout_s: float) -> int:
        return self.publisher.stop(drain_timeout_s)

    def health(self) -> SinkHealth:
        d = self.publisher.delivery_health()
        rows = self._queue.depth()[0]
        return SinkHealth(name=self.name, up=d.connected, alive=d.sender_alive, backlog=rows,
                          oldest_undelivered_age_s=d.oldest_undelivered_age_s, failing_rows=d.failing_rows,
                          dead_letters=d.dead_letters, idle_s=d.sender_idle_s,
                          last_error=d.last_error or ("" if d.connected else "not connected"))
