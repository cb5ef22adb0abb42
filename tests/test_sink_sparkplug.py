"""The Sparkplug B sink against a real Mosquitto: a subscriber decodes every message and checks births before data,
seq order with its 255 -> 0 wrap, bdSeq across reconnects, the NDEATH will, rebirth on NCMD, and that no reading is
lost while the MQTT JSON sink beside it is dead."""
from __future__ import annotations

import dataclasses
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from broker import Recorder, TcpProxy, wait_until
from daemon.config import CameraConfig, Config, SparkplugConfig
from daemon.publish.outbox import Outbox
from daemon.publish.sinks.sparkplug import SparkplugSink
from daemon.publish.sinks.sparkplug_b import sparkplug_b_pb2 as pb
from publish_support import DEVICE, mqtt_cfg, outbox_cfg, put_result
from publish_support import cleanup  # noqa: F401  (a fixture, shared)

CAMERAS = ("cam1", "cam2")


def _cfg(port: int, tmp_path) -> Config:
    """outbox: where the sink keeps its bdSeq (beside the outbox file)."""
    return dataclasses.replace(Config(), device_id=DEVICE, mqtt=mqtt_cfg(port), outbox=outbox_cfg(tmp_path),
                               sparkplug=SparkplugConfig(enabled=True, group_id="plant"),
                               cameras=tuple(CameraConfig(name=c, kind="sample") for c in CAMERAS))


def _decoded(rec: Recorder) -> list[tuple[str, list[str], pb.Payload]]:
    out = []
    for m in rec.snapshot():
        parts = m.topic.split("/")   # spBv1.0 / group / kind / edge [/ device]
        out.append((parts[2], parts, pb.Payload.FromString(m.payload)))
    return out


def _metrics(p: pb.Payload) -> dict:
    values = {}
    for m in p.metrics:
        kind = m.WhichOneof("value")
        values[m.name] = None if m.is_null else getattr(m, kind) if kind else None
    return values


def check_session_order(msgs) -> dict:
    """Every message after NBIRTH has seq = previous + 1 mod 256; NBIRTH is seq 0; no DDATA before its device's
    DBIRTH in the same session; returns camera -> reading ids in DDATA order."""
    ids: dict[str, list[str]] = {}
    seq = None
    born: set[str] = set()
    for kind, parts, p in msgs:
        if kind == "NDEATH":
            continue
        if kind == "NBIRTH":
            assert p.seq == 0
            seq, born = 0, set()
            continue
        assert seq is not None, f"{kind} before any NBIRTH"
        assert p.seq == (seq + 1) % 256, (kind, p.seq, seq)
        seq = p.seq
        device = parts[4]
        if kind == "DBIRTH":
            born.add(device)
        elif kind == "DDATA":
            assert device in born, f"DDATA for {device} before its DBIRTH"
            ids.setdefault(device, []).append(_metrics(p)["Reading/Id"])
    return ids


def _recording(broker, cleanup) -> Recorder:
    rec = Recorder(broker.port, topic="spBv1.0/#")
    cleanup(rec.close)
    rec.wait_subscribed()
    return rec


def _started(cfg, tmp_path, cleanup) -> tuple[SparkplugSink, Outbox]:
    ob = Outbox(outbox_cfg(tmp_path), sinks=("sparkplug",))
    cleanup(ob.close)
    sink = SparkplugSink(cfg, ob.for_sink("sparkplug"))
    sink.start()
    cleanup(lambda: sink.stop(0.0))
    return sink, ob


def _ask_rebirth(broker, client_id: str) -> None:
    """A host application's NCMD Node Control/Rebirth = true."""
    host = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    host.connect("127.0.0.1", broker.port)
    host.loop_start()
    cmd = pb.Payload(timestamp=int(time.time() * 1000))
    m = cmd.metrics.add()
    m.name, m.datatype, m.boolean_value = "Node Control/Rebirth", 11, True
    host.publish(f"spBv1.0/plant/NCMD/{DEVICE}", cmd.SerializeToString(), qos=0).wait_for_publish(5)
    host.disconnect()
    host.loop_stop()


