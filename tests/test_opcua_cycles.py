"""Read cycles on OPC UA (daemon/publish/sinks/opcua_cycles.py), checked with asyncua's own client over
Basic256Sha256 with a user, against real parts: the TriggerBoard, the CycleLane, the Recorder and the outbox (the
OCR results made up, as in test_read_cycle.py). StartSingleJob -> the cycle's one result -> ResultReady ->
GetResultById -> AcknowledgeResult, and only then the row leaves the outbox; a job while one runs is refused and
counted; SelectRecipe names the next result's recipe and an unknown one is refused; results pushed out of the
buffer unacknowledged are overruns, counted and signalled; a restart offers unacknowledged results again with
the same id; wrong arguments are refused; without the user's session there is no job."""
from __future__ import annotations

import asyncio
import json
import time

import pytest

asyncua = pytest.importorskip("asyncua")

from asyncua import ua  # noqa: E402

from broker import free_port, wait_until  # noqa: E402
from daemon import config  # noqa: E402
from daemon.evidence import NoEvidence  # noqa: E402
from daemon.publish.outbox import Outbox  # noqa: E402
from daemon.publish.sinks.opcua import OpcUaSink  # noqa: E402
from daemon.publish.unstored import UnstoredReadings  # noqa: E402
from daemon.readings import Recorder  # noqa: E402
from daemon.readings.cycle import CycleLane, CycleRules  # noqa: E402
from daemon.readings.triggers import TriggerBoard  # noqa: E402
from daemon.readings.verify import Expectation  # noqa: E402
from daemon.sources import Frame  # noqa: E402
from daemon.status import Counters  # noqa: E402
from daemon.web.live import NoLive  # noqa: E402
from publish_support import put_result  # noqa: E402
from readings_support import Result, line  # noqa: E402
from test_sink_opcua import PASSWORD, _camera, _client  # noqa: E402

import numpy as np  # noqa: E402

BUFFER = 3
RECIPES = {"cans": Expectation(text="LOT 4711A"), "jars": Expectation(text="LOT 4711B"),
           "lots": Expectation(template="LOT {lot}")}
STATIONS = ("st1", "st2", "st3", "st4")
WAIT_S = 20.0


class Line:
    """A production line's daemon without cameras: the triggered cameras' boards and cycle lanes, the recorder,
    the outbox and the OPC UA sink, all real; `cycle` makes the work loop's calls for one part."""

    def __init__(self, tmp_path, port: int, stations=STATIONS):
        self.tmp_path = tmp_path
        self.cfg = config.from_dict({
            "device_id": "line1", "mqtt": {"enabled": False},
            "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
            "opcua": {"enabled": True, "host": "127.0.0.1", "port": port, "password_env": "TEST_OPCUA_PASSWORD",
                      "cert_file": str(tmp_path / "opcua/cert.der"), "key_file": str(tmp_path / "opcua/key.pem"),
                      "result_buffer": BUFFER},
            "cameras": [{"name": name, "kind": "sample", "mode": "triggered", "cycle_frames": 1}
                        for name in stations] + [{"name": "conveyor", "kind": "sample"}]})
        self.stations = stations
        self._open()

    def _open(self) -> None:
        self.outbox = Outbox(self.cfg.outbox, sinks=("opcua",))
        self.boards = {name: TriggerBoard(name, list(RECIPES), "cans") for name in self.stations}
        cams = {c.name: c for c in self.cfg.cameras}
        self.lanes = {name: CycleLane(cams[name], board, CycleRules(frames=1, recipes=RECIPES),
                                      str(self.tmp_path / "cycles")) for name, board in self.boards.items()}
        self.sink = OpcUaSink(self.cfg, self.outbox.for_sink("opcua"), self.boards)
        self.recorder = Recorder(self.cfg, self.outbox, Counters(), UnstoredReadings(lambda: self.outbox.counters),
                                 engine=lambda: {"backend": "test"}, evidence=NoEvidence, page=NoLive,
                                 wake=self.sink.wake)
        self.sink.start()
        assert wait_until(lambda: self.sink.health().up, 60), self.sink.health()

    def restart(self) -> None:
        """As a daemon restart: the sink stops, everything is built again on the same outbox file."""
        self.close()
        self._open()

    def close(self) -> None:
        self.sink.stop(0.0)
        self.outbox.close()

    def cycle(self, station: str, text: str) -> None:
        """The work loop, for a trigger that waits: the lane takes it, one frame with `text` ends the cycle, its
        result is recorded (outbox, then the sinks woken)."""
        lane = self.lanes[station]
        assert [self.recorder.record(lane, r) for r in lane.due(time.time())] == []
        frame = Frame(station, np.zeros((60, 300, 3), np.uint8), time.time(), source={"kind": "sample"})
        assert lane.wants(frame)
        assert [self.recorder.record(lane, r) for r in lane.readings(frame, Result([line(text)]), [], None)] == [True]

    def owed(self, camera: str) -> list[int]:
        """The result ids of camera's rows the OPC UA sink still owes (the outbox)."""
        return [json.loads(r.payload).get("result_id") for r in self.outbox.pending(1000, sink="opcua")
                if r.camera == camera]


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    """One server for the tests of one station each (an asyncua server takes seconds to start here)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEST_OPCUA_PASSWORD", PASSWORD)
        tmp_path = tmp_path_factory.mktemp("opcua-cycles")
        plant = Line(tmp_path, free_port())
        yield plant
        plant.close()


class Events:
    def __init__(self):
        self.got: list[dict] = []

    def event_notification(self, event):
        props = event.get_event_props_as_fields_dict()
        self.got.append({k: v.Value if isinstance(v, ua.Variant) else v for k, v in props.items()})


async def until(predicate, timeout_s: float = WAIT_S) -> bool:
    """Polls a predicate, plain or async, on the client's loop (no timing asserted: a deadline only for a hang)."""
    end = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value or time.monotonic() >= end:
            return bool(value)
        await asyncio.sleep(0.05)


