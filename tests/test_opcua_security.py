"""The OPC UA server's channel rule, checked with asyncua's own client through a relay that keeps every byte the
client sends: a None channel serves discovery only, so a client forced onto one is refused at CreateSession and
its password never crosses the wire (also with a trust folder); a channel of another policy or mode is refused
when it opens; CreateSession must name the certificate of its channel; a Basic256Sha256 client still gets its
session with its password encrypted. Refusals log one WARNING per address and a count, and a clean stop with a
subscribed client logs no ERROR."""
from __future__ import annotations

import asyncio
import gc
import logging
import shutil
import threading
import time

import pytest

asyncua = pytest.importorskip("asyncua")

from asyncua import Client, ua  # noqa: E402
from asyncua.common.utils import create_nonce  # noqa: E402

from broker import wait_until  # noqa: E402
from daemon.publish.sinks.opcua import RefusalLog  # noqa: E402
from publish_support import put_result  # noqa: E402
from test_sink_opcua import CLIENT_URI, PASSWORD, _camera, _cfg, _client, _client_cert, _serving  # noqa: E402

SECRET = PASSWORD.encode("utf-8")


class _Relay:
    """127.0.0.1:port -> the server, keeping every byte clients send (`sent`)."""

    def __init__(self, server_port: int):
        self._server_port = server_port
        self.sent = bytearray()
        self.port = 0

    async def __aenter__(self) -> "_Relay":
        self._listener = await asyncio.start_server(self._pipe, "127.0.0.1", 0)
        self.port = self._listener.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self._listener.close()
        await self._listener.wait_closed()

    @property
    def url(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/ocr-daemon/"

    async def _pipe(self, client_r, client_w) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self._server_port)

        async def pump(reader, writer, keep: bool) -> None:
            try:
                while data := await reader.read(65536):
                    if keep:
                        self.sent += data
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        await asyncio.gather(pump(client_r, server_w, True), pump(server_r, client_w, False))


@pytest.fixture(scope="module", params=["any-valid-certificate", "trust-folder"])
def served(request, tmp_path_factory):
    """A server as shipped, and one with opcua.trusted_clients_dir holding the certificate of the client in
    `known` (a client certificate elsewhere is a stranger's)."""
    tmp_path = tmp_path_factory.mktemp("opcua-security")
    known = tmp_path / "known"
    known.mkdir()
    extra = {}
    if request.param == "trust-folder":
        trusted = tmp_path / "trusted"
        trusted.mkdir()
        cert, _ = asyncio.run(_client_cert(known))
        shutil.copy(cert, trusted / "scada.der")
        extra["trusted_clients_dir"] = str(trusted)
    with pytest.MonkeyPatch.context() as mp:
        sink, ob, port = _serving(tmp_path, mp, **extra)
        yield port, tmp_path, known
        sink.stop(0.0)
        ob.close()


async def _none_channel(url: str) -> Client:
    """A client on a None channel (a discovery channel, which the server opens for anyone)."""
    client = Client(url, timeout=5)
    client.application_uri = CLIENT_URI
    await client.connect_socket()
    await client.send_hello()
    await client.open_secure_channel()
    return client


def _session_params(client: Client, certificate: bytes | None) -> ua.CreateSessionParameters:
    params = ua.CreateSessionParameters()
    params.ClientNonce = create_nonce(32)
    params.ClientDescription = ua.ApplicationDescription(ApplicationUri=CLIENT_URI,
                                                         ApplicationType=ua.ApplicationType.Client)
    params.EndpointUrl = client.server_url.geturl()
    params.SessionName = "forced"
    params.RequestedSessionTimeout = 60000
    params.ClientCertificate = certificate
    return params


async def _closed(client: Client) -> bool:
    try:
        await client.get_endpoints()
    except (ConnectionError, asyncio.TimeoutError, ua.UaError):
        return True
    return False


