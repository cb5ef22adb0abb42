"""The daemon as a process with all four sinks (MQTT JSON, Sparkplug B, Home Assistant on a real Mosquitto, and the
OPC UA server): each gets every reading, /healthz and /metrics show each sink up or down with its backlog, and a
broker outage plus a daemon SIGKILL lose nothing for any of them."""
import asyncio
import json
import signal
import socket
import time

import pytest
import yaml

from broker import Recorder, free_port, wait_until
from service_support import Daemon, http_get, render_label, waybill, write_config
from test_service_crash import daemon_config, reading

pytest.importorskip("asyncua")
from daemon.publish.sinks.sparkplug_b import sparkplug_b_pb2 as pb  # noqa: E402

PASSWORD = "plc-password-123"


def _healthz(port):
    status, body = http_get(f"http://127.0.0.1:{port}/healthz")
    return status, json.loads(body)


def _metric(port, name, sink):
    _, body = http_get(f"http://127.0.0.1:{port}/metrics")
    for line in body.splitlines():
        if line.startswith(f'{name}{{sink="{sink}"}}'):
            return float(line.split()[-1])
    return None


def _spb_ids(rec):
    ids = []
    for m in rec.snapshot():
        if "/DDATA/" in m.topic:
            p = pb.Payload.FromString(m.payload)
            ids += [x.string_value for x in p.metrics if x.name == "Reading/Id"]
    return ids


def _opcua_text(port, tmp_path):
    from asyncua import Client
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    async def read():
        key, cert = tmp_path / "ck.pem", tmp_path / "cc.der"
        await setup_self_signed_certificate(key, cert, "urn:test:c", socket.gethostname(),
                                            [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "c"})
        client = Client(f"opc.tcp://127.0.0.1:{port}/ocr-daemon/", timeout=10)
        client.application_uri = "urn:test:c"
        await client.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert},{key}")
        client.set_user("ocr")
        client.set_password(PASSWORD)
        async with client:
            idx = await client.get_namespace_index("urn:ocr-daemon")
            cam = await client.nodes.objects.get_child([f"{idx}:OCR", f"{idx}:Cameras", f"{idx}:scan"])
            return (await (await cam.get_child(f"{idx}:Readings")).read_value(),
                    await (await cam.get_child(f"{idx}:ReadingId")).read_value())
    return asyncio.run(read())