class Station:
    """The client's view of one camera's object."""

    def __init__(self, client, cam, idx):
        self.client, self.cam, self.idx = client, cam, idx

    @classmethod
    async def of(cls, client, name: str) -> "Station":
        cam, idx = await _camera(client, name)
        return cls(client, cam, idx)

    async def read(self, name: str):
        return await (await self.cam.get_child(f"{self.idx}:{name}")).read_value()

    async def call(self, method: str, *args):
        return await self.cam.call_method(f"{self.idx}:{method}", *args)

    async def get_result(self, result_id: int) -> dict:
        out = await self.call("GetResultById", ua.Variant(result_id, ua.VariantType.UInt64))
        return dict(zip(("Status", "TriggerId", "Recipe", "Text", "Verification", "CapturedAt", "Acknowledged"), out))

    async def acknowledge(self, result_id: int) -> None:
        await self.call("AcknowledgeResult", ua.Variant(result_id, ua.VariantType.UInt64))

    async def subscribe(self, event_type: str) -> Events:
        handler = Events()
        etype = await self.client.nodes.base_event_type.get_child(f"{self.idx}:{event_type}")
        sub = await self.client.create_subscription(50, handler)
        await sub.subscribe_events(self.cam, etype)
        return handler

    async def becomes(self, name: str, value) -> bool:
        async def check():
            return await self.read(name) == value
        return await until(check)


def _bad(exc: pytest.ExceptionInfo) -> str:
    return ua.StatusCode(exc.value.code).name


def test_a_job_is_read_announced_by_result_ready_fetched_by_id_and_leaves_the_outbox_when_acknowledged(plant):
    async def scenario():
        async with await _client(plant.tmp_path, plant.cfg.opcua.port) as client:
            st = await Station.of(client, "st1")
            ready = await st.subscribe("ResultReadyEventType")
            assert await st.read("State") == "Ready" and await st.read("ActiveRecipe") == "cans"
            assert await st.call("StartSingleJob", "part-1", "", "") == "part-1"
            assert await st.becomes("State", "Executing")
            plant.cycle("st1", "LOT 4711A")
            assert await until(lambda: ready.got)
            [ev] = ready.got
            assert (ev["Camera"], ev["Status"], ev["TriggerId"], ev["Recipe"], ev["Text"]) == \
                ("st1", "good_read", "part-1", "cans", "LOT 4711A")
            rid = ev["ResultId"]
            assert await st.becomes("State", "Ready")
            assert await st.read("UnacknowledgedResultIds") == [rid] and await st.read("LastResultId") == rid

            got = await st.get_result(rid)
            assert (got["Status"], got["TriggerId"], got["Recipe"], got["Text"], got["Acknowledged"]) == \
                ("good_read", "part-1", "cans", "LOT 4711A", False)
            assert json.loads(got["Verification"])["verdict"] == "pass" and got["CapturedAt"].year >= 2026

            # Owed until acknowledged; a continuous camera's reading does not wait behind it.
            put_result(plant.outbox, "conveyor", text="BOX 1")
            plant.sink.wake()
            assert await until(lambda: plant.owed("conveyor") == [])
            assert plant.owed("st1") == [rid]

            await st.acknowledge(rid)
            assert await until(lambda: plant.owed("st1") == [])
            assert await st.read("UnacknowledgedResultIds") == []
            assert (await st.get_result(rid))["Acknowledged"] is True
            await st.acknowledge(rid)   # again (a PLC that did not see its answer): Good
    asyncio.run(scenario())


