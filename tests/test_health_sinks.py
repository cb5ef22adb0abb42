"""daemon/health.py with the outputs beside MQTT: a sink that is down is shown, not a reason; a dead or stuck sink
thread is unhealthy and stops the watchdog pings."""
from daemon.health import assess
from daemon.publish.sinks.base import SinkHealth


def _sink(name="opcua", up=True, alive=True, idle_s=0.1, backlog=0):
    return SinkHealth(name=name, up=up, alive=alive, backlog=backlog, oldest_undelivered_age_s=None,
                      failing_rows=0, dead_letters=0, idle_s=idle_s, last_error="" if up else "not connected")


def _verdict(*sinks):
    return assess(frames_progressing=True, stall_timeout_s=60, mqtt_enabled=False, delivery=None, rows=0,
                  delivery_still_s=0.0, max_undelivered_age_s=300, sinks=sinks)


def test_a_sink_that_is_down_with_a_backlog_is_healthy():
    v = _verdict(_sink(up=False, backlog=500), _sink("sparkplug"))
    assert v.healthy and v.watchdog_ok and v.reasons == ()


def test_a_dead_sink_thread_is_unhealthy_and_withholds_the_watchdog():
    v = _verdict(_sink(alive=False, backlog=7))
    assert not v.healthy and not v.watchdog_ok
    assert v.reasons == ("the opcua sink's thread is dead: nothing is delivered to it (7 waiting)",)


def test_a_stuck_sink_thread_is_unhealthy():
    v = _verdict(_sink("sparkplug", idle_s=500.0))
    assert not v.healthy and not v.watchdog_ok and "sparkplug sink is stuck" in v.reasons[0]