def test_births_come_before_data_and_seq_wraps_in_order_with_every_reading_delivered(broker, tmp_path, cleanup):
    rec = Recorder(broker.port, topic="spBv1.0/#")
    cleanup(rec.close)
    rec.wait_subscribed()
    ob = Outbox(outbox_cfg(tmp_path), sinks=("sparkplug",))
    cleanup(ob.close)
    sink = SparkplugSink(_cfg(broker.port, tmp_path), ob.for_sink("sparkplug"))
    sink.start()
    produced = {c: [] for c in CAMERAS}
    for i in range(300):   # more than 256 messages: seq wraps
        cam = CAMERAS[i % 2]
        produced[cam].append(put_result(ob, cam)[0])
        sink.wake()
    assert wait_until(lambda: ob.depth() == (0, 0), 60), sink.health()
    assert wait_until(lambda: sum(k == "DDATA" for k, _, _ in _decoded(rec)) >= 300, 20)
    msgs = _decoded(rec)
    assert [k for k, _, _ in msgs[:3]] == ["NBIRTH", "DBIRTH", "DBIRTH"]
    assert _metrics(msgs[0][2])["bdSeq"] == 0 and _metrics(msgs[0][2])["Node Control/Rebirth"] is False
    # Sparkplug 3.0: bdSeq is an Int64 (datatype 4); NBIRTH and DBIRTH at QoS 0, the data at sparkplug.qos (1)
    assert [m.datatype for m in msgs[0][2].metrics if m.name == "bdSeq"] == [4]
    kinds_qos = {(m.topic.split("/")[2], m.qos) for m in rec.snapshot()}
    assert kinds_qos == {("NBIRTH", 0), ("DBIRTH", 0), ("DDATA", 1)}, kinds_qos
    assert {m[1][4] for m in msgs[1:3]} == set(CAMERAS)
    assert _metrics(msgs[1][2])["Reading/Text"] is None   # no reading yet: null, typed
    assert check_session_order(msgs) == produced
    last = [p for k, parts, p in msgs if k == "DDATA" and parts[4] == "cam2"][-1]
    v = _metrics(last)
    assert v["Reading/Text"] == f"cam2-{150:06d}" and v["Readings"] == 150 and abs(v["Reading/Confidence"] - 0.98) < 1e-9
    assert v["Reading/Captured At"] > 1.7e12 and v["Reading/Lines"] == 1
    assert max(p.seq for _, _, p in msgs) == 255 and msgs[-1][2].seq == 302 % 256
    assert sink.counters.delivered == 300 and sink.health().up

    assert sink.stop(2.0) == 0
    assert wait_until(lambda: _decoded(rec)[-1][0] == "NDEATH", 5)
    assert _metrics(_decoded(rec)[-1][2])["bdSeq"] == 0   # our own NDEATH matches the NBIRTH


def test_a_cut_connection_sends_the_ndeath_will_and_the_next_session_is_born_again_with_the_next_bdseq(
        broker, tmp_path, cleanup):
    rec = Recorder(broker.port, topic="spBv1.0/#")
    cleanup(rec.close)
    rec.wait_subscribed()
    proxy = TcpProxy(broker.port)
    cleanup(proxy.close)
    ob = Outbox(outbox_cfg(tmp_path), sinks=("sparkplug",))
    cleanup(ob.close)
    sink = SparkplugSink(_cfg(proxy.port, tmp_path), ob.for_sink("sparkplug"))
    sink.start()
    cleanup(lambda: sink.stop(0.0))
    produced = []
    for i in range(400):
        produced.append(put_result(ob, "cam1")[0])
        sink.wake()
        if i in (100, 250):
            proxy.reset()   # RST: the broker sees the connection die and publishes the will
        time.sleep(0.002)
    assert wait_until(lambda: ob.depth() == (0, 0), 60), sink.health()
    msgs = _decoded(rec)
    kinds = [k for k, _, _ in msgs]
    assert kinds.count("NDEATH") >= 1 and kinds.count("NBIRTH") >= 2
    births = [_metrics(p)["bdSeq"] for k, _, p in msgs if k == "NBIRTH"]
    assert births == list(range(len(births)))   # one more per connection
    for i, (k, _, p) in enumerate(msgs):
        if k == "NDEATH":   # the will of the session before it
            previous = [_metrics(q)["bdSeq"] for kk, _, q in msgs[:i] if kk == "NBIRTH"][-1]
            assert _metrics(p)["bdSeq"] == previous
    # per session the order holds; across sessions nothing is missing (at least once: a re-send repeats an id)
    sessions, current = [], []
    for m in msgs:
        if m[0] == "NBIRTH" and current:
            sessions.append(current)
            current = []
        current.append(m)
    sessions.append(current)
    delivered = []
    for s in sessions:
        delivered += check_session_order(s).get("cam1", [])
    assert set(delivered) == set(produced)
    assert sink.counters.connects >= 2


