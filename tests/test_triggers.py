"""The trigger board: ready -> waiting -> busy -> ready, every missed trigger counted and answered, subscribers told
of each change outside the lock, and many protocol threads offering at once with one lane taking."""
from __future__ import annotations

import threading

import pytest

from daemon.readings.triggers import (ACCEPTED, MISSED_BUSY, MISSED_STOPPING, MISSED_WAITING, SOURCES, BoardCounters,
                                      Trigger, TriggerBoard)


def _trigger(camera: str = "cam1", source: str = "modbus", **kw) -> Trigger:
    return Trigger(camera=camera, source=source, **kw)


def test_a_cycle_goes_ready_waiting_busy_ready_and_keeps_its_result():
    board = TriggerBoard("cam1")
    s = board.state()
    assert (s.ready, s.waiting, s.busy, s.last_result_id, s.counters) == (True, False, False, None, BoardCounters())
    assert board.take() is None and board.state().version == s.version   # nothing waits: no change

    answer = board.offer(_trigger(trigger_id="P-17", expected="LOT 42", fields={"lot": "42"}))
    assert (answer.accepted, answer.reason, answer.cycle_seq) == (True, ACCEPTED, 1)
    assert (answer.state.ready, answer.state.waiting, answer.state.busy) == (False, True, False)

    taken = board.take()
    assert (taken.trigger_id, taken.expected, dict(taken.fields)) == ("P-17", "LOT 42", {"lot": "42"})
    assert board.take() is None   # handed out once
    s = board.state()
    assert (s.ready, s.waiting, s.busy) == (False, False, True)

    board.finish(7, "good_read")
    s = board.state()
    assert (s.ready, s.busy, s.last_result_id, s.last_status, s.cycle_seq) == (True, False, 7, "good_read", 1)
    assert board.offer(_trigger()).cycle_seq == 2


def test_a_trigger_while_busy_or_while_one_waits_is_missed_counted_and_answered():
    board = TriggerBoard("cam1")
    assert board.offer(_trigger(trigger_id="1")).accepted
    waiting = board.offer(_trigger(trigger_id="2"))
    assert (waiting.accepted, waiting.reason, waiting.cycle_seq) == (False, MISSED_WAITING, None)
    assert board.take().trigger_id == "1"   # the first one is served, not the late one
    busy = board.offer(_trigger(trigger_id="3"))
    assert (busy.accepted, busy.reason) == (False, MISSED_BUSY)
    assert board.take() is None
    board.finish(1, "no_read")
    assert board.state().counters == BoardCounters(triggers=3, accepted=1, missed=2)
    assert busy.as_dict()["state"]["counters"] == {"triggers": 3, "accepted": 1, "missed": 2,
                                                     "recipe_changes": 0}


def test_subscribers_see_every_change_in_version_order_and_one_that_raises_is_kept():
    board = TriggerBoard("cam1")
    seen, failing_calls = [], []

    def failing(state):
        failing_calls.append(state.version)
        raise RuntimeError("a protocol bug")

    board.subscribe(failing)
    unsubscribe = board.subscribe(seen.append)
    board.offer(_trigger())
    board.offer(_trigger())   # missed: the counters changed
    board.take()
    board.finish(1, "good_read")
    assert [(s.waiting, s.busy, s.counters.missed) for s in seen] == [(True, False, 0), (True, False, 1),
                                                                      (False, True, 1), (False, False, 1)]
    assert [s.version for s in seen] == sorted(s.version for s in seen) and len(failing_calls) == 4
    unsubscribe()
    board.offer(_trigger())
    assert len(seen) == 4 and len(failing_calls) == 5


def test_a_subscriber_may_read_the_board_it_is_told_about():
    board = TriggerBoard("cam1")
    read_back = []
    board.subscribe(lambda state: read_back.append(board.state().version == state.version))
    board.offer(_trigger())
    assert read_back == [True]   # called outside the lock: no deadlock


def test_the_trigger_is_frozen_with_its_own_copy_of_the_fields_and_a_known_source():
    fields = {"lot": "42"}
    t = _trigger(fields=fields)
    fields["lot"] = "43"
    assert t.fields["lot"] == "42"
    with pytest.raises(TypeError):
        t.fields["lot"] = "44"
    assert t == Trigger(camera="cam1", source="modbus", fields={"lot": "42"}, received_at=t.received_at,
                        received_mono=t.received_mono)
    assert set(SOURCES) == {"mqtt", "http", "opcua", "modbus", "restart"}
    with pytest.raises(ValueError, match="source"):
        _trigger(source="gpio")
    with pytest.raises(ValueError, match="cam2"):
        TriggerBoard("cam1").offer(_trigger(camera="cam2"))


