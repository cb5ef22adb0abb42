"""The daemon's outputs, one module per sink, all fed by the one outbox (daemon/publish/outbox.py).

base.py       the interface (start, wake, stop with a drain, health, counters) and QueueSink, the thread that
              takes a sink's own rows from the outbox
mqtt.py       the JSON payload over MQTT: the publisher of daemon/publish/mqtt_client.py as a sink
opcua.py      an OPC UA server (asyncua): per camera a folder with the last reading and an event per reading;
opcua_cycles.py   ... and, per triggered camera, OPC 40100-1's read-cycle methods, state and ResultReady events
sparkplug.py  Sparkplug B on MQTT: NBIRTH / DBIRTH / DDATA / NDEATH, one device per camera
homeassistant.py  Home Assistant MQTT discovery and a retained state per camera

Each sink delivers on its own: a dead one keeps its backlog in the outbox and holds back no other.
Nothing here is imported by the pipeline; the service calls sink_names(), build_sinks() and stop_sinks().
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Optional

from daemon.config import Config, enabled_sinks
from daemon.publish.outbox import DEFAULT_SINK, Outbox

log = logging.getLogger(__name__)


def sink_names(cfg: Config) -> tuple[str, ...]:
    """The sinks the config turns on, in SINKS order. None on: ("mqtt",), so the outbox keeps every reading
    for when MQTT is enabled (what mqtt.enabled: false has always meant)."""
    return enabled_sinks(cfg) or (DEFAULT_SINK,)


def build_sinks(cfg: Config, outbox: Outbox, on_acked: Optional[Callable[[str], None]] = None,
                boards: Optional[dict] = None) -> dict:
    """name -> sink for every enabled sink, not started. Each module is imported only when its sink is on
    (asyncua, protobuf, pymodbus stay unloaded otherwise). boards: the triggered cameras' TriggerBoards, which the
    Modbus and OPC UA sinks offer their clients' triggers to."""
    return {name: _new_sink(name, cfg, outbox, on_acked, boards or {}) for name in enabled_sinks(cfg)}


def _new_sink(name: str, cfg: Config, outbox: Outbox, on_acked: Optional[Callable[[str], None]], boards: dict):
    """The sink of one SINKS name, its module imported now."""
    rows = outbox.for_sink(name)
    if name == "mqtt":
        from daemon.publish.sinks.mqtt import MqttSink
        return MqttSink(cfg.mqtt, cfg.device_id, rows, on_acked=on_acked)
    if name == "opcua":
        from daemon.publish.sinks.opcua import OpcUaSink
        return OpcUaSink(cfg, rows, boards)
    if name == "sparkplug":
        from daemon.publish.sinks.sparkplug import SparkplugSink
        return SparkplugSink(cfg, rows)
    if name == "homeassistant":
        from daemon.publish.sinks.homeassistant import HomeAssistantSink
        return HomeAssistantSink(cfg, rows)
    if name == "modbus":
        from daemon.publish.sinks.modbus import ModbusConfig, ModbusSink
        m = cfg.modbus
        triggered = [c.name for c in cfg.cameras if c.mode == "triggered"]   # camera i of them at base i * 100
        return ModbusSink(ModbusConfig.for_cameras(triggered, host=m.host, port=m.port, unit_id=m.unit_id,
                                                   max_connections=m.max_connections,
                                                   idle_timeout_s=m.idle_timeout_s), rows, boards)
    raise ValueError(f"no sink module for {name!r} (daemon/config/sinks.py SINKS)")


def stop_sinks(sinks: dict, drain_timeout_s: float) -> dict[str, int]:
    """Stops every sink at once, each draining for at most drain_timeout_s (a slow one does not eat the others'
    time); name -> rows it still owes."""
    left: dict[str, int] = {}

    def stop(name: str, sink) -> None:
        try:
            left[name] = sink.stop(drain_timeout_s)
        except Exception:
            log.exception("%s: stop failed", name)

    threads = [threading.Thread(target=stop, args=(n, s), name=f"stop-{n}") for n, s in sinks.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return left