def test_a_rebirth_command_repeats_nbirth_and_every_dbirth_with_the_same_bdseq(broker, tmp_path, cleanup):
    rec = _recording(broker, cleanup)
    sink, ob = _started(_cfg(broker.port, tmp_path), tmp_path, cleanup)
    put_result(ob, "cam1")
    sink.wake()
    assert wait_until(lambda: ob.depth()[0] == 0 and len(_decoded(rec)) >= 4, 20)
    _ask_rebirth(broker, "scada-host")
    assert wait_until(lambda: [k for k, _, _ in _decoded(rec)].count("NBIRTH") == 2, 10)
    put_result(ob, "cam1")
    sink.wake()
    assert wait_until(lambda: ob.depth()[0] == 0, 10)
    assert wait_until(lambda: [k for k, _, _ in _decoded(rec)][-1] == "DDATA", 10)
    msgs = _decoded(rec)
    rebirth = [i for i, (k, _, _) in enumerate(msgs) if k == "NBIRTH"][1]
    assert [k for k, _, _ in msgs[rebirth:rebirth + 3]] == ["NBIRTH", "DBIRTH", "DBIRTH"]
    assert _metrics(msgs[rebirth][2])["bdSeq"] == 0
    reborn = _metrics(next(p for k, parts, p in msgs[rebirth:] if k == "DBIRTH" and parts[4] == "cam1"))
    assert reborn["Reading/Text"] == "cam1-000001" and reborn["Readings"] == 1   # its last values
    check_session_order(msgs[rebirth:])


def test_a_down_broker_keeps_the_readings_for_sparkplug_and_they_arrive_after_it_starts(make_broker, tmp_path,
                                                                                       cleanup):
    b = make_broker()
    rec = Recorder(b.port, topic="spBv1.0/#", client_id="rec-spb-down")   # a persistent session, QoS 1
    cleanup(rec.close)
    rec.wait_subscribed()
    b.stop()   # the broker keeps the recorder's session on disk
    port = b.port
    ob = Outbox(outbox_cfg(tmp_path), sinks=("sparkplug",))
    cleanup(ob.close)
    sink = SparkplugSink(_cfg(port, tmp_path), ob.for_sink("sparkplug"))
    sink.start()
    cleanup(lambda: sink.stop(0.0))
    ids = [put_result(ob, "cam1")[0] for _ in range(20)]
    sink.wake()
    assert wait_until(lambda: sink.counters.connect_failures >= 2, 20)
    h = sink.health()
    assert not h.up and h.alive and h.backlog == 20 and h.last_error
    b.start()
    assert wait_until(lambda: ob.depth()[0] == 0, 30), sink.health()
    assert wait_until(lambda: sum(k == "DDATA" for k, _, _ in _decoded(rec)) >= 20, 10)
    assert check_session_order(_decoded(rec)) == {"cam1": ids}
    # bdSeq counts the connections the broker accepted, not the attempts while it was down
    assert [_metrics(p)["bdSeq"] for k, _, p in _decoded(rec) if k == "NBIRTH"] == [0]