def test_the_state_is_ready_only_once_this_server_has_the_cycles_result():
    """Found from outside: State went back to Ready before LastResultId and ResultReady named the result (4 of 6
    jobs), so a client that waits for Ready read the previous result's id."""
    from daemon.publish.sinks.opcua_cycles import state_name
    from daemon.readings.triggers import BoardCounters, BoardState

    def board(**kw) -> BoardState:
        return BoardState(**{"camera": "st1", "ready": True, "waiting": False, "busy": False, "cycle_seq": 5,
                             "last_result_id": 5, "last_status": "good_read", "counters": BoardCounters(),
                             "version": 1, **kw})
    assert state_name(board(), delivered=4) == "Executing"       # stored, not here yet
    assert state_name(board(), delivered=5) == "Ready"
    assert state_name(board(busy=True, ready=False), delivered=5) == "Executing"
    assert state_name(board(camera_error="the camera is connecting"), delivered=5) == "Error"
    assert state_name(board(last_result_id=None), delivered=0) == "Ready"   # nothing since the start


def test_a_job_started_while_one_runs_is_refused_with_bad_invalid_state_and_counted(plant):
    board = plant.boards["st2"]

    async def scenario():
        async with await _client(plant.tmp_path, plant.cfg.opcua.port) as client:
            st = await Station.of(client, "st2")
            ready = await st.subscribe("ResultReadyEventType")
            assert await st.call("StartSingleJob", "a", "", "") == "a"
            with pytest.raises(ua.UaStatusCodeError) as refused:
                await st.call("StartSingleJob", "b", "", "")
            assert _bad(refused) == "BadInvalidState"
            assert board.state().counters.missed == 1 and board.state().counters.accepted == 1
            assert await st.becomes("MissedTriggers", 1)
            plant.cycle("st2", "LOT 4711A")
            assert await until(lambda: ready.got)
            assert [ev["TriggerId"] for ev in ready.got] == ["a"]   # one result, for the job accepted
            await st.acknowledge(ready.got[0]["ResultId"])
            made = await st.call("StartSingleJob", "", "", "")   # no MeasId: one is made, echoed as TriggerId
            assert made.startswith("opcua-")
            plant.cycle("st2", "LOT 4711A")
            assert await until(lambda: len(ready.got) == 2)
            assert ready.got[1]["TriggerId"] == made
            await st.acknowledge(ready.got[1]["ResultId"])
    asyncio.run(scenario())
    assert wait_until(lambda: plant.owed("st2") == [], WAIT_S)


