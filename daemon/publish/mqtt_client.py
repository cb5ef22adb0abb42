"""The MQTT publisher: drains the outbox to the broker with QoS 1; a row leaves the outbox only on a good PUBACK.

Threads: paho's network loop (loop_start) runs the callbacks; one sender thread reads the outbox, publishes,
and deletes acknowledged rows, so no SQLite fsync ever runs on the network thread. paho calls on_publish while
holding its own message lock, so our lock is never held while calling into paho (no lock-order inversion).

Delivery rules:
- rows go out in id order, at most max_inflight unacknowledged (also capped by an MQTT 5 broker's Receive Maximum);
- on a cut, paho keeps its unacknowledged messages and re-sends them (DUP, same mid, same payload and id) right
  after the next CONNACK; new rows wait until those are acknowledged, so a camera's order survives reconnects;
- a failing MQTT 5 PUBACK (reason code >= 0x80, e.g. 0x87 not authorized) leaves the row in the outbox, counts
  in puback_failures, and pauses that camera's rows for an exponential backoff (reconnect_min_s..max_s), so the
  retry is neither a hot loop nor overtaken by the camera's newer rows (rows of that camera already in flight
  behind the refused one can still land before its retry: with max_inflight > 1 that is the one reorder left).

Session choice: clean session (3.1.1) / clean start with session expiry 0 (5). The outbox is the source of
truth and paho re-sends its in-flight messages on every reconnect anyway; a persistent broker session would
only make the broker keep state for a client that never subscribes, and would not survive a broker that lost
its memory.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from daemon.config import MqttConfig, mqtt_password
from daemon.publish.outbox import Outbox
from daemon.publish.payload import stats_topic, status_topic

log = logging.getLogger(__name__)

_EARLY_ACK_TTL_S = 10.0     # a PUBACK that beat its own bookkeeping is kept this long, then forgotten
_IDLE_POLL_S = 0.5          # the sender re-checks the outbox at least this often (TTL sweep, backoff expiry)



def _quiet_reconnect_errors(record: logging.LogRecord) -> bool:
    """paho logs every failed reconnect attempt at ERROR ("Client is not connected"); our own
    once-per-outage warning says it better. Those lines pass only when DEBUG is on."""
    if "not connected" in record.getMessage():
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
    return True

@dataclass
class PublishCounters:
    published: int = 0          # outbox rows handed to paho (retries after a failed PUBACK count again)
    acked: int = 0              # successful PUBACKs; the row was deleted
    puback_failures: int = 0    # PUBACKs with a failure reason code (MQTT 5); the row stayed
    reconnects: int = 0         # successful connects after the first
    connect_failures: int = 0   # TCP/TLS failures and refused CONNACKs
    disconnects: int = 0        # losses of an established connection
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)


@dataclass
class _Inflight:
    row_id: int
    camera: str
    msg_id: str


class Publisher:
    def __init__(self, cfg: MqttConfig, device_id: str, outbox: Outbox, clock: Callable[[], float] = time.time,
                 on_acked: Optional[Callable[[str], None]] = None):
        """on_acked(msg_id) is called from the sender thread after an acknowledged row was deleted."""
        self._cfg = cfg
        self._device_id = device_id
        self._outbox = outbox
        self._clock = clock
        self._on_acked = on_acked
        self.counters = PublishCounters()
        self._status_topic = status_topic(cfg.topic_prefix, device_id)
        self._stats_topic = stats_topic(cfg.topic_prefix, device_id)
        self._client: Any = None
        self._sender: Optional[threading.Thread] = None
        # Guards everything below. Never held while calling paho (paho holds its own lock in on_publish).
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._connected = False
        self._refusal_counted = False
        self._ever_connected = False
        self._receive_max = cfg.max_inflight
        self._inflight: dict[int, _Inflight] = {}          # paho mid -> row
        self._early_acks: dict[int, tuple[Any, float]] = {}  # mid -> (reason code, when): PUBACK before bookkeeping
        self._status_mids: set[int] = set()
        self._acked: list[_Inflight] = []                   # acknowledged, to be deleted by the sender thread
        self._deleting: set[int] = set()                    # row ids acknowledged but maybe not yet deleted
        self._warned_unreachable = False                    # the "cannot reach the broker" warning of this outage
        self._resync = False                                # a CONNACK arrived; paho is re-sending its in-flight
        self._carried: set[int] = set()                     # mids in flight at the last reconnect
        self._carried_deadline = 0.0
        self._camera_retry: dict[str, tuple[float, float]] = {}   # camera -> (retry at, current backoff s)
        self._dirty = True
        self._stop_sender = False
        self.last_puback_failure: Optional[str] = None     # e.g. "Not authorized", for logs and stats

    # ------------------------------------------------------------ public surface

    @property
    def connected(self) -> bool:
        """True only between a successful CONNACK and the next disconnect; a refused connect is not connected."""
        return self._connected

    @property
    def inflight(self) -> int:
        with self._lock:
            return len(self._inflight)

    def start(self) -> None:
        """Returns at once: the connection is made (and remade) by paho's thread, with backoff."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        cfg = self._cfg
        v5 = cfg.protocol == "5"
        client_id = cfg.client_id or f"ocr-daemon-{self._device_id}"
        kwargs: dict[str, Any] = {"callback_api_version": CallbackAPIVersion.VERSION2, "client_id": client_id,
                                  "protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311}
        if not v5:
            kwargs["clean_session"] = True
        client = mqtt.Client(**kwargs)
        paho_log = logging.getLogger(__name__ + ".paho")
        paho_log.addFilter(_quiet_reconnect_errors)
        client.enable_logger(paho_log)
        client.max_inflight_messages_set(cfg.max_inflight)
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)
        if cfg.username is not None:
            client.username_pw_set(cfg.username, mqtt_password(cfg))
        if cfg.tls.enabled:
            client.tls_set(ca_certs=cfg.tls.ca_file, certfile=cfg.tls.cert_file, keyfile=cfg.tls.key_file)
            if cfg.tls.insecure:
                client.tls_insecure_set(True)
        client.will_set(self._status_topic, "offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client
        log.info("mqtt: connecting to %s:%d as %s (MQTT %s%s%s)", cfg.host, cfg.port, client_id, cfg.protocol,
                 ", TLS" if cfg.tls.enabled else "", ", user " + cfg.username if cfg.username else "")
        if v5:
            client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s, clean_start=True)
        else:
            client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        client.loop_start()
        self._sender = threading.Thread(target=self._sender_main, name="mqtt-sender", daemon=True)
        self._sender.start()

    def wake(self) -> None:
        """A new row is in the outbox."""
        with self._cv:
            self._dirty = True
            self._cv.notify()

    def publish_stats(self, stats: dict) -> None:
        """QoS 0 and never queued: a stats message is only worth sending now."""
        if self._client is None or not self._connected:
            return
        self._client.publish(self._stats_topic, json.dumps(stats, separators=(",", ":")), qos=0)

    def stop(self, drain_timeout_s: float) -> int:
        """Tries to empty the outbox for at most drain_timeout_s, publishes retained "offline", disconnects.
        Returns the rows left in the outbox (they are sent by the next run)."""
        if self._client is None or self._stop_sender:   # never started, or stopped already
            return self._outbox.depth()[0]
        deadline = time.monotonic() + max(0.0, drain_timeout_s)
        while time.monotonic() < deadline:
            with self._lock:
                busy = bool(self._inflight or self._acked or self._deleting)
            if not busy and self._outbox.depth()[0] == 0:
                break
            time.sleep(0.02)
        with self._cv:
            self._stop_sender = True
            self._cv.notify()
        if self._sender is not None:
            self._sender.join(timeout=10.0)
        client = self._client
        if self._connected:
            # A clean DISCONNECT suppresses the will, so say "offline" ourselves and wait briefly for its PUBACK.
            info = client.publish(self._status_topic, "offline", qos=1, retain=True)
            end = time.monotonic() + 2.0
            while not info.is_published() and self._connected and time.monotonic() < end:
                time.sleep(0.01)
        client.disconnect()
        client.loop_stop()
        with self._lock:   # PUBACKs that arrived after the sender thread ended
            acked, self._acked = self._acked, []
        if acked:
            self._delete_acked(acked)
        left = self._outbox.depth()[0]
        log.info("mqtt: stopped with %d results left in the outbox", left)
        return left

    # ------------------------------------------------------------ paho callbacks (network thread)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.counters.add("connect_failures")
            with self._lock:
                self._refusal_counted = True   # the disconnect that follows is the same failure
            log.warning("mqtt: broker refused the connection: %s", reason_code)
            return
        receive_max = getattr(properties, "ReceiveMaximum", None) if properties is not None else None
        info = client.publish(self._status_topic, "online", qos=1, retain=True)
        with self._cv:
            # Safe to record after publish(): this thread is the one that would process its PUBACK.
            self._status_mids.add(info.mid)
            if receive_max:
                self._receive_max = min(self._cfg.max_inflight, int(receive_max))
            if self._ever_connected:
                self.counters.add("reconnects")
            self._ever_connected = True
            self._connected = True
            self._resync = True
            self._dirty = True
            self._cv.notify()
        self._warned_unreachable = False
        log.info("mqtt: connected (%d results in flight are re-sent first)", len(self._inflight))

    def _on_connect_fail(self, client, userdata) -> None:
        self.counters.add("connect_failures")
        # Once per outage at WARNING (the integrator must see it), then DEBUG: a broker down for a day
        # must not fill the journal, and nothing is lost meanwhile.
        first = not self._warned_unreachable
        self._warned_unreachable = True
        rows, _ = self._outbox.depth()
        log.log(logging.WARNING if first else logging.DEBUG,
                "mqtt: cannot reach the broker at %s:%d; retrying with backoff, results wait in the outbox (%d now)",
                self._cfg.host, self._cfg.port, rows)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cv:
            was = self._connected
            self._connected = False
            refusal_counted, self._refusal_counted = self._refusal_counted, False
            self._cv.notify()
        if not was and not refusal_counted:
            # lost before any CONNACK: e.g. a TLS 1.3 server rejecting our certificate after the handshake
            self.counters.add("connect_failures")
            log.warning("mqtt: connection lost before the broker accepted it (%s)", reason_code)
        if was:
            self.counters.add("disconnects")
            level = logging.INFO if self._stop_sender else logging.WARNING
            log.log(level, "mqtt: disconnected (%s); %d results in flight will be re-sent", reason_code,
                    len(self._inflight))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._cv:
            entry = self._inflight.pop(mid, None)
            if entry is None:
                if mid in self._status_mids:
                    self._status_mids.discard(mid)
                else:   # the sender has not recorded this mid yet (or it is a QoS 0 stats message)
                    self._early_acks[mid] = (reason_code, time.monotonic())
                return
            self._settle_locked(entry, reason_code)
            self._cv.notify()

    def _settle_locked(self, entry: _Inflight, reason_code) -> None:
        if reason_code.is_failure:
            self.counters.add("puback_failures")
            self.last_puback_failure = f"{reason_code} (0x{reason_code.value:02x})"
            now = self._clock()
            retry_at, backoff_s = self._camera_retry.get(entry.camera, (0.0, 0.0))
            if retry_at <= now:   # one doubling per retry round, not per row refused in the same round
                backoff_s = min(self._cfg.reconnect_max_s, max(self._cfg.reconnect_min_s, backoff_s * 2))
                retry_at = now + backoff_s
                self._camera_retry[entry.camera] = (retry_at, backoff_s)
            log.warning("mqtt: broker refused %s (%s); camera %s retries in %.1f s", entry.msg_id, reason_code,
                        entry.camera, backoff_s)
        else:
            self._camera_retry.pop(entry.camera, None)
            self._acked.append(entry)
            self._deleting.add(entry.row_id)
        self._dirty = True

    # ------------------------------------------------------------ sender thread

    def _sender_main(self) -> None:
        while True:
            with self._cv:
                if not self._dirty and not self._acked and not self._stop_sender:
                    self._cv.wait(timeout=_IDLE_POLL_S)
                self._dirty = False
                acked, self._acked = self._acked, []
                stopping = self._stop_sender
            if acked:
                self._delete_acked(acked)
            if stopping:
                return
            try:
                self._send_some()
            except Exception:   # a bad row or a paho error must not kill the thread that empties the outbox
                log.exception("mqtt: sender error; retrying")
                time.sleep(_IDLE_POLL_S)

    def _delete_acked(self, acked: list[_Inflight]) -> None:
        self._outbox.delete_many([e.row_id for e in acked])
        with self._lock:
            self._deleting.difference_update(e.row_id for e in acked)
        self.counters.add("acked", len(acked))
        if self._on_acked is not None:
            for e in acked:
                self._on_acked(e.msg_id)

    def _send_some(self) -> None:
        now = self._clock()
        with self._lock:
            if not self._connected:
                return
            self._forget_stale_early_acks_locked()
            if self._resync:   # paho is re-sending what was in flight at the cut: those go first
                self._resync = False
                self._carried = set(self._inflight)
                self._carried_deadline = now + max(5.0, 2.0 * self._cfg.keepalive_s)
            self._carried &= self._inflight.keys()
            if self._carried and now > self._carried_deadline:
                # Safety net: paho did not re-send them; send them again from the outbox (same ids).
                log.warning("mqtt: %d re-sent results not acknowledged in time; sending them again",
                            len(self._carried))
                for mid in self._carried:
                    self._inflight.pop(mid, None)
                self._carried.clear()
            room = 0 if self._carried else min(self._cfg.max_inflight, self._receive_max) - len(self._inflight)
            if room <= 0:
                return
            exclude_ids = {e.row_id for e in self._inflight.values()} | self._deleting
            blocked = {cam for cam, (retry_at, _) in self._camera_retry.items() if retry_at > now}
        rows = self._outbox.pending(room, exclude_ids, blocked)
        for row in rows:
            if not self._connected:
                return
            info = self._client.publish(row.topic, row.payload, qos=1)
            if info.rc not in (0, 4):   # 0 = sent, 4 = MQTT_ERR_NO_CONN: paho keeps it and sends it on reconnect
                log.warning("mqtt: publish of %s failed locally (rc %s); retrying later", row.msg_id, info.rc)
                return
            entry = _Inflight(row.id, row.camera, row.msg_id)
            with self._lock:
                self.counters.add("published")
                early = self._early_acks.pop(info.mid, None)
                if early is None:
                    self._inflight[info.mid] = entry
                else:
                    self._settle_locked(entry, early[0])
        if len(rows) == room:
            with self._lock:
                self._dirty = True   # there may be more

    def _forget_stale_early_acks_locked(self) -> None:
        if not self._early_acks:
            return
        cutoff = time.monotonic() - _EARLY_ACK_TTL_S
        for mid in [m for m, (_, t) in self._early_acks.items() if t < cutoff]:
            del self._early_acks[mid]
