"""Read cycles (daemon/readings/cycle.py): a triggered camera's lane with the real TriggerBoard, the real Recorder and
a real outbox on tmp_path; made-up OCR results (no models). Each cycle ends in exactly one ocr-result/5 message."""
import dataclasses
import json
import time
from pathlib import Path

import jsonschema
import numpy as np

from daemon import config
from daemon.evidence import NoEvidence
from daemon.publish.outbox import Outbox
from daemon.publish.unstored import UnstoredReadings
from daemon.readings import Recorder
from daemon.readings.cycle import CycleLane, CycleRules, cycle_status
from daemon.readings.triggers import Trigger, TriggerBoard
from daemon.readings.verify import Expectation
from daemon.sources import Frame
from daemon.status import Counters
from daemon.web.live import LiveView, NoLive
from readings_support import Result, line

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "daemon/schema/ocr-result-5.json").read_text())
LOT = "LOT 4711A"


def setup(tmp_path, rules=CycleRules(), recipe=None, live=None, evidence=None):
    cfg = config.from_dict({"device_id": "st1", "mqtt": {"enabled": False},
                            "cameras": [{"name": "cam", "kind": "sample"}],
                            "outbox": {"path": str(tmp_path / "outbox.sqlite3")}})
    outbox = Outbox(cfg.outbox)
    board = TriggerBoard("cam", list(rules.recipes), recipe)
    lane = CycleLane(cfg.cameras[0], board, rules, str(tmp_path / "cycles"))
    recorder = Recorder(cfg, outbox, Counters(), UnstoredReadings(lambda: outbox.counters),
                        engine=lambda: {"backend": "test"},
                        evidence=NoEvidence if evidence is None else (lambda: evidence),
                        page=NoLive if live is None else (lambda: live), wake=lambda: None)
    return cfg, outbox, board, lane, recorder


def trigger(board, trigger_id="p1", expected=None, at=None):
    now = time.time() if at is None else at
    return board.offer(Trigger(camera="cam", source="mqtt", trigger_id=trigger_id, expected=expected, recipe=None,
                               fields={}, received_at=now, received_mono=time.monotonic()))


def frame(at):
    return Frame("cam", np.zeros((60, 300, 3), np.uint8), at, source={"kind": "sample"})


def run(lane, recorder, frames_lines, t0):
    """The work loop's calls for one cycle: due (takes the trigger), then frames; returns what was recorded."""
    stored = [recorder.record(lane, r) for r in lane.due(time.time())]
    for i, lines in enumerate(frames_lines):
        f = frame(t0 + 0.01 * (i + 1))
        assert lane.wants(f)
        stored += [recorder.record(lane, r) for r in lane.readings(f, Result(lines), [], None)]
    return stored


def results(outbox):
    docs = [json.loads(r.payload) for r in outbox.pending(100)]
    for d in docs:
        jsonschema.validate(d, SCHEMA)
    return docs


def test_idle_camera_wants_no_frames_and_a_trigger_starts_one_cycle_with_one_result(tmp_path):
    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=3, expect=Expectation(text=LOT)))
    assert not lane.wants(frame(time.time()))           # no trigger: not even OCR'd
    t0 = time.time()
    assert trigger(board, at=t0).accepted
    assert run(lane, recorder, [[line(LOT)]] * 3, t0) == [True]
    [doc] = results(outbox)
    assert doc["schema"] == "ocr-result/5" and doc["status"] == "good_read" and doc["trigger_id"] == "p1"
    assert doc["result_id"] == doc["seq"] == 1 and doc["frames"] == 3
    assert doc["verification"]["verdict"] == "pass"
    assert board.state().ready and board.state().last_result_id == 1
    assert not lane.wants(frame(time.time()))


def test_a_wrong_digit_is_a_mismatch_that_names_the_character(tmp_path):
    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=2, expect=Expectation(text=LOT)))
    t0 = time.time()
    trigger(board, at=t0)
    run(lane, recorder, [[line("LOT 4711B")]] * 2, t0)
    [doc] = results(outbox)
    assert doc["status"] == "mismatch"
    bad = [c for c in doc["verification"]["chars"] if c["status"] != "ok"]
    assert len(bad) == 1 and bad[0]["status"] == "mismatch" and bad[0]["expected"] == "A" and bad[0]["read"] == "B"