def test_select_recipe_names_the_next_results_recipe_and_an_unknown_recipe_is_refused(plant):
    board = plant.boards["st3"]

    async def scenario():
        async with await _client(plant.tmp_path, plant.cfg.opcua.port) as client:
            st = await Station.of(client, "st3")
            ready = await st.subscribe("ResultReadyEventType")
            assert await st.read("Recipes") == ["cans", "jars", "lots"]
            assert await st.call("SelectRecipe", "jars") == "jars"
            assert await st.becomes("ActiveRecipe", "jars")
            with pytest.raises(ua.UaStatusCodeError) as refused:
                await st.call("SelectRecipe", "bottles")
            assert _bad(refused) == "BadInvalidArgument" and board.state().recipe == "jars"
            with pytest.raises(ua.UaStatusCodeError) as refused:
                await st.call("StartSingleJob", "x", "bottles", "")
            assert _bad(refused) == "BadInvalidArgument" and board.state().counters.triggers == 0
            assert await st.read("ActiveRecipe") == "jars"

            await st.call("StartSingleJob", "p1", "", "")
            plant.cycle("st3", "LOT 4711B")            # what jars expects
            await st.call("StartSingleJob", "p2", "cans", "")   # a job naming its recipe
            plant.cycle("st3", "LOT 4711B")
            assert await until(lambda: len(ready.got) == 2)
            assert [(e["TriggerId"], e["Recipe"], e["Status"]) for e in ready.got] == \
                [("p1", "jars", "good_read"), ("p2", "cans", "mismatch")]
            for ev in ready.got:
                assert (await st.get_result(ev["ResultId"]))["Recipe"] == ev["Recipe"]
                await st.acknowledge(ev["ResultId"])
            assert await st.call("SelectRecipe", "") == ""   # none: the camera's own expectation
            assert board.state().recipe is None
    asyncio.run(scenario())


def test_results_pushed_out_of_the_buffer_unacknowledged_are_overruns_counted_signalled_and_leave_the_outbox(plant):
    async def scenario():
        async with await _client(plant.tmp_path, plant.cfg.opcua.port) as client:
            st = await Station.of(client, "st4")
            ready = await st.subscribe("ResultReadyEventType")
            overruns = await st.subscribe("ResultOverrunEventType")
            for i in range(BUFFER + 2):
                await st.call("StartSingleJob", f"n{i}", "", "")
                plant.cycle("st4", "LOT 4711A")
                assert await until(lambda: len(ready.got) == i + 1)
            ids = [ev["ResultId"] for ev in ready.got]
            assert await st.becomes("Overruns", 2)
            assert await st.read("UnacknowledgedResultIds") == ids[2:]
            assert await until(lambda: len(overruns.got) == 2)
            assert [(e["ResultId"], e["Overruns"]) for e in overruns.got] == [(ids[0], 1), (ids[1], 2)]
            with pytest.raises(ua.UaStatusCodeError) as gone:
                await st.get_result(ids[0])
            assert _bad(gone) == "BadNotFound"
            assert await until(lambda: plant.owed("st4") == ids[2:])   # the pushed-out rows left
            for rid in ids[2:]:
                await st.acknowledge(rid)
            assert await until(lambda: plant.owed("st4") == [])
    asyncio.run(scenario())


def test_a_job_s_fields_fill_the_recipe_s_template(plant):
    async def scenario():
        async with await _client(plant.tmp_path, plant.cfg.opcua.port) as client:
            st = await Station.of(client, "st3")
            ready = await st.subscribe("ResultReadyEventType")
            for job, lot in (("f1", "4711A"), ("f2", "4711B")):
                assert await st.call("StartSingleJob", job, "lots", "", json.dumps({"lot": lot})) == job
                plant.cycle("st3", "LOT 4711A")
                assert await until(lambda: len(ready.got) == int(job[1]))
                await st.acknowledge(ready.got[-1]["ResultId"])
            assert [(ev["TriggerId"], ev["Recipe"], ev["Status"]) for ev in ready.got] == [
                ("f1", "lots", "good_read"), ("f2", "lots", "mismatch")]
            with pytest.raises(ua.UaStatusCodeError) as refused:   # no lot: refused, never a failed part
                await st.call("StartSingleJob", "f3", "lots", "")
            assert _bad(refused) == "BadInvalidArgument" and len(ready.got) == 2
    asyncio.run(scenario())


def test_a_camera_that_does_not_stream_is_in_the_error_state_with_its_reason(plant):
    board = plant.boards["st4"]

    async def scenario():
        async with await _client(plant.tmp_path, plant.cfg.opcua.port) as client:
            st = await Station.of(client, "st4")
            assert await st.becomes("State", "Ready") and await st.read("CameraError") == ""
            board.set_camera_error("the camera is connecting: connection refused")
            assert await st.becomes("State", "Error")
            assert await st.read("CameraError") == "the camera is connecting: connection refused"
            board.set_camera_error(None)
            assert await st.becomes("State", "Ready") and await st.read("CameraError") == ""
    asyncio.run(scenario())


