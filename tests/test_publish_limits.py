"""Poison readings and delivery faults against a real Mosquitto: max_packet_size (MQTT 5 and 3.1.1),
message_size_limit, the configured payload cap, a failed delete, a refused row and its camera's order, and
jittered reconnects."""
from __future__ import annotations

import random
import sqlite3
import time
from collections import Counter

import pytest

from broker import Recorder, TcpProxy, free_port, wait_until
from daemon.backoff import backoff_delay_s
from daemon.publish.mqtt_client import Publisher, publish_packet_bytes
from daemon.publish.outbox import Outbox
from daemon.publish.payload import result_topic
from publish_support import DEVICE, PREFIX, check_delivery, mqtt_cfg, outbox_cfg, put_result
from publish_support import cleanup  # noqa: F401  (a fixture, shared)

BIG = "X" * 3000   # a reading whose message is about 3.5 kB



def _recorder(port, cleanup) -> Recorder:
    rec = Recorder(port)
    cleanup(rec)
    rec.wait_subscribed()
    return rec


def _publisher(cfg, ob, cleanup) -> Publisher:
    pub = Publisher(cfg, DEVICE, ob)
    cleanup(pub)
    pub.start()
    return pub


def _texts(rec) -> list[str]:
    return [m.json()["texts"][0]["text"] for m in rec.results()]


def test_reading_above_the_brokers_maximum_packet_size_is_dead_lettered_and_the_rest_flows(make_broker, tmp_path,
                                                                                          cleanup):
    broker = make_broker(max_packet_size=2000)
    rec = _recorder(broker.port, cleanup)
    ob = Outbox(outbox_cfg(tmp_path))
    cleanup(ob)
    # stored before the broker's limit is known
    small = [put_result(ob, "a")[0], put_result(ob, "a", text=BIG)[0], put_result(ob, "a")[0],
             put_result(ob, "b")[0], put_result(ob, "b")[0]]
    pub = _publisher(mqtt_cfg(broker.port), ob, cleanup)
    assert wait_until(lambda: len(rec.results()) == 4 and ob.depth()[0] == 0, 10), (len(rec.results()), ob.depth())
    assert ob.dead_letter_count() == 1 and pub.counters.dead_lettered == 1
    # once connected, the limit is checked at put(): the reading goes straight to the dead letters
    result = ob.put("b", result_topic(PREFIX, DEVICE, "b"), "dev:b:big", BIG.encode() * 2)
    assert result and result.reason == "dead_letter" and "Maximum Packet Size 2000" in result.detail
    put_result(ob, "a")
    pub.wake()
    assert wait_until(lambda: len(rec.results()) == 5 and ob.depth()[0] == 0, 10)
    delivery = check_delivery(rec.results())
    assert set(delivery.unique) == {small[0], small[2], small[3], small[4]} | {m.json()["id"]
                                                                                for m in rec.results()[-1:]}
    assert delivery.duplicates == 0 and delivery.per_camera_seq == {"a": [1, 3, 4], "b": [1, 2]}
    assert pub.counters.disconnects == 0 and "oversize" not in broker.log()
    reasons = [d.reason for d in ob.dead_letters()]
    assert len(reasons) == 2 and all("Maximum Packet Size 2000" in r for r in reasons)
    health = pub.delivery_health()
    assert health.dead_letters == 2 and health.connected and not health.needs_restart


def test_configured_payload_cap_dead_letters_at_put_even_without_a_broker(tmp_path, cleanup):
    ob = Outbox(outbox_cfg(tmp_path))
    cleanup(ob)
    pub = _publisher(mqtt_cfg(free_port(), max_payload_bytes=2048), ob, cleanup)   # nothing listens there
    msg_id, stored = put_result(ob, "a", text=BIG)
    assert stored and ob.depth() == (0, 0)
    [dead] = ob.dead_letters()
    assert dead.msg_id == msg_id and "mqtt.max_payload_bytes=2048" in dead.reason and dead.failures == 0
    put_result(ob, "a")
    # a broker that is merely down is no reason to restart
    assert wait_until(lambda: pub.counters.connect_failures >= 1, 5)
    health = pub.delivery_health()
    assert health.sender_alive and not health.connected and not health.needs_restart
    assert health.dead_letters == 1 and health.outbox_writable and health.oldest_undelivered_age_s is not None
    pub.stop(0)
    assert not pub.delivery_health().sender_alive and pub.delivery_health().needs_restart