def test_a_faint_and_a_smudged_character_fail_the_part_and_the_result_names_them(tmp_path):
    from daemon.ocr.results import CharCandidate
    from daemon.readings.verify import FAINT, SMUDGED

    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=2, expect=Expectation(text=LOT)))
    graded = tuple(CharCandidate(ch, 0.99, contrast=0.2 if i == 4 else 1.0, blot=1.8 if i == 6 else 0.1)
                   for i, ch in enumerate(LOT))
    printed = line(LOT)
    t0 = time.time()
    trigger(board, at=t0)
    run(lane, recorder, [[type(printed)(LOT, printed.confidence, printed.box, graded)]] * 2, t0)
    [doc] = results(outbox)           # validated against ocr-result/5, whose char statuses name both
    assert doc["status"] == "mismatch"
    bad = [(c["at"], c["status"], c.get("contrast"), c.get("blot")) for c in doc["verification"]["chars"]
           if c["status"] != "ok"]
    assert bad == [(4, FAINT, 0.2, None), (6, SMUDGED, None, 1.8)]


def test_a_triggers_own_expected_text_is_judged(tmp_path):
    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=1, expect=Expectation(text="LOT 0000")))
    t0 = time.time()
    trigger(board, expected=LOT, at=t0)
    run(lane, recorder, [[line(LOT)]], t0)
    assert results(outbox)[0]["status"] == "good_read"


def test_nothing_in_view_is_no_label_and_the_window_ends_the_cycle(tmp_path):
    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=50, window_ms=1.0))
    t0 = time.time() - 1.0   # the trigger came a second ago: its window has passed
    trigger(board, at=t0)
    assert run(lane, recorder, [[], []], t0) == []
    assert [recorder.record(lane, r) for r in lane.due(time.time())] == [True]
    [doc] = results(outbox)
    assert doc["status"] == "no_label" and doc["verification"] is None and doc["texts"] == []


def test_a_window_that_passed_without_a_frame_is_a_no_read_with_a_note_never_no_label(tmp_path):
    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=5, window_ms=1.0))
    trigger(board, at=time.time() - 1.0)
    lane.due(time.time())                                  # the cycle starts; its window has passed already
    assert [recorder.record(lane, r) for r in lane.due(time.time())] == [True]
    [doc] = results(outbox)
    assert doc["status"] == "no_read" and "no frame" in doc["note"] and "frames" not in doc


def test_lines_refused_by_the_filter_are_no_read_and_two_labels_are_multiple(tmp_path):
    rules = CycleRules(frames=1)
    cfg = config.from_dict({"device_id": "st1", "mqtt": {"enabled": False},
                            "cameras": [{"name": "cam", "kind": "sample", "min_confidence": 0.9}],
                            "outbox": {"path": str(tmp_path / "o.sqlite3")}})
    outbox = Outbox(cfg.outbox)
    board = TriggerBoard("cam")
    lane = CycleLane(cfg.cameras[0], board, rules, str(tmp_path / "cycles"))
    recorder = Recorder(cfg, outbox, Counters(), UnstoredReadings(lambda: outbox.counters),
                        engine=lambda: {"backend": "test"}, evidence=NoEvidence, page=NoLive, wake=lambda: None)
    t0 = time.time()
    trigger(board, "a", at=t0)
    run(lane, recorder, [[line(LOT, confidence=0.5)]], t0)
    trigger(board, "b", at=time.time())
    run(lane, recorder, [[line(LOT), line("SN 99", x=900.0, y=600.0)]], time.time() - 0.001)
    docs = results(outbox)
    assert [d["status"] for d in docs] == ["no_read", "multiple"] and [d["result_id"] for d in docs] == [1, 2]


def test_with_an_expectation_multiple_is_the_expected_print_twice_not_the_packs_other_print(tmp_path):
    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=1, expect=Expectation(text=LOT)))
    brand = line("ACME FOODS", x=600.0, y=500.0)          # the pack's own print: another label, not a second part
    for trigger_id, frame_lines in (("one", [line(LOT), brand]), ("two", [line(LOT), line(LOT, x=900.0, y=700.0)]),
                                    ("wrong", [line("LOT 4711B"), brand]),
                                    ("twice wrong", [line("LOT 4711B"), line("LOT 4711C", x=900.0, y=700.0)])):
        t0 = time.time()
        trigger(board, trigger_id, at=t0)
        run(lane, recorder, [frame_lines], t0)
    assert [d["status"] for d in results(outbox)] == ["good_read", "multiple", "mismatch", "multiple"]