def test_a_dead_mqtt_json_sink_does_not_hold_back_sparkplug_and_catches_up_later(broker, tmp_path, cleanup):
    from daemon.publish.sinks.mqtt import MqttSink

    rec = Recorder(broker.port, topic="#")
    cleanup(rec.close)
    rec.wait_subscribed()
    proxy = TcpProxy(broker.port)
    cleanup(proxy.close)
    proxy.blackhole()   # the JSON sink's broker path is dead: connects hang, nothing is answered
    ob = Outbox(outbox_cfg(tmp_path), sinks=("mqtt", "sparkplug"))
    cleanup(ob.close)
    json_sink = MqttSink(mqtt_cfg(proxy.port), DEVICE, ob.for_sink("mqtt"))
    spb = SparkplugSink(_cfg(broker.port, tmp_path), ob.for_sink("sparkplug"))
    for s in (json_sink, spb):
        s.start()
        cleanup(lambda s=s: s.stop(0.0))
    ids = [put_result(ob, "cam1")[0] for _ in range(50)]
    for s in (json_sink, spb):
        s.wake()
    assert wait_until(lambda: ob.for_sink("sparkplug").depth()[0] == 0, 20), spb.health()
    assert ob.for_sink("mqtt").depth()[0] == 50 and ob.depth()[0] == 50
    assert not json_sink.health().up and json_sink.health().backlog == 50 and spb.health().backlog == 0
    proxy.restore()
    assert wait_until(lambda: ob.depth() == (0, 0), 60), json_sink.health()
    assert [m.json()["id"] for m in rec.results()] == ids
    assert check_session_order(_decoded_spb(rec)) == {"cam1": ids}


def _decoded_spb(rec: Recorder):
    return [(m.topic.split("/")[2], m.topic.split("/"), pb.Payload.FromString(m.payload))
            for m in rec.snapshot() if m.topic.startswith("spBv1.0/")]


def test_bdseq_goes_on_across_a_restart_of_the_daemon(broker, tmp_path, cleanup):
    rec = Recorder(broker.port, topic="spBv1.0/#")
    cleanup(rec.close)
    rec.wait_subscribed()
    cfg = _cfg(broker.port, tmp_path)
    for run in range(3):
        ob = Outbox(cfg.outbox, sinks=("sparkplug",))
        sink = SparkplugSink(cfg, ob.for_sink("sparkplug"))
        sink.start()
        assert wait_until(lambda: sink.births == 1, 10)
        sink.stop(1.0)
        ob.close()
    assert wait_until(lambda: [k for k, _, _ in _decoded(rec)].count("NDEATH") == 3, 5)
    births = [_metrics(p)["bdSeq"] for k, _, p in _decoded(rec) if k == "NBIRTH"]
    deaths = [_metrics(p)["bdSeq"] for k, _, p in _decoded(rec) if k == "NDEATH"]
    assert births == deaths == [0, 1, 2]
    assert (tmp_path / "sparkplug-bdseq").read_text().strip() == "2"


def test_a_camera_a_reload_removes_gets_its_ddeath_and_is_not_born_again(broker, tmp_path, cleanup):
    """Found from outside: no DDEATH ever; a camera removed by a reload stayed online in the host, and a Rebirth
    brought it back with its last values. Sparkplug 3.0: an edge node that loses a device MUST publish its DDEATH."""
    rec = _recording(broker, cleanup)
    sink, ob = _started(_cfg(broker.port, tmp_path), tmp_path, cleanup)
    put_result(ob, "cam2")
    sink.wake()
    assert wait_until(lambda: ob.depth()[0] == 0 and [k for k, _, _ in _decoded(rec)][-1] == "DDATA", 20)
    sink.set_cameras(["cam1", "cam3"], ["cam2"])
    put_result(ob, "cam2")                      # what the removed camera left in the outbox, delivered after it
    assert wait_until(lambda: ob.depth()[0] == 0, 20)
    assert wait_until(lambda: ("DBIRTH", "cam3") in [(k, parts[-1]) for k, parts, _ in _decoded(rec)], 10)
    after = _decoded(rec)[4:]                   # past NBIRTH, DBIRTH cam1, DBIRTH cam2, DDATA cam2
    kinds = [(k, parts[-1]) for k, parts, _ in after]
    # the removed camera dies, the added one is born; its reading left in the outbox is delivered under a birth of
    # its own and followed by its death again, so the host never keeps it online
    assert kinds == [("DDEATH", "cam2"), ("DBIRTH", "cam3"), ("DBIRTH", "cam2"), ("DDATA", "cam2"),
                     ("DDEATH", "cam2")]
    check_session_order(_decoded(rec))          # the DDEATHs are in the session's seq too
    _ask_rebirth(broker, "scada-host-2")
    assert wait_until(lambda: [k for k, _, _ in _decoded(rec)].count("NBIRTH") == 2, 10)
    assert wait_until(lambda: sum(k == "DBIRTH" for k, _, _ in _decoded(rec)) >= 6, 10)
    msgs = _decoded(rec)
    rebirth = [i for i, (k, _, _) in enumerate(msgs) if k == "NBIRTH"][1]
    assert sorted(parts[-1] for k, parts, _ in msgs[rebirth:] if k == "DBIRTH") == ["cam1", "cam3"]


