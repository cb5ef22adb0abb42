"""daemon/health.py: what /healthz and the systemd watchdog conclude from the facts; pure, no threads."""
from dataclasses import dataclass
from typing import Optional

from daemon.health import DeliveryClock, Verdict, assess, observe


@dataclass(frozen=True)
class Facts:
    sender_alive: bool = True
    network_alive: bool = True
    connected: bool = True
    oldest_undelivered_age_s: Optional[float] = None
    failing_rows: int = 0
    dead_letters: int = 0
    outbox_writable: bool = True
    outbox_responsive: bool = True
    outbox_stuck_s: float = 0.0
    sender_idle_s: float = 0.5
    last_error: str = ""

    @property
    def needs_restart(self) -> bool:   # as DeliveryHealth says it
        return (not self.sender_alive or not self.network_alive or self.sender_idle_s > 120.0
                or self.outbox_stuck_s > 120.0)


MAX_AGE = 300.0


def judge(facts=Facts(), *, frames=True, rows=0, still=0.0, mqtt=True) -> Verdict:
    return assess(frames_progressing=frames, stall_timeout_s=60.0, mqtt_enabled=mqtt, delivery=facts, rows=rows,
                  delivery_still_s=still, max_undelivered_age_s=MAX_AGE)


def test_all_well_is_healthy_and_pings():
    assert judge() == Verdict(healthy=True, watchdog_ok=True, reasons=())
    assert judge(None) == Verdict(healthy=True, watchdog_ok=True, reasons=())   # nothing known about delivery


def test_stalled_frames_fail_both_as_before():
    v = judge(frames=False)
    assert not v.healthy and not v.watchdog_ok and "stall_timeout_s=60" in v.reasons[0]


def test_a_dead_sender_fails_health_and_starves_the_watchdog():
    v = judge(Facts(sender_alive=False, last_error="disk I/O error"), rows=5)
    assert not v.healthy and not v.watchdog_ok
    assert "sender thread is dead" in v.reasons[0] and "disk I/O error" in v.reasons[0]


def test_a_broker_that_is_down_is_no_reason_at_all():
    # Offline for an hour with old rows waiting: the outbox queues, a restart would not help.
    v = judge(Facts(connected=False, oldest_undelivered_age_s=3600.0), rows=900, still=3600.0)
    assert v == Verdict(healthy=True, watchdog_ok=True, reasons=())


def test_a_backlog_draining_after_an_outage_is_not_wedged():
    # Just reconnected: the oldest row is an hour old, but delivery moved (the connect) a moment ago.
    v = judge(Facts(oldest_undelivered_age_s=3600.0), rows=900, still=2.0)
    assert v.healthy and v.watchdog_ok


def test_connected_old_rows_and_no_acknowledgement_is_wedged():
    v = judge(Facts(oldest_undelivered_age_s=MAX_AGE + 1, failing_rows=1), rows=3, still=MAX_AGE + 1)
    assert not v.healthy and not v.watchdog_ok
    assert "wedged" in v.reasons[0] and "max_undelivered_age_s=300" in v.reasons[0]
    young = judge(Facts(oldest_undelivered_age_s=MAX_AGE - 1), rows=3, still=MAX_AGE + 1)
    assert young.healthy


def test_a_full_disk_fails_health_but_keeps_the_watchdog_fed():
    # The daemon stays up and resumes by itself; a restart would only lose the frames it holds.
    v = judge(Facts(outbox_writable=False, last_error="database or disk is full"))
    assert not v.healthy and v.watchdog_ok
    assert "cannot be written" in v.reasons[0] and "disk is full" in v.reasons[0]
    offline = judge(Facts(outbox_writable=False, connected=False), mqtt=False)
    assert not offline.healthy and offline.watchdog_ok


def test_a_stuck_sender_or_outbox_starves_the_watchdog():
    stuck = judge(Facts(sender_idle_s=200.0))
    assert not stuck.healthy and not stuck.watchdog_ok and "200 s" in stuck.reasons[0]
    locked = judge(Facts(outbox_responsive=False, outbox_stuck_s=130.0, last_error="outbox lock held"))
    assert not locked.watchdog_ok and "does not answer" in locked.reasons[0] and "130 s" in locked.reasons[0]


def test_a_slow_outbox_is_unhealthy_while_it_lasts_but_no_reason_to_restart():
    slow = judge(Facts(outbox_responsive=False, outbox_stuck_s=0.6))
    assert not slow.healthy and slow.watchdog_ok and "slow to answer" in slow.reasons[0]


def test_with_mqtt_off_the_sender_does_not_matter():
    assert judge(Facts(sender_alive=False), mqtt=False).healthy


def test_every_reason_is_listed():
    v = judge(Facts(sender_alive=False, outbox_writable=False), frames=False)
    assert len(v.reasons) == 3 and not v.healthy and not v.watchdog_ok


def test_the_delivery_clock_moves_on_acks_connects_and_an_empty_outbox_only():
    c = DeliveryClock(moved_at=0.0)
    c = observe(c, 10.0, connected=True, acked=0, rows=5)      # first look: the counter is new, and a connect
    assert c.moved_at == 10.0
    c = observe(c, 20.0, connected=True, acked=0, rows=5)      # nothing acknowledged: still
    assert c.moved_at == 10.0
    c = observe(c, 30.0, connected=True, acked=3, rows=2)      # acknowledgements
    assert c.moved_at == 30.0
    c = observe(c, 40.0, connected=False, acked=3, rows=2)     # a cut does not move it ...
    assert c.moved_at == 30.0
    c = observe(c, 50.0, connected=True, acked=3, rows=2)      # ... the reconnect does
    assert c.moved_at == 50.0
    c = observe(c, 60.0, connected=True, acked=3, rows=0)      # nothing waiting: nothing can be wedged
    assert c.moved_at == 60.0


def test_dead_mqtt_network_thread_is_unhealthy_and_not_cured_by_waiting():
    v = judge(Facts(network_alive=False), rows=3)
    assert not v.healthy and not v.watchdog_ok
    assert any("network thread" in r for r in v.reasons)


def test_a_full_disk_with_the_broker_up_is_its_own_reason_not_wedged_and_keeps_the_watchdog():
    # Found from outside: the broker acknowledged 20 messages whose rows could not be deleted (the disk full), so
    # nothing counted as acknowledged and delivery was called wedged; the watchdog stopped, and each restart sent
    # the same 20 again.
    v = judge(Facts(oldest_undelivered_age_s=MAX_AGE + 60, outbox_writable=False, last_error="database or disk is full"),
              rows=40, still=MAX_AGE + 60)
    assert not v.healthy and v.watchdog_ok
    assert len(v.reasons) == 1 and "cannot be written" in v.reasons[0] and "wedged" not in v.reasons[0]
