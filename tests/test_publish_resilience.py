"""Nothing lost: >= 1000 results through resets, a blackhole and a broker restart; broker SIGKILL; daemon SIGKILL."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from broker import Recorder, TcpProxy, wait_until
from daemon.publish.mqtt_client import Publisher
from daemon.publish.outbox import Outbox
from publish_support import DEVICE, Producer, check_delivery, mqtt_cfg, outbox_cfg

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CAMERAS = ["gate-1", "gate-2", "belt"]


def test_thousand_results_survive_resets_a_blackhole_and_a_broker_restart(broker, tmp_path):
    rec = Recorder(broker.port)   # straight to the broker: only the daemon's link goes through the proxy
    rec.wait_subscribed()
    proxy = TcpProxy(broker.port)
    ob = Outbox(outbox_cfg(tmp_path))
    max_inflight = 20
    # keepalive 1 s: a blackholed link is noticed only by the missing PINGRESP, within ~2 keepalives
    pub = Publisher(mqtt_cfg(proxy.port, keepalive_s=1, reconnect_min_s=0.05, reconnect_max_s=0.3,
                             max_inflight=max_inflight), DEVICE, ob)
    pub.start()
    try:
        producer = Producer(ob, pub, CAMERAS, 1200, pause_s=0.003).start()
        cuts = 0
        for _ in range(2):
            time.sleep(0.4)
            assert wait_until(lambda: pub.connected, 5)
            cuts += proxy.reset() > 0
        time.sleep(0.4)
        assert wait_until(lambda: pub.connected, 5)
        acked_before = pub.counters.acked
        proxy.blackhole()
        t0 = time.monotonic()
        assert wait_until(lambda: not pub.connected, 6), "a blackholed link must be noticed through the keepalive"
        noticed_s = time.monotonic() - t0
        assert pub.counters.acked - acked_before <= max_inflight   # nothing gets through a blackhole
        proxy.restore()
        cuts += 1
        assert wait_until(lambda: pub.connected, 5)
        time.sleep(0.02)
        backlog = ob.depth()[0]
        cuts += proxy.reset() > 0   # while the backlog of the blackhole drains: a full window in flight at the cut
        assert wait_until(lambda: pub.connected, 5)
        time.sleep(0.3)
        broker.restart()   # SIGTERM + start: the recorder's session and queued messages are saved on disk
        cuts += 1
        time.sleep(0.4)
        assert wait_until(lambda: pub.connected, 5)
        cuts += proxy.reset() > 0
        producer.join()
        produced = set(producer.produced)
        assert wait_until(lambda: produced <= {m.json()["id"] for m in rec.results()}, 30), \
            f"missing {len(produced - {m.json()['id'] for m in rec.results()})}"
        assert wait_until(lambda: ob.depth() == (0, 0), 10)
        time.sleep(0.3)
        d = check_delivery(rec.results())
        assert set(d.unique) == produced and len(produced) == 1200
        # duplicates only from messages in flight at a cut (ours, or the broker's to the recorder at its restart)
        assert d.duplicates <= cuts * max_inflight + max_inflight, d.duplicates
        # each row handed to paho once: what a cut left in flight is re-sent by paho as the same packet (DUP).
        # The one exception: a cut with nothing acknowledged since the oldest row in flight went out starts a
        # probe (the broker may be refusing that row), and the rows behind it are taken back and published
        # again from the outbox, same ids; each is counted as requeued, and only a cut can cause one
        c = pub.counters
        assert c.published - c.requeued == 1200, c
        assert c.requeued <= cuts * max_inflight, c
        assert pub.counters.disconnects >= 6 and pub.counters.reconnects >= 6
        print(f"\n1200 results, {cuts} cuts, blackhole noticed after {noticed_s:.1f} s, backlog {backlog} rows, "
              f"{d.duplicates} duplicates, counters {pub.counters}")
    finally:
        pub.stop(0)
        proxy.close()
        rec.close()
        ob.close()


def test_broker_sigkill_mid_run_resends_everything_it_had_not_acknowledged(broker, tmp_path):
    rec = Recorder(broker.port)
    rec.wait_subscribed()
    broker.restart()   # saves the recorder's session, so a crashed broker still knows where to queue messages
    ob = Outbox(outbox_cfg(tmp_path))
    acked: list[str] = []
    lock = threading.Lock()

    def on_acked(msg_id: str) -> None:
        with lock:
            acked.append(msg_id)

    pub = Publisher(mqtt_cfg(broker.port, keepalive_s=2), DEVICE, ob, on_acked=on_acked)
    pub.start()
    try:
        producer = Producer(ob, pub, CAMERAS, 600, pause_s=0.003).start()
        assert wait_until(lambda: len(acked) >= 150, 10)
        broker.kill9()
        time.sleep(0.5)   # let the client process PUBACKs already in its socket: those were acknowledged
        with lock:
            acked_before_kill = set(acked)
        assert not pub.connected
        broker.start()
        producer.join()
        produced = set(producer.produced)
        must_arrive = produced - acked_before_kill
        assert wait_until(lambda: must_arrive <= {m.json()["id"] for m in rec.results()}, 20)
        assert wait_until(lambda: ob.depth() == (0, 0), 10)
        time.sleep(0.3)
        d = check_delivery(rec.results())
        lost = produced - set(d.unique)
        # anything missing was acknowledged by the broker before it died: the broker's loss, not ours
        assert lost <= acked_before_kill
        assert pub.counters.reconnects >= 1
        print(f"\nbroker SIGKILL: {len(produced)} produced, {len(acked_before_kill)} acked before the kill, "
              f"{len(lost)} of those lost by the broker, {d.duplicates} duplicates")
    finally:
        pub.stop(0)
        rec.close()
        ob.close()


_DAEMON = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [{root!r}, {tests!r}]
    from daemon.publish.mqtt_client import Publisher
    from daemon.publish.outbox import Outbox
    from publish_support import DEVICE, mqtt_cfg, outbox_cfg, put_result
    ob = Outbox(outbox_cfg({tmp!r}))
    pub = Publisher(mqtt_cfg({port}, client_id="ocr-daemon-dev"), DEVICE, ob)
    pub.start()
    cams = {cams!r}
    i = 0
    while True:
        msg_id, ok = put_result(ob, cams[i % len(cams)])
        assert ok
        print(msg_id, flush=True)   # only once put() returned: durable from here on
        pub.wake()
        i += 1
        time.sleep(0.002)
""")