def test_mqtt311_broker_that_drops_an_oversized_packet_dead_letters_it_after_n_cuts(make_broker, tmp_path, cleanup):
    """No CONNACK limit under 3.1.1: Mosquitto just closes the connection, and its RST can swallow the PUBACK of
    the small row before the big one. The publisher probes with one message in flight to find the culprit."""
    broker = make_broker(max_packet_size=2000)
    rec = _recorder(broker.port, cleanup)
    ob = Outbox(outbox_cfg(tmp_path, dead_letter_after_failures=3))
    cleanup(ob)
    ids = [put_result(ob, "a")[0], put_result(ob, "a", text=BIG)[0]] + [put_result(ob, cam)[0]
                                                                      for cam in ("a", "b") * 5]
    pub = _publisher(mqtt_cfg(broker.port, protocol="3.1.1", reconnect_min_s=0.05, reconnect_max_s=0.2), ob, cleanup)
    assert wait_until(lambda: ob.depth()[0] == 0, 20), (ob.depth(), pub.counters)
    assert ob.dead_letter_count() == 1
    [dead] = ob.dead_letters()
    assert dead.msg_id == ids[1] and dead.failures == 3 and "connection lost" in dead.reason
    assert wait_until(lambda: len(check_delivery(rec.results()).unique) == len(ids) - 1, 10)
    assert set(check_delivery(rec.results()).unique) == set(ids) - {ids[1]}
    # the first cut only starts a probe (one message in flight), which tells the big row from a small one
    # whose PUBACK the cut swallowed; then one cut per failure
    assert 4 <= pub.counters.disconnects <= 6 and pub.counters.delivery_failures == 3
    # rows taken back from paho (the probe's, or a cut's) are each counted and sent again, so every row was
    # published once more than it was requeued. How many were in flight at each cut is the scheduler's business
    # (from none to all the rows behind: requeued >= 10 failed on a loaded machine).
    c = pub.counters
    assert c.published - c.requeued == len(ids) and c.requeued <= c.disconnects * (len(ids) - 1), c
    assert pub.delivery_health().sender_alive


def test_message_size_limit_malformed_puback_no_longer_redelivers_the_rows_behind_forever(make_broker, tmp_path,
                                                                                        cleanup):
    """MQTT 5 with message_size_limit: paho calls Mosquitto's PUBACK malformed and drops the link before reading
    the PUBACKs behind it; the rows behind reached subscribers on every cycle (~70 copies each in 8 s)."""
    broker = make_broker(message_size_limit=2000)
    rec = _recorder(broker.port, cleanup)
    ob = Outbox(outbox_cfg(tmp_path, dead_letter_after_failures=2))
    cleanup(ob)
    big_id, _ = put_result(ob, "a", text=BIG)
    behind = [put_result(ob, cam)[0] for cam in ("a", "b") * 5]
    pub = _publisher(mqtt_cfg(broker.port, reconnect_min_s=0.05, reconnect_max_s=0.2), ob, cleanup)
    assert wait_until(lambda: ob.depth()[0] == 0, 20), (ob.depth(), pub.counters)
    assert [d.msg_id for d in ob.dead_letters()] == [big_id]
    assert wait_until(lambda: set(check_delivery(rec.results()).unique) == set(behind), 10)
    copies = Counter(m.json()["id"] for m in rec.results())
    assert max(copies.values()) <= 3, copies   # one per failed cycle at most, then once more
    # a probe cut, then one per failure; one more when paho re-sent the row before the sender dropped it
    assert 3 <= pub.counters.disconnects <= 4 and pub.counters.delivery_failures == 2


def test_a_size_the_broker_cut_the_connection_on_is_learned_and_larger_ones_are_not_tried(make_broker, tmp_path,
                                                                                          cleanup, caplog):
    """Found from outside: with message_size_limit, every oversized reading cost its own round of cuts and
    reconnects (8-10 s each) while every camera waited. Once one size is dead-lettered for its cuts, readings of
    that size and above (and above the largest acknowledged) go to the dead letters at once."""
    broker = make_broker(message_size_limit=2000)
    rec = _recorder(broker.port, cleanup)
    ob = Outbox(outbox_cfg(tmp_path, dead_letter_after_failures=2))
    cleanup(ob)
    first, _ = put_result(ob, "a", text=BIG)
    small = [put_result(ob, "b")[0] for _ in range(3)]
    pub = _publisher(mqtt_cfg(broker.port, reconnect_min_s=0.05, reconnect_max_s=0.2), ob, cleanup)
    assert wait_until(lambda: ob.depth()[0] == 0, 20), (ob.depth(), pub.counters)
    cuts = pub.counters.disconnects
    later = [put_result(ob, "a", text=BIG + "Y" * extra)[0] for extra in (0, 500)]   # as large, and larger
    small += [put_result(ob, "b")[0] for _ in range(3)]
    pub.wake()
    assert wait_until(lambda: ob.depth()[0] == 0, 20), (ob.depth(), pub.counters)
    assert [d.msg_id for d in ob.dead_letters()] == [first] + later
    assert pub.counters.disconnects == cuts            # not tried: no cut, no reconnect
    assert wait_until(lambda: set(check_delivery(rec.results()).unique) == set(small), 10)
    assert "closes the connection on a message of" in caplog.text


