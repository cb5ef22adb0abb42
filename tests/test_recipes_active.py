"""The active recipe of a triggered camera: selected by any protocol on its TriggerBoard, refused when unknown
(the old one stays), judging the cycles that start after it, remembered across a restart and kept by a reload
while it still exists. Real boards, lanes, recorder and outbox; Modbus through pymodbus's client."""
from __future__ import annotations

import json
import logging
import time

import pytest

from daemon import config
from daemon.evidence import NoEvidence
from daemon.publish.outbox import Outbox
from daemon.publish.unstored import UnstoredReadings
from daemon.readings import Recorder, make_lane, refresh_boards
from daemon.readings.cycle import CycleLane, CycleRules, cycle_rules
from daemon.readings.trigger_commands import BadCommand, parse_recipe, select_command
from daemon.readings.triggers import Trigger, TriggerBoard
from daemon.readings.verify import Expectation
from daemon.status import Counters
from daemon.web.live import NoLive
from readings_support import Result, line
from test_read_cycle import LOT, frame, results, run, setup

RECIPES = ("cans", "jars")


def test_a_known_recipe_is_selected_and_an_unknown_one_refused_keeping_the_old():
    board = TriggerBoard("cam", RECIPES, "cans")
    assert (board.state().recipe, board.state().recipe_number) == ("cans", 1)
    got = board.select_recipe("jars")
    assert (got.accepted, got.reason, got.state.recipe, got.state.recipe_number) == (True, "selected", "jars", 2)
    refused = board.select_recipe("bottles")
    assert not refused.accepted and "unknown recipe 'bottles'" in refused.reason and "cans, jars" in refused.reason
    assert board.state().recipe == "jars"
    assert board.select_recipe("jars").reason == "already active"
    none = board.select_recipe(None)                              # the camera's own expectation
    assert none.accepted and (none.state.recipe, none.state.recipe_number) == (None, 0)
    assert board.state().counters.recipe_changes == 2


def test_a_board_made_with_an_unknown_default_has_none_active():
    assert TriggerBoard("cam", RECIPES, "bottles").state().recipe is None


@pytest.mark.parametrize("body,name", [(b'{"recipe": "cans"}', "cans"), (b'"jars"', "jars"),
                                       (b'{"recipe": null}', None), (b"null", None)])
def test_a_selection_names_a_recipe_or_null(body, name):
    assert parse_recipe(body) == name


@pytest.mark.parametrize("body,why", [(b"cans", "not JSON"), (b'{"name": "cans"}', '{"recipe": name}'),
                                      (b'{"recipe": 3}', "a recipe's name or null"), (b'{}', '{"recipe": name}'),
                                      (b'{"recipe": ""}', "a recipe's name or null"),
                                      (b'{"recipe": "a\\nb"}', "control characters"),
                                      (b"x" * 5000, "at most 4096"), (b"\xff", "not JSON")])
def test_a_bad_selection_says_why(body, why):
    with pytest.raises(BadCommand) as err:
        parse_recipe(body)
    assert why in str(err.value)


def test_select_command_answers_each_outcome_as_json():
    boards = {"cam": TriggerBoard("cam", RECIPES, "cans")}
    outcome, body = select_command(boards, "cam", b'{"recipe": "jars"}', "http")
    assert outcome == "selected" and json.loads(body) == {"camera": "cam", "recipe": "jars", "accepted": True,
                                                          "reason": "selected"}
    outcome, body = select_command(boards, "cam", b'{"recipe": "bottles"}', "http")
    assert outcome == "refused" and json.loads(body)["recipe"] == "jars" and not json.loads(body)["accepted"]
    assert select_command(boards, "cam", b"{", "http")[0] == "bad"
    assert select_command(boards, "other", b'"cans"', "http")[0] == "unknown"


