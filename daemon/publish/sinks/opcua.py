"""The OPC UA server (asyncua): the last reading of each camera as variables, its recent ones, and an event each.

Address space (namespace opcua.namespace_uri):
    Objects/OCR/Cameras/<camera>/       one object per camera, an event notifier
        Text (String, the lines joined by "\\n"), Confidence (Double, the lowest line's), ReadingId (String, the
        JSON payload's id), CapturedAt (DateTime, UTC), Seq (UInt64), Lines (UInt32),
        Readings (UInt64, delivered since the daemon started),
        RecentReadings (String[], the last 50 readings (RECENT_READINGS) delivered, kept across restarts, oldest
        first, each a JSON object {"ReadingId", "Seq", "CapturedAt" (RFC 3339 UTC), "Text", "Confidence",
        "Lines"}; written before the event fires)
    events: OcrReadingEventType (a BaseEventType) from the camera's object, with Camera, Text, Confidence,
        ReadingId, CapturedAt and Seq; Time = the capture time, Message = the text.
A triggered camera's object also has its read-cycle state, the methods StartSingleJob, SelectRecipe,
GetResultById and AcknowledgeResult, and a ResultReady event per result (OPC 40100-1's shape):
daemon/publish/sinks/opcua_cycles.py. Such a result's row stays owed to this sink until a client acknowledges
it or it leaves the buffer, so a restart offers it again.
All variables are read-only for clients; a camera first seen in a row (not configured) gets its object then.
Events reach only the clients subscribed when they fire: those fired while a client is away (a daemon restart
delivers the readings that waited in the outbox as soon as the server is up, usually before clients are back)
are not replayed. A client that must see every reading reads RecentReadings after it (re)subscribes and takes
the entries whose Seq is above the last one it handled (Seq increases per camera across restarts).

Security: one endpoint, Basic256Sha256 (SignAndEncrypt unless opcua.security_mode: Sign), no None endpoint. A
channel with any other policy or mode is refused when it opens (ErrorMessage BadSecurityPolicyRejected or
BadSecurityModeRejected, connection closed). A None channel is opened for discovery only (GetEndpoints,
FindServers: OPC UA Part 4 5.4, and how clients fetch the server certificate before they connect securely); any
other request on it, CreateSession first, is refused (BadSecurityModeRejected) and the connection closed, so a
client never gets to send a password there. CreateSession must name the certificate that secures the channel
(Part 4 5.6.2), and that is the certificate checked. The server certificate and key come from
opcua.cert_file / key_file; when absent they are generated on first start (RSA 2048, self-signed for one year,
renewed at a start after it expired or when the host name changed; the key 0600). Sessions need opcua.username
and its password (opcua.password_env / password_file, compared in constant time, never logged); anonymous
sessions only with opcua.allow_anonymous: true. A client's certificate must be valid now and name the client's
application URI; with opcua.trusted_clients_dir it must also be in that folder (or be signed by a CA
certificate there). The server listens on opcua.host (0.0.0.0: every IPv4 interface, as PLCs on the plant
network need; the address it bound is logged at start).
Refused channels, sessions and logins are logged per peer address: its first at WARNING, the next ones within a
minute at DEBUG, and a WARNING a minute that counts them (a password guesser does not flood the journal).

Threads: asyncio runs in a thread of its own; the sink's thread hands it each reading and waits for the write
(a reading leaves the outbox for this sink once the server holds it). A port already taken is "down": retried.
A stop closes the server, then ends every task still on its loop (sessions kept for subscriptions that outlive
their connection) before the loop closes.

Idle clients: at most opcua.max_connections connections; a new one past that closes the oldest connection without
an activated session (_BoundedProtocol), so silent sockets cannot lock a PLC out (asyncua alone refuses every new
connection at 1,000 and closes an idle one after 30 s).

The channel rule lives in asyncua's per-connection processor, which has no hook for it: _install_channel_rule()
puts a subclass (_RuledProcessor) in its place, which applies the rule only for servers registered here. It
relies on asyncua 2.1.0's UaProcessor (pinned in setup.py and requirements-lock.txt); the tests refuse a None
channel through asyncua's own client, so an upgrade that moves the hook fails them.
"""
from __future__ import annotations