def test_many_protocol_threads_offering_while_the_lane_cycles_lose_no_trigger_and_serve_each_once():
    board = TriggerBoard("cam1")
    offers_per_thread, threads_n = 500, 4
    answers: list = []
    answers_lock = threading.Lock()
    served: list[str] = []
    done = threading.Event()

    def protocol(n: int) -> None:
        for i in range(offers_per_thread):
            a = board.offer(_trigger(trigger_id=f"{n}-{i}"))
            with answers_lock:
                answers.append(a)

    def lane() -> None:
        result_id = 0
        while not done.is_set() or board.state().waiting:
            t = board.take()
            if t is None:
                continue
            served.append(t.trigger_id)
            result_id += 1
            board.finish(result_id, "good_read")

    lane_thread = threading.Thread(target=lane)
    lane_thread.start()
    threads = [threading.Thread(target=protocol, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    done.set()
    lane_thread.join(30)
    assert not lane_thread.is_alive()

    c = board.state().counters
    accepted = [a for a in answers if a.accepted]
    assert c.triggers == len(answers) == offers_per_thread * threads_n
    assert c.accepted == len(accepted) == len(served) and c.missed == c.triggers - c.accepted
    assert sorted(a.cycle_seq for a in accepted) == list(range(1, len(accepted) + 1))
    assert len(set(served)) == len(served)
    assert all(a.reason in (MISSED_BUSY, MISSED_WAITING) for a in answers if not a.accepted)


def test_the_board_hears_whether_its_camera_streams_and_a_change_is_one_notification():
    from daemon.readings import tell_boards
    from daemon.sources.base import SourceHealth

    class Source:   # what tell_boards reads of a CaptureSource: its health
        def __init__(self, state, error=""):
            self.state, self.error = state, error

        def health(self):
            return SourceHealth(state=self.state, last_frame_at=0.0, heartbeat_at=0.0, error=self.error)

    boards = {"a": TriggerBoard("a"), "b": TriggerBoard("b"), "c": TriggerBoard("c")}
    seen = []
    boards["a"].subscribe(seen.append)
    sources = {"a": Source("connecting", "rtsp://***@cam: connection refused"), "b": Source("streaming")}
    tell_boards(boards, sources)
    tell_boards(boards, sources)                                   # no change: no second notification
    assert boards["a"].state().camera_error == "the camera is connecting: rtsp://***@cam: connection refused"
    assert boards["b"].state().camera_error is None
    assert boards["c"].state().camera_error == "the camera is not running"
    assert len(seen) == 1 and boards["a"].offer(_trigger(camera="a")).accepted   # still taken: answered no_read
    sources["a"] = Source("streaming")
    tell_boards(boards, sources)
    assert boards["a"].state().camera_error is None


def test_a_closed_board_misses_every_trigger_and_shows_why_whatever_the_camera_says():
    """Found from outside: during a SIGTERM's drain a PLC's trigger was acknowledged (busy) by a daemon whose
    cameras were gone, and answered only at the next start."""
    board = TriggerBoard("cam1")
    seen = []
    board.subscribe(seen.append)
    board.close("the daemon is stopping")
    answer = board.offer(_trigger())
    assert (answer.accepted, answer.reason, answer.cycle_seq) == (False, MISSED_STOPPING, None)
    assert answer.state.counters == BoardCounters(triggers=1, accepted=0, missed=1)   # counted, as a miss is
    board.set_camera_error(None)                      # the work loop's last word changes nothing now
    assert board.state().camera_error == "the daemon is stopping" and seen[0].camera_error == "the daemon is stopping"
    board.close("again")
    assert len(seen) == 2                             # the close, the offer; not the error nor the second close


def test_a_held_board_is_busy_until_the_lanes_answer_is_stored():
    board = TriggerBoard("cam1")
    board.hold()                                      # a cycle a restart interrupted, not yet answered
    assert board.state().busy and board.offer(_trigger()).reason == MISSED_BUSY
    assert board.take() is None                       # nothing was handed out
    board.finish(7, "no_read")
    state = board.state()
    assert state.ready and (state.last_result_id, state.last_status) == (7, "no_read")
    assert board.offer(_trigger()).accepted


def test_the_services_boards_start_not_streaming_until_the_work_loop_sees_the_camera(tmp_path):
    """Found from outside: Modbus showed trigger_ready while the camera was still opening."""
    from daemon import config
    from daemon.readings import refresh_boards

    cfg = config.from_dict({"cameras": [{"name": "cam1", "kind": "sample", "mode": "triggered"}],
                            "outbox": {"path": str(tmp_path / "outbox.sqlite3")}})
    boards: dict = {}
    refresh_boards(cfg, boards)
    assert boards["cam1"].state().camera_error == "the camera is not running yet"