def test_the_selected_recipe_judges_the_next_cycle_and_a_running_cycle_keeps_its_own(tmp_path):
    recipes = {"cans": Expectation(text=LOT), "jars": Expectation(text="LOT 4711B")}
    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=2, recipes=recipes), "cans")
    t0 = time.time() - 0.001
    board.offer(Trigger(camera="cam", source="http", trigger_id="1", received_at=t0))
    lane.due(time.time())                                   # cycle 1 starts under "cans"
    board.select_recipe("jars")                             # a changeover while it runs
    for i in range(2):
        for r in lane.readings(frame(t0 + 0.01 * (i + 1)), Result([line(LOT)]), [], None):
            recorder.record(lane, r)
    board.offer(Trigger(camera="cam", source="http", trigger_id="2", received_at=time.time() - 0.001))
    run(lane, recorder, [[line(LOT)], [line(LOT)]], time.time() - 0.001)
    docs = results(outbox)
    assert [(d["trigger_id"], d["recipe"], d["status"]) for d in docs] == [
        ("1", "cans", "good_read"), ("2", "jars", "mismatch")]
    assert all(d["latency_ms"]["trigger_to_outbox"] >= 0 for d in docs)   # what the PLC waited, to stored


def test_a_changeover_sent_right_after_a_trigger_does_not_judge_that_trigger(tmp_path):
    # A PLC triggers the part in place, then selects the next product's recipe before the lane has taken the
    # trigger: the part is judged by the recipe active when its trigger was accepted, and the open-cycle marker
    # (what a restart would answer) names that same recipe.
    recipes = {"cans": Expectation(text=LOT), "jars": Expectation(text="LOT 4711B")}
    _, outbox, board, lane, recorder = setup(tmp_path, CycleRules(frames=1, recipes=recipes), "cans")
    t0 = time.time() - 0.001
    assert board.offer(Trigger(camera="cam", source="modbus", trigger_id="7", received_at=t0)).accepted
    board.select_recipe("jars")                             # before the lane took the trigger
    assert json.loads(open(lane._marker).read())["recipe"] == "cans"
    run(lane, recorder, [[line(LOT)]], t0)
    board.offer(Trigger(camera="cam", source="modbus", trigger_id="8", received_at=time.time() - 0.001))
    run(lane, recorder, [[line(LOT)]], time.time() - 0.001)
    assert [(d["trigger_id"], d["recipe"], d["status"]) for d in results(outbox)] == [
        ("7", "cans", "good_read"), ("8", "jars", "mismatch")]


def _cfg(tmp_path, recipes=RECIPES, default="cans"):
    return config.from_dict({
        "device_id": "st1", "mqtt": {"enabled": False}, "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
        "recipes": [{"name": n, "expect_text": f"LOT {n}"} for n in recipes],
        "cameras": [{"name": "cam", "kind": "sample", "mode": "triggered", "recipe": default}]})


def test_the_selected_recipe_survives_a_restart_and_a_reload_keeps_it_while_it_exists(tmp_path, caplog):
    boards: dict = {}
    refresh_boards(_cfg(tmp_path), boards)
    assert boards["cam"].state().recipe == "cans"
    assert boards["cam"].select_recipe("jars").accepted
    saved = json.loads((tmp_path / "cycles" / "cam.recipe.json").read_text())
    assert saved == {"recipe": "jars"}

    after_restart: dict = {}
    refresh_boards(_cfg(tmp_path), after_restart)
    assert after_restart["cam"].state().recipe == "jars"

    board = after_restart["cam"]
    refresh_boards(_cfg(tmp_path, recipes=("cans", "jars", "tins")), after_restart)   # a reload adding one
    assert after_restart["cam"] is board and board.state().recipe == "jars"
    refresh_boards(_cfg(tmp_path, recipes=("cans", "tins")), after_restart)           # jars removed
    assert board.state().recipe == "cans" and board.state().recipes == ("cans", "tins")

    (tmp_path / "cycles" / "cam.recipe.json").write_text('{"recipe": "jars"}')       # saved, then removed
    with caplog.at_level(logging.WARNING):
        fresh: dict = {}
        refresh_boards(_cfg(tmp_path, recipes=("cans", "tins")), fresh)
    assert fresh["cam"].state().recipe == "cans" and "no longer in the config" in caplog.text

    for junk in (b"\xff{garbage", b"{}", b"[1]", b'{"recipe": 5}'):
        (tmp_path / "cycles" / "cam.recipe.json").write_bytes(junk)
        fresh = {}
        refresh_boards(_cfg(tmp_path), fresh)
        assert fresh["cam"].state().recipe == "cans", junk
    (tmp_path / "cycles" / "cam.recipe.json").write_text('{"recipe": null}')   # none selected: kept so
    fresh = {}
    refresh_boards(_cfg(tmp_path), fresh)
    assert fresh["cam"].state().recipe is None