def test_every_sink_gets_every_reading_and_a_down_broker_shows_only_its_sinks_down(tmp_path, make_broker):
    broker = make_broker()
    rec = Recorder(broker.port, topic="#", client_id="rec-sinks")
    rec.wait_subscribed()
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(4):
        render_label(folder / f"label_{i:03d}.png", waybill(i))
    time.sleep(0.6)
    metrics_port, opcua_port = free_port(), free_port()
    cfg = daemon_config(tmp_path, broker.port, folder, metrics={"port": metrics_port})
    data = yaml.safe_load(cfg.read_text())
    data.update(sparkplug={"enabled": True, "group_id": "plant"}, homeassistant={"enabled": True},
                opcua={"enabled": True, "host": "127.0.0.1", "port": opcua_port,
                       "password_env": "OCR_TEST_OPCUA_PASSWORD"},
                state_dir=str(tmp_path / "state"))
    write_config(cfg, data)
    env = {"OCR_TEST_OPCUA_PASSWORD": PASSWORD}
    d = Daemon(cfg, tmp_path / "daemon.log", env=env).start()
    try:
        texts = lambda: [reading(m.json()) for m in rec.results()]
        assert wait_until(lambda: len(texts()) == 4 and len(_spb_ids(rec)) == 4
                          and _metric(metrics_port, "ocr_sink_delivered_total", "opcua") == 4, 120), d.log()
        json_ids = [m.json()["id"] for m in rec.results()]
        assert _spb_ids(rec) == json_ids
        assert len([m for m in rec.snapshot() if m.topic == "ocr/dock/scan/state"]) == 4
        assert any(m.topic == "homeassistant/sensor/dock/scan/config" for m in rec.snapshot())
        assert _opcua_text(opcua_port, tmp_path) == (4, json_ids[-1])
        status, h = _healthz(metrics_port)
        assert status == 200 and set(h["sinks"]) == {"mqtt", "opcua", "sparkplug", "homeassistant"}
        assert h["sinks_down"] == [] and all(s["backlog"] == 0 for s in h["sinks"].values())

        # Broker down: its three sinks are down and keep their readings; OPC UA goes on; /healthz stays 200.
        broker.stop()
        for i in range(4, 7):
            render_label(folder / f"label_{i:03d}.png", waybill(i))
        assert wait_until(lambda: _metric(metrics_port, "ocr_sink_delivered_total", "opcua") == 7, 90), d.log()
        status, h = _healthz(metrics_port)
        assert status == 200, h
        assert sorted(h["sinks_down"]) == ["homeassistant", "mqtt", "sparkplug"]
        assert all(h["sinks"][n]["backlog"] == 3 for n in ("mqtt", "sparkplug", "homeassistant"))
        assert h["sinks"]["opcua"]["backlog"] == 0 and h["sinks"]["opcua"]["up"]
        assert _metric(metrics_port, "ocr_sink_backlog", "sparkplug") == 3
        assert _metric(metrics_port, "ocr_sink_up", "mqtt") == 0

        d.kill9()   # with three sinks owing three readings each
        broker.start()
        d = Daemon(cfg, tmp_path / "daemon.log", env=env).start()
        assert wait_until(lambda: len(set(texts())) == 7 and len(set(_spb_ids(rec))) == 7
                          and len({json.loads(m.payload)["id"] for m in rec.snapshot()
                                   if m.topic == "ocr/dock/scan/state"}) == 7, 120), d.log()
        assert set(_spb_ids(rec)) == {m.json()["id"] for m in rec.results()}
        d.signal(signal.SIGTERM)
        assert d.wait(30) == 0
        assert PASSWORD not in d.log()
    finally:
        d.close()
        rec.close()


def test_a_sink_enabled_by_sighup_gets_the_readings_stored_from_then_on(tmp_path, make_broker):
    broker = make_broker()
    rec = Recorder(broker.port, topic="#", client_id="rec-hup")
    rec.wait_subscribed()
    folder = tmp_path / "scans"
    folder.mkdir()
    render_label(folder / "label_000.png", waybill(0))
    time.sleep(0.6)
    metrics_port = free_port()
    cfg = daemon_config(tmp_path, broker.port, folder, metrics={"port": metrics_port})
    d = Daemon(cfg, tmp_path / "daemon.log").start()
    try:
        assert wait_until(lambda: len(rec.results()) == 1, 90), d.log()
        assert set(_healthz(metrics_port)[1]["sinks"]) == {"mqtt"}
        data = yaml.safe_load(cfg.read_text())
        data["sparkplug"] = {"enabled": True}
        write_config(cfg, data)
        d.signal(signal.SIGHUP)
        assert d.wait_log("SIGHUP: config", 30) and wait_until(
            lambda: set(_healthz(metrics_port)[1].get("sinks", {})) == {"mqtt", "sparkplug"}, 30), d.log()
        render_label(folder / "label_001.png", waybill(1))
        assert wait_until(lambda: len(rec.results()) == 2 and len(_spb_ids(rec)) == 1, 90), d.log()
        assert _spb_ids(rec) == [rec.results()[1].json()["id"]]   # the reading stored before the SIGHUP: MQTT's only
        assert any(m.topic == "spBv1.0/ocr/NBIRTH/dock" for m in rec.snapshot())
        d.signal(signal.SIGTERM)
        assert d.wait(30) == 0
    finally:
        d.close()
        rec.close()