def test_failed_delete_after_puback_keeps_the_sender_alive_and_never_resends(broker, tmp_path, cleanup):
    """Another process holds the database's write lock past the busy timeout: delete_many fails after the
    PUBACKs. That used to end the sender thread for good."""
    rec = _recorder(broker.port, cleanup)
    ob = Outbox(outbox_cfg(tmp_path), busy_timeout_s=0.2)
    cleanup(ob)
    ids = [put_result(ob, "a")[0] for _ in range(6)]
    locker = sqlite3.connect(outbox_cfg(tmp_path).path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    pub = _publisher(mqtt_cfg(broker.port), ob, cleanup)
    assert wait_until(lambda: len(rec.results()) == 6 and pub.counters.sender_errors >= 2, 10)
    health = pub.delivery_health()
    assert health.sender_alive and health.pending_deletes == 6 and "locked" in health.last_error
    assert not health.needs_restart and ob.depth()[0] == 6
    put_result(ob, "a")   # refused while locked ("busy"), not raised
    locker.execute("ROLLBACK")
    locker.close()
    assert wait_until(lambda: ob.depth()[0] == 0 and pub.counters.acked == 6, 60)   # after the sender's backoff
    assert wait_until(lambda: pub.delivery_health().last_error == "", 10)   # cleared by the next good round
    assert pub.delivery_health().pending_deletes == 0
    assert sorted(m.json()["id"] for m in rec.results()) == sorted(ids)   # each exactly once
    ids.append(put_result(ob, "a")[0])
    pub.wake()
    assert wait_until(lambda: len(rec.results()) == 7, 10)


def test_a_refused_row_blocks_its_camera_until_its_retry_lands(broker, tmp_path, cleanup):
    """The broker refuses a1 once (PUBACK 0x87); a2 and a3, already in flight, are acknowledged. Their success
    used to clear camera a's backoff, so a1 was retried at once and overtaken by the camera's later rows."""
    rec = _recorder(broker.port, cleanup)
    proxy = TcpProxy(broker.port)
    cleanup(proxy)
    ob = Outbox(outbox_cfg(tmp_path))
    cleanup(ob)
    a1, _ = put_result(ob, "a")
    put_result(ob, "a")
    put_result(ob, "a")
    put_result(ob, "b")
    proxy.refuse_once(a1.encode())
    pub = _publisher(mqtt_cfg(proxy.port, reconnect_min_s=2.0, reconnect_max_s=4.0), ob, cleanup)
    assert wait_until(lambda: len(rec.results()) == 3 and pub.counters.acked == 3, 10)
    assert proxy.refused == 1 and pub.counters.puback_failures == 1
    health = pub.delivery_health()
    assert health.blocked_cameras == 1 and health.failing_rows == 1   # a2's success did not end the block
    later = [put_result(ob, "a")[0] for _ in range(3)] + [put_result(ob, "b")[0]]
    pub.wake()
    assert wait_until(lambda: later[-1] in {m.json()["id"] for m in rec.results()}, 10)
    ids = [m.json()["id"] for m in rec.results()]
    assert a1 not in ids and not set(later[:3]) & set(ids)   # camera b flows; camera a waits behind a1
    assert wait_until(lambda: ob.depth()[0] == 0, 10)   # after the 2-4 s backoff
    ids = [m.json()["id"] for m in rec.results() if m.json()["camera"] == "a"]
    assert ids[2:] == [a1] + later[:3]   # a2, a3 were in flight already: the one reorder left
    assert pub.delivery_health().blocked_cameras == 0 and pub.counters.puback_failures == 1


def test_reconnect_delays_are_jittered_within_doubling_bounds():
    # The MQTT client's first retry after a loss is attempt 1 (daemon/backoff.py): between min_s and 2 x min_s.
    for attempt, bound in enumerate([2.0, 4.0, 8.0, 10.0, 10.0], start=1):
        for _ in range(50):
            d = backoff_delay_s(attempt, 1.0, 10.0, random.Random())
            assert max(1.0, bound / 2) <= d <= bound
    # a plant of 50 devices after a broker restart: their first retries spread over the whole window
    firsts = sorted(backoff_delay_s(1, 1.0, 30.0, random.Random(seed)) for seed in range(50))
    assert firsts[0] < 1.2 and firsts[-1] > 1.8 and len({round(f, 3) for f in firsts}) > 40
    assert backoff_delay_s(1, 5.0, 5.0, random.Random()) == 5.0


def test_publish_packet_size_matches_the_broker_limit_arithmetic():
    # fixed header 1 + remaining length 1; topic length 2 + topic; packet id 2; MQTT 5 property length 1
    assert publish_packet_bytes("t", 10, mqtt5=True) == 1 + 1 + 2 + 1 + 2 + 1 + 10
    assert publish_packet_bytes("t", 200, mqtt5=False) == 1 + 2 + 2 + 1 + 2 + 200