def test_a_code_alone_expected_is_multiple_only_where_two_codes_carry_its_value(tmp_path):
    from daemon.codes.reader import Code

    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=1, expect=Expectation(code="4711")))

    def code(text, x):
        return Code("Code128", text, ((x, 10.0), (x + 80.0, 10.0), (x + 80.0, 40.0), (x, 40.0)))

    for trigger_id, codes in (("one", [code("4711", 10.0), code("9999", 300.0)]),
                              ("two", [code("4711", 10.0), code("4711-", 300.0)])):
        t0 = time.time()
        trigger(board, trigger_id, at=t0)
        for r in lane.due(time.time()):
            recorder.record(lane, r)
        f = frame(t0 + 0.01)
        assert lane.wants(f)
        for r in lane.readings(f, Result([line("ACME FOODS")]), codes, None):
            recorder.record(lane, r)
    assert [d["status"] for d in results(outbox)] == ["good_read", "multiple"]


def test_a_window_that_passed_while_its_frame_waited_for_the_ocr_still_reads_that_frame(tmp_path):
    # another camera's frame held the models past the window: the frame captured within it is read, not lost
    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=1, window_ms=100.0,
                                                                  expect=Expectation(text=LOT)))
    t0 = time.time() - 1.0
    trigger(board, at=t0)
    assert lane.in_cycle()                                 # a trigger waits: its camera's frames go first
    late = t0 + 0.5                                        # the window closed 0.4 s before the loop came back
    assert lane.due(late, waiting_since=t0 + 0.05) == []   # captured within it, waiting: the cycle stays open
    f = frame(t0 + 0.05)
    assert lane.wants(f)
    for r in lane.readings(f, Result([line(LOT)]), [], None):
        recorder.record(lane, r)
    for r in lane.due(late + 0.01, waiting_since=None):
        recorder.record(lane, r)
    assert [d["status"] for d in results(outbox)] == ["good_read"] and not lane.in_cycle()
    # a frame captured after the window does not hold the cycle open
    trigger(board, "p2", at=t0)
    assert lane.due(late) == [] and lane.in_cycle()        # the trigger taken: its cycle starts
    assert [r.cycle["status"] for r in lane.due(late, waiting_since=t0 + 0.2)] == ["no_read"]


def test_the_page_shows_a_cycles_result_once_it_ends_not_its_lines_voting(tmp_path):
    live = LiveView()
    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=2, window_ms=60_000.0), live=live)

    def states():
        return [(l["text"], l["state"]) for l in live.camera_view("cam")["lines"]]

    def read(f, lines):   # the service's _handle: the frame to the page (voting), then what it finished recorded
        readings = lane.readings(f, Result(lines), [], None)
        assert lane.voting
        live.frame("cam", f.image, f.captured_at, lines, None)
        return [recorder.record(lane, r) for r in readings]

    t0 = time.time()
    trigger(board, "a", at=t0)
    lane.due(time.time())
    f1, f2 = frame(t0 + 0.01), frame(t0 + 0.02)
    assert lane.wants(f1) and read(f1, [line("LOT 4711B", confidence=0.6)]) == []
    assert states() == [("LOT 4711B", "voting")]                       # the cycle is still open
    assert lane.wants(f2) and read(f2, [line(LOT), line("smudge", x=400.0, confidence=0.2)]) == [True]
    # The burst ended the cycle: its voted lines with their verdicts, drawn again (a new seq), nothing voting.
    assert states() == [(LOT, "kept"), ("smudge", "rejected")]
    assert live.camera_view("cam")["frame_seq"] == 3
    # One ended by a reload (flush) is settled alike; a cycle that read no frame leaves the page as it was.
    trigger(board, "b", at=time.time())
    lane.due(time.time())
    f3 = frame(time.time())
    assert lane.wants(f3) and read(f3, [line(LOT)]) == []
    assert states() == [(LOT, "voting")]
    assert [recorder.record(lane, r) for r in lane.flush("reload")] == [True]
    assert states() == [(LOT, "kept")]
    trigger(board, "c", at=time.time())
    lane.due(time.time())
    assert [recorder.record(lane, r) for r in lane.flush("reload")] == [True]
    assert states() == [(LOT, "kept")] and live.camera_view("cam")["frame_seq"] == 5
    outbox.close()


def test_cycle_status_rules():
    assert cycle_status(0, False, False, None, True) == "no_label"
    assert cycle_status(2, True, True, None, True) == "multiple"
    assert cycle_status(2, True, True, None, False) == "good_read"
    assert cycle_status(1, True, False, None, True) == "no_read"