def test_a_lane_made_from_config_judges_by_the_board_s_recipe(tmp_path):
    cfg = _cfg(tmp_path)
    boards: dict = {}
    refresh_boards(cfg, boards)
    lane = make_lane(cfg.cameras[0], boards, cfg)
    assert isinstance(lane, CycleLane) and set(lane.rules.recipes) == set(RECIPES)


def test_a_recipe_reads_with_its_own_codes_and_formats_while_it_judges_a_cycle(tmp_path):
    cfg = config.from_dict({
        "device_id": "st1", "mqtt": {"enabled": False}, "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
        "recipes": [{"name": "parcels", "expect_format": "s10", "codes": ["DataMatrix"], "accept_formats": ["s10"]},
                    {"name": "cans", "expect_text": LOT}],
        "cameras": [{"name": "cam", "kind": "sample", "mode": "triggered", "recipe": "cans", "codes": ["QRCode"],
                     "cycle_frames": 1}]})
    boards: dict = {}
    refresh_boards(cfg, boards)
    lane = make_lane(cfg.cameras[0], boards, cfg)
    board = boards["cam"]
    outbox = Outbox(cfg.outbox)
    recorder = Recorder(cfg, outbox, Counters(), UnstoredReadings(lambda: outbox.counters),
                        engine=lambda: {"backend": "test"}, evidence=NoEvidence, page=NoLive, wake=lambda: None)
    for recipe, text in (("parcels", LOT), ("parcels", "RR123456785DE"), ("cans", LOT)):
        board.offer(Trigger(camera="cam", source="http", recipe=recipe, received_at=time.time() - 0.001))
        lane.due(time.time())
        assert lane.code_formats == (("DataMatrix",) if recipe == "parcels" else ("QRCode",))
        for r in lane.readings(frame(time.time()), Result([line(text)]), [], None):
            recorder.record(lane, r)
    assert [(d["recipe"], d["status"]) for d in results(outbox)] == [
        ("parcels", "mismatch"), ("parcels", "good_read"), ("cans", "good_read")]   # LOT is no S10 number


def test_a_recipe_s_unknown_code_format_is_a_config_error_naming_it(tmp_path):
    with pytest.raises(config.ConfigError) as err:
        _cfg_with_recipe(tmp_path, {"name": "x", "expect_text": "A", "codes": ["Code128", "NoSuchCode"]})
    assert "recipes[0].codes[1]" in str(err.value)
    with pytest.raises(config.ConfigError) as err:
        _cfg_with_recipe(tmp_path, {"name": "x", "expect_text": "A", "accept_formats": ["isbn"]})
    assert "recipes[0].accept_formats[0]" in str(err.value)
    for roi in ([0, 0, 10], [-1, 0, 10, 10], [0, 0, 0, 10]):
        with pytest.raises(config.ConfigError) as err:
            _cfg_with_recipe(tmp_path, {"name": "x", "expect_text": "A", "roi": roi})
        assert "recipes[0].roi" in str(err.value)
    cfg = _cfg_with_recipe(tmp_path, {"name": "x", "expect_text": "A", "roi": [10, 20, 300, 100]})
    assert cycle_rules(cfg.cameras[0], cfg.recipes).rois == {"x": (10, 20, 300, 100)}


def _cfg_with_recipe(tmp_path, recipe: dict):
    return config.from_dict({"device_id": "st1", "mqtt": {"enabled": False}, "recipes": [recipe],
                             "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
                             "cameras": [{"name": "cam", "kind": "sample", "mode": "triggered"}]})


def test_field_values_from_the_config_reach_the_cycle_rules():
    from daemon import config
    from daemon.readings.cycle import cycle_rules

    cfg = config.from_dict({"device_id": "st1", "mqtt": {"enabled": False},
                            "cameras": [{"name": "cam", "kind": "sample", "mode": "triggered",
                                         "expect_template": "EXP {date:%Y-%m}",
                                         "expect_fields": {"date": "today+30"}}],
                            "recipes": [{"name": "cans", "expect_template": "LOT {lot}\nEXP {date:%Y-%m}",
                                         "expect_fields": {"lot": 4711, "date": "today+7"}},
                                        {"name": "jars", "expect_template": "LOT {lot}"}]})
    rules = cycle_rules(cfg.cameras[0], cfg.recipes)
    assert rules.fields == {None: {"date": "today+30"}, "cans": {"lot": "4711", "date": "today+7"}}