import asyncio
import contextvars
import hmac
import json
import logging
import os
import socket
import time
import weakref
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import asyncua
from asyncua import Server, ua
from asyncua.crypto import uacrypto
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256, SecurityPolicyNone
from asyncua.server import binary_server_asyncio
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.ua_binary import nodeid_from_binary, struct_from_binary, uatcp_to_binary

from daemon.atomic_write import write_atomic
from daemon.config import Config, opcua_password
from daemon.publish.outbox import OutboxRow, SinkQueue
from daemon.publish.sinks.base import HELD, QueueSink, Reading, SinkDown
from daemon.publish.sinks.loop_thread import LoopThread
from daemon.publish.sinks.opcua_cycles import CycleResult, ReadCycles

log = logging.getLogger(__name__)

_CALL_TIMEOUT_S = 10.0   # a write into the address space that takes longer: the server counts as down
_EVENT_FIELDS = (("Camera", "String"), ("Text", "String"), ("Confidence", "Double"), ("ReadingId", "String"),
                 ("CapturedAt", "DateTime"), ("Seq", "UInt64"))
# RecentReadings' length: what a client away for a daemon restart can catch up on. Kept in a file beside the server's
# certificate, written before the readings' rows leave the outbox, so a SIGKILL loses none of it. The whole array is
# written with each reading, so it stays a few kB.
RECENT_FILE = "recent-readings.json"
_RECENT_FILE_MAX_BYTES = 16 << 20   # read with a bound: a file damaged on disk cannot take the memory
RECENT_READINGS = 50
_REFUSAL_WINDOW_S = 60.0   # a peer's refusals after its first are counted and summarised once per window


def application_uri(device_id: str) -> str:
    return f"urn:ocr-daemon:{device_id}"


def endpoint_url(host: str, port: int) -> str:
    return f"opc.tcp://{host}:{port}/ocr-daemon/"


class _OneUser:
    """asyncua's UserManager: the configured user (and anonymous sessions when allowed), nobody else, and only on
    a channel secured with a client certificate (asyncua passes the channel's certificate; none: a None channel,
    which the channel rule already keeps from getting this far)."""

    def __init__(self, username: str, password: Optional[str], allow_anonymous: bool):
        self._username = username
        self._password = (password or "").encode("utf-8")
        self._allow_anonymous = allow_anonymous

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if not certificate:
            return None
        if username is None:
            return User(role=UserRole.User) if self._allow_anonymous else None
        given = password.encode("utf-8") if isinstance(password, str) else bytes(password or b"")
        ok_user = hmac.compare_digest(str(username).encode("utf-8"), self._username.encode("utf-8"))
        ok_password = bool(self._password) and hmac.compare_digest(given, self._password)
        return User(role=UserRole.User) if ok_user and ok_password else None


async def ensure_certificate(cert_file: Path, key_file: Path, app_uri: str, host_name: str) -> None:
    """Generates the server's key and self-signed certificate when absent (or the certificate is no longer
    valid for app_uri and host_name); the key file is made 0600."""
    from asyncua.crypto.cert_gen import dump_private_key_as_pem, generate_private_key, setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    for path in (cert_file, key_file):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    existed = cert_file.is_file() and key_file.is_file()
    if not key_file.is_file():   # written 0600 from its first byte (asyncua's helper would use the umask)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(dump_private_key_as_pem(generate_private_key()))
    await setup_self_signed_certificate(key_file, cert_file, app_uri, host_name,
                                        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
                                        {"commonName": f"ocr-daemon {host_name}", "organizationName": "ocr-daemon"})
    os.chmod(key_file, 0o600)
    if not existed:
        log.info("opcua: generated the server certificate %s and key %s", cert_file, key_file)


async def _client_validator(trusted_dir: Optional[str]):
    """Client certificates: valid now and for the client's application URI; with a trust folder, also in it (or
    signed by a CA in it)."""
    from asyncua.crypto.truststore import TrustStore
    from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions as V

    if not trusted_dir:
        return CertificateValidator(V.BASIC_VALIDATION | V.PEER_CLIENT)
    store = TrustStore([Path(trusted_dir)], [])
    await store.load()
    return CertificateValidator(V.TRUSTED_VALIDATION | V.PEER_CLIENT, store)


