"""The OPC UA server (asyncua): the last reading of each camera as variables, and an event per reading.

Address space (namespace opcua.namespace_uri):
    Objects/OCR/Cameras/<camera>/       one object per camera, an event notifier
        Text (String, the lines joined by "\\n"), Confidence (Double, the lowest line's), ReadingId (String, the
        JSON payload's id), CapturedAt (DateTime, UTC), Seq (UInt64), Lines (UInt32),
        Readings (UInt64, delivered since the daemon started)
    events: OcrReadingEventType (a BaseEventType) from the camera's object, with Camera, Text, Confidence,
        ReadingId, CapturedAt and Seq; Time = the capture time, Message = the text.
All variables are read-only for clients; a camera first seen in a row (not configured) gets its object then.

Security: one endpoint, Basic256Sha256 (SignAndEncrypt unless opcua.security_mode: Sign), no None endpoint. The
server certificate and key come from opcua.cert_file / key_file; when absent they are generated on first start
(RSA 2048, self-signed for one year, renewed at a start after it expired or when the host name changed; the key
0600). Sessions need opcua.username and its password (opcua.password_env / password_file, compared in constant
time, never logged); anonymous sessions only with opcua.allow_anonymous: true. A client's certificate must be valid now
and name the client's application URI; with opcua.trusted_clients_dir it must also be in that folder (or be signed
by a CA certificate there).

Threads: asyncio runs in a thread of its own; the sink's thread hands it each reading and waits for the write
(a reading leaves the outbox for this sink once the server holds it). A port already taken is "down": retried.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import os
import socket
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from daemon.config import Config, opcua_password
from daemon.publish.outbox import OutboxRow, SinkQueue
from daemon.publish.sinks.base import QueueSink, Reading, SinkDown

log = logging.getLogger(__name__)

_CALL_TIMEOUT_S = 10.0   # a write into the address space that takes longer: the server counts as down
_EVENT_FIELDS = (("Camera", "String"), ("Text", "String"), ("Confidence", "Double"), ("ReadingId", "String"),
                 ("CapturedAt", "DateTime"), ("Seq", "UInt64"))


def application_uri(device_id: str) -> str:
    return f"urn:ocr-daemon:{device_id}"


def endpoint_url(host: str, port: int) -> str:
    return f"opc.tcp://{host}:{port}/ocr-daemon/"


class _OneUser:
    """asyncua's UserManager: the configured user (and anonymous sessions when allowed), nobody else."""

    def __init__(self, username: str, password: Optional[str], allow_anonymous: bool):
        self._username = username
        self._password = (password or "").encode("utf-8")
        self._allow_anonymous = allow_anonymous

    def get_user(self, iserver, username=None, password=None, certificate=None):
        from asyncua.crypto.permission_rules import User, UserRole

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


class _CameraNodes:
    def __init__(self, obj, variables: dict, events):
        self.obj = obj
        self.variables = variables   # name -> Node
        self.events = events         # EventGenerator
        self.readings = 0


class OpcUaSink(QueueSink):
    name = "opcua"

    def __init__(self, cfg: Config, queue: SinkQueue):
        super().__init__(queue, 1.0, 30.0)
        self._cfg = cfg
        self._o = cfg.opcua
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread: Optional[threading.Thread] = None
        self._server = None
        self._idx = 0
        self._event_type = None
        self._cameras_folder = None
        self._cameras: dict[str, _CameraNodes] = {}
        logging.getLogger("asyncua").setLevel(max(logging.WARNING, logging.getLogger("asyncua").level))

    @property
    def endpoint(self) -> str:
        return endpoint_url(self._o.host, self._o.port)

    # ------------------------------------------------------------ the asyncio thread

    def _run(self, coro, timeout_s: float = _CALL_TIMEOUT_S):
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._loop_thread = threading.Thread(target=self._loop.run_forever, name="opcua-loop", daemon=True)
            self._loop_thread.start()
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout=timeout_s)
        except TimeoutError:
            future.cancel()
            raise SinkDown(f"the OPC UA server did not answer within {timeout_s:.0f} s") from None

    def _connect(self) -> None:
        try:
            self._run(self._start_server(), timeout_s=60.0)   # a first start generates an RSA key
        except SinkDown:
            raise
        except Exception as exc:   # the port is taken, the address is not ours, the key unreadable
            self._run(self._stop_server())
            raise SinkDown(f"cannot serve {self.endpoint}: {type(exc).__name__}: {exc}") from None

    def _deliver(self, row: OutboxRow, reading: Reading) -> None:
        self._run(self._update(reading))

    def _disconnect(self) -> None:
        if self._loop is None:
            return
        try:
            self._run(self._stop_server())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout=5.0)
            self._loop.close()
            self._loop = None

    # ------------------------------------------------------------ coroutines (the asyncio thread)

    async def _start_server(self) -> None:
        from asyncua import Server, ua

        o = self._o
        await self._stop_server()
        server = Server(user_manager=_OneUser(o.username, opcua_password(o), o.allow_anonymous))
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name(f"ocr-daemon {self._cfg.device_id}")
        app_uri = application_uri(self._cfg.device_id)
        await server.set_application_uri(app_uri)
        policy = (ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt if o.security_mode == "SignAndEncrypt"
                  else ua.SecurityPolicyType.Basic256Sha256_Sign)
        server.set_security_policy([policy])
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
        root = await server.nodes.objects.add_folder(idx, "OCR")
        self._cameras_folder = await root.add_folder(idx, "Cameras")
        self._server = server
        self._cameras = {}
        for cam in self._cfg.cameras:
            await self._camera(cam.name)
        await server.start()
        log.info("opcua: serving %s (Basic256Sha256 %s, user %s%s)", self.endpoint, o.security_mode, o.username,
                 ", anonymous allowed" if o.allow_anonymous else "")

    async def _stop_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            try:
                await server.stop()
            except Exception as exc:   # a server that never started fully
                log.debug("opcua: stopping the server: %s", exc)

    async def _camera(self, name: str) -> _CameraNodes:
        from asyncua import ua

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
        }
        events = await self._server.get_event_generator(self._event_type, obj)
        nodes = self._cameras[name] = _CameraNodes(obj, variables, events)
        return nodes

    async def _update(self, reading: Reading) -> None:
        from asyncua import ua

        if self._server is None:
            raise SinkDown("the OPC UA server is not running")
        nodes = await self._camera(reading.camera)
        captured = datetime.fromtimestamp(reading.captured_at_ms / 1000.0, tz=timezone.utc)
        v = nodes.variables
        nodes.readings += 1
        for name, value, kind in (("Text", reading.text, ua.VariantType.String),
                                  ("Confidence", reading.confidence, ua.VariantType.Double),
                                  ("ReadingId", reading.msg_id, ua.VariantType.String),
                                  ("CapturedAt", captured, ua.VariantType.DateTime),
                                  ("Seq", reading.seq, ua.VariantType.UInt64),
                                  ("Lines", reading.lines, ua.VariantType.UInt32),
                                  ("Readings", nodes.readings, ua.VariantType.UInt64)):
            await v[name].write_value(ua.DataValue(ua.Variant(value, kind), SourceTimestamp=captured))
        ev = nodes.events.event
        ev.Camera, ev.Text, ev.Confidence = reading.camera, reading.text, reading.confidence
        ev.ReadingId, ev.CapturedAt, ev.Seq = reading.msg_id, captured, reading.seq
        ev.Severity = 100
        await nodes.events.trigger(time_attr=captured, message=reading.text or "(no text)")