def test_with_a_primary_host_births_and_data_wait_for_its_state_online_and_stop_when_it_goes(broker, tmp_path,
                                                                                              cleanup):
    """Found from outside: readings published while Ignition was away reached no one (a host's session is clean)
    and left the outbox. With sparkplug.primary_host_id the edge node is born only while spBv1.0/STATE/<id> says
    online (Sparkplug 3.0), and goes (NDEATH) when it says offline; the readings wait in the outbox meanwhile."""
    import json

    rec = Recorder(broker.port, topic="spBv1.0/plant/#")
    cleanup(rec.close)
    rec.wait_subscribed()
    host = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ignition")
    host.connect("127.0.0.1", broker.port)
    host.loop_start()
    cleanup(host.loop_stop)

    def state(online: bool, stamp: int) -> None:
        host.publish("spBv1.0/STATE/ignition", json.dumps({"online": online, "timestamp": stamp}), qos=1,
                     retain=True).wait_for_publish(5)
    state(False, 1000)
    cfg = _cfg(broker.port, tmp_path)
    cfg = dataclasses.replace(cfg, sparkplug=dataclasses.replace(cfg.sparkplug, primary_host_id="ignition"))
    sink, ob = _started(cfg, tmp_path, cleanup)
    first = [put_result(ob, "cam1")[0] for _ in range(3)]
    sink.wake()
    assert wait_until(lambda: sink.up and "waiting for the primary host" in sink.health().last_error, 10)
    time.sleep(0.5)
    assert rec.snapshot() == [] and ob.depth()[0] == 3          # nothing while the host is away: all kept
    state(True, 2000)
    assert wait_until(lambda: ob.depth()[0] == 0, 10), sink.health()
    assert wait_until(lambda: sum(k == "DDATA" for k, _, _ in _decoded(rec)) == 3, 10)
    state(False, 3000)                                            # the host goes: NDEATH, nothing more
    assert wait_until(lambda: _decoded(rec)[-1][0] == "NDEATH", 10)
    later = [put_result(ob, "cam1")[0] for _ in range(2)]
    sink.wake()
    time.sleep(1.0)
    assert ob.depth()[0] == 2 and sum(k == "DDATA" for k, _, _ in _decoded(rec)) == 3
    state(False, 2500)                                            # an older STATE changes nothing
    state(True, 4000)
    assert wait_until(lambda: ob.depth()[0] == 0, 15), sink.health()
    assert wait_until(lambda: sum(k == "DDATA" for k, _, _ in _decoded(rec)) == 5, 10)
    msgs = _decoded(rec)
    births = [_metrics(p)["bdSeq"] for k, _, p in msgs if k == "NBIRTH"]
    assert len(births) == 2 and births[1] == births[0] + 1      # a new session for the host's return
    assert check_session_order(msgs) == {"cam1": first + later}
    state(True, 5000)                                             # cleanup: the retained STATE goes
    host.publish("spBv1.0/STATE/ignition", b"", retain=True).wait_for_publish(5)
    host.disconnect()