def test_a_cycle_killed_before_its_result_was_stored_is_answered_no_read_after_the_restart(tmp_path):
    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=5))
    t0 = time.time()
    trigger(board, "part-9", expected=LOT, at=t0)
    run(lane, recorder, [[line(LOT)]], t0)            # one frame of five: the cycle is open ...
    assert outbox.depth()[0] == 0
    outbox.close()                                     # ... and the process dies here (nothing flushed)
    _, outbox2, board2, lane2, recorder2 = setup(tmp_path, CycleRules(frames=5))
    restarted = time.time()
    # Found from outside: the PLC saw trigger_ready before its last part was answered, and its next trigger was
    # accepted ahead of that answer. The board is busy until the answer is stored.
    assert board2.state().busy and not board2.offer(Trigger(camera="cam", source="modbus")).accepted
    assert [recorder2.record(lane2, r) for r in lane2.due(time.time())] == [True]
    [doc] = results(outbox2)
    assert doc["status"] == "no_read" and doc["trigger_id"] == "part-9" and doc["trigger_source"] == "restart"
    assert "interrupted" in doc["note"]
    # what was expected, and nothing read; how long the PLC waited, across the restart
    assert (doc["verification"]["verdict"], doc["verification"]["expected"]) == ("no_read", LOT)
    waited = doc["latency_ms"]["trigger_to_outbox"]
    assert (restarted - t0) * 1000.0 - 1.0 <= waited <= (time.time() - t0) * 1000.0 + 1.0
    assert lane2.due(time.time()) == []                # answered once
    state = board2.state()
    assert state.ready and (state.last_result_id, state.last_status) == (doc["result_id"], "no_read")
    outbox2.close()


def test_an_interrupted_cycle_with_the_largest_trigger_the_rules_allow_keeps_its_id(tmp_path):
    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=5))
    fields = {f"f{i:02d}" + "\u00e9" * 250: "\u4e2d" * 256 for i in range(32)}      # escaped 6 bytes a character
    board.offer(Trigger(camera="cam", source="http", trigger_id="big-1", expected=LOT, fields=fields))
    outbox.close()                                     # killed before the lane took it
    _, outbox2, board2, lane2, recorder2 = setup(tmp_path, CycleRules(frames=5))
    assert [recorder2.record(lane2, r) for r in lane2.due(time.time())] == [True]
    [doc] = results(outbox2)
    assert (doc["trigger_id"], doc["status"], doc["verification"]["expected"]) == ("big-1", "no_read", LOT)
    outbox2.close()


def test_a_trigger_while_busy_is_missed_and_counted(tmp_path):
    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=2))
    t0 = time.time()
    assert trigger(board, "1", at=t0).accepted
    lane.due(time.time())                              # the cycle starts
    answer = trigger(board, "2")
    assert not answer.accepted and board.state().counters.missed == 1


def test_the_recipe_a_trigger_names_judges_its_part_and_an_unknown_one_is_refused(tmp_path):
    from daemon.readings.trigger_commands import offer_command

    recipes = {"cans": Expectation(text=LOT), "jars": Expectation(text="LOT 4711B")}
    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=1, recipes=recipes), "cans")
    for body in (b'{"trigger_id": "1"}', b'{"trigger_id": "2", "recipe": "jars"}'):
        outcome, _ = offer_command({"cam": board}, "cam", body, "mqtt")
        assert outcome == "accepted"
        run(lane, recorder, [[line(LOT)]], time.time() - 0.001)
    outcome, answer = offer_command({"cam": board}, "cam", b'{"recipe": "bottles"}', "mqtt")
    assert outcome == "bad" and "unknown recipe 'bottles'" in json.loads(answer)["reason"]
    assert board.state().counters.triggers == 2          # the refused one triggered nothing
    docs = results(outbox)
    assert [(d["trigger_id"], d["recipe"], d["status"]) for d in docs] == [("1", "cans", "good_read"),
                                                                          ("2", "jars", "mismatch")]


def test_a_recipes_roi_is_the_part_of_the_frame_its_cycles_read(tmp_path):
    from daemon.readings import wanted_frames

    recipes = {"cans": Expectation(text=LOT), "jars": Expectation(text=LOT)}
    rules = CycleRules(frames=1, recipes=recipes, rois={"cans": (100, 10, 50, 20), "jars": (400, 0, 10, 10)})
    _, outbox, board, lane, recorder = setup(tmp_path, rules, "cans")
    image = np.arange(60 * 300 * 3, dtype=np.uint32).reshape(60, 300, 3).astype(np.uint8)
    t0 = time.time()
    assert wanted_frames([Frame("cam", image, t0, source={"kind": "sample"})], {"cam": lane}) == []   # idle
    trigger(board, "p1", at=t0)
    lane.due(time.time())
    [seen] = wanted_frames([Frame("cam", image, t0 + 0.01, source={"kind": "sample"})], {"cam": lane})
    assert seen.image.shape == (20, 50, 3) and np.array_equal(seen.image, image[10:30, 100:150])
    [reading] = lane.readings(seen, Result([line(LOT)]), [], None)
    assert recorder.record(lane, reading)

    # the other recipe's roi lies outside this 300x60 image: no frame is read, and the result says why
    board.select_recipe("jars")
    trigger(board, "p2", at=time.time())
    lane.due(time.time())
    assert wanted_frames([Frame("cam", image, time.time() + 0.01, source={"kind": "sample"})], {"cam": lane}) == []
    time.sleep(0.002)
    for reading in lane.flush():
        recorder.record(lane, reading)
    docs = results(outbox)
    assert [(d["trigger_id"], d["recipe"], d["status"]) for d in docs] == [("p1", "cans", "good_read"),
                                                                          ("p2", "jars", "no_read")]
    assert "recipe jars: roi [400, 0, 10, 10] lies outside the 300x60 frame" in docs[1]["note"]