def test_a_client_forced_onto_a_none_channel_gets_discovery_but_no_session_and_never_sends_its_password(served):
    port = served[0]

    async def scenario():
        async with _Relay(port) as relay:
            client = await _none_channel(relay.url)
            endpoints = await client.get_endpoints()   # discovery needs no security (OPC UA Part 4 5.4)
            assert {(e.SecurityPolicyUri.rsplit("#")[-1], e.SecurityMode) for e in endpoints} == \
                {("Basic256Sha256", ua.MessageSecurityMode.SignAndEncrypt)}
            client.set_user("ocr")
            client.set_password(PASSWORD)
            with pytest.raises(ua.UaStatusCodeError) as refused:
                await client.create_session()   # asyncua would send the password next
            assert refused.value.code == ua.StatusCodes.BadSecurityModeRejected
            assert await _closed(client)
            client.disconnect_socket()

            plain = Client(relay.url, timeout=5)   # no security string: asyncua's own client on a None channel
            plain.application_uri = CLIENT_URI
            plain.set_user("ocr")
            plain.set_password(PASSWORD)
            with pytest.raises(Exception):
                await plain.connect()
            return bytes(relay.sent)

    sent = asyncio.run(scenario())
    assert len(sent) > 0 and SECRET not in sent


def test_a_password_sent_on_a_none_channel_anyway_buys_no_session(served):
    port = served[0]

    async def scenario():
        client = await _none_channel(f"opc.tcp://127.0.0.1:{port}/ocr-daemon/")
        with pytest.raises(ua.UaStatusCodeError) as refused:   # a careless client: ActivateSession straight away
            await client.activate_session("ocr", PASSWORD)
        assert refused.value.code == ua.StatusCodes.BadSecurityModeRejected
        assert await _closed(client)
        client.disconnect_socket()

    asyncio.run(scenario())


def test_a_basic256sha256_client_gets_its_session_and_its_password_crosses_the_wire_encrypted(served):
    port, _, known = served

    async def scenario():
        async with _Relay(port) as relay:
            client = await _client(known, relay.port)
            async with client:
                cam, idx = await _camera(client, "cam1")
                assert await (await cam.get_child(f"{idx}:Readings")).read_value() >= 0
            return bytes(relay.sent)

    sent = asyncio.run(scenario())
    assert len(sent) > 2000 and SECRET not in sent


@pytest.mark.parametrize("policy, mode, status", [
    ("Aes128Sha256RsaOaep", "SignAndEncrypt", ua.StatusCodes.BadSecurityPolicyRejected),
    ("Basic256Sha256", "Sign", ua.StatusCodes.BadSecurityModeRejected)], ids=["other-policy", "other-mode"])
def test_a_channel_of_a_policy_or_mode_not_advertised_is_refused_when_it_opens(served, policy, mode, status):
    port, state, known = served

    async def scenario():
        cert, key = await _client_cert(known)
        client = Client(f"opc.tcp://127.0.0.1:{port}/ocr-daemon/", timeout=10)
        client.application_uri = CLIENT_URI
        # the server certificate given, so the client skips discovery and asks for this channel directly
        await client.set_security_string(f"{policy},{mode},{cert},{key},{state / 'state/opcua/cert.der'}")
        client.set_user("ocr")
        client.set_password(PASSWORD)
        started = time.monotonic()
        with pytest.raises(ua.UaStatusCodeError) as refused:
            await client.connect()
        return refused.value.code, time.monotonic() - started

    code, took_s = asyncio.run(scenario())
    assert code == status and took_s < 5.0   # an ErrorMessage at once, not a client timeout


def test_create_session_must_name_the_certificate_of_its_channel(served):
    port, tmp_path, known = served
    stranger = tmp_path / "stranger"
    stranger.mkdir(exist_ok=True)

    async def attempt(certificate_in_request):
        cert, key = await _client_cert(stranger)
        client = Client(f"opc.tcp://127.0.0.1:{port}/ocr-daemon/", timeout=5)
        client.application_uri = CLIENT_URI
        await client.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert},{key}")
        await client.connect_socket()
        await client.send_hello()
        await client.open_secure_channel()
        try:
            with pytest.raises(ua.UaStatusCodeError) as refused:
                await client.uaclient.create_session(_session_params(client, certificate_in_request))
            return refused.value.code
        finally:
            client.disconnect_socket()

    known_cert = asyncio.run(_client_cert(known))[0].read_bytes()   # in the trust folder where there is one
    assert asyncio.run(attempt(None)) == ua.StatusCodes.BadCertificateInvalid
    assert asyncio.run(attempt(known_cert)) == ua.StatusCodes.BadCertificateInvalid


