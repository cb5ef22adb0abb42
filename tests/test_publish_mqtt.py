"""The publisher against a real Mosquitto: availability, refusals, ACL failures, auth, TLS, caps, stop."""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
import time

import pytest

from broker import Recorder, make_certs, wait_until
from daemon.config import TlsConfig
from daemon.publish.mqtt_client import Publisher
from daemon.publish.outbox import Outbox
from daemon.publish.payload import stats_topic, status_topic
from publish_support import DEVICE, PREFIX, Producer, check_delivery, mqtt_cfg, outbox_cfg, put_result
from publish_support import cleanup  # noqa: F401  (a fixture, shared)

STATUS = status_topic(PREFIX, DEVICE)



def _recorder(port, cleanup, **kw) -> Recorder:
    rec = Recorder(port, **kw)
    cleanup(rec)
    rec.wait_subscribed()
    return rec


class _Folder:
    def __init__(self, path):
        self.path = path

    def close(self):
        shutil.rmtree(self.path, ignore_errors=True)


def _certs(cleanup) -> dict:
    certs = make_certs()
    cleanup(_Folder(certs["dir"]))
    return certs


def _publisher(cfg, ob, cleanup, **kw) -> Publisher:
    pub = Publisher(cfg, DEVICE, ob, **kw)
    cleanup(pub)
    pub.start()
    return pub


def _acl_broker(make_broker, *writable_topics: str):
    """A broker whose ACL lets anyone read everything but write only the status topic and these."""
    broker = make_broker(start=False)
    rules = "".join(f"topic write {t}\n" for t in (STATUS, *writable_topics))
    acl = broker.file("acl", "topic read #\n" + rules)
    broker.conf_path.write_text(broker.conf_path.read_text() + f"acl_file {acl}\n")
    broker.start()
    return broker


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_broker_down_at_start_then_up_everything_arrives(make_broker, tmp_path, cleanup, protocol):
    broker = make_broker()
    rec = _recorder(broker.port, cleanup)
    broker.stop()   # SIGTERM saves the recorder's persistent session: messages will wait for it
    ob = Outbox(outbox_cfg(tmp_path))
    cleanup(ob)
    t0 = time.monotonic()
    pub = _publisher(mqtt_cfg(broker.port, protocol=protocol), ob, cleanup)
    assert time.monotonic() - t0 < 0.5, "start() must not wait for the broker"
    Producer(ob, pub, ["cam1", "cam2"], 60).start().join()
    time.sleep(0.5)
    assert not pub.connected and ob.depth()[0] == 60
    assert pub.counters.connect_failures >= 1 and pub.counters.acked == 0

    broker.start()
    assert wait_until(lambda: len(rec.results()) >= 60, 15), broker.log()
    d = check_delivery(rec.results())
    assert len(d.unique) == 60 and d.duplicates == 0
    assert wait_until(lambda: ob.depth() == (0, 0), 5)
    assert pub.connected and pub.counters.acked == 60
    assert wait_until(lambda: [m.payload for m in rec.on_topic(STATUS)][-1:] == [b"online"], 5)

    assert pub.stop(drain_timeout_s=5) == 0
    assert not pub.connected
    assert wait_until(lambda: rec.on_topic(STATUS)[-1].payload == b"offline", 5)
    # retained: a subscriber that comes later still learns the state
    late = _recorder(broker.port, cleanup, topic=STATUS, client_id="late", persistent=False)
    assert wait_until(lambda: late.snapshot(), 5)
    assert late.snapshot()[0].payload == b"offline" and late.snapshot()[0].retain