def test_daemon_sigkill_mid_run_then_restart_loses_nothing(broker, tmp_path):
    rec = Recorder(broker.port)
    rec.wait_subscribed()
    script = _DAEMON.format(root=str(ROOT), tests=str(TESTS), tmp=str(tmp_path), port=broker.port, cams=CAMERAS)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    reported: list[str] = []
    deadline = time.monotonic() + 20
    while len(reported) < 400 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        reported.append(line.strip())
    proc.kill()   # SIGKILL: no drain, no offline message, rows in flight unacknowledged
    proc.wait()
    assert len(reported) >= 400, "the daemon process did not get going"
    ob = Outbox(outbox_cfg(tmp_path))
    left = ob.depth()[0]
    pub = Publisher(mqtt_cfg(broker.port, client_id="ocr-daemon-dev"), DEVICE, ob)   # the restarted daemon
    pub.start()
    try:
        assert wait_until(lambda: set(reported) <= {m.json()["id"] for m in rec.results()}, 20)
        assert wait_until(lambda: ob.depth() == (0, 0), 10)
        d = check_delivery(rec.results())
        assert set(reported) <= set(d.unique)
        # the will told subscribers the daemon died; the restarted one said online again
        status = [m.payload for m in rec.on_topic(f"ocr/{DEVICE}/status")]
        assert b"offline" in status and status[-1] == b"online"
        print(f"\ndaemon SIGKILL: {len(reported)} reported put, {left} still in the outbox at restart, "
              f"{d.duplicates} duplicates")
    finally:
        pub.stop(0)
        rec.close()
        ob.close()
