"""Health that tells the truth, on real parts: the service's /healthz, metrics and watchdog decision over a real
HTTP endpoint, a real outbox and a real publisher on Mosquitto. The decision itself is tests/test_health.py."""
import json
import time

import pytest

from broker import free_port, wait_until
from daemon import config
from daemon.metrics import Metrics, MetricsServer
from daemon.publish.outbox import Outbox
from daemon.service import Service
from daemon.status import status_line
from service_support import http_get
from publish_support import put_result


@pytest.fixture
def service_on(tmp_path):
    """A Service wired in-process (outbox, publisher, metrics endpoint) without cameras or models."""
    made = []

    def make(mqtt_port: int) -> tuple[Service, str]:
        cfg = config.from_dict({"device_id": "dock", "mqtt": {"host": "127.0.0.1", "port": mqtt_port,
                                                               "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
                                "outbox": {"path": str(tmp_path / "outbox.sqlite3")}})
        svc = Service(cfg, str(tmp_path / "config.yaml"))
        svc.outbox = Outbox(cfg.outbox)
        svc.metrics = Metrics(svc.snapshot)
        svc.start_sinks()
        svc.metrics_server = MetricsServer(svc.metrics, svc.health, "127.0.0.1", 0).start()
        made.append(svc)
        return svc, f"http://127.0.0.1:{svc.metrics_server.port}"

    yield make
    for svc in made:
        svc.publisher.stop(0.0)
        svc.metrics_server.stop()
        svc.outbox.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")   # the death is the point
def test_a_dead_sender_is_503_in_healthz_zero_in_metrics_and_stops_the_watchdog(broker, service_on):
    svc, base = service_on(broker.port)
    assert wait_until(lambda: svc.publisher.connected, 10)
    code, body = http_get(base + "/healthz")
    assert code == 200, body
    doc = json.loads(body)
    assert doc["healthy"] and doc["reasons"] == [] and doc["delivery"]["sender_alive"]
    assert "backend" in doc and "degraded" in doc   # the fields /healthz had before stay

    def die(*args, **kwargs):   # something the sender does not expect: its thread ends
        raise SystemExit("test: the sender thread dies")

    svc.outbox.pending = die
    put_result(svc.outbox, "belt")
    svc.publisher.wake()
    assert wait_until(lambda: not svc.publisher.delivery_health().sender_alive, 10)

    code, body = http_get(base + "/healthz")
    doc = json.loads(body)
    assert code == 503 and not doc["healthy"] and not doc["watchdog_ok"]
    assert any("sender thread is dead" in r for r in doc["reasons"]), doc
    assert doc["broker_connected"] and doc["outbox_rows"] == 1
    assert not svc.status.watchdog_ok(time.monotonic())
    metrics = http_get(base + "/metrics")[1]
    for line in ("ocr_sender_alive 0.0", "ocr_healthy 0.0", "ocr_outbox_writable 1.0", "ocr_dead_letters 0.0",
                 'ocr_outbox_lost_total{reason="disk_full"} 0.0', "ocr_outbox_dead_lettered_total 0.0"):
        assert line in metrics, line
    snap = svc.snapshot()   # what the stats topic carries
    assert snap["delivery"]["sender_alive"] is False and snap["health"]["reasons"]
    assert "UNHEALTHY: the MQTT sender thread is dead" in status_line(svc.snapshot())


def test_a_broker_that_is_down_shows_but_keeps_health_and_the_watchdog(service_on):
    svc, base = service_on(free_port())   # nobody listens there
    put_result(svc.outbox, "belt")
    code, body = http_get(base + "/healthz")
    doc = json.loads(body)
    assert code == 200 and doc["healthy"] and doc["reasons"] == []
    assert doc["broker_connected"] is False and doc["delivery"]["connected"] is False
    assert doc["outbox_rows"] == 1 and doc["delivery"]["oldest_undelivered_age_s"] is not None
    assert svc.status.watchdog_ok(time.monotonic())
    metrics = http_get(base + "/metrics")[1]
    assert "ocr_broker_connected 0.0" in metrics and "ocr_sender_alive 1.0" in metrics
    assert "ocr_healthy 1.0" in metrics and "ocr_outbox_oldest_age_seconds" in metrics


def test_a_station_of_triggered_cameras_idle_between_parts_keeps_health_and_the_watchdog(tmp_path):
    """A line that sends no trigger for an hour is idle by design, not stalled (found from outside: /healthz went 503
    and the watchdog stopped 60 s after the last part, so systemd restarted an idle station every 90 s). A cycle owed
    with no frame through OCR, or a camera that does not stream, is still a stall."""
    from types import SimpleNamespace

    from daemon.readings.triggers import Trigger, TriggerBoard
    from daemon.sources.base import SourceHealth
    from daemon.status import Counters, Status

    class Camera:
        def __init__(self, state):
            self.state = state

        def health(self):
            return SourceHealth(self.state, time.time(), time.time())

    cfg = config.from_dict({"device_id": "st1", "mqtt": {"enabled": False},
                            "cameras": [{"name": "st", "kind": "sample", "mode": "triggered"}],
                            "outbox": {"path": str(tmp_path / "outbox.sqlite3")}})
    board = TriggerBoard("st")
    camera = Camera("streaming")
    parts = SimpleNamespace(cfg=cfg, sources={"st": camera}, boards={"st": board},
                            last_progress=time.monotonic() - 2 * cfg.service.stall_timeout_s)
    status = Status(parts, Counters())
    assert status.progressing()                       # between parts: idle by design
    board.offer(Trigger(camera="st", source="modbus"))
    assert not status.progressing()                   # a part waits and nothing went through OCR: stalled
    board.take()
    assert not status.progressing()
    board.finish(1, "good_read")
    assert status.progressing()
    camera.state = "connecting"
    assert not status.progressing()                   # the camera is down: not idle
    camera.state = "streaming"
    parts.boards = {}                                 # a continuous camera that makes no progress is stalled
    assert not status.progressing()


def test_the_watchdog_error_is_logged_once_while_its_reason_goes_on_with_rising_figures(caplog):
    """Found from outside: "delivery is wedged ... 51 s old", "... 52 s old" was a new reason each turn, so the
    ERROR line came twice a second."""
    from types import SimpleNamespace

    from daemon.health import Verdict
    from daemon.status import Counters, Status

    status = Status(SimpleNamespace(), Counters())
    verdicts = [Verdict(False, False, (f"delivery is wedged: the oldest is {age} s old",)) for age in (51, 52, 53.5)]
    verdicts += [Verdict(False, False, ("no frame made progress within stall_timeout_s=60",)),
                 Verdict(True, True, ()), Verdict(False, False, ("delivery is wedged: the oldest is 9 s old",))]
    status.verdict = lambda now=None: verdicts.pop(0)
    assert [status.watchdog_ok(float(t)) for t in range(6)] == [False, False, False, False, True, False]
    logged = [r.getMessage() for r in caplog.records if "not pinging" in r.getMessage()]
    assert logged == ["not pinging the systemd watchdog: delivery is wedged: the oldest is 51 s old",
                      "not pinging the systemd watchdog: no frame made progress within stall_timeout_s=60",
                      "not pinging the systemd watchdog: delivery is wedged: the oldest is 9 s old"]


def test_a_camera_a_reload_removed_is_not_counted_as_down():
    """Found from outside: after a reload removed a camera, STATUS= said "2/3 cameras up" and ocr_source_up{camera}
    stayed 0 for ever (an alert on source_up == 0 fired with every camera up). Its counters go on."""
    from daemon.metrics import Metrics

    snap = {"cameras": {"gate": {"fps": 2.0, "state": "streaming", "frames": 10},
                        "old": {"fps": 0.0, "state": "removed", "frames": 7}},
            "mqtt": {"enabled": False, "connected": False}, "outbox": {"rows": 0},
            "health": {"healthy": True, "reasons": []}}
    assert status_line(snap).startswith("1/1 cameras up, 2.0 fps")
    text = Metrics(lambda: snap).exposition().decode()
    assert 'ocr_source_up{camera="gate"} 1.0' in text and 'ocr_source_up{camera="old"}' not in text
    assert 'ocr_frames_total{camera="old"} 7.0' in text
