"""The MQTT publisher: drains the outbox to the broker with QoS 1; a row leaves the outbox only on a good PUBACK.

Threads: paho's network loop (loop_start) runs the callbacks; one sender thread reads the outbox, publishes,
and deletes acknowledged rows, so no SQLite fsync ever runs on the network thread. paho calls on_publish while
holding its own message lock, so our lock is never held while calling into paho (no lock-order inversion).

Delivery rules:
- rows go out in id order, at most max_inflight unacknowledged (also capped by an MQTT 5 broker's Receive Maximum);
- on a cut, paho keeps its unacknowledged messages and re-sends them (DUP, same mid, same payload and id) right
  after the next CONNACK; new rows wait until those are acknowledged, so a camera's order survives reconnects;
- a row that can never be delivered as it is never reaches paho: above mqtt.max_payload_bytes, or (MQTT 5) above
  the Maximum Packet Size of the broker's CONNACK, it goes to the outbox's dead letters, at put() when the limit
  is known by then, else when its turn comes (Mosquitto's max_packet_size otherwise drops the connection and
  paho re-sends the same message first after every reconnect, blocking every camera);
- a failed delivery counts against the row in the outbox (failures column): a failing MQTT 5 PUBACK (reason code
  >= 0x80, e.g. 0x87 not authorized), or the broker cutting the connection (not a keepalive timeout) while the
  row was the oldest in flight and no PUBACK came after it was sent (Mosquitto's message_size_limit answers with a
  PUBACK paho calls malformed; 3.1.1 brokers just close). At outbox.dead_letter_after_failures the row moves to
  the dead letters and leaves paho's queue too, so the rows behind it flow again;
- a failed row blocks its camera: that camera's later rows wait (not sent, not re-ordered) while the failed row
  alone is retried after an exponential backoff (reconnect_min_s..max_s), until it is delivered or dead-lettered.
  A success of a later row already in flight does not end the block. Rows of that camera already in flight
  behind the failed one can still land before its retry: with max_inflight > 1 that is the one reorder left;
- the sender thread survives any exception: acknowledged ids whose delete failed (disk full, locked database)
  are kept, never re-sent, and deleted again after a backoff;
- paho's reconnect delay is set before each attempt with jitter (daemon/backoff.py): devices of a plant do not
  reconnect in lockstep after a broker restart.

Session choice: clean session (3.1.1) / clean start with session expiry 0 (5). The outbox is the source of
truth and paho re-sends its in-flight messages on every reconnect anyway; a persistent broker session would
only make the broker keep state for a client that never subscribes, and would not survive a broker that lost
its memory.
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from daemon.backoff import backoff_delay_s
from daemon.config import MqttConfig, mqtt_password
from daemon.publish.outbox import Outbox, OutboxRow
from daemon.publish.payload import stats_topic, status_topic

log = logging.getLogger(__name__)

_EARLY_ACK_TTL_S = 10.0     # a PUBACK that beat its own bookkeeping is kept this long, then forgotten
CUT_SIZE_TTL_S = 600.0      # a size learned from the cuts it caused (Publisher._learn_cut) holds this long
_CUT_REASON = "connection lost right after it was sent"
_IDLE_POLL_S = 0.5          # the sender re-checks the outbox at least this often (TTL sweep, backoff expiry)
_ERROR_BACKOFF_MIN_S = 0.5  # the sender's pause after an error (a failed delete, a SQLite error), doubling ...
_ERROR_BACKOFF_MAX_S = 30.0  # ... up to this
_SENDER_WEDGED_S = 120.0    # a sender that has not gone round its loop this long is stuck (4x the longest pause)


def publish_packet_bytes(topic: str, payload_bytes: int, mqtt5: bool) -> int:
    """Size of a QoS 1 PUBLISH on the wire, as a broker's Maximum Packet Size counts it (no properties)."""
    remaining = 2 + len(topic.encode("utf-8")) + 2 + (1 if mqtt5 else 0) + payload_bytes
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16_384 else 3 if remaining < 2_097_152 else 4
    return 1 + length_bytes + remaining