def test_join_dots_blurs_the_frame_a_lane_reads_and_a_recipes_roi_comes_first(tmp_path):
    import cv2

    from daemon.readings import Lane, wanted_frames

    dots = np.full((60, 300, 3), 230, np.uint8)
    dots[20:40:4, 50:250:4] = 20                       # a grid of single-pixel dots
    joined = config.from_dict({"cameras": [{"name": "cam", "kind": "sample", "join_dots_px": 1.5}]}).cameras[0]
    [seen] = wanted_frames([Frame("cam", dots, time.time())], {"cam": Lane(joined)})
    assert np.array_equal(seen.image, cv2.GaussianBlur(dots, (0, 0), 1.5))
    plain = config.from_dict({"cameras": [{"name": "cam", "kind": "sample"}]}).cameras[0]
    assert wanted_frames([Frame("cam", dots, time.time())], {"cam": Lane(plain)})[0].image is dots

    _, _, board, lane, _ = setup(tmp_path, CycleRules(frames=1, recipes={"cans": Expectation(text=LOT)},
                                                      rois={"cans": (40, 10, 100, 40)}), "cans")
    lane.join_dots_px = 1.5
    t0 = time.time()
    trigger(board, at=t0)
    lane.due(time.time())
    [seen] = wanted_frames([Frame("cam", dots, t0 + 0.01)], {"cam": lane})
    assert np.array_equal(seen.image, cv2.GaussianBlur(np.ascontiguousarray(dots[10:50, 40:140]), (0, 0), 1.5))


def test_a_cycle_takes_no_more_frames_than_its_burst_and_a_lost_frame_is_said(tmp_path):
    from daemon.readings import wanted_frames

    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=1, window_ms=30.0))
    t0 = time.time()
    trigger(board, "p1", at=t0)
    lane.due(time.time())
    [taken] = wanted_frames([frame(t0 + 0.01)], {"cam": lane})
    # the next frame arrives while the first is still in the models: the one-frame burst has its frame
    assert wanted_frames([frame(t0 + 0.02)], {"cam": lane}) == []
    for r in lane.readings(taken, Result([line(LOT)]), [], None):
        recorder.record(lane, r)

    trigger(board, "p2", at=time.time())
    lane.due(time.time())
    assert len(wanted_frames([frame(time.time() + 0.01)], {"cam": lane})) == 1   # taken, and its OCR fails
    time.sleep(0.04)
    for r in lane.due(time.time()):
        recorder.record(lane, r)
    docs = results(outbox)
    assert (docs[0]["trigger_id"], docs[0]["status"]) == ("p1", "good_read")
    assert docs[1]["trigger_id"] == "p2" and docs[1]["status"] == "no_read"
    assert "could not be read" in docs[1]["note"]


def test_the_first_frame_after_a_trigger_is_read_even_before_the_loop_turns(tmp_path):
    """The loop waits for frames; a trigger accepted meanwhile must not lose the first frame after it to an idle
    lane (the cycle would wait a frame period longer)."""
    from daemon.readings import wanted_frames

    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=1, expect=Expectation(text=LOT)))
    t0 = time.time()
    trigger(board, "p1", at=t0)                                      # no lane.due() in between
    assert wanted_frames([frame(t0 - 0.01)], {"cam": lane}) == []   # captured before the trigger
    [first] = wanted_frames([frame(t0 + 0.01)], {"cam": lane})
    for r in lane.readings(first, Result([line(LOT)]), [], None):
        recorder.record(lane, r)
    assert [(d["trigger_id"], d["status"]) for d in results(outbox)] == [("p1", "good_read")]


# ---------------------------------------------------------------- what the trigger brings, and when it came

DATED = Expectation(template="LOT {lot}\nEXP {date:%Y-%m-%d}")


