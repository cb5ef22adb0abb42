"""Sparkplug B on MQTT: the daemon is an edge node, each camera a device, each reading a DDATA.

Topics (Sparkplug 3.0): spBv1.0/{group_id}/NBIRTH|NDEATH/{edge_node_id} and
spBv1.0/{group_id}/DBIRTH|DDATA/{edge_node_id}/{camera}; payloads are Sparkplug B protobuf (sparkplug_b/).

A session is one MQTT connection (mqtt_session.py, a fresh client each time):
- CONNECT carries the will: NDEATH with this session's bdSeq (0..255, one more for every connection, kept in
  `sparkplug-bdseq` beside the outbox file so a restart goes on from the last one: a late will of the previous
  run never carries the bdSeq of the new NBIRTH);
- NBIRTH with seq 0 and the same bdSeq, then a DBIRTH per configured camera with its last values (births at QoS
  0, as the specification says), then one DDATA per reading in outbox order; seq goes up by one with every message
  after NBIRTH and wraps 255 -> 0;
- with sparkplug.primary_host_id, the births (and so the data) wait until spBv1.0/STATE/<id> says the host is
  online; a STATE offline ends the session (NDEATH) and the readings wait in the outbox;
- NCMD "Node Control/Rebirth" = true: NBIRTH (seq 0, same bdSeq) and every DBIRTH again;
- a camera a reload removes gets its DDEATH and is not born again; one it adds is born at once;
- a camera not configured (a row it left) is born before its first DDATA, and a removed one dies again after it;
- stop: NDEATH published by us (a clean DISCONNECT suppresses the will), then DISCONNECT.
A reading leaves the outbox for this sink once its DDATA is acknowledged (sparkplug.qos 1, default) or written to
the socket (qos 0, what the specification asks for; a cut can then lose the readings in flight).

Device metrics, per camera: "Reading/Text" (String), "Reading/Confidence" (Double, the lowest line's),
"Reading/Id" (String, the JSON payload's id: duplicates are recognisable), "Reading/Captured At" (DateTime),
"Reading/Seq" (UInt64), "Reading/Lines" (UInt32), "Readings" (UInt64, delivered since the daemon started).
The metric timestamps are the capture time; the payload's is the send time.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Optional

from daemon.atomic_write import write_atomic
from daemon.config import Config
from daemon.publish.outbox import OutboxRow, SinkQueue
from daemon.publish.sinks.base import QueueSink, Reading, SinkDown
from daemon.publish.sinks.mqtt_session import MqttSession
from daemon.publish.sinks.sparkplug_b import sparkplug_b_pb2 as pb

log = logging.getLogger(__name__)

NAMESPACE = "spBv1.0"
# Metric.datatype (Sparkplug 3.0, table 6.4.16)
INT64, UINT32, UINT64, DOUBLE, BOOLEAN, STRING, DATETIME = 4, 7, 8, 10, 11, 12, 13
REBIRTH = "Node Control/Rebirth"


def topic(group_id: str, kind: str, edge_node_id: str, device: Optional[str] = None) -> str:
    return f"{NAMESPACE}/{group_id}/{kind}/{edge_node_id}" + (f"/{device}" if device else "")


def _metric(payload, name: str, datatype: int, value, timestamp_ms: int) -> None:
    m = payload.metrics.add()
    m.name = name
    m.datatype = datatype
    m.timestamp = timestamp_ms
    if value is None:
        m.is_null = True
    elif datatype == STRING:
        m.string_value = value
    elif datatype == DOUBLE:
        m.double_value = float(value)
    elif datatype == BOOLEAN:
        m.boolean_value = bool(value)
    elif datatype == UINT32:
        m.int_value = int(value)
    else:   # INT64, UINT64, DATETIME (epoch ms)
        m.long_value = int(value)


def node_birth(bd_seq: int, now_ms: int, device_id: str) -> bytes:
    """NBIRTH, always seq 0."""
    p = pb.Payload(timestamp=now_ms, seq=0)
    _metric(p, "bdSeq", INT64, bd_seq, now_ms)   # Int64, as Sparkplug 3.0 names it
    _metric(p, REBIRTH, BOOLEAN, False, now_ms)
    _metric(p, "Properties/Device", STRING, device_id, now_ms)
    return p.SerializeToString()


def node_death(bd_seq: int, now_ms: int) -> bytes:
    """NDEATH (the will): bdSeq only, no seq."""
    p = pb.Payload(timestamp=now_ms)
    _metric(p, "bdSeq", INT64, bd_seq, now_ms)
    return p.SerializeToString()


def device_metrics(p, reading: Optional[Reading], readings: int, now_ms: int, birth: bool) -> None:
    """A camera's metrics into payload p: every one in a birth (null before the first reading), the reading's
    in a DDATA."""
    at = reading.captured_at_ms if reading is not None else now_ms
    values = [("Reading/Text", STRING, reading and reading.text),
              ("Reading/Confidence", DOUBLE, reading and reading.confidence),
              ("Reading/Id", STRING, reading and reading.msg_id),
              ("Reading/Captured At", DATETIME, reading and reading.captured_at_ms),
              ("Reading/Seq", UINT64, reading and reading.seq),
              ("Reading/Lines", UINT32, reading and reading.lines)]
    for name, datatype, value in values:
        _metric(p, name, datatype, None if reading is None else value, at)
    _metric(p, "Readings", UINT64, readings, now_ms if birth else at)


def _read_bd_seq(path: Path) -> int:
    """The last bdSeq used (-1 when none: the first connection is 0)."""
    try:
        return int(path.read_text().strip()) % 256
    except (OSError, ValueError):
        return -1


class SparkplugSink(QueueSink):
    name = "sparkplug"

    def __init__(self, cfg: Config, queue: SinkQueue, clock=time.time):
        m = cfg.mqtt
        super().__init__(queue, m.reconnect_min_s, m.reconnect_max_s)
        self._cfg = cfg
        s = cfg.sparkplug
        self._group = s.group_id
        self._edge = s.edge_node_id or cfg.device_id
        self._qos = int(s.qos)
        self._client_id = s.client_id or f"ocr-daemon-{cfg.device_id}-spb"
        self._clock = clock
        self._session: Optional[MqttSession] = None
        self._bd_seq_path = Path(cfg.outbox.path).with_name("sparkplug-bdseq")
        self._bd_seq = _read_bd_seq(self._bd_seq_path)   # the last one used; the next connection uses one more
        # Whether a connection with _bd_seq was accepted (its NDEATH could be published). A start does not know:
        # the kept one may have been in use when the daemon stopped, so the first connection takes the next.
        self._bd_seq_used = True
        self._seq = 0                 # the last seq sent (NBIRTH's is 0)
        self._born: set[str] = set()  # devices born in this session
        self._cameras = [c.name for c in cfg.cameras]   # the configured ones (a reload changes them: set_cameras)
        self._gone: set[str] = set()  # cameras a reload removed
        self._last: dict[str, Reading] = {}   # camera -> its last reading delivered (for the births)
        self._readings: dict[str, int] = {}
        self._rebirth = threading.Event()
        self.births = 0               # NBIRTHs sent (first ones and rebirths), for tests and stats
        # The Primary Host Application (sparkplug.primary_host_id): its STATE topic, whether it is online (the
        # newest STATE by its timestamp), and whether this session is born (births wait for the host).
        self._host = s.primary_host_id
        self._state_topic = f"{NAMESPACE}/STATE/{self._host}" if self._host else None
        self._host_online = False
        self._host_stamp = -1
        self._session_born = False

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % 256
        return self._seq

    def _connect(self) -> None:
        if self._session is not None:
            self._session.close(graceful=False)
            self._session = None
        if self._bd_seq_used:   # one more per connection the broker accepted, not per attempt (a broker down)
            self._bd_seq = (self._bd_seq + 1) % 256
            self._bd_seq_used = False
            try:   # before the CONNECT that carries it: a crash right after it still never reuses it
                write_atomic(self._bd_seq_path, f"{self._bd_seq}\n".encode())
            except OSError as exc:
                log.warning("sparkplug: cannot keep bdSeq in %s (%s); a restart starts again from 0",
                            self._bd_seq_path, exc)
        death = node_death(self._bd_seq, self._now_ms())
        subscriptions = (topic(self._group, "NCMD", self._edge),) + ((self._state_topic,) if self._host else ())
        self._session_born = False
        session = MqttSession(self._cfg.mqtt, self._client_id, self._lost,
                              will=(topic(self._group, "NDEATH", self._edge), death, 1, False),
                              subscriptions=subscriptions, on_message=self._on_command)
        session.open()   # SinkDown when the broker cannot be reached or refuses: no session, no NDEATH to come
        self._bd_seq_used = True
        self._session = session
        self._rebirth.clear()
        if self._host is None:
            self._births()
        else:   # born once the host's STATE (retained: it comes right after the SUBSCRIBE) says online
            self._tick()

    def _births(self) -> None:
        """NBIRTH (seq 0) and a DBIRTH for every configured camera and every camera delivered to so far (not one a
        reload removed)."""
        self._take_camera_change(deaths=False)
        self._session_born = True
        session = self._session
        now_ms = self._now_ms()
        self._seq = 0
        # Births at QoS 0, as Sparkplug 3.0 says (a lost one is answered by the host's Rebirth); the data at
        # sparkplug.qos, 1 by default, so that a reading leaves the outbox only once the broker has it.
        session.publish(topic(self._group, "NBIRTH", self._edge), node_birth(self._bd_seq, now_ms,
                                                                          self._cfg.device_id), 0)
        self.births += 1
        self._born = set()
        for camera in dict.fromkeys(self._cameras + list(self._last)):
            self._device_birth(camera)

    def _device_birth(self, camera: str) -> None:
        now_ms = self._now_ms()
        p = pb.Payload(timestamp=now_ms, seq=self._next_seq())
        device_metrics(p, self._last.get(camera), self._readings.get(camera, 0), now_ms, birth=True)
        self._session.publish(topic(self._group, "DBIRTH", self._edge, camera), p.SerializeToString(), 0)
        self._born.add(camera)

    def _take_camera_change(self, deaths: bool) -> None:
        """A reload's cameras: each removed one born in this session gets its DDEATH (deaths) and is not born
        again; an added one is born now."""
        change = self._camera_change_taken()
        if change is None:
            return
        cameras, removed = change
        self._cameras = list(cameras)
        self._gone = (self._gone | set(removed)) - set(cameras)
        for camera in removed:
            if deaths and camera in self._born:
                self._device_death(camera)
            self._born.discard(camera)
            self._last.pop(camera, None)
            self._readings.pop(camera, None)
        if deaths:
            for camera in cameras:
                if camera not in self._born:
                    self._device_birth(camera)

    def _device_death(self, camera: str) -> None:
        p = pb.Payload(timestamp=self._now_ms(), seq=self._next_seq())
        self._session.publish(topic(self._group, "DDEATH", self._edge, camera), p.SerializeToString(), 0)
        self._born.discard(camera)

    def _tick(self) -> None:
        if self._host is not None:
            if not self._host_online:
                self._last_error = f"waiting for the primary host {self._host} (its STATE is not online)"
                if self._session_born:   # it went away: NDEATH and a new session, born when it is back
                    self._disconnect()
                    raise SinkDown(f"the primary host {self._host} went offline")
                return
            if not self._session_born:
                self._last_error = ""
                log.info("sparkplug: primary host %s online: births", self._host)
                self._births()
                return
        self._take_camera_change(deaths=True)
        if self._rebirth.is_set():
            self._rebirth.clear()
            log.info("sparkplug: rebirth requested")
            self._births()

    def _deliver(self, row: OutboxRow, reading: Reading) -> None:
        camera = reading.camera
        if camera not in self._born:
            self._device_birth(camera)
        count = self._readings.get(camera, 0) + 1
        now_ms = self._now_ms()
        p = pb.Payload(timestamp=now_ms, seq=self._next_seq())
        device_metrics(p, reading, count, now_ms, birth=False)
        self._session.publish(topic(self._group, "DDATA", self._edge, camera), p.SerializeToString(), self._qos)
        if camera in self._gone:          # a reading a reload's removed camera left in the outbox: delivered, and
            self._device_death(camera)    # the device is not left online in the host
            return
        self._readings[camera] = count
        self._last[camera] = reading

    def _disconnect(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        try:
            if session.connected:
                session.publish(topic(self._group, "NDEATH", self._edge), node_death(self._bd_seq, self._now_ms()), 1)
        except (SinkDown, RuntimeError) as exc:
            log.info("sparkplug: NDEATH not acknowledged (%s); the broker sends the will", exc)
        session.close()

    def _send_some(self) -> None:
        if self._host is not None and not self._session_born:
            return   # the host is not there to receive it: the outbox keeps it
        super()._send_some()

    def _on_state(self, payload: bytes) -> None:
        """The primary host's STATE (paho's thread): Sparkplug 3.0's {"online": bool, "timestamp": ms}, the newest
        by its timestamp winning."""
        try:
            doc = json.loads(payload.decode("utf-8"))
            online, stamp = doc["online"] is True, int(doc.get("timestamp", 0))
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            log.warning("sparkplug: undecodable STATE of the primary host %s ignored", self._host)
            return
        if stamp < self._host_stamp:
            return   # an older host session's, delivered late
        self._host_stamp, changed = stamp, online != self._host_online
        self._host_online = online
        if changed:
            log.log(logging.INFO if online else logging.WARNING, "sparkplug: primary host %s is %s", self._host,
                    "online" if online else "offline: readings wait in the outbox")
            self.wake()

    def _on_command(self, mqtt_topic: str, payload: bytes) -> None:
        """NCMD (paho's thread): a rebirth request is carried out on the sink's thread. The primary host's STATE
        comes here too."""
        if mqtt_topic == self._state_topic:
            self._on_state(payload)
            return
        try:
            p = pb.Payload.FromString(payload)
        except Exception:
            log.warning("sparkplug: undecodable NCMD on %s ignored", mqtt_topic)
            return
        if any(m.name == REBIRTH and m.boolean_value for m in p.metrics):
            self._rebirth.set()
            self.wake()