def test_acl_denied_topic_mqtt5_keeps_rows_queued_and_counts_failures(make_broker, tmp_path, cleanup):
    broker = _acl_broker(make_broker, f"{PREFIX}/{DEVICE}/allowed/text")
    rec = _recorder(broker.port, cleanup)
    ob = Outbox(outbox_cfg(tmp_path, dead_letter_after_failures=1000))
    cleanup(ob)
    for i in range(4):
        put_result(ob, "allowed")
        put_result(ob, "denied")
    pub = _publisher(mqtt_cfg(broker.port, reconnect_min_s=0.4, reconnect_max_s=0.8), ob, cleanup)
    assert wait_until(lambda: len(rec.results()) >= 4 and pub.counters.puback_failures >= 4, 10)
    time.sleep(2.0)
    # Mosquitto 2.0.11 answers a denied QoS 1 PUBLISH under MQTT 5 with PUBACK 0x87 "Not authorized"
    assert pub.last_puback_failure == "Not authorized (0x87)"
    assert {r.camera for r in ob.pending(100)} == {"denied"} and ob.depth()[0] == 4
    assert check_delivery(rec.results()).per_camera_seq == {"allowed": [1, 2, 3, 4]}
    failures = pub.counters.puback_failures
    # the first round refuses all 4; then the oldest denied row alone is retried with backoff (0.4 s doubling
    # to 0.8 s over ~2 s: 2 to 5 rounds), its camera's later rows wait behind it, no hot loop
    assert 4 + 2 <= failures <= 4 + 6, failures
    head = min(r.id for r in ob.pending(100))
    assert [r.failures for r in ob.pending(100)] == [failures - 3, 1, 1, 1] and ob.pending(1)[0].id == head
    health = pub.delivery_health()
    assert health.failing_rows == 4 and health.blocked_cameras == 1 and health.sender_alive
    assert health.connected and not health.needs_restart and health.dead_letters == 0
    assert pub.connected and pub.counters.disconnects == 0
    assert pub.stop(drain_timeout_s=0.5) == 4


def test_acl_denied_topic_mqtt311_is_invisible_to_the_client(make_broker, tmp_path, cleanup):
    """MQTT 3.1.1 has no PUBACK reason code: Mosquitto acknowledges and drops a denied publish, so the rows leave
    the outbox. This pins the behaviour that makes MQTT 5 the default."""
    broker = _acl_broker(make_broker)
    rec = _recorder(broker.port, cleanup)
    ob = Outbox(outbox_cfg(tmp_path))
    cleanup(ob)
    put_result(ob, "denied")
    pub = _publisher(mqtt_cfg(broker.port, protocol="3.1.1"), ob, cleanup)
    assert wait_until(lambda: pub.counters.acked == 1, 5)
    assert ob.depth()[0] == 0 and pub.counters.puback_failures == 0 and rec.results() == []


def _password_broker(make_broker, password: str):
    broker = make_broker(start=False, anonymous=False)
    pwfile = broker.file("passwd", "")
    subprocess.run(["mosquitto_passwd", "-b", pwfile, "ocr", password], check=True, capture_output=True)
    acl = broker.file("acl", "user ocr\ntopic readwrite #\n")
    broker.conf_path.write_text(broker.conf_path.read_text() + f"password_file {pwfile}\nacl_file {acl}\n")
    broker.start()
    return broker