def test_wrong_arguments_and_a_method_called_on_another_cameras_object_are_refused(plant):
    board = plant.boards["st1"]
    before = board.state().counters

    async def scenario():
        async with await _client(plant.tmp_path, plant.cfg.opcua.port) as client:
            st, other = await Station.of(client, "st1"), await Station.of(client, "st2")
            for args in [("only-two", ""), (ua.Variant(7, ua.VariantType.Int32), "", ""), ("p", "", "LOT\x07"),
                         ("p" * 300, "", ""), ("p", "", "E" * 100_000),
                         (ua.Variant(["p", "q"], ua.VariantType.String, is_array=True), "", ""),
                         ("p", "", "", "{not json"), ("p", "", "", '["a list"]'), ("p", "", "", '{"lot": [1]}'),
                         ("p", "", "", '{"a":' * 5000 + "1" + "}" * 5000)]:   # nested past the parser's depth
                with pytest.raises(ua.UaStatusCodeError) as refused:
                    await st.call("StartSingleJob", *args)
                assert _bad(refused) == "BadInvalidArgument", args
            for args in [("5",), (ua.Variant(-1, ua.VariantType.Int64),), ()]:
                with pytest.raises(ua.UaStatusCodeError) as refused:
                    await st.call("GetResultById", *args)
                assert _bad(refused) == "BadInvalidArgument", args
            with pytest.raises(ua.UaStatusCodeError) as refused:
                await st.call("GetResultById", ua.Variant(999_999, ua.VariantType.UInt32))
            assert _bad(refused) == "BadNotFound"
            method = await st.cam.get_child(f"{st.idx}:StartSingleJob")
            with pytest.raises(ua.UaStatusCodeError) as refused:
                await other.cam.call_method(method, "p", "", "")
            assert _bad(refused) == "BadMethodInvalid"
            conveyor = await Station.of(client, "conveyor")   # a continuous camera has no read-cycle methods
            names = {(await c.read_browse_name()).Name for c in await conveyor.cam.get_children()}
            assert "StartSingleJob" not in names and "State" not in names
    asyncio.run(scenario())
    assert board.state().counters == before   # nothing was triggered


def test_without_the_user_and_its_password_there_is_no_session_and_so_no_job(plant):
    board = plant.boards["st1"]
    before = board.state().counters

    async def attempt(user, password):
        client = await _client(plant.tmp_path, plant.cfg.opcua.port, user, password)
        with pytest.raises(Exception):   # BadIdentityTokenRejected, BadUserAccessDenied
            await client.connect()
    for user, password in ((None, None), ("ocr", "wrong")):   # opcua.allow_anonymous is false
        asyncio.run(attempt(user, password))
    assert board.state().counters == before


def test_a_restart_offers_the_unacknowledged_results_again_with_the_same_result_id(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_OPCUA_PASSWORD", PASSWORD)
    plant = Line(tmp_path, free_port(), stations=("st1",))
    try:
        async def before():
            async with await _client(plant.tmp_path, plant.cfg.opcua.port) as client:
                st = await Station.of(client, "st1")
                for part in ("kept", "handled"):
                    await st.call("StartSingleJob", part, "", "")
                    plant.cycle("st1", "LOT 4711A")
                assert await until(lambda: len(plant.owed("st1")) == 2)
                assert await st.becomes("LastResultId", plant.owed("st1")[-1])
                ids = await st.read("UnacknowledgedResultIds")
                await st.acknowledge(ids[1])
                return ids
        kept, handled = asyncio.run(before())
        assert wait_until(lambda: plant.owed("st1") == [kept], WAIT_S)
        plant.restart()

        async def after():
            async with await _client(plant.tmp_path, plant.cfg.opcua.port) as client:
                st = await Station.of(client, "st1")
                assert await st.becomes("UnacknowledgedResultIds", [kept])
                assert (await st.get_result(kept))["TriggerId"] == "kept"
                with pytest.raises(ua.UaStatusCodeError):
                    await st.get_result(handled)   # acknowledged before the restart: gone
                await st.acknowledge(kept)
        asyncio.run(after())
        assert wait_until(lambda: plant.owed("st1") == [], WAIT_S)
    finally:
        plant.close()
