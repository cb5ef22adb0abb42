"""The OPC UA sink on loopback, checked with asyncua's own client: Basic256Sha256 with generated certificates, the
user and password (anonymous, a wrong password and an unencrypted session refused), browse, read, and the event per
reading; RecentReadings, what a client back after a daemon restart catches up on; readings wait in the outbox while
the server cannot start and arrive once it can."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
import stat

import pytest

asyncua = pytest.importorskip("asyncua")

from asyncua import Client, ua  # noqa: E402
from broker import free_port, wait_until  # noqa: E402
from daemon.config import CameraConfig, Config, OpcUaConfig  # noqa: E402
from daemon.publish.outbox import Outbox  # noqa: E402
from daemon.publish.sinks.opcua import RECENT_READINGS, OpcUaSink  # noqa: E402
from publish_support import DEVICE, outbox_cfg, put_result  # noqa: E402
from asyncua.crypto.cert_gen import setup_self_signed_certificate  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID  # noqa: E402

PASSWORD = "s3cret-for-the-plc"
NS = "urn:ocr-daemon"
CLIENT_URI = "urn:test:scada-client"


def _cfg(tmp_path, port: int, **kw) -> Config:
    opcua = OpcUaConfig(enabled=True, host="127.0.0.1", port=port, cert_file=str(tmp_path / "state/opcua/cert.der"),
                        key_file=str(tmp_path / "state/opcua/key.pem"), password_env="TEST_OPCUA_PASSWORD", **kw)
    return dataclasses.replace(Config(), device_id=DEVICE, opcua=opcua,
                               cameras=(CameraConfig(name="cam1", kind="sample"),
                                        CameraConfig(name="cam2", kind="sample")))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One server for the tests that only connect to it (an asyncua server takes seconds to start here)."""
    tmp_path = tmp_path_factory.mktemp("opcua")
    seen = _Seen()
    root = logging.getLogger()
    level = root.level
    root.addHandler(seen)
    root.setLevel(logging.DEBUG)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEST_OPCUA_PASSWORD", PASSWORD)
        port = free_port()
        ob = Outbox(outbox_cfg(tmp_path), sinks=("opcua",))
        sink = OpcUaSink(_cfg(tmp_path, port), ob.for_sink("opcua"))
        sink.start()
        assert wait_until(lambda: sink.health().up, 60), sink.health()
        yield sink, ob, port, tmp_path, seen
        sink.stop(0.0)
        ob.close()
    root.removeHandler(seen)
    root.setLevel(level)