# ------------------------------------------------------------------ refusals, logged without flooding

class RefusalLog:
    """Refused channels, sessions and logins by peer address. A peer's first refusal, or its first after a quiet
    window, is a WARNING; the ones after it within the window are DEBUG lines, counted; summarise() writes one
    WARNING with those counts and is due a window after the first one counted (the sink arms a timer on
    `summary_due`). Never sees a password: callers pass what was refused and a status name. One thread."""

    _MAX_PEERS = 4096   # addresses remembered; beyond that a refusal is counted under "other addresses"

    def __init__(self, window_s: float = _REFUSAL_WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self._window_s = window_s
        self._clock = clock
        self._last: dict[str, float] = {}     # peer -> its latest refusal
        self._counted: dict[str, int] = {}    # peer -> refusals logged at DEBUG since the last summary
        self.summary_due: Optional[float] = None   # clock time of the next summary; None: nothing counted

    def refused(self, peer: str, what: str) -> None:
        now = self._clock()
        last = self._last.get(peer)
        if last is None and len(self._last) >= self._MAX_PEERS:
            self._prune(now)
            if len(self._last) >= self._MAX_PEERS:
                peer = "other addresses"
                last = now
        self._last[peer] = now
        if last is None or now - last >= self._window_s:
            log.warning("opcua: refused %s from %s (the next ones from there within %.0f s: DEBUG, counted)",
                        what, peer, self._window_s)
            return
        log.debug("opcua: refused %s from %s", what, peer)
        self._counted[peer] = self._counted.get(peer, 0) + 1
        if self.summary_due is None:
            self.summary_due = now + self._window_s

    def summarise(self) -> None:
        if self._counted:
            worst = sorted(self._counted.items(), key=lambda kv: -kv[1])
            shown = ", ".join(f"{peer}: {n}" for peer, n in worst[:5]) + (", ..." if len(worst) > 5 else "")
            log.warning("opcua: %d more refused channels, sessions or logins in the last %.0f s (%s)",
                        sum(self._counted.values()), self._window_s, shown)
        self._counted.clear()
        self.summary_due = None
        self._prune(self._clock())

    def _prune(self, now: float) -> None:
        for peer in [p for p, at in self._last.items() if now - at >= self._window_s and p not in self._counted]:
            del self._last[peer]


# ------------------------------------------------------------------ the channel rule

_DISCOVERY = frozenset(ua.NodeId(i) for i in (ua.ObjectIds.GetEndpointsRequest_Encoding_DefaultBinary,
                                              ua.ObjectIds.FindServersRequest_Encoding_DefaultBinary,
                                              ua.ObjectIds.FindServersOnNetworkRequest_Encoding_DefaultBinary))
_CREATE_SESSION = ua.NodeId(ua.ObjectIds.CreateSessionRequest_Encoding_DefaultBinary)
_ACTIVATE_SESSION = ua.NodeId(ua.ObjectIds.ActivateSessionRequest_Encoding_DefaultBinary)
_REQUEST_NAMES = {_CREATE_SESSION: "CreateSession", _ACTIVATE_SESSION: "ActivateSession"}


@dataclass(frozen=True)
class _ChannelRule:
    """The one (policy, mode) a session may use; refusals go to `refusals` (called on the server's loop)."""
    policy_uri: str
    mode: ua.MessageSecurityMode
    refusals: Callable[[str, str], None]


_RULES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # asyncua InternalServer -> _ChannelRule
_LIMITS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # asyncua InternalServer -> max connections
# Set while a request without an activated session is processed: asyncua's own line for each refusal (an ERROR
# per wrong password) is dropped then, the rule reports it through RefusalLog instead.
_SESSIONLESS = contextvars.ContextVar("opcua_sessionless_request", default=False)


class _QuietSessionlessRefusals(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (_SESSIONLESS.get() and record.exc_info is None and record.levelno < logging.CRITICAL)


_QUIET = _QuietSessionlessRefusals()
_QUIET_LOGGERS = ("asyncua.server.uaprocessor", "asyncua.server.internal_session", "asyncua.server.internal_server")


class _Refused(Exception):
    def __init__(self, status: int, what: str):
        super().__init__(what)
        self.status = status
        self.what = what


class _RuledProcessor(UaProcessor):
    """asyncua's processor of one connection, with the channel rule of the server it belongs to (none registered:
    exactly asyncua's). Runs on the server's loop."""

    def __init__(self, internal_server, transport, limits):
        super().__init__(internal_server, transport, limits)
        self._rule: Optional[_ChannelRule] = _RULES.get(internal_server)
        self._fault: Optional[ua.StatusCode] = None
        self._peer = str(self.name[0]) if isinstance(self.name, tuple) and self.name else str(self.name)

    async def process(self, header, body):
        rule = self._rule
        if rule is None:
            return await super().process(header, body)
        try:
            if header.MessageType == ua.MessageType.SecureOpen and not self._connection.is_open():
                uri = struct_from_binary(ua.AsymmetricAlgorithmHeader, body.copy(header.body_size)).SecurityPolicyURI
                if uri not in (rule.policy_uri, SecurityPolicyNone.URI):
                    raise _Refused(ua.StatusCodes.BadSecurityPolicyRejected, f"a channel with policy {uri}")
            return await super().process(header, body)
        except _Refused as refused:
            rule.refusals(self._peer, refused.what)
            self._transport.write(uatcp_to_binary(ua.MessageType.Error, ua.ErrorMessage(
                ua.StatusCode(refused.status), refused.what)))
            return False   # asyncua closes the connection

    def open_secure_channel(self, algohdr, seqhdr, body):
        rule = self._rule
        if rule is not None and not self._connection.is_open() and algohdr.SecurityPolicyURI == rule.policy_uri:
            mode = struct_from_binary(ua.OpenSecureChannelRequest, body.copy()).Parameters.SecurityMode
            if mode != rule.mode:
                raise _Refused(ua.StatusCodes.BadSecurityModeRejected, f"a Basic256Sha256 channel in mode {mode.name}")
        super().open_secure_channel(algohdr, seqhdr, body)

    async def process_message(self, seqhdr, body):
        rule = self._rule
        if rule is None:
            return await super().process_message(seqhdr, body)
        peek = body.copy()
        typeid = nodeid_from_binary(peek)
        policy = self._connection.security_policy
        if typeid in _DISCOVERY:
            return await super().process_message(seqhdr, body)
        requesthdr = struct_from_binary(ua.RequestHeader, peek)
        if policy.URI != rule.policy_uri or policy.Mode != rule.mode:
            return self._fault_and_close(requesthdr, seqhdr, ua.StatusCodes.BadSecurityModeRejected,
                                         f"{_REQUEST_NAMES.get(typeid, 'a request')} on a channel without security")
        if typeid == _CREATE_SESSION:
            given = struct_from_binary(ua.CreateSessionParameters, peek).ClientCertificate
            if not _same_certificate(given, policy.peer_certificate):
                return self._fault_and_close(requesthdr, seqhdr, ua.StatusCodes.BadCertificateInvalid,
                                             "CreateSession naming another certificate than its channel's")
        if self.session is not None and self.session.is_activated() and typeid != _ACTIVATE_SESSION:
            return await super().process_message(seqhdr, body)
        self._fault = None
        quiet = _SESSIONLESS.set(True)
        try:
            result = await super().process_message(seqhdr, body)
        finally:
            _SESSIONLESS.reset(quiet)
        if self._fault is not None:
            rule.refusals(self._peer, f"{_REQUEST_NAMES.get(typeid, 'a request without a session')} "
                                      f"({self._fault.name})")
        return result

    def send_response(self, requesthandle, seqhdr, response, msgtype=ua.MessageType.SecureMessage):
        if isinstance(response, ua.ServiceFault):
            self._fault = response.ResponseHeader.ServiceResult
        super().send_response(requesthandle, seqhdr, response, msgtype)

    def _fault_and_close(self, requesthdr, seqhdr, status: int, what: str) -> bool:
        self._rule.refusals(self._peer, what)
        response = ua.ServiceFault()
        response.ResponseHeader.ServiceResult = ua.StatusCode(status)
        self.send_response(requesthdr.RequestHandle, seqhdr, response)
        return False   # asyncua closes the connection


def _same_certificate(given: Optional[bytes], channel: Optional[bytes]) -> bool:
    """The leading certificates of two DER blobs (a certificate, possibly followed by its chain) are the same."""
    if not given or not channel:
        return False
    try:
        return uacrypto.x509_from_der(given) == uacrypto.x509_from_der(channel)
    except ValueError:
        return False


class _BoundedProtocol(binary_server_asyncio.OPCUAProtocol):
    """asyncua's per-connection protocol, for a server registered in _LIMITS: when the server is full, a new
    connection closes the oldest one that has no activated session (an idle socket, a client still in its
    handshake) instead of being refused, so idle sockets cannot keep a PLC out; asyncua refuses it only when every
    connection holds an activated session. asyncua alone refuses every new connection once 1,000 are open, and
    closes an idle one only after 30 s. And a chunk that says it is larger than the receive buffer the server
    offers (asyncua would buffer up to 4 GiB of it, before any login) closes its connection."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # What asyncua keeps is the start of one unfinished chunk, whose size is in bytes 4-8 of its header.
        if len(self._buffer) >= 8 and self.transport is not None:
            size = int.from_bytes(self._buffer[4:8], "little")
            if size > self.limits.max_recv_buffer:
                log.debug("opcua: a %d-byte chunk from %s is over the %d-byte receive buffer; closed", size,
                          self.peer_name, self.limits.max_recv_buffer)
                self._buffer = b""
                self.transport.close()

    def connection_made(self, transport) -> None:
        limit = _LIMITS.get(self.iserver)
        if limit is not None:
            open_now = [c for c in self.clients if c.transport is not None]
            idle = [c for c in open_now if not _activated(c)]
            while len(open_now) >= limit and idle:
                victim = idle.pop(0)   # clients are in the order they connected: the oldest first
                open_now.remove(victim)
                self.clients.remove(victim)   # now: asyncua counts self.clients below; connection_lost tolerates it
                victim.transport.close()
                log.debug("opcua: %d connections open, closed one without a session for a new one", limit)
        super().connection_made(transport)


def _activated(conn) -> bool:
    session = getattr(conn.processor, "session", None)
    return session is not None and session.is_activated()


def _install_channel_rule(server: Server, rule: _ChannelRule) -> None:
    """Registers rule for server and makes sure asyncua builds each connection's processor from _RuledProcessor
    (once per process; other asyncua servers keep asyncua's behaviour). Raises when asyncua no longer looks the
    way this relies on, so the sink is down instead of serving without the rule."""
    current = getattr(binary_server_asyncio, "UaProcessor", None)
    if current is not _RuledProcessor:
        if current is not UaProcessor:
            raise RuntimeError("asyncua's connection processor is not the one this sink extends (asyncua "
                               f"{getattr(asyncua, '__version__', '?')}; the channel rule is written for 2.1.0)")
        binary_server_asyncio.UaProcessor = _RuledProcessor
    protocol = getattr(binary_server_asyncio, "OPCUAProtocol", None)
    if protocol is not _BoundedProtocol:
        if protocol is not _BoundedProtocol.__mro__[1]:
            raise RuntimeError("asyncua's connection protocol is not the one this sink extends")
        binary_server_asyncio.OPCUAProtocol = _BoundedProtocol
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).addFilter(_QUIET)
    _RULES[server.iserver] = rule


class _CameraNodes:
    def __init__(self, obj, variables: dict, events):
        self.obj = obj
        self.variables = variables   # name -> Node
        self.events = events         # EventGenerator


class _CameraHistory:
    """What a camera's variables show since the daemon started; kept by the sink, so a server it restarts (after
    a write timed out) shows the same."""

    def __init__(self, recent: Sequence[str] = ()):
        self.last: Optional[Reading] = None
        self.readings = 0
        self.recent: deque[str] = deque(maxlen=RECENT_READINGS)   # JSON objects, oldest first
        self._ids: deque = deque(maxlen=RECENT_READINGS)          # their ReadingIds
        self.unsaved = False                                      # recent changed since it was kept on disk
        for entry in recent:   # kept from before a restart
            reading_id = _reading_id(entry)
            if reading_id is not None:
                self.recent.append(entry)
                self._ids.append(reading_id)

    def add(self, reading: Reading) -> None:
        if self.last is not None and self.last.msg_id == reading.msg_id:
            return   # the same row again after a write that timed out
        self.last = reading
        self.readings += 1
        if reading.msg_id not in self._ids:   # a row sent again after a crash before its delete: listed once
            self.recent.append(recent_entry(reading))
            self._ids.append(reading.msg_id)
            self.unsaved = True


def _reading_id(entry: str) -> Optional[str]:
    try:
        doc = json.loads(entry)
    except ValueError:
        return None
    return doc.get("ReadingId") if isinstance(doc, dict) and isinstance(doc.get("ReadingId"), str) else None


def _read_recent(path: Path) -> dict[str, list[str]]:
    """camera -> its RecentReadings entries as kept before a restart; {} when there is no file or it is unreadable
    (the catch-up list is lost then, never the readings: they went to the other outputs too)."""
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read(_RECENT_FILE_MAX_BYTES))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("opcua: the kept RecentReadings %s cannot be read (%s); they start empty", path, exc)
        return {}
    if not isinstance(doc, dict):
        return {}
    return {str(camera): [e for e in entries if isinstance(e, str)][-RECENT_READINGS:]
            for camera, entries in doc.items() if isinstance(entries, list)}


def recent_entry(reading: Reading) -> str:
    """One RecentReadings element (its keys are the camera's variable names)."""
    return json.dumps({"ReadingId": reading.msg_id, "Seq": reading.seq, "CapturedAt": reading.captured_at,
                       "Text": reading.text, "Confidence": reading.confidence, "Lines": reading.lines},
                      ensure_ascii=False, separators=(",", ":"))


class OpcUaSink(QueueSink):
    name = "opcua"

    def __init__(self, cfg: Config, queue: SinkQueue, boards: Optional[Mapping] = None):
        """boards: the triggered cameras' TriggerBoards (their read cycles are served here)."""
        super().__init__(queue, 1.0, 30.0)
        self._cfg = cfg
        self._o = cfg.opcua
        self._loop = LoopThread("opcua-loop", "the OPC UA server")   # the asyncio server's own thread
        self._server = None
        self._idx = 0
        self._event_type = None
        self._cameras_folder = None
        self._cameras: dict[str, _CameraNodes] = {}
        self._recent_path = Path(cfg.opcua.cert_file).with_name(RECENT_FILE)
        self._history: dict[str, _CameraHistory] = {
            camera: _CameraHistory(recent) for camera, recent in _read_recent(self._recent_path).items()}
        self._refusals = RefusalLog()
        self._summary_timer: Optional[asyncio.TimerHandle] = None
        self._cycles = ReadCycles(boards or {}, cfg.opcua.result_buffer, self.wake)
        logging.getLogger("asyncua").setLevel(max(logging.WARNING, logging.getLogger("asyncua").level))

    @property
    def endpoint(self) -> str:
        return endpoint_url(self._o.host, self._o.port)

    # ------------------------------------------------------------ the asyncio thread

    def _run(self, coro, timeout_s: float = _CALL_TIMEOUT_S):
        return self._loop.run(coro, timeout_s)

    def _connect(self) -> None:
        try:
            self._run(self._start_server(), timeout_s=60.0)   # a first start generates an RSA key
        except SinkDown:
            raise
        except Exception as exc:   # the port is taken, the address is not ours, the key unreadable
            self._run(self._stop_server())
            raise SinkDown(f"cannot serve {self.endpoint}: {type(exc).__name__}: {exc}") from None

    def _deliver(self, row: OutboxRow, reading: Reading) -> Optional[str]:
        result = self._cycles.result_of(row, reading)
        self._run(self._update(reading, result))
        return None if result is None else HELD   # owed until a client acknowledges it or it leaves the buffer

    def _held_rows(self) -> set[int]:
        return self._cycles.held_rows()

    def _before_delete(self) -> None:
        """RecentReadings kept on disk before the rows they hold leave the outbox: a client away for a SIGKILL and
        the restart still finds the readings written just before it. One small file, written when it changed."""
        histories = list(self._history.items())
        if not any(h.unsaved for _, h in histories):
            return
        try:
            write_atomic(self._recent_path, json.dumps({c: list(h.recent) for c, h in histories},
                                                       ensure_ascii=False).encode())
            for _, h in histories:
                h.unsaved = False
        except OSError as exc:   # delivery goes on: only the catch-up list after a crash is at stake
            log.warning("opcua: cannot keep RecentReadings in %s (%s)", self._recent_path, exc)

    def _send_some(self) -> None:
        """The rows of acknowledged and pushed-out cycle results leave the outbox first; then QueueSink's pass."""
        settled = self._cycles.settled_rows()
        if settled:
            self._queue.delete_many(settled)   # raises: kept, deleted on a later pass
            self._cycles.deleted(settled)
            self.counters.add("delivered", len(settled))
        super()._send_some()

    def _disconnect(self) -> None:
        self._loop.close(self._shutdown, _CALL_TIMEOUT_S)

    # ------------------------------------------------------------ coroutines (the asyncio thread)

    async def _start_server(self) -> None:
        o = self._o
        await self._stop_server()
        server = Server(user_manager=_OneUser(o.username, opcua_password(o), o.allow_anonymous))
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name(f"ocr-daemon {self._cfg.device_id}")
        app_uri = application_uri(self._cfg.device_id)
        await server.set_application_uri(app_uri)
        mode = getattr(ua.MessageSecurityMode, o.security_mode)
        policy = (ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt if o.security_mode == "SignAndEncrypt"
                  else ua.SecurityPolicyType.Basic256Sha256_Sign)
        server.set_security_policy([policy])
        _install_channel_rule(server, _ChannelRule(SecurityPolicyBasic256Sha256.URI, mode, self._refused))
        server.iserver.max_connections = o.max_connections   # asyncua's refusal, once no idle one can go
        _LIMITS[server.iserver] = o.max_connections
        tokens = [ua.UserNameIdentityToken] + ([ua.AnonymousIdentityToken] if o.allow_anonymous else [])
        server.set_identity_tokens(tokens)
        server.set_certificate_validator(await _client_validator(o.trusted_clients_dir))
        cert, key = Path(o.cert_file), Path(o.key_file)
        await ensure_certificate(cert, key, app_uri, socket.gethostname())
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        self._idx = idx = await server.register_namespace(o.namespace_uri)
        self._event_type = await server.create_custom_event_type(
            idx, "OcrReadingEventType", ua.ObjectIds.BaseEventType,
            [(name, getattr(ua.VariantType, kind)) for name, kind in _EVENT_FIELDS])
        await self._cycles.install(server, idx)
        root = await server.nodes.objects.add_folder(idx, "OCR")
        self._cameras_folder = await root.add_folder(idx, "Cameras")
        self._server = server
        self._cameras = {}
        for cam in self._cfg.cameras:
            await self._camera(cam.name)
        await server.start()
        bound = server.bserver
        where = f"{bound.hostname}:{bound.port}" if bound is not None else self.endpoint
        log.info("opcua: serving %s, listening on %s%s (Basic256Sha256 %s, user %s%s)", self.endpoint, where,
                 " (every IPv4 interface)" if o.host in ("0.0.0.0", "") else "", o.security_mode, o.username,
                 ", anonymous allowed" if o.allow_anonymous else "")

    async def _stop_server(self) -> None:
        server, self._server = self._server, None
        self._cameras, self._cameras_folder, self._event_type = {}, None, None
        self._cycles.detach()
        if server is not None:
            try:
                await server.stop()
            except Exception as exc:   # a server that never started fully
                log.debug("opcua: stopping the server: %s", exc)

    async def _shutdown(self) -> None:
        """Stops the server, then ends what asyncua leaves on the loop (a session kept for its subscriptions
        outlives its connection, with its timers): a task still pending when the loop closes is an asyncio ERROR."""
        await self._stop_server()
        if self._summary_timer is not None:
            self._summary_timer.cancel()
            self._summary_timer = None
        self._refusals.summarise()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await asyncio.get_running_loop().shutdown_asyncgens()

    def _refused(self, peer: str, what: str) -> None:
        self._refusals.refused(peer, what)
        due = self._refusals.summary_due
        if due is not None and self._summary_timer is None:
            self._summary_timer = asyncio.get_running_loop().call_later(max(0.0, due - time.monotonic()),
                                                                        self._summarise_refusals)

    def _summarise_refusals(self) -> None:
        self._summary_timer = None
        self._refusals.summarise()

    async def _camera(self, name: str) -> _CameraNodes:
        nodes = self._cameras.get(name)
        if nodes is not None:
            return nodes
        idx = self._idx
        obj = await self._cameras_folder.add_object(idx, name)
        variables = {
            "Text": await obj.add_variable(idx, "Text", "", ua.VariantType.String),
            "Confidence": await obj.add_variable(idx, "Confidence", 0.0, ua.VariantType.Double),
            "ReadingId": await obj.add_variable(idx, "ReadingId", "", ua.VariantType.String),
            "CapturedAt": await obj.add_variable(idx, "CapturedAt", ua.Variant(None, ua.VariantType.DateTime)),
            "Seq": await obj.add_variable(idx, "Seq", 0, ua.VariantType.UInt64),
            "Lines": await obj.add_variable(idx, "Lines", 0, ua.VariantType.UInt32),
            "Readings": await obj.add_variable(idx, "Readings", 0, ua.VariantType.UInt64),
            "RecentReadings": await obj.add_variable(idx, "RecentReadings",
                                                     ua.Variant([], ua.VariantType.String, is_array=True)),
        }
        await variables["RecentReadings"].write_value_rank(ua.ValueRank.OneDimension)
        await variables["RecentReadings"].write_array_dimensions([RECENT_READINGS])
        events = await self._server.get_event_generator(self._event_type, obj)
        await self._cycles.add_camera(name, obj)
        nodes = self._cameras[name] = _CameraNodes(obj, variables, events)
        history = self._history.get(name)
        if history is not None and history.last is not None:
            await self._write(nodes, history)
        elif history is not None and history.recent:   # kept from before a restart: there to catch up on at once
            await variables["RecentReadings"].write_value(
                ua.DataValue(ua.Variant(list(history.recent), ua.VariantType.String)))
        return nodes

    async def _update(self, reading: Reading, result: Optional[CycleResult] = None) -> None:
        if self._server is None:
            raise SinkDown("the OPC UA server is not running")
        nodes = await self._camera(reading.camera)
        history = self._history.setdefault(reading.camera, _CameraHistory())
        history.add(reading)
        captured = await self._write(nodes, history)
        ev = nodes.events.event
        ev.Camera, ev.Text, ev.Confidence = reading.camera, reading.text, reading.confidence
        ev.ReadingId, ev.CapturedAt, ev.Seq = reading.msg_id, captured, reading.seq
        ev.Severity = 100
        await nodes.events.trigger(time_attr=captured, message=reading.text or "(no text)")
        if result is not None:
            await self._cycles.deliver(result)

    @staticmethod
    async def _write(nodes: _CameraNodes, history: _CameraHistory) -> datetime:
        """Writes the camera's variables from its history; returns the last reading's capture time."""
        reading = history.last
        captured = datetime.fromtimestamp(reading.captured_at_ms / 1000.0, tz=timezone.utc)
        for name, value, kind in (("Text", reading.text, ua.VariantType.String),
                                  ("Confidence", reading.confidence, ua.VariantType.Double),
                                  ("ReadingId", reading.msg_id, ua.VariantType.String),
                                  ("CapturedAt", captured, ua.VariantType.DateTime),
                                  ("Seq", reading.seq, ua.VariantType.UInt64),
                                  ("Lines", reading.lines, ua.VariantType.UInt32),
                                  ("Readings", history.readings, ua.VariantType.UInt64),
                                  ("RecentReadings", list(history.recent), ua.VariantType.String)):
            await nodes.variables[name].write_value(ua.DataValue(ua.Variant(value, kind), SourceTimestamp=captured))
        return captured