def test_refused_connack_is_never_reported_connected(make_broker, tmp_path, cleanup):
    broker = _password_broker(make_broker, "right-horse-battery")
    (tmp_path / "pw").write_text("wrong-password\n")
    ob = Outbox(outbox_cfg(tmp_path))
    cleanup(ob)
    put_result(ob, "cam1")
    pub = _publisher(mqtt_cfg(broker.port, username="ocr", password_file=str(tmp_path / "pw")), ob, cleanup)
    seen_connected = []
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        seen_connected.append(pub.connected)
        time.sleep(0.005)
    assert not any(seen_connected)
    assert pub.counters.connect_failures >= 2   # refused, then retried with backoff
    assert pub.counters.reconnects == 0 and pub.counters.acked == 0 and ob.depth()[0] == 1
    assert "not authorised" in broker.log().lower() or "not authorized" in broker.log().lower()
    # /healthz's delivery.last_error says why, not only "not connected"
    why = pub.delivery_health().last_error
    assert "refused the connection" in why and ("authori" in why.lower() or "password" in why.lower()), why


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_password_from_env_or_file_authenticates_and_is_never_logged(make_broker, tmp_path, cleanup, caplog,
                                                                       monkeypatch, protocol):
    secret = "s3cret-Pa55-do-not-log"
    broker = _password_broker(make_broker, secret)
    rec = Recorder(broker.port, client_id="rec-auth")   # anonymous: refused; the recorder is not needed here
    rec.close()
    caplog.set_level(logging.DEBUG)   # paho's own debug log (CONNECT packets) included
    ob = Outbox(outbox_cfg(tmp_path))
    cleanup(ob)
    put_result(ob, "cam1")
    (tmp_path / "pw").write_text("wrong-" + secret + "\n")
    bad = _publisher(mqtt_cfg(broker.port, protocol=protocol, username="ocr", password_file=str(tmp_path / "pw"),
                              client_id="bad"), ob, cleanup)
    monkeypatch.setenv("OCR_TEST_MQTT_PASSWORD", secret)
    good = _publisher(mqtt_cfg(broker.port, protocol=protocol, username="ocr", password_env="OCR_TEST_MQTT_PASSWORD",
                               client_id="good"), ob, cleanup)
    assert wait_until(lambda: good.counters.acked == 1, 10)
    assert good.connected and not bad.connected
    good.stop(1)
    bad.stop(0)
    text = caplog.text
    assert "paho" in text and "CONNECT" in text   # the debug log was really captured
    assert secret not in text and secret not in repr([r.args for r in caplog.records])


@pytest.mark.parametrize("mutual", [False, True])
def test_tls_and_mutual_tls(make_broker, tmp_path, cleanup, mutual):
    certs = _certs(cleanup)
    broker = make_broker(tls_files={**certs, "require_certificate": mutual})
    rec = _recorder(broker.port, cleanup)
    ob = Outbox(outbox_cfg(tmp_path))
    cleanup(ob)
    put_result(ob, "cam1")
    tls = TlsConfig(enabled=True, ca_file=certs["ca"], cert_file=certs["client_cert"] if mutual else None,
                    key_file=certs["client_key"] if mutual else None)
    pub = _publisher(mqtt_cfg(broker.tls_port, tls=tls), ob, cleanup)
    assert wait_until(lambda: len(rec.results()) == 1, 10), broker.log()
    check_delivery(rec.results())
    pub.stop(1)
    if mutual:   # without a client certificate the TLS handshake fails: never connected, row kept
        ob2 = Outbox(outbox_cfg(tmp_path / "second"))
        cleanup(ob2)
        put_result(ob2, "cam1")
        anon = _publisher(mqtt_cfg(broker.tls_port, tls=TlsConfig(enabled=True, ca_file=certs["ca"]),
                                   client_id="no-cert"), ob2, cleanup)
        assert wait_until(lambda: anon.counters.connect_failures >= 1, 5)
        assert not anon.connected and ob2.depth()[0] == 1


def test_tls_with_an_unknown_ca_never_connects(make_broker, tmp_path, cleanup):
    certs, other = _certs(cleanup), _certs(cleanup)
    broker = make_broker(tls_files=certs)
    ob = Outbox(outbox_cfg(tmp_path))
    cleanup(ob)
    pub = _publisher(mqtt_cfg(broker.tls_port, tls=TlsConfig(enabled=True, ca_file=other["ca"])), ob, cleanup)
    assert wait_until(lambda: pub.counters.connect_failures >= 2, 5)
    assert not pub.connected


@pytest.mark.parametrize("policy", ["drop_oldest", "refuse_new"])
def test_outbox_cap_while_broker_down_applies_policy_and_counts(make_broker, tmp_path, cleanup, policy):
    broker = make_broker()
    rec = _recorder(broker.port, cleanup)
    broker.stop()
    ob = Outbox(outbox_cfg(tmp_path, max_rows=10, full_policy=policy))
    cleanup(ob)
    pub = _publisher(mqtt_cfg(broker.port), ob, cleanup)
    stored = [put_result(ob, "cam1") for _ in range(25)]
    assert ob.depth()[0] == 10
    if policy == "drop_oldest":
        assert ob.counters.dropped_oldest == 15 and all(ok for _, ok in stored)
        expected = [msg_id for msg_id, _ in stored[-10:]]
    else:
        assert ob.counters.put_refused_full == 15 and [ok for _, ok in stored] == [True] * 10 + [False] * 15
        expected = [msg_id for msg_id, _ in stored[:10]]
    broker.start()
    pub.wake()
    assert wait_until(lambda: len(rec.results()) >= 10, 10)
    time.sleep(0.2)
    d = check_delivery(rec.results())
    assert list(d.unique) == expected