class _Seen(logging.Handler):
    """Every log line from the server's start on (the password must be in none)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


async def _client_cert(tmp_path):
    key, cert = tmp_path / "client-key.pem", tmp_path / "client-cert.der"
    await setup_self_signed_certificate(key, cert, CLIENT_URI, socket.gethostname(),
                                        [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "scada"})
    return cert, key


async def _client(tmp_path, port: int, user: str | None = "ocr", password: str | None = PASSWORD,
                  secure: bool = True) -> Client:
    client = Client(f"opc.tcp://127.0.0.1:{port}/ocr-daemon/", timeout=10)
    client.application_uri = CLIENT_URI
    if secure:
        cert, key = await _client_cert(tmp_path)
        await client.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert},{key}")
    if user is not None:
        client.set_user(user)
        client.set_password(password)
    return client


async def _camera(client: Client, name: str):
    idx = await client.get_namespace_index(NS)
    return await client.nodes.objects.get_child([f"{idx}:OCR", f"{idx}:Cameras", f"{idx}:{name}"]), idx


def test_browse_read_and_an_event_per_reading_over_basic256sha256_with_a_user(served, tmp_path, caplog):
    sink, ob, port, state, seen = served
    caplog.set_level(logging.DEBUG)
    ids = [put_result(ob, "cam1", text=f"LOT-{i}")[0] for i in range(3)]
    sink.wake()
    assert wait_until(lambda: ob.depth() == (0, 0), 20), sink.health()

    class Events:
        def __init__(self):
            self.got = []

        def event_notification(self, event):
            self.got.append(event.get_event_props_as_fields_dict())

    async def scenario():
        client = await _client(tmp_path, port)
        async with client:
            cam, idx = await _camera(client, "cam1")
            names = {(await c.read_browse_name()).Name for c in await cam.get_children()}
            assert {"Text", "Confidence", "ReadingId", "CapturedAt", "Seq", "Lines", "Readings",
                    "RecentReadings"} <= names
            cams = await client.nodes.objects.get_child([f"{idx}:OCR", f"{idx}:Cameras"])
            assert {(await c.read_browse_name()).Name for c in await cams.get_children()} == {"cam1", "cam2"}

            async def read(name):
                return await (await cam.get_child(f"{idx}:{name}")).read_value()
            assert await read("Text") == "LOT-2" and await read("ReadingId") == ids[-1]
            assert abs(await read("Confidence") - 0.98) < 1e-9
            assert await read("Readings") == 3 and await read("Seq") == 3 and await read("Lines") == 1
            assert (await read("CapturedAt")).year >= 2026
            with pytest.raises(ua.UaStatusCodeError):   # read-only for clients
                await (await cam.get_child(f"{idx}:Text")).write_value("forged")

            handler = Events()
            etype = await client.nodes.base_event_type.get_child(f"{idx}:OcrReadingEventType")
            sub = await client.create_subscription(50, handler)
            await sub.subscribe_events(cam, etype)
            await asyncio.sleep(0.3)
            new_id = put_result(ob, "cam1", text="LOT-9")[0]
            sink.wake()
            for _ in range(100):
                if handler.got:
                    break
                await asyncio.sleep(0.1)
            await sub.delete()
            return handler.got, new_id

    got, new_id = asyncio.run(scenario())
    assert len(got) == 1, got
    ev = {k: v.Value if isinstance(v, ua.Variant) else v for k, v in got[0].items()}
    assert ev["Camera"] == "cam1" and ev["Text"] == "LOT-9" and ev["ReadingId"] == new_id and ev["Seq"] == 4
    assert ev["Message"].Text == "LOT-9" and abs(ev["Confidence"] - 0.98) < 1e-9
    assert PASSWORD not in caplog.text and not any(PASSWORD in line for line in seen.lines)   # never logged
    assert any("opcua: serving" in line for line in seen.lines)

    key = state / "state/opcua/key.pem"
    assert (state / "state/opcua/cert.der").stat().st_size > 500
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


@pytest.mark.parametrize("user, password, secure", [(None, None, True), ("ocr", "wrong", True),
                                                    ("intruder", PASSWORD, True), ("ocr", PASSWORD, False)],
                         ids=["anonymous", "wrong-password", "unknown-user", "no-security"])
def test_sessions_without_the_user_its_password_or_encryption_are_refused(served, tmp_path, user, password, secure):
    port = served[2]

    async def attempt():
        client = await _client(tmp_path, port, user, password, secure)
        try:
            await client.connect()
        except Exception as exc:   # BadUserAccessDenied, BadIdentityTokenRejected, BadSecurityPolicyRejected ...
            return exc
        await client.disconnect()
        return None

    assert asyncio.run(attempt()) is not None


def test_anonymous_sessions_pass_only_when_allowed(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_OPCUA_PASSWORD", PASSWORD)
    port = free_port()
    ob = Outbox(outbox_cfg(tmp_path), sinks=("opcua",))
    sink = OpcUaSink(_cfg(tmp_path, port, allow_anonymous=True), ob.for_sink("opcua"))
    sink.start()
    try:
        assert wait_until(lambda: sink.health().up, 60)

        async def anonymous():
            client = await _client(tmp_path, port, user=None)
            async with client:
                cam, idx = await _camera(client, "cam2")
                return await (await cam.get_child(f"{idx}:Readings")).read_value()
        assert asyncio.run(anonymous()) == 0
    finally:
        sink.stop(0.0)
        ob.close()


def test_readings_wait_while_the_port_is_taken_and_arrive_when_it_is_free(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_OPCUA_PASSWORD", PASSWORD)
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    port = squatter.getsockname()[1]
    ob = Outbox(outbox_cfg(tmp_path), sinks=("opcua",))
    sink = OpcUaSink(_cfg(tmp_path, port), ob.for_sink("opcua"))
    sink._reconnect_min_s = sink._reconnect_max_s = 0.2
    sink.start()
    try:
        ids = [put_result(ob, "cam1")[0] for _ in range(5)]
        sink.wake()
        assert wait_until(lambda: sink.counters.connect_failures >= 1, 30)
        h = sink.health()
        assert not h.up and h.alive and h.backlog == 5 and "cannot serve" in h.last_error
        squatter.close()
        assert wait_until(lambda: ob.depth() == (0, 0), 30), sink.health()

        async def last_id():
            client = await _client(tmp_path, port)
            async with client:
                cam, idx = await _camera(client, "cam1")
                return await (await cam.get_child(f"{idx}:ReadingId")).read_value()
        assert asyncio.run(last_id()) == ids[-1]
    finally:
        sink.stop(0.0)
        ob.close()


def test_with_a_trust_folder_only_the_client_certificates_in_it_get_a_session(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("TEST_OPCUA_PASSWORD", PASSWORD)
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    known, stranger = tmp_path / "known", tmp_path / "stranger"
    known.mkdir()
    stranger.mkdir()
    cert, _ = asyncio.run(_client_cert(known))
    shutil.copy(cert, trusted / "scada.der")
    port = free_port()
    ob = Outbox(outbox_cfg(tmp_path), sinks=("opcua",))
    sink = OpcUaSink(_cfg(tmp_path, port, trusted_clients_dir=str(trusted)), ob.for_sink("opcua"))
    sink.start()
    try:
        assert wait_until(lambda: sink.health().up, 60), sink.health()

        async def connect(folder):
            client = await _client(folder, port)
            try:
                await client.connect()
            except Exception as exc:
                return exc
            await client.disconnect()
            return None
        assert asyncio.run(connect(known)) is None
        assert asyncio.run(connect(stranger)) is not None   # a certificate of its own, not in the folder
    finally:
        sink.stop(0.0)
        ob.close()


async def _recent(client: Client, camera: str) -> list[dict]:
    cam, idx = await _camera(client, camera)
    return [json.loads(entry) for entry in await (await cam.get_child(f"{idx}:RecentReadings")).read_value()]


def test_recent_readings_hold_the_last_ones_oldest_first_with_their_id_and_seq(served, tmp_path):
    sink, ob, port, _, _ = served
    ids = [put_result(ob, "cam2", text=f"BOX-{i}")[0] for i in range(RECENT_READINGS + 3)]
    sink.wake()
    assert wait_until(lambda: ob.depth() == (0, 0), 60), sink.health()

    async def read():
        client = await _client(tmp_path, port)
        async with client:
            return await _recent(client, "cam2")

    recent = asyncio.run(read())
    assert [r["ReadingId"] for r in recent] == ids[-RECENT_READINGS:]
    assert [r["Seq"] for r in recent] == list(range(4, RECENT_READINGS + 4))
    assert recent[-1]["Text"] == f"BOX-{RECENT_READINGS + 2}" and recent[-1]["Lines"] == 1
    assert set(recent[0]) == {"ReadingId", "Seq", "CapturedAt", "Text", "Confidence", "Lines"}
    assert recent[0]["CapturedAt"].endswith("Z")


def test_a_client_back_after_a_daemon_restart_reads_the_readings_fired_while_it_was_away(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_OPCUA_PASSWORD", PASSWORD)
    port = free_port()
    ob = Outbox(outbox_cfg(tmp_path), sinks=("opcua",))
    before = OpcUaSink(_cfg(tmp_path, port), ob.for_sink("opcua"))
    before.start()
    try:
        assert wait_until(lambda: before.health().up, 60)
        seen = put_result(ob, "cam1", text="SEEN")[0]
        before.wake()
        assert wait_until(lambda: ob.depth() == (0, 0), 20)
    finally:
        before.stop(0.0)
    missed = [put_result(ob, "cam1", text=f"MISSED-{i}")[0] for i in range(3)]   # stored while the daemon is down
    after = OpcUaSink(_cfg(tmp_path, port), ob.for_sink("opcua"))
    after.start()
    try:
        # the outbox empties into the new server, and its events fire, before any client is back
        assert wait_until(lambda: ob.depth() == (0, 0), 60), after.health()

        async def catch_up():
            client = await _client(tmp_path, port)
            async with client:
                return await _recent(client, "cam1")
        recent = asyncio.run(catch_up())
        # the one delivered before the restart too: kept on disk before its row left the outbox (a client away
        # over a SIGKILL finds what was written just before it)
        assert [r["ReadingId"] for r in recent] == [seen] + missed
        assert json.loads((tmp_path / "state/opcua/recent-readings.json").read_text())["cam1"] == \
            [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in recent]
    finally:
        after.stop(0.0)
        ob.close()


def test_idle_sockets_cannot_lock_a_client_out_and_activated_sessions_are_never_closed_for_them(tmp_path,
                                                                                                monkeypatch):
    monkeypatch.setenv("TEST_OPCUA_PASSWORD", PASSWORD)
    port = free_port()
    ob = Outbox(outbox_cfg(tmp_path), sinks=("opcua",))
    sink = OpcUaSink(_cfg(tmp_path, port, max_connections=3), ob.for_sink("opcua"))
    sink.start()
    idle = []
    try:
        assert wait_until(lambda: sink.health().up, 60), sink.health()
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(6)]   # silent sockets

        async def sessions():
            clients = []
            try:
                for _ in range(3):   # each evicts a silent socket; the server holds 3 activated sessions then
                    client = await _client(tmp_path, port)
                    await client.connect()
                    clients.append(client)
                    cam, _ = await _camera(client, "cam1")
                    assert await cam.get_children()
                with pytest.raises(OSError):   # full of activated sessions: refused (at its discovery already)
                    late = await _client(tmp_path, port)
                    await late.connect()
                for client in clients:
                    cam, _ = await _camera(client, "cam2")
                    assert await cam.get_children()
            finally:
                for client in clients:
                    await client.disconnect()
        asyncio.run(sessions())
    finally:
        for s in idle:
            s.close()
        sink.stop(0.0)
        ob.close()


def test_a_row_delivered_again_after_a_crash_before_its_delete_is_listed_once():
    # The kept file is written before the rows leave the outbox: a crash in between delivers them again.
    from daemon.publish.sinks.opcua import _CameraHistory, recent_entry
    from daemon.publish.sinks.base import Reading as SinkReading

    kept = _CameraHistory()
    row = SinkReading(camera="cam1", msg_id="dev:cam1:7:1", seq=7, captured_at="2026-12-07T00:00:00Z",
                      captured_at_ms=0, text="LOT 1", confidence=0.99, lines=1)
    kept.add(row)
    restarted = _CameraHistory(list(kept.recent) + ["not json", '{"no": "id"}'])   # junk in the file is skipped
    restarted.add(row)
    assert list(restarted.recent) == [recent_entry(row)] and restarted.readings == 1


def _serving(tmp_path, monkeypatch, **cfg) -> tuple[OpcUaSink, Outbox, int]:
    """A started sink on a free port with its own outbox (stop both when done), once it is up."""
    monkeypatch.setenv("TEST_OPCUA_PASSWORD", PASSWORD)
    port = free_port()
    ob = Outbox(outbox_cfg(tmp_path), sinks=("opcua",))
    sink = OpcUaSink(_cfg(tmp_path, port, **cfg), ob.for_sink("opcua"))
    sink.start()
    assert wait_until(lambda: sink.health().up, 60), sink.health()
    return sink, ob, port


def test_a_chunk_larger_than_the_receive_buffer_closes_its_connection_before_it_is_buffered(tmp_path, monkeypatch):
    """Found from outside: HEL with a size of 4 GiB, then a stream of zeros, was buffered by asyncua (50 MB in 7 s a
    connection, no login needed), and 16 such connections took 1.3 GB and slowed every session."""
    sink, ob, port = _serving(tmp_path, monkeypatch)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"HELF" + (0xFFFFFFF0).to_bytes(4, "little") + bytes(4096))
            sent, closed = 4104, False
            try:
                while sent < 8 << 20:   # the server closes it long before 8 MiB
                    s.sendall(bytes(65536))
                    sent += 65536
            except OSError:
                closed = True
            if not closed:
                s.settimeout(5)
                closed = s.recv(1) == b""
        assert closed and sent < 8 << 20

        async def still_serves():
            client = await _client(tmp_path, port)
            async with client:
                cam, _ = await _camera(client, "cam1")
                return await cam.get_children()
        assert asyncio.run(still_serves())
    finally:
        sink.stop(0.0)
        ob.close()
