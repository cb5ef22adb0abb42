"""A paho network thread that dies is a 503, not a silent stop (hostile config, issue "hostile input" item 6).

check-config refuses a topic MQTT cannot carry; this is the defence behind it: a Publisher built directly with a
70,000-character topic prefix (its will topic overflows CONNECT) against a real Mosquitto. paho's thread ends at the
first CONNECT; delivery health must say so and /healthz's verdict must be unhealthy."""
import threading

from broker import wait_until
from daemon.health import assess
from daemon.publish.mqtt_client import Publisher
from daemon.publish.outbox import Outbox
from publish_support import DEVICE, mqtt_cfg, outbox_cfg
from publish_support import cleanup  # noqa: F401  (a fixture, shared)


def test_paho_thread_killed_by_an_oversized_topic_makes_delivery_unhealthy(broker, tmp_path):
    ob = Outbox(outbox_cfg(tmp_path))
    pub = Publisher(mqtt_cfg(broker.port, topic_prefix="p" * 70_000), DEVICE, ob)
    hook_calls = []
    old_hook = threading.excepthook
    threading.excepthook = lambda args: hook_calls.append(args.exc_type)   # paho's thread dies with a traceback
    try:
        pub.start()
        assert wait_until(lambda: not pub.delivery_health().network_alive, 30)
        facts = pub.delivery_health()
        assert facts.needs_restart and not facts.connected
        verdict = assess(frames_progressing=True, stall_timeout_s=60.0, mqtt_enabled=True, delivery=facts, rows=0,
                         delivery_still_s=0.0, max_undelivered_age_s=300.0)
        assert not verdict.healthy and any("network thread" in r for r in verdict.reasons)
        # paho clears Client._thread in a finally, before Python hands the exception to the hook: wait for both
        assert wait_until(lambda: hook_calls, 10)   # it really died of an exception, inside paho
    finally:
        threading.excepthook = old_hook
        pub.stop(0.5)
        ob.close()


def test_healthy_publisher_reports_its_network_thread_alive(broker, tmp_path):
    ob = Outbox(outbox_cfg(tmp_path))
    pub = Publisher(mqtt_cfg(broker.port), DEVICE, ob)
    try:
        pub.start()
        assert wait_until(lambda: pub.delivery_health().connected, 30)
        assert pub.delivery_health().network_alive and not pub.delivery_health().needs_restart
    finally:
        pub.stop(0.5)
        ob.close()