def test_wrong_passwords_log_one_warning_per_address_then_a_count_and_asyncua_stays_quiet(tmp_path, monkeypatch,
                                                                                          caplog):
    caplog.set_level(logging.DEBUG)
    sink, ob, port = _serving(tmp_path, monkeypatch)
    try:
        async def guesses():
            for i in range(4):
                client = await _client(tmp_path, port, "ocr", f"guess-{i}")
                with pytest.raises(ua.UaStatusCodeError):
                    await client.connect()
            client = await _client(tmp_path, port, None, None)   # anonymous: off
            with pytest.raises(ua.UaStatusCodeError):
                await client.connect()
        asyncio.run(guesses())
        ours = [r for r in caplog.records if r.name == "daemon.publish.sinks.opcua" and "refused" in r.message]
        assert [r.levelname for r in ours] == ["WARNING"] + ["DEBUG"] * 4, [r.message for r in ours]
        assert "ActivateSession (BadUserAccessDenied) from 127.0.0.1" in ours[0].message
        assert "BadIdentityTokenRejected" in ours[-1].message
        server_side = [r for r in caplog.records
                       if r.name.startswith("asyncua.server") and r.levelno >= logging.WARNING]
        assert server_side == [], [r.message for r in server_side]
    finally:
        sink.stop(0.0)
        ob.close()
    summary = [r for r in caplog.records if "more refused" in r.message]
    assert len(summary) == 1 and summary[0].levelname == "WARNING" and "(127.0.0.1: 4)" in summary[0].message
    assert PASSWORD not in caplog.text


def test_refusals_from_one_address_are_counted_after_the_first_and_summarised_once_a_window(caplog):
    caplog.set_level(logging.DEBUG, logger="daemon.publish.sinks.opcua")
    now = [1000.0]
    refusals = RefusalLog(window_s=60.0, clock=lambda: now[0])
    for _ in range(3):
        refusals.refused("10.0.0.5", "ActivateSession (BadUserAccessDenied)")
    refusals.refused("10.0.0.9", "CreateSession on a channel without security")
    assert refusals.summary_due == 1060.0
    levels = [(r.levelname, r.message.split(" from ")[1][:8]) for r in caplog.records]
    assert levels == [("WARNING", "10.0.0.5"), ("DEBUG", "10.0.0.5"), ("DEBUG", "10.0.0.5"), ("WARNING", "10.0.0.9")]
    caplog.clear()
    now[0] = 1060.0
    refusals.summarise()
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "2 more refused" in caplog.records[0].message and "10.0.0.5: 2" in caplog.records[0].message
    assert refusals.summary_due is None
    caplog.clear()
    refusals.summarise()   # nothing counted since: no line
    now[0] = 1200.0        # quiet for a window: the next refusal is a first again
    refusals.refused("10.0.0.5", "ActivateSession (BadUserAccessDenied)")
    assert [r.levelname for r in caplog.records] == ["WARNING"]


def test_a_clean_stop_with_a_subscribed_client_logs_no_error(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    sink, ob, port = _serving(tmp_path, monkeypatch)
    subscribed, done = threading.Event(), threading.Event()

    class Handler:
        def event_notification(self, event):
            pass

        def status_change_notification(self, status):
            pass

    def subscriber():   # a client that holds a session with a subscription while the daemon stops
        async def run():
            client = await _client(tmp_path, port)
            await client.connect()
            cam, idx = await _camera(client, "cam1")
            sub = await client.create_subscription(50, Handler())
            await sub.subscribe_events(cam, await client.nodes.base_event_type.get_child(f"{idx}:OcrReadingEventType"))
            subscribed.set()
            while not done.is_set():
                await asyncio.sleep(0.05)
            client.disconnect_socket()
        asyncio.run(run())

    thread = threading.Thread(target=subscriber, daemon=True)
    thread.start()
    try:
        assert subscribed.wait(30)
        put_result(ob, "cam1")
        sink.wake()
        assert wait_until(lambda: ob.depth() == (0, 0), 20)
    finally:
        sink.stop(0.0)
        ob.close()
        done.set()
        thread.join(10)
    del sink   # as at the daemon's exit: a task left pending on the closed loop is reported once collected
    gc.collect()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and not r.name.startswith(("asyncua.client",
                                                                                                 "asyncua.common"))]
    assert errors == [], [f"{r.name}: {r.getMessage()}" for r in errors]
    assert any("opcua: stopped" in r.message for r in caplog.records)
