"""What counts as a reading lost to a full disk (issue 28 item 8): the recorder's ledger of refused readings,
against the outbox's real counters. A label refused frame after frame and stored once the disk has room is no
loss; one that left view unstored is one loss, however many frames were refused."""
from __future__ import annotations

from daemon.publish.outbox import OutboxCounters
from daemon.publish.unstored import UnstoredReadings

LABEL = frozenset({"SF7300000000"})
OTHER = frozenset({"SF7300007919"})
WINDOW_S = 10.0


def _ledger():
    counters = OutboxCounters()
    return UnstoredReadings(lambda: counters), counters


def test_a_label_refused_nineteen_times_and_stored_after_the_episode_is_no_loss():
    ledger, counters = _ledger()
    for i in range(19):   # one frame every 0.5 s while the disk is full
        ledger.refused("gate", LABEL, "disk_full", WINDOW_S, now=100.0 + i * 0.5)
        ledger.due(100.0 + i * 0.5)
    ledger.stored("gate", LABEL)   # the first frame after the disk took writes again
    assert ledger.due(1000.0) == 0 and ledger.flush() == 0
    assert counters.disk_full == 0 and counters.io_errors == 0


def test_a_label_that_left_view_unstored_is_one_loss_after_its_window():
    ledger, counters = _ledger()
    for i in range(19):
        ledger.refused("gate", LABEL, "disk_full", WINDOW_S, now=100.0 + i * 0.5)
    assert ledger.due(100.0 + 9.0 + WINDOW_S - 0.1) == 0   # still within the window of its last sighting
    assert ledger.due(100.0 + 9.0 + WINDOW_S) == 1
    assert counters.disk_full == 1
    ledger.stored("gate", LABEL)   # seen again much later: a new sighting, the old one stays lost
    assert ledger.flush() == 0 and counters.disk_full == 1


def test_a_frame_that_misses_a_line_is_the_same_reading_and_another_camera_is_not():
    ledger, counters = _ledger()
    both = LABEL | OTHER
    ledger.refused("gate", both, "io_error", WINDOW_S, now=0.0)
    ledger.refused("gate", LABEL, "io_error", WINDOW_S, now=1.0)    # one line missed: the same reading
    ledger.refused("belt", both, "io_error", WINDOW_S, now=1.0)     # another camera's own reading
    ledger.stored("gate", both)
    assert ledger.flush() == 1 and counters.io_errors == 1          # belt's


def test_without_a_dedup_window_every_refused_frame_is_a_reading_lost():
    ledger, counters = _ledger()
    for i in range(3):
        ledger.refused("gate", LABEL, "disk_full", 0.0, now=float(i))
    ledger.refused("gate", frozenset(), "disk_full", WINDOW_S, now=4.0)   # publish_empty: no texts to match
    ledger.stored("gate", LABEL)
    assert counters.disk_full == 4 and ledger.flush() == 0


def test_the_stop_counts_what_is_still_unstored_and_the_caps_are_not_counted_twice():
    ledger, counters = _ledger()
    ledger.refused("gate", LABEL, "disk_full", WINDOW_S, now=0.0)
    ledger.refused("belt", OTHER, "busy", WINDOW_S, now=0.0)
    ledger.refused("dock", LABEL, "refused_new", WINDOW_S, now=0.0)   # the cap refused it: lost if never stored
    ledger.lost("too_large")                                          # the outbox counted it (refused_new)
    ledger.lost("disk_full")                                          # a review message: nothing sends it again
    assert ledger.flush() == 3
    assert (counters.disk_full, counters.io_errors, counters.refused_new) == (2, 1, 1)