@pytest.mark.parametrize("max_inflight,ceiling", [(3, 3), (50, 20)])
def test_max_inflight_is_respected(broker, tmp_path, cleanup, max_inflight, ceiling):
    """At most max_inflight unacknowledged, and never above the broker's MQTT 5 Receive Maximum (Mosquitto: 20)."""
    rec = _recorder(broker.port, cleanup)
    ob = Outbox(outbox_cfg(tmp_path))
    cleanup(ob)
    for _ in range(300):
        put_result(ob, "cam1")
    pub = _publisher(mqtt_cfg(broker.port, max_inflight=max_inflight), ob, cleanup)
    peak = 0
    while pub.counters.acked < 300:
        peak = max(peak, pub.inflight)
        time.sleep(0.0005)
        assert len(rec.results()) <= 300
    assert 1 <= peak <= ceiling
    assert pub.counters.disconnects == 0
    assert wait_until(lambda: len(rec.results()) == 300, 5)
    assert check_delivery(rec.results()).per_camera_seq["cam1"] == list(range(1, 301))


def test_stats_go_out_qos0_and_are_not_queued(make_broker, tmp_path, cleanup):
    broker = make_broker(start=False)
    ob = Outbox(outbox_cfg(tmp_path))
    cleanup(ob)
    pub = _publisher(mqtt_cfg(broker.port), ob, cleanup)
    assert not pub.connected
    pub.publish_stats({"before": "connect"})   # dropped: stats are only worth sending now
    broker.start()
    rec = _recorder(broker.port, cleanup, topic=stats_topic(PREFIX, DEVICE), client_id="stats")
    assert wait_until(lambda: pub.connected, 5)
    pub.publish_stats({"fps": {"cam1": 9.5}, "outbox_rows": 0})
    assert wait_until(lambda: len(rec.snapshot()) == 1, 5)
    assert json.loads(rec.snapshot()[0].payload) == {"fps": {"cam1": 9.5}, "outbox_rows": 0}
    time.sleep(0.3)
    assert len(rec.snapshot()) == 1 and ob.depth() == (0, 0)


def test_stop_with_broker_down_returns_within_drain_timeout_and_keeps_rows(make_broker, tmp_path, cleanup):
    broker = make_broker(start=False)
    ob = Outbox(outbox_cfg(tmp_path))
    cleanup(ob)
    for _ in range(5):
        put_result(ob, "cam1")
    pub = Publisher(mqtt_cfg(broker.port), DEVICE, ob)
    pub.start()
    t0 = time.monotonic()
    assert pub.stop(drain_timeout_s=0.5) == 5
    assert 0.4 < time.monotonic() - t0 < 3.0
    assert ob.depth()[0] == 5 and threading.active_count() < 50


def test_reconnect_attempts_back_off_between_min_and_max(make_broker, tmp_path, cleanup):
    broker = make_broker(start=False)   # nothing listens: every attempt is refused at once
    ob = Outbox(outbox_cfg(tmp_path))
    cleanup(ob)
    pub = _publisher(mqtt_cfg(broker.port, reconnect_min_s=0.1, reconnect_max_s=0.4), ob, cleanup)
    time.sleep(2.5)
    attempts = pub.counters.connect_failures
    # 0.1-0.2, 0.2-0.4, 0.2-0.4, ... s apart (jittered): 6 to 13 attempts in 2.5 s; no hot loop, no giving up
    assert 5 <= attempts <= 14, attempts
    broker.start()
    assert wait_until(lambda: pub.connected, 2)   # at most reconnect_max_s after the broker is back