def _quiet_reconnect_errors(record: logging.LogRecord) -> bool:
    """paho logs every failed reconnect attempt at ERROR ("Client is not connected"); our own
    once-per-outage warning says it better. Those lines pass only when DEBUG is on."""
    if "not connected" in record.getMessage():
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
    return True


def apply_credentials(client, cfg: MqttConfig) -> None:
    """The broker login and TLS settings of cfg on a paho client (every client the daemon opens: the JSON
    publisher, Sparkplug B, Home Assistant)."""
    if cfg.username is not None:
        client.username_pw_set(cfg.username, mqtt_password(cfg))
    if cfg.tls.enabled:
        client.tls_set(ca_certs=cfg.tls.ca_file, certfile=cfg.tls.cert_file, keyfile=cfg.tls.key_file)
        if cfg.tls.insecure:
            client.tls_insecure_set(True)


@dataclass
class PublishCounters:
    published: int = 0          # outbox rows handed to paho (retries after a failed PUBACK count again)
    requeued: int = 0           # rows taken back from paho (a probe, paho not re-sending): published again, same id
    acked: int = 0              # successful PUBACKs; the row was deleted
    puback_failures: int = 0    # PUBACKs with a failure reason code (MQTT 5); the row stayed
    reconnects: int = 0         # successful connects after the first
    connect_failures: int = 0   # TCP/TLS failures and refused CONNACKs
    disconnects: int = 0        # losses of an established connection
    delivery_failures: int = 0  # failed deliveries counted against a row (failing PUBACK, or a cut right after it)
    dead_lettered: int = 0      # rows this publisher moved to the dead letters (too large, or failing N times)
    sender_errors: int = 0      # exceptions the sender thread survived (failed deletes, SQLite errors)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)


@dataclass
class _Inflight:
    row_id: int
    camera: str
    msg_id: str
    acks_at_send: int = 0   # successful PUBACKs seen when it was (re-)sent: none since then marks a suspect
    size: int = 0           # payload bytes


@dataclass
class _Block:
    """A camera behind a failed row: only head_row_id is retried (at retry_at) until delivered or dead-lettered."""
    head_row_id: int
    retry_at: float
    backoff_s: float


@dataclass(frozen=True)
class DeliveryHealth:
    """Publisher.delivery_health(): what /healthz, the stats topic and the systemd watchdog need to know.

    A broker that is merely down shows as connected False with needs_restart False: the outbox queues and the
    publisher reconnects by itself. needs_restart is True only for what a restart can cure: a dead sender thread,
    a sender stuck in one call for _SENDER_WEDGED_S (120 s), or an outbox whose lock stayed held that long
    (a single slow fsync on an SD card is not a reason). A full disk is not one either (outbox_writable False:
    unhealthy, but a restart frees no space)."""
    sender_alive: bool                        # the thread that empties the outbox is running
    network_alive: bool                       # paho's network thread runs (it sends, receives and reconnects)
    connected: bool                           # CONNACK accepted and not lost since
    oldest_undelivered_age_s: Optional[float]  # age of the oldest queued row (outbox clock); None: outbox empty
    failing_rows: int                         # queued rows with at least one failed delivery
    dead_letters: int                         # rows in the dead-letter table (replay: `ocr-daemon outbox replay`)
    outbox_writable: bool                     # False while writes fail (disk full, I/O error)
    outbox_responsive: bool                   # False when the outbox lock could not be taken within 0.5 s
    outbox_stuck_s: float                     # how long the outbox has been unresponsive (0 when it answers)
    sender_idle_s: float                      # since the sender last went round its loop (<= ~30 s when well)
    pending_deletes: int                      # acknowledged rows whose delete has not succeeded yet
    blocked_cameras: int                      # cameras waiting behind a failed row
    last_error: str                           # newest sender or outbox error; "" when none

    @property
    def needs_restart(self) -> bool:
        return (not self.sender_alive or not self.network_alive or self.sender_idle_s > _SENDER_WEDGED_S
                or self.outbox_stuck_s > _SENDER_WEDGED_S)