def test_a_trigger_whose_template_fields_are_missing_is_refused_not_failed(tmp_path):
    from daemon.readings.trigger_commands import offer_command

    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=1, recipes={"dated": DATED}), "dated")
    outcome, answer = offer_command({"cam": board}, "cam", b'{"trigger_id": "7", "fields": {"lot": "4711A"}}',
                                    "mqtt")
    doc = json.loads(answer)
    assert outcome == "bad" and not doc["accepted"] and doc["trigger_id"] == "7"
    assert doc["reason"].startswith("refused: recipe dated cannot be resolved") and "field date" in doc["reason"]
    state = board.state()
    assert state.ready and state.counters.triggers == 0 and lane.due(time.time()) == []   # nothing runs
    assert not (tmp_path / "cycles" / "cam.json").exists()                                 # nothing to answer
    outcome, _ = offer_command({"cam": board}, "cam",
                               b'{"trigger_id": "8", "fields": {"lot": "4711A", "date": "2027-01-06"}}', "mqtt")
    assert outcome == "accepted"
    run(lane, recorder, [[line(LOT), line("EXP 2027-01-06", y=55.0)]], time.time() - 0.001)
    assert [(d["trigger_id"], d["status"]) for d in results(outbox)] == [("8", "good_read")]


def test_a_recipes_own_field_values_fill_what_a_trigger_does_not_send(tmp_path):
    import datetime

    rules = CycleRules(frames=1, recipes={"dated": DATED}, fields={"dated": {"lot": "4711A", "date": "today+30"}})
    _, outbox, board, lane, recorder = setup(tmp_path, rules, "dated")
    t0 = time.time()
    expiry = (datetime.date.fromtimestamp(t0) + datetime.timedelta(days=30)).isoformat()
    assert board.offer(Trigger(camera="cam", source="modbus", received_at=t0)).accepted   # Modbus sends no fields
    run(lane, recorder, [[line(LOT), line(f"EXP {expiry}", y=55.0)]], t0)
    assert board.offer(Trigger(camera="cam", source="mqtt", fields={"lot": "4711B"}, received_at=time.time())).accepted
    run(lane, recorder, [[line(LOT), line(f"EXP {expiry}", y=55.0)]], time.time() - 0.001)   # the trigger's lot wins
    docs = results(outbox)
    assert [d["status"] for d in docs] == ["good_read", "mismatch"]
    assert docs[1]["verification"]["expected"] == f"LOT 4711B\nEXP {expiry}"


def test_today_is_the_day_the_trigger_came_not_the_day_the_cycle_ended(tmp_path):
    import datetime

    cfg, outbox, board, _, recorder = setup(tmp_path)
    days = {}

    def local_day(at: float) -> datetime.date:   # a clock whose day ends at t_midnight
        days[at] = datetime.date(2026, 12, 7) if at < t_midnight else datetime.date(2026, 12, 8)
        return days[at]

    t_midnight = time.time() + 0.5
    lane = CycleLane(cfg.cameras[0], board, CycleRules(frames=2, window_ms=60_000.0, recipes={"dated": DATED}),
                     str(tmp_path / "cycles"), today=local_day)
    t0 = t_midnight - 0.2   # 23:59:59.8
    assert board.offer(Trigger(camera="cam", source="mqtt", recipe="dated",
                               fields={"lot": "4711A", "date": "today+30"}, received_at=t0)).accepted
    lane.due(time.time())
    for at in (t0 + 0.1, t_midnight + 0.1):   # the burst's last frame comes after midnight
        f = frame(at)
        assert lane.wants(f)
        for r in lane.readings(f, Result([line(LOT), line("EXP 2027-01-06", y=55.0)]), [], None):
            recorder.record(lane, r)
    [doc] = results(outbox)
    assert doc["status"] == "good_read" and doc["verification"]["expected"].endswith("2027-01-06")


def test_a_print_that_carries_one_line_twice_is_judged_on_both(tmp_path):
    twice = Expectation(text=f"{LOT}\n{LOT}")
    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=2, expect=twice))
    for lines in ([line(LOT), line(LOT, y=55.0)], [line(LOT)]):
        trigger(board, at=time.time())
        run(lane, recorder, [lines] * 2, time.time() - 0.001)
    docs = results(outbox)
    assert [d["status"] for d in docs] == ["good_read", "mismatch"]
    assert [len(d["texts"]) for d in docs] == [2, 1]


def test_a_cycle_ended_by_a_reload_before_any_frame_says_so_not_that_no_frame_came(tmp_path):
    """Found from outside: a reload ended a cycle 1.4 s into its 4 s window with the note "no frame captured ...
    (is the camera streaming?)", which was false."""
    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=4, window_ms=60_000.0))
    trigger(board, "r1", at=time.time())
    lane.due(time.time())                                  # the cycle starts; no frame yet
    [reading] = lane.flush("a config reload")
    recorder.record(lane, reading)
    [doc] = results(outbox)
    assert doc["status"] == "no_read" and doc["note"] == "ended before a frame was read: a config reload"


# ---------------------------------------------------------------- the evidence and the page of a result


def evidence_store(tmp_path):
    from daemon.config import EvidenceConfig
    from daemon.evidence import EvidenceStore

    return EvidenceStore(dataclasses.replace(EvidenceConfig(), dir=str(tmp_path / "ev"), min_free_bytes=0)).start()


def burst(lane, recorder, frames_lines, t0):
    """A cycle's frames, each 1280x720 (every line's box lies on it): the work loop's calls; what was recorded."""
    stored = [recorder.record(lane, r) for r in lane.due(time.time())]
    for i, lines in enumerate(frames_lines):
        f = Frame("cam", np.full((720, 1280, 3), 200, np.uint8), t0 + 0.01 * (i + 1), source={"kind": "sample"})
        assert lane.wants(f)
        stored += [recorder.record(lane, r) for r in lane.readings(f, Result(lines), [], None)]
    return stored


def page_fails(live, store):
    from daemon.web.state import page_state

    return page_state({}, {"cam": {}}, {"cam": live.camera_view("cam")}, store.snapshot(), {}, 1000,
                      store.crops)["cameras"]["cam"]["fails"]


def test_every_line_the_kept_frame_read_has_its_crop_the_checked_line_first(tmp_path):
    """Found from outside: 82 of 100 results lacked a crop, 32 the crop of the very line checked: only the lines of
    the most confident label got a box, and the page drew a broken image for each of the others."""
    store, live = evidence_store(tmp_path), LiveView()
    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=2, expect=Expectation(text=LOT)),
                                             live=live, evidence=store)
    pack = [line("ACME FOODS LTD", x=700.0, y=400.0), line("NET WT 500 G", x=700.0, y=440.0),
            line("BEST BEFORE END", x=700.0, y=480.0)]   # another label, more confident than the lot code's
    t0 = time.time()
    trigger(board, "p1", at=t0)
    assert burst(lane, recorder, [pack + [line("LOT 4711B", x=40.0, y=60.0)]] * 2, t0) == [True]
    store.stop()
    [doc] = results(outbox)
    assert doc["status"] == "mismatch" and len(doc["texts"]) == 4
    texts = [t["text"] for t in doc["texts"]]
    checked = texts.index("LOT 4711B")
    for k in range(4):
        assert store.path(doc["id"], k) is not None, (k, texts[k])
    crop = cv2_read(store.path(doc["id"], checked))
    assert crop.shape[:2] == (38, 208)                       # the checked line's own box plus the margin
    [fail] = page_fails(live, store)
    assert fail["evidence_crops"] == [0, 1, 2, 3] and fail["evidence_lines"] == 4


def test_the_kept_frame_is_one_that_read_the_checked_line_though_another_read_more(tmp_path):
    store = evidence_store(tmp_path)
    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=2, expect=Expectation(text=LOT)),
                                             evidence=store)
    pack = [line("ACME FOODS LTD", x=700.0, y=400.0), line("NET WT 500 G", x=700.0, y=440.0),
            line("BEST BEFORE END", x=700.0, y=480.0)]
    extra = [line("SN 42", x=700.0, y=520.0), line("MADE IN EU", x=700.0, y=560.0)]
    glare = pack + extra                                   # the lot code lost in glare: more lines, none checked
    weaker = [dataclasses.replace(ln, confidence=0.8) for ln in pack] + [line("LOT 4711B", x=40.0, y=60.0)]
    t0 = time.time()
    trigger(board, "p1", at=t0)
    burst(lane, recorder, [glare, weaker], t0)
    store.stop()
    [doc] = results(outbox)
    texts = [t["text"] for t in doc["texts"]]
    assert doc["status"] == "mismatch" and set(texts) == {ln.text for ln in glare + weaker}, texts
    assert store.path(doc["id"], texts.index("LOT 4711B")) is not None
    assert set(store.crops(doc["id"])) == {texts.index(ln.text) for ln in weaker}   # the lines that frame read