class Publisher:
    def __init__(self, cfg: MqttConfig, device_id: str, outbox: Outbox, clock: Callable[[], float] = time.monotonic,
                 on_acked: Optional[Callable[[str], None]] = None, rng: Optional[random.Random] = None):
        """on_acked(msg_id) is called from the sender thread after an acknowledged row was deleted.
        clock: what per-camera backoffs are timed with; rng: the reconnect jitter's source."""
        self._cfg = cfg
        self._device_id = device_id
        self._outbox = outbox
        self._clock = clock
        self._on_acked = on_acked
        self.counters = PublishCounters()
        self._status_topic = status_topic(cfg.topic_prefix, device_id)
        self._commands: dict[str, Callable[[str, bytes], Optional[bytes]]] = {}   # topic pattern -> handler
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
        self._blocks: dict[str, _Block] = {}                # camera -> the failed row it waits behind
        self._failed: list[tuple[_Inflight, str, Optional[int]]] = []   # (row, reason, paho mid): to record
        self._acks_seen = 0                                 # successful result PUBACKs, ever
        self._probe = False                                 # one message in flight until the next PUBACK
        self._to_forget: list[int] = []                     # paho mids to drop from paho's queue (sender thread)
        self._probe_connection = False                      # this connection started in probe mode
        self._broker_max_packet: Optional[int] = None       # MQTT 5 CONNACK Maximum Packet Size
        # Learned where a broker states no limit (Mosquitto's message_size_limit): the smallest payload that was
        # dead-lettered for the cuts it caused, above the largest one acknowledged; for CUT_SIZE_TTL_S.
        self._largest_acked = 0
        self._cut_size: Optional[int] = None
        self._cut_learned_at = 0.0
        self._rng = rng or random.Random()
        self._reconnect_attempt = 0
        self._last_error = ""
        self._refused_why = ""   # the broker's last refusal of a CONNECT (bad credentials), until one is accepted
        self._sender_beat = time.monotonic()
        self._outbox_stuck_since: Optional[float] = None
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

    def delivery_health(self) -> DeliveryHealth:
        """A typed snapshot, cheap enough for every /healthz request and watchdog tick; never raises."""
        ob = self._outbox.health()
        now = time.monotonic()
        if ob.responsive:
            self._outbox_stuck_since = None
        elif self._outbox_stuck_since is None:
            self._outbox_stuck_since = now - 0.5   # health() waited that long already
        stuck_s = 0.0 if self._outbox_stuck_since is None else now - self._outbox_stuck_since
        with self._lock:
            pending_deletes = len(self._deleting)
            blocked = len(self._blocks)
            sender_error = self._last_error or self._refused_why
        sender = self._sender
        return DeliveryHealth(
            sender_alive=sender is not None and sender.is_alive(), network_alive=self._network_alive(),
            connected=self._connected,
            oldest_undelivered_age_s=ob.oldest_undelivered_age_s, failing_rows=ob.failing_rows,
            dead_letters=ob.dead_letters, outbox_writable=ob.writable, outbox_responsive=ob.responsive,
            outbox_stuck_s=stuck_s,
            sender_idle_s=max(0.0, now - self._sender_beat) if sender is not None else 0.0,
            pending_deletes=pending_deletes, blocked_cameras=blocked, last_error=sender_error or ob.last_error)

    def _network_alive(self) -> bool:
        """False once paho's loop_start thread has ended on its own (an exception inside paho kills it, and with it
        every send, receive and reconnect). paho 2.2 (pinned) sets Client._thread back to None when it ends."""
        client = self._client
        return client is None or self._stop_sender or getattr(client, "_thread", None) is not None

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
        self._set_next_reconnect_delay(client)
        apply_credentials(client, cfg)
        client.will_set(self._status_topic, "offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        for topic in self._commands:
            client.message_callback_add(topic, self._on_command)
        self._client = client
        self._outbox.set_admission(self._admit)
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

    def listen(self, pattern: str, handler: Callable[[str, bytes], Optional[bytes]]) -> None:
        """Before start(): handler(topic, payload) is called from paho's network thread for each message on a
        topic matching pattern (MQTT wildcards allowed; subscribed QoS 1 at every connect; clean sessions, so a
        command sent while the daemon was away is not kept), and what it returns is published (QoS 1, not
        retained, never queued) on that topic + "/answer". The handler must be quick; its exceptions are logged,
        never let into paho's thread."""
        self._commands[pattern] = handler

    def _on_command(self, client, userdata, message) -> None:
        import paho.mqtt.client as mqtt

        handler = next((h for pattern, h in self._commands.items() if mqtt.topic_matches_sub(pattern, message.topic)),
                       None)
        if handler is None:
            return
        try:
            answer = handler(message.topic, bytes(message.payload))
        except Exception:
            log.exception("mqtt: command on %s failed", message.topic)
            return
        if answer is not None:
            client.publish(message.topic + "/answer", answer, qos=1)

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
            try:
                self._delete_acked(acked)
            except Exception as exc:   # they are sent again by the next run: at-least-once, same ids
                log.warning("mqtt: %d acknowledged results could not be deleted (%s)", len(acked), exc)
        self._outbox.set_admission(None)
        left = self._outbox.depth()[0]
        log.info("mqtt: stopped with %d results left in the outbox", left)
        return left

    # ------------------------------------------------------------ limits and reconnect delays

    def _admit(self, topic: str, payload: bytes) -> Optional[str]:
        """None when the broker can take this message, else why not (the row goes to the dead letters)."""
        n = len(payload)
        if n > self._cfg.max_payload_bytes:
            return f"payload of {n} bytes is above mqtt.max_payload_bytes={self._cfg.max_payload_bytes}"
        limit = self._broker_max_packet
        if limit:
            size = publish_packet_bytes(topic, n, self._cfg.protocol == "5")
            if size > limit:
                return f"MQTT packet of {size} bytes is above the broker's Maximum Packet Size {limit}"
        cut = self._cut_size
        if cut is not None and n >= cut and n > self._largest_acked:
            if time.monotonic() - self._cut_learned_at < CUT_SIZE_TTL_S:
                return (f"payload of {n} bytes: the broker closed the connection on every try of a {cut}-byte one "
                        f"(the largest it acknowledged: {self._largest_acked} bytes)")
            self._cut_size = None   # tried again after a while: the broker's limit may have been raised
        return None

    def _learn_cut(self, size: int) -> None:
        """A payload dead-lettered because each try of it cut the connection: larger ones are not tried either
        (each try costs a reconnect, and every camera waits meanwhile), unless the broker took as large a one."""
        if size <= self._largest_acked or (self._cut_size is not None and size >= self._cut_size):
            return
        self._cut_size, self._cut_learned_at = size, time.monotonic()
        log.warning("mqtt: the broker closes the connection on a message of %d bytes (the largest it acknowledged: "
                    "%d); messages of that size and above go to the dead letters at once for %.0f minutes (a "
                    "broker size limit, e.g. Mosquitto's message_size_limit?)", size, self._largest_acked,
                    CUT_SIZE_TTL_S / 60)

    def _set_next_reconnect_delay(self, client) -> None:
        """paho waits reconnect_delay before the next attempt; with min = max it waits exactly our jittered value
        (reconnect_delay_set also resets paho's own doubling, which we replace)."""
        # attempt + 1: the first retry after a loss already waits between min_s and 2 x min_s
        delay = backoff_delay_s(self._reconnect_attempt + 1, self._cfg.reconnect_min_s, self._cfg.reconnect_max_s,
                                self._rng)
        self._reconnect_attempt += 1
        client.reconnect_delay_set(delay, delay)

    # ------------------------------------------------------------ paho callbacks (network thread)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.counters.add("connect_failures")
            with self._lock:
                self._refusal_counted = True   # the disconnect that follows is the same failure
                # /healthz says why nothing is delivered (a wrong password is not "not connected" alone)
                self._refused_why = f"the broker refused the connection: {reason_code}"
            log.warning("mqtt: broker refused the connection: %s", reason_code)
            return
        self._reconnect_attempt = 0   # the next loss starts the backoff again
        with self._lock:
            self._refused_why = ""
        receive_max = getattr(properties, "ReceiveMaximum", None) if properties is not None else None
        max_packet = getattr(properties, "MaximumPacketSize", None) if properties is not None else None
        self._broker_max_packet = int(max_packet) if max_packet else None
        if self._commands:   # commands (read-cycle triggers): subscribed again on every connect
            client.subscribe([(topic, 1) for topic in self._commands])
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
            self._probe_connection = self._probe
            self._resync = True
            self._dirty = True
            for entry in self._inflight.values():   # paho re-sends them now
                entry.acks_at_send = self._acks_seen
            self._cv.notify()
        self._warned_unreachable = False
        log.info("mqtt: connected (%d results in flight are re-sent first%s)", len(self._inflight),
                 f"; broker's Maximum Packet Size {max_packet}" if max_packet else "")

    def _on_connect_fail(self, client, userdata) -> None:
        self.counters.add("connect_failures")
        self._set_next_reconnect_delay(client)
        # Once per outage at WARNING (the integrator must see it), then DEBUG: a broker down for a day
        # must not fill the journal, and nothing is lost meanwhile.
        first = not self._warned_unreachable
        self._warned_unreachable = True
        rows, _ = self._outbox.depth()
        log.log(logging.WARNING if first else logging.DEBUG,
                "mqtt: cannot reach the broker at %s:%d; retrying with backoff, results wait in the outbox (%d now)",
                self._cfg.host, self._cfg.port, rows)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._set_next_reconnect_delay(client)
        with self._cv:
            was = self._connected
            self._connected = False
            refusal_counted, self._refusal_counted = self._refusal_counted, False
            suspect = None
            if was and not self._stop_sender and str(reason_code) != "Keep alive timeout" and self._inflight:
                # The broker cut us off with nothing acknowledged since the oldest row in flight went out: some
                # row in flight may be what it refuses (too large, a PUBACK paho calls malformed), but which?
                # Probe: reconnect with only the oldest in flight (the others leave paho's queue and are sent
                # again from the outbox later, same ids); a cut in that state convicts that row, and counts
                # against it. The next good PUBACK ends the probe.
                mid, entry = next(iter(self._inflight.items()))
                if entry.acks_at_send == self._acks_seen:
                    suspect = entry
                    if self._probe and self._probe_connection:
                        self._failed.append((entry, f"{_CUT_REASON} ({reason_code})", mid))
                    elif not self._probe:
                        self._probe = True
                        self._set_paho_window(1)
                        dropped = list(self._inflight)[1:]
                        for m in dropped:
                            del self._inflight[m]
                        self.counters.add("requeued", len(dropped))
                        # paho re-sends everything it holds after a reconnect, whatever its window; the sender
                        # thread drops them from its queue (not here: paho may be iterating that queue now)
                        self._to_forget.extend(dropped)
            self._cv.notify()
        if not was and not refusal_counted:
            # lost before any CONNACK: e.g. a TLS 1.3 server rejecting our certificate after the handshake
            self.counters.add("connect_failures")
            log.warning("mqtt: connection lost before the broker accepted it (%s)", reason_code)
        if was:
            self.counters.add("disconnects")
            level = logging.INFO if self._stop_sender else logging.WARNING
            log.log(level, "mqtt: disconnected (%s); %d results in flight will be re-sent%s", reason_code,
                    len(self._inflight), f"; suspect: {suspect.msg_id}" if suspect is not None else "")

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
            block = self._blocks.get(entry.camera)
            if block is None:
                block = self._blocks[entry.camera] = _Block(entry.row_id, 0.0, 0.0)
            block.head_row_id = min(block.head_row_id, entry.row_id)
            if block.retry_at <= now:   # one doubling per retry round, not per row refused in the same round
                block.backoff_s = min(self._cfg.reconnect_max_s, max(self._cfg.reconnect_min_s, block.backoff_s * 2))
                block.retry_at = now + block.backoff_s
            # recorded (and maybe dead-lettered) by the sender thread: no SQLite write on the network thread
            self._failed.append((entry, f"PUBACK {reason_code} (0x{reason_code.value:02x})", None))
            log.warning("mqtt: broker refused %s (%s); camera %s retries it in %.1f s, its later results wait",
                        entry.msg_id, reason_code, entry.camera, block.backoff_s)
        else:
            self._acks_seen += 1
            self._largest_acked = max(self._largest_acked, entry.size)
            if self._probe:   # the link carries PUBACKs again: back to the full window
                self._probe = False
                self._set_paho_window(self._cfg.max_inflight)
                for other in self._inflight.values():   # paho sends its queued ones now
                    other.acks_at_send = self._acks_seen
            block = self._blocks.get(entry.camera)
            if block is not None and block.head_row_id == entry.row_id:
                del self._blocks[entry.camera]   # the failed row is delivered: its camera flows again
            self._acked.append(entry)
            self._deleting.add(entry.row_id)
        self._dirty = True

    # ------------------------------------------------------------ sender thread

    def _sender_main(self) -> None:
        """Never ends on an error: whatever fails is kept, logged, and tried again after a growing pause."""
        errors_in_a_row = 0
        while True:
            with self._cv:
                if not (self._dirty or self._acked or self._failed or self._to_forget or self._stop_sender):
                    self._cv.wait(timeout=_IDLE_POLL_S)
                self._dirty = False
                acked, self._acked = self._acked, []
                failed, self._failed = self._failed, []
                forget, self._to_forget = self._to_forget, []
                stopping = self._stop_sender
            self._sender_beat = time.monotonic()
            for m in forget:
                self._forget_in_paho(m)
            try:
                self._delete_acked(acked)
                acked = []
                self._record_failures(failed)
                if stopping:
                    return
                self._send_some()
                errors_in_a_row = 0
                with self._lock:
                    self._last_error = ""
            except Exception as exc:   # a full disk, a locked database, a paho error: never kill the sender
                with self._cv:   # keep what is not done yet, ahead of what arrived meanwhile
                    self._acked[:0] = acked
                    self._failed[:0] = failed
                    self._last_error = f"{type(exc).__name__}: {exc}"
                self.counters.add("sender_errors")
                errors_in_a_row += 1
                pause = min(_ERROR_BACKOFF_MAX_S, _ERROR_BACKOFF_MIN_S * 2.0 ** (errors_in_a_row - 1))
                if errors_in_a_row == 1:
                    log.exception("mqtt: sender error; retrying in %.1f s", pause)
                else:
                    log.warning("mqtt: sender error again (%s); retrying in %.1f s", exc, pause)
                if stopping:
                    return
                with self._cv:
                    if not self._stop_sender:
                        self._cv.wait(timeout=pause)

    def _delete_acked(self, acked: list[_Inflight]) -> None:
        """Raises when the delete fails; the caller keeps `acked` (their ids stay in _deleting: never re-sent)."""
        if not acked:
            return
        self._outbox.delete_many([e.row_id for e in acked])
        with self._lock:
            self._deleting.difference_update(e.row_id for e in acked)
        self.counters.add("acked", len(acked))
        if self._on_acked is not None:
            for e in acked:
                try:
                    self._on_acked(e.msg_id)
                except Exception:
                    log.exception("mqtt: on_acked(%s) failed", e.msg_id)

    def _record_failures(self, failed: list) -> None:
        """Counts each failed delivery against its row; dead-letters it at the limit. Raises on a SQLite error
        with the unrecorded ones left in `failed` (the caller puts them back)."""
        while failed:
            entry, reason, mid = failed[0]
            outcome = self._outbox.record_failure(entry.row_id, reason)
            failed.pop(0)
            self.counters.add("delivery_failures")
            if outcome == "retry":
                continue
            if outcome == "dead_letter":
                self.counters.add("dead_lettered")
                if reason.startswith(_CUT_REASON):
                    self._learn_cut(entry.size)
            self._row_left(entry.row_id, entry.camera, mid)

    def _row_left(self, row_id: int, camera: str, mid: Optional[int]) -> None:
        """A row left the outbox without being delivered (dead-lettered, or gone): unblock its camera and make
        paho forget it, or paho would re-send it first after every reconnect."""
        with self._cv:
            block = self._blocks.get(camera)
            if block is not None and block.head_row_id == row_id:
                del self._blocks[camera]
            mids = {m for m, e in self._inflight.items() if e.row_id == row_id} | ({mid} if mid else set())
            if mid and self._connected:
                # paho may have re-sent it on this connection already: the cut that follows is its doing,
                # not the next row's (that cut only restarts the probe)
                self._probe_connection = False
            for m in mids:
                self._inflight.pop(m, None)
                self._carried.discard(m)
            self._dirty = True
            self._cv.notify()
        for m in mids:   # outside our lock: paho calls on_publish holding its mutex, which then takes ours
            self._forget_in_paho(m)

    def _set_paho_window(self, n: int) -> None:
        """paho's own in-flight limit, which also decides how many messages it re-sends after a reconnect.
        max_inflight_messages_set() refuses while a connection is open (even the one being torn down), so this
        sets the attribute behind it (paho-mqtt 2.2.0; the probe tests in test_publish_limits.py cover it).
        Only values > 0: paho skips its queue handling at 0. Raised inside on_publish, paho's
        _update_inflight() right after the callback sends the queued messages."""
        if n > 0 and hasattr(self._client, "_max_inflight_messages"):
            self._client._max_inflight_messages = n

    def _forget_in_paho(self, mid: int) -> None:
        """Drops one message from paho's queue. paho 2.x has no public call for it: this uses its message dict
        and mutex (pinned paho-mqtt 2.2.0; tests/test_publish_limits.py breaks if they change)."""
        client = self._client
        mutex = getattr(client, "_out_message_mutex", None)
        messages = getattr(client, "_out_messages", None)
        if mutex is None or messages is None:
            log.warning("mqtt: cannot drop message %d from paho's queue (paho changed); it will be re-sent", mid)
            return
        import paho.mqtt.client as mqtt
        with mutex:
            msg = messages.pop(mid, None)
            if msg is not None and msg.state == mqtt.mqtt_ms_wait_for_puback and client._inflight_messages > 0:
                client._inflight_messages -= 1

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
                self.counters.add("requeued", len(self._carried))
                self._carried.clear()
            window = 1 if self._probe else min(self._cfg.max_inflight, self._receive_max)
            room = 0 if self._carried else window - len(self._inflight)
            if room <= 0:
                return
            busy_ids = {e.row_id for e in self._inflight.values()} | self._deleting
            exclude_ids = busy_ids | {e.row_id for e, _, _ in self._failed}   # not recorded yet
            blocked = set(self._blocks)
            due = [(cam, b.head_row_id) for cam, b in self._blocks.items()
                   if b.retry_at <= now and b.head_row_id not in busy_ids]
        rows: list[OutboxRow] = []
        for camera, row_id in due:   # a blocked camera sends its failed row alone, after the backoff
            row = self._outbox.get(row_id)
            if row is None:   # it left meanwhile (TTL, a cap, a replay elsewhere): the camera flows again
                self._row_left(row_id, camera, None)
                continue
            rows.append(row)
        rows += self._outbox.pending(max(0, room - len(rows)), exclude_ids, blocked)
        sent = 0
        for row in rows[:room]:
            if not self._connected:
                return
            why = self._admit(row.topic, row.payload)
            if why:   # e.g. stored before the broker told us its Maximum Packet Size
                if self._outbox.dead_letter(row.id, why):
                    self.counters.add("dead_lettered")
                self._row_left(row.id, row.camera, None)
                continue
            info = self._client.publish(row.topic, row.payload, qos=1)
            if info.rc not in (0, 4):   # 0 = sent, 4 = MQTT_ERR_NO_CONN: paho keeps it and sends it on reconnect
                log.warning("mqtt: publish of %s failed locally (rc %s); retrying later", row.msg_id, info.rc)
                return
            sent += 1
            with self._lock:
                entry = _Inflight(row.id, row.camera, row.msg_id, self._acks_seen, len(row.payload))
                self.counters.add("published")
                early = self._early_acks.pop(info.mid, None)
                if early is None and self._probe and self._inflight:
                    # a probe began while this loop was publishing: only the oldest may stay in flight
                    self._to_forget.append(info.mid)
                    self.counters.add("requeued")
                    self._dirty = True
                elif early is None:
                    self._inflight[info.mid] = entry
                else:
                    self._settle_locked(entry, early[0])
        if len(rows) >= room:
            with self._lock:
                self._dirty = True   # there may be more

    def _forget_stale_early_acks_locked(self) -> None:
        if not self._early_acks:
            return
        cutoff = time.monotonic() - _EARLY_ACK_TTL_S
        for mid in [m for m, (_, t) in self._early_acks.items() if t < cutoff]:
            del self._early_acks[mid]