def test_a_line_voted_from_other_frames_has_no_crop_and_the_page_links_none(tmp_path):
    store, live = evidence_store(tmp_path), LiveView()
    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=3, expect=Expectation(text=LOT)),
                                             live=live, evidence=store)
    best = [line("LOT 4711B", x=40.0, y=60.0), line("EXP 2027-01", x=40.0, y=100.0)]     # the kept frame
    weak = [line("LOT 4711B", x=42.0, y=60.0, confidence=0.7), line("SN 42", x=42.0, y=140.0, confidence=0.7)]
    t0 = time.time()
    trigger(board, "p1", at=t0)
    burst(lane, recorder, [best, weak, weak], t0)
    store.stop()
    [doc] = results(outbox)
    texts = [t["text"] for t in doc["texts"]]
    assert sorted(texts) == ["EXP 2027-01", "LOT 4711B", "SN 42"], texts
    sn = texts.index("SN 42")                                 # read only on frames that were not kept
    assert store.path(doc["id"], sn) is None
    assert set(store.crops(doc["id"])) == {k for k in range(3) if k != sn}
    [fail] = page_fails(live, store)
    assert fail["evidence_crops"] == sorted(set(range(3)) - {sn}) and fail["evidence_lines"] == 2


def test_a_checked_line_the_filter_refused_has_its_crop_after_the_messages_lines(tmp_path):
    """Found from outside: a lot code read below min_confidence failed its part (mismatch, read LOT 4711B) with no
    crop of it anywhere, since only the message's lines got one. Its crop is numbered after them."""
    store, live = evidence_store(tmp_path), LiveView()
    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=2, expect=Expectation(text=LOT)),
                                             live=live, evidence=store)
    seen = [line("ACME FOODS LTD", x=700.0, y=400.0), line("LOT 4711B", x=40.0, y=60.0, confidence=0.3)]
    t0 = time.time()
    trigger(board, "p1", at=t0)
    burst(lane, recorder, [seen] * 2, t0)
    store.stop()
    [doc] = results(outbox)
    assert doc["status"] == "mismatch" and [t["text"] for t in doc["texts"]] == ["ACME FOODS LTD"]
    assert doc["verification"]["read"] == "LOT 4711B"
    assert store.crops(doc["id"]) == (0, 1)                   # line 1: the checked line, not in the message
    assert cv2_read(store.path(doc["id"], 1)).shape[:2] == (38, 208)
    [fail] = page_fails(live, store)
    assert fail["evidence_crops"] == [0, 1] and len(fail["texts"]) == 1


def test_a_fail_says_which_characters_failed_and_why_on_the_page_and_beside_its_evidence(tmp_path):
    """Found from outside: the page and the evidence said "mismatch" and nothing more; a smudged pack could not be
    told from a wrong lot once the message was delivered."""
    from daemon.ocr.results import CharCandidate

    store, live = evidence_store(tmp_path), LiveView()
    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=1, expect=Expectation(text=LOT)),
                                             live=live, evidence=store)
    t0 = time.time()
    trigger(board, "p1", at=t0)
    burst(lane, recorder, [[line("LOT 4711B", x=40.0, y=60.0)]], t0)
    graded = tuple(CharCandidate(ch, 0.99, blot=2.4 if i == 5 else 0.1) for i, ch in enumerate(LOT))
    printed = line(LOT, x=40.0, y=60.0)
    trigger(board, "p2", at=time.time())
    burst(lane, recorder, [[type(printed)(LOT, printed.confidence, printed.box, graded)]], time.time() - 0.001)
    trigger(board, "p3", at=time.time())
    burst(lane, recorder, [[line(LOT, x=40.0, y=60.0)]], time.time() - 0.001)    # a good part: nothing to say
    store.stop()
    docs = results(outbox)
    assert [d["status"] for d in docs] == ["mismatch", "mismatch", "good_read"]
    fails = page_fails(live, store)
    assert [f["why"]["words"] for f in fails] == [
        "expected LOT 4711A · read LOT 4711A · char 6 '7' smudged (blot 2.4)",
        "expected LOT 4711A · read LOT 4711B · char 9: B instead of A"]
    wrong = fails[1]["why"]
    assert (wrong["verdict"], wrong["expected"], wrong["read"], wrong["more"]) == ("mismatch", LOT, "LOT 4711B", 0)
    assert wrong["chars"] == [{"at": 8, "status": "mismatch", "expected": "A", "read": "B"}]
    assert fails[0]["why"]["chars"][0]["blot"] == 2.4
    # the same beside each fail's frame in the evidence store; none for the good part
    for doc, fail in zip(docs[:2], reversed(fails)):
        kept = json.loads((tmp_path / "ev" / f"{doc['id']}.json").read_text(encoding="utf-8"))
        assert kept == fail["why"]
    assert not (tmp_path / "ev" / f"{docs[2]['id']}.json").exists()
    assert "why" not in live.camera_view("cam")["readings"][0]   # the readings list stays as it was


def cv2_read(path):
    import cv2

    return cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
