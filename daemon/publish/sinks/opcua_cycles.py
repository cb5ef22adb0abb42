"""Read cycles on the OPC UA server: a triggered camera's state, its methods, and one ResultReady event per result,
in the shape of OPC 40100-1 (OPC UA for Machine Vision) "simple inline" where it fits our server.

Under Objects/OCR/Cameras/<camera>/ of each triggered camera (one with a TriggerBoard), beside the reading
variables of daemon/publish/sinks/opcua.py:

    State                    String     Ready | Executing (a trigger waits or its cycle runs, until its result is
                                        here: LastResultId and ResultReady come first) | Error (the camera
                                        does not stream: CameraError says why); 40100's Ready, SingleExecution
                                        and Error
    CameraError              String     why the camera cannot read now ("" while it streams)
    ActiveRecipe             String     the recipe a job naming none is judged by ("": the camera's own expect_*)
    Recipes                  String[]   the recipes SelectRecipe accepts, in config order
    MissedTriggers           UInt64     triggers refused because one waited or a cycle ran (every protocol's)
    LastResultId             UInt64     the newest result this server got (0: none since the daemon started)
    UnacknowledgedResultIds  UInt64[]   the buffered results no client acknowledged yet, oldest first
    Overruns                 UInt64     results pushed out of the buffer before a client acknowledged them

    StartSingleJob(MeasId String, RecipeId String, Expected String[, Fields String]) -> (JobId String)
        40100's StartSingleJob (measId, recipeId; its partId, productId and parameters are not taken) plus
        Expected, the text this part must carry, and Fields, the template's field values as a JSON object
        ({"lot": "4711A"}; may be left out). MeasId is the trigger id every result echoes ("": one is made,
        "opcua-" and 12 hex digits); JobId is that trigger id. A trigger while one waits or a cycle runs is
        refused with BadInvalidState and counted (MissedTriggers); an unknown recipe or a text that breaks the
        trigger rules (daemon/readings/trigger_commands.py) with BadInvalidArgument, and nothing is triggered.
    SelectRecipe(RecipeId String) -> (ActiveRecipe String)
        40100's PrepareRecipe(externalId), where our recipe's name is its ExternalId and one recipe is prepared at
        a time: it judges the triggers accepted after it ("": none, the camera's own expectation). An unknown one
        is refused with BadInvalidArgument and the active one stays.
    GetResultById(ResultId UInt64) -> (Status String, TriggerId String, Recipe String, Text String,
                                       Verification String, CapturedAt DateTime, Acknowledged Boolean)
        40100's GetResultById, flattened into the ocr-result/5 fields (Verification: its JSON, "" when nothing was
        expected; Text: the lines joined by "\\n"). BadNotFound when the result is not in the buffer.
    AcknowledgeResult(ResultId UInt64) -> ()
        40100's ReleaseResultHandle (OPC 40001-101's AcknowledgeResults), the result id standing for the handle:
        the client has the result; the daemon may forget it. Again for one acknowledged: Good. BadNotFound when
        it is not in the buffer.
    ResultIds of any integer type are taken (a PLC without 64-bit integers sends a UInt32).

    ResultReadyEventType (BaseEventType subtype), from the camera's object, one per result: Camera, ResultId,
        Status, TriggerId, Recipe, Text; Time = capture time, Message = "status: text", Severity 100 for
        good_read, else 500. Fired after the variables above were written.
    ResultOverrunEventType (BaseEventType subtype), from the camera's object: Camera, ResultId (the result pushed
        out unacknowledged), Overruns; Severity 700.

The buffer: each camera's last opcua.result_buffer results, acknowledged or not, fetchable by id. Durability: a
result's outbox row stays owed to this sink until a client acknowledges it or it is pushed out of the buffer (an
overrun), so a daemon restart offers every unacknowledged result again, with the same ResultId (and a ResultReady
event, usually before clients are back: a client reads UnacknowledgedResultIds after it (re)subscribes). A client
that sees a ResultId it has already handled acknowledges it again and does not count that part twice.

Methods go through the server's session rules like any request (opcua.py: an activated session on a
Basic256Sha256 channel, a user or, only when allowed, anonymous). Every argument is checked here: its count,
its type, the method called on its own camera's object (else BadMethodInvalid); a method never raises into
asyncua (that would log a traceback per call).

Threads: everything here runs on the server's asyncio loop, except the board's callbacks (any thread: they only
schedule a write on the loop) and the sink thread's calls to held_rows(), settled_rows() and deleted(); the
buffers carry their own lock.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Mapping, Optional

from asyncua import ua

from daemon.printable import printable
from daemon.publish.outbox import OutboxRow
from daemon.publish.sinks.base import Reading, Undeliverable
from daemon.readings.trigger_commands import MAX_TEXT, offer_command, select_recipe
from daemon.readings.triggers import BoardState, TriggerBoard

log = logging.getLogger(__name__)

READY, EXECUTING, ERROR = "Ready", "Executing", "Error"


def state_name(state: BoardState, delivered: int) -> str:
    """40100-1's state of a camera: Executing while a trigger waits or a cycle runs, and until this server has
    the cycle's result (delivered: its newest result id), so a client that waits for Ready reads the new
    LastResultId and has had its ResultReady; Error while the camera does not stream (a job is still taken, and
    answered no_read when no frame comes), else Ready. Pure."""
    if state.busy or state.waiting or (state.last_result_id or 0) > delivered:
        return EXECUTING
    return ERROR if state.camera_error else READY
_READY_FIELDS = (("Camera", "String"), ("ResultId", "UInt64"), ("Status", "String"), ("TriggerId", "String"),
                 ("Recipe", "String"), ("Text", "String"))
_OVERRUN_FIELDS = (("Camera", "String"), ("ResultId", "UInt64"), ("Overruns", "UInt64"))
_INTEGERS = frozenset({ua.VariantType.SByte, ua.VariantType.Byte, ua.VariantType.Int16, ua.VariantType.UInt16,
                       ua.VariantType.Int32, ua.VariantType.UInt32, ua.VariantType.Int64, ua.VariantType.UInt64})


@dataclass(frozen=True)
class CycleResult:
    """What a client gets of one read-cycle result (an ocr-result/5 row with a result_id)."""
    row_id: int
    camera: str
    result_id: int
    status: str
    trigger_id: str        # "" when the trigger had none
    recipe: str            # "" when judged by the camera's own expectation
    text: str              # the lines joined by "\n"
    verification: str      # the verification's JSON; "" when nothing was expected
    captured_at: datetime

    @classmethod
    def of_row(cls, row: OutboxRow, reading: Reading) -> Optional["CycleResult"]:
        """None for a reading without a result_id (continuous mode); Undeliverable for a broken one."""
        try:
            doc = json.loads(row.payload)
        except ValueError as exc:
            raise Undeliverable(f"payload is not JSON: {exc}") from None
        result_id = doc.get("result_id") if isinstance(doc, dict) else None
        if result_id is None:
            return None
        if isinstance(result_id, bool) or not isinstance(result_id, int) or not 0 <= result_id < 2 ** 64:
            raise Undeliverable(f"result_id {printable(str(result_id))[:32]!r} is not a non-negative integer")
        verification = doc.get("verification")
        return cls(row_id=row.id, camera=reading.camera, result_id=result_id, status=str(doc.get("status") or ""),
                   trigger_id=_text(doc.get("trigger_id")), recipe=_text(doc.get("recipe")), text=reading.text,
                   verification="" if verification is None else json.dumps(verification, ensure_ascii=False,
                                                                           separators=(",", ":")),
                   captured_at=datetime.fromtimestamp(reading.captured_at_ms / 1000.0, tz=timezone.utc))


def _text(value) -> str:
    return "" if value is None else str(value)


class ResultBuffer:
    """One camera's last `size` results, oldest first, each acknowledged or not. A result pushed out before its
    acknowledgement is an overrun. The rows of acknowledged and pushed-out results are "settled": the sink deletes
    them from the outbox; until then, and while a result waits for its acknowledgement, its row is "held" (owed,
    not sent again). Thread-safe: the loop adds and acknowledges, the sink thread deletes."""

    def __init__(self, size: int):
        self._lock = threading.Lock()
        self._entries: deque[list] = deque()   # [CycleResult, acknowledged]
        self.size = max(1, int(size))
        self._settled: set[int] = set()
        self.overruns = 0

    def add(self, result: CycleResult) -> Optional[CycleResult]:
        """Buffers result (once per result id); returns the result it pushed out unacknowledged, if any."""
        with self._lock:
            if any(e[0].result_id == result.result_id for e in self._entries):
                return None   # the same row again after a write that timed out
            self._entries.append([result, False])
            if len(self._entries) <= self.size:
                return None
            old, acknowledged = self._entries.popleft()
            if acknowledged:
                return None
            self._settled.add(old.row_id)
            self.overruns += 1
            return old

    def get(self, result_id: int) -> Optional[tuple[CycleResult, bool]]:
        with self._lock:
            for result, acknowledged in self._entries:
                if result.result_id == result_id:
                    return result, acknowledged
            return None

    def acknowledge(self, result_id: int) -> bool:
        """False when the result is not in the buffer."""
        with self._lock:
            for entry in self._entries:
                if entry[0].result_id == result_id:
                    if not entry[1]:
                        entry[1] = True
                        self._settled.add(entry[0].row_id)
                    return True
            return False

    def unacknowledged(self) -> list[int]:
        with self._lock:
            return [r.result_id for r, acknowledged in self._entries if not acknowledged]

    def last_result_id(self) -> int:
        with self._lock:
            return self._entries[-1][0].result_id if self._entries else 0

    def held_rows(self) -> set[int]:
        with self._lock:
            return {r.row_id for r, acknowledged in self._entries if not acknowledged} | self._settled

    def settled_rows(self) -> list[int]:
        with self._lock:
            return sorted(self._settled)

    def deleted(self, row_ids) -> None:
        with self._lock:
            self._settled.difference_update(row_ids)


class _CycleNodes:
    def __init__(self, obj, variables: dict, ready, overrun):
        self.obj = obj
        self.variables = variables   # name -> Node
        self.ready = ready           # EventGenerator of ResultReadyEventType
        self.overrun = overrun       # EventGenerator of ResultOverrunEventType
        self.lock = asyncio.Lock()   # one writer of these variables at a time, so the last write is the newest


class ReadCycles:
    """The read-cycle part of one OPC UA sink: per triggered camera its buffer (kept across server restarts, like
    the sink's reading history), and, while a server runs, its nodes. `wake` tells the sink's thread that rows
    settled (it deletes them). `boards` is the service's own dict, which a reload changes in place: a camera no
    longer triggered refuses jobs; one newly triggered gets its nodes when the sink starts again."""

    def __init__(self, boards: Mapping[str, TriggerBoard], buffer_size: int, wake: Callable[[], None]):
        self._boards = boards
        self._buffers = {name: ResultBuffer(buffer_size) for name in self._boards}
        self._wake = wake
        self._server = None
        self._idx = 0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._ready_type = self._overrun_type = None
        self._nodes: dict[str, _CycleNodes] = {}
        self._unsubscribe: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task] = set()

    # ------------------------------------------------------------ the sink's thread

    def held_rows(self) -> set[int]:
        return set().union(*(b.held_rows() for b in self._buffers.values()))

    def settled_rows(self) -> list[int]:
        return sorted(set().union(*(b.settled_rows() for b in self._buffers.values())))

    def deleted(self, row_ids) -> None:
        for buffer in self._buffers.values():
            buffer.deleted(row_ids)

    def result_of(self, row: OutboxRow, reading: Reading) -> Optional[CycleResult]:
        """The cycle result a row carries, when its camera is triggered here; None for any other reading."""
        if reading.camera not in self._buffers:
            return None
        return CycleResult.of_row(row, reading)

    # ------------------------------------------------------------ the loop

    async def install(self, server, idx: int) -> None:
        """A new server: its event types, and the boards' changes written to it."""
        self._server, self._idx, self._loop = server, idx, asyncio.get_running_loop()
        self._nodes = {}
        self._ready_type = await server.create_custom_event_type(
            idx, "ResultReadyEventType", ua.ObjectIds.BaseEventType,
            [(name, getattr(ua.VariantType, kind)) for name, kind in _READY_FIELDS])
        self._overrun_type = await server.create_custom_event_type(
            idx, "ResultOverrunEventType", ua.ObjectIds.BaseEventType,
            [(name, getattr(ua.VariantType, kind)) for name, kind in _OVERRUN_FIELDS])
        for name, board in list(self._boards.items()):
            self._unsubscribe.append(board.subscribe(lambda state, name=name: self._board_changed(name, state)))

    def detach(self) -> None:
        """The server stops: no more writes to it."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        self._loop, self._server, self._nodes = None, None, {}

    async def add_camera(self, name: str, obj) -> None:
        """A triggered camera's variables, methods and event generators on its object (others: nothing)."""
        if name not in self._buffers or self._server is None:
            return
        idx = self._idx
        strings = ua.Variant([], ua.VariantType.String, is_array=True)
        ids = ua.Variant([], ua.VariantType.UInt64, is_array=True)
        variables = {
            "State": await obj.add_variable(idx, "State", READY, ua.VariantType.String),
            "CameraError": await obj.add_variable(idx, "CameraError", "", ua.VariantType.String),
            "ActiveRecipe": await obj.add_variable(idx, "ActiveRecipe", "", ua.VariantType.String),
            "Recipes": await obj.add_variable(idx, "Recipes", strings),
            "MissedTriggers": await obj.add_variable(idx, "MissedTriggers", 0, ua.VariantType.UInt64),
            "LastResultId": await obj.add_variable(idx, "LastResultId", 0, ua.VariantType.UInt64),
            "UnacknowledgedResultIds": await obj.add_variable(idx, "UnacknowledgedResultIds", ids),
            "Overruns": await obj.add_variable(idx, "Overruns", 0, ua.VariantType.UInt64),
        }
        for array in ("Recipes", "UnacknowledgedResultIds"):
            await variables[array].write_value_rank(ua.ValueRank.OneDimension)
        await self._methods(name, obj)
        nodes = _CycleNodes(obj, variables, await self._server.get_event_generator(self._ready_type, obj),
                            await self._server.get_event_generator(self._overrun_type, obj))
        self._nodes[name] = nodes
        await self._write_board(name)
        await self._write_results(name)

    async def deliver(self, result: CycleResult) -> None:
        """A result for a client: buffered, the variables written, ResultReady fired (and ResultOverrun for a
        result it pushed out unacknowledged)."""
        buffer = self._buffers[result.camera]
        pushed_out = buffer.add(result)
        if pushed_out is not None:
            # A client that never acknowledges overruns with every part: 1st, 10th, 100th ... at WARNING.
            loud = str(buffer.overruns).rstrip("0") == "1"
            log.log(logging.WARNING if loud else logging.DEBUG, "opcua: %s: result %d left the buffer of %d before "
                    "a client acknowledged it (overrun %d; opcua.result_buffer)", result.camera,
                    pushed_out.result_id, buffer.size, buffer.overruns)
            self._wake()   # its row leaves the outbox
        nodes = self._nodes.get(result.camera)
        if nodes is None:
            return
        await self._write_results(result.camera)
        ev = nodes.ready.event
        ev.Camera, ev.ResultId, ev.Status = result.camera, result.result_id, result.status
        ev.TriggerId, ev.Recipe, ev.Text = result.trigger_id, result.recipe, result.text
        ev.Severity = 100 if result.status == "good_read" else 500
        await nodes.ready.trigger(time_attr=result.captured_at,
                                  message=f"{result.status}: {result.text}" if result.text else result.status)
        if pushed_out is not None:
            ev = nodes.overrun.event
            ev.Camera, ev.ResultId, ev.Overruns = result.camera, pushed_out.result_id, buffer.overruns
            ev.Severity = 700
            await nodes.overrun.trigger(message=f"result {pushed_out.result_id} left the buffer unacknowledged")
        await self._write_board(result.camera)   # Executing -> Ready once the result is here (state_name)

    # ------------------------------------------------------------ variables

    def _board_changed(self, name: str, state: BoardState) -> None:
        """A board's subscriber (any thread): schedules the write on the loop, never waits."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._schedule_board_write, name)
        except RuntimeError:   # the loop closed meanwhile
            pass

    def _schedule_board_write(self, name: str) -> None:
        if name not in self._nodes:
            return
        task = asyncio.get_running_loop().create_task(self._write_board(name))
        self._tasks.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("opcua: writing a camera's state failed: %r", task.exception())

    async def _write_board(self, name: str) -> None:
        nodes, board = self._nodes.get(name), self._boards.get(name)
        if nodes is None or board is None:
            return
        async with nodes.lock:   # the state is read inside the lock: the last writer writes the newest
            state = board.state()
            await _write(nodes, (("State", state_name(state, self._buffers[name].last_result_id()),
                                  ua.VariantType.String),
                                 ("CameraError", state.camera_error or "", ua.VariantType.String),
                                 ("ActiveRecipe", state.recipe or "", ua.VariantType.String),
                                 ("Recipes", list(state.recipes), ua.VariantType.String),
                                 ("MissedTriggers", state.counters.missed, ua.VariantType.UInt64)))

    async def _write_results(self, name: str) -> None:
        nodes, buffer = self._nodes.get(name), self._buffers[name]
        if nodes is None:
            return
        async with nodes.lock:
            await _write(nodes, (("LastResultId", buffer.last_result_id(), ua.VariantType.UInt64),
                                 ("UnacknowledgedResultIds", buffer.unacknowledged(), ua.VariantType.UInt64),
                                 ("Overruns", buffer.overruns, ua.VariantType.UInt64)))

    # ------------------------------------------------------------ methods

    async def _methods(self, name: str, obj) -> None:
        idx = self._idx

        def arg(arg_name: str, kind: ua.VariantType, description: str, array: bool = False) -> ua.Argument:
            return ua.Argument(Name=arg_name, DataType=ua.NodeId(kind.value),
                               ValueRank=ua.ValueRank.OneDimension if array else ua.ValueRank.Scalar,
                               ArrayDimensions=[0] if array else [],
                               Description=ua.LocalizedText(description))
        result_id = arg("ResultId", ua.VariantType.UInt64, "the result's id (ResultReady's ResultId)")
        await obj.add_method(idx, "StartSingleJob", self._bound(name, obj, self._start_single_job),
                             [arg("MeasId", ua.VariantType.String, "the trigger id the result echoes; empty: made"),
                              arg("RecipeId", ua.VariantType.String, "a recipe's name; empty: the active one"),
                              arg("Expected", ua.VariantType.String, "the text this part must carry; empty: the "
                                                                      "recipe's or camera's expectation"),
                              arg("Fields", ua.VariantType.String, 'the template\'s field values as a JSON object, '
                                                                    'e.g. {"lot": "4711A"}; empty: none')],
                             [arg("JobId", ua.VariantType.String, "the trigger id the result will carry")])
        await obj.add_method(idx, "SelectRecipe", self._bound(name, obj, self._select_recipe),
                             [arg("RecipeId", ua.VariantType.String, "a recipe's name; empty: none")],
                             [arg("ActiveRecipe", ua.VariantType.String, "the recipe active now")])
        await obj.add_method(idx, "GetResultById", self._bound(name, obj, self._get_result), [result_id],
                             [arg("Status", ua.VariantType.String, "good_read, no_read, no_label, mismatch, multiple"),
                              arg("TriggerId", ua.VariantType.String, "the trigger's id"),
                              arg("Recipe", ua.VariantType.String, "the recipe it was judged by"),
                              arg("Text", ua.VariantType.String, "the lines read, joined by a newline"),
                              arg("Verification", ua.VariantType.String, "the verification as JSON; empty: none"),
                              arg("CapturedAt", ua.VariantType.DateTime, "the capture time, UTC"),
                              arg("Acknowledged", ua.VariantType.Boolean, "a client acknowledged it")])
        await obj.add_method(idx, "AcknowledgeResult", self._bound(name, obj, self._acknowledge), [result_id], [])

    @staticmethod
    def _bound(name: str, obj, handler):
        """asyncua's callback for one camera's method: the object it is called on must be that camera's, and
        nothing raises into asyncua."""
        async def call(parent, *args):
            if parent != obj.nodeid:
                return ua.StatusCode(ua.StatusCodes.BadMethodInvalid)
            try:
                return await handler(name, list(args))
            except Exception:
                log.exception("opcua: a method call on camera %s failed", name)
                return ua.StatusCode(ua.StatusCodes.BadInternalError)
        return call

    async def _start_single_job(self, name: str, args: list):
        texts = _strings(args, len(args)) if len(args) in (3, 4) else None   # Fields may be left out
        if texts is None:
            return _bad(ua.StatusCodes.BadInvalidArgument)
        meas_id, recipe_id, expected, fields = (texts + [""])[:4]
        trigger_id = meas_id or f"opcua-{uuid.uuid4().hex[:12]}"
        command = {"trigger_id": trigger_id, "recipe": recipe_id or None, "expected": expected or None}
        if fields:
            try:
                command["fields"] = json.loads(fields)   # its bounds and types are checked as every protocol's
            except (ValueError, RecursionError):   # not JSON, or nested past what the parser takes
                return _bad(ua.StatusCodes.BadInvalidArgument)
        # The command every protocol's trigger passes through: the same bounds, the same answer.
        outcome, answer = offer_command(self._boards, name, json.dumps(command).encode("utf-8"), "opcua")
        if outcome == "accepted":
            return [ua.Variant(trigger_id, ua.VariantType.String)]
        log.debug("opcua: %s: StartSingleJob %s: %s", name, outcome, json.loads(answer).get("reason"))
        # missed: busy (the board counted it); unknown: no longer a triggered camera (a reload)
        return _bad(ua.StatusCodes.BadInvalidArgument if outcome == "bad" else ua.StatusCodes.BadInvalidState)

    async def _select_recipe(self, name: str, args: list):
        texts = _strings(args, 1)
        if texts is None or len(texts[0]) > MAX_TEXT:
            return _bad(ua.StatusCodes.BadInvalidArgument)
        board = self._boards.get(name)
        if board is None:   # no longer a triggered camera (a reload)
            return _bad(ua.StatusCodes.BadInvalidState)
        got = select_recipe(board, texts[0] or None, "opcua")
        if not got.accepted:
            return _bad(ua.StatusCodes.BadInvalidArgument)
        return [ua.Variant(got.state.recipe or "", ua.VariantType.String)]

    async def _get_result(self, name: str, args: list):
        result_id = _result_id(args)
        if result_id is None:
            return _bad(ua.StatusCodes.BadInvalidArgument)
        found = self._buffers[name].get(result_id)
        if found is None:
            return _bad(ua.StatusCodes.BadNotFound)
        r, acknowledged = found
        return [ua.Variant(r.status, ua.VariantType.String), ua.Variant(r.trigger_id, ua.VariantType.String),
                ua.Variant(r.recipe, ua.VariantType.String), ua.Variant(r.text, ua.VariantType.String),
                ua.Variant(r.verification, ua.VariantType.String), ua.Variant(r.captured_at, ua.VariantType.DateTime),
                ua.Variant(acknowledged, ua.VariantType.Boolean)]

    async def _acknowledge(self, name: str, args: list):
        result_id = _result_id(args)
        if result_id is None:
            return _bad(ua.StatusCodes.BadInvalidArgument)
        if not self._buffers[name].acknowledge(result_id):
            return _bad(ua.StatusCodes.BadNotFound)
        self._wake()   # its row leaves the outbox
        await self._write_results(name)
        return []


async def _write(nodes: _CycleNodes, values) -> None:
    for var, value, kind in values:
        await nodes.variables[var].write_value(ua.Variant(value, kind))


def _bad(code: int) -> ua.StatusCode:
    return ua.StatusCode(code)


def _strings(args: list, count: int) -> Optional[list[str]]:
    """count String arguments (a null String is ""); None when the count or a type is wrong."""
    if len(args) != count:
        return None
    out = []
    for a in args:
        if not isinstance(a, ua.Variant) or a.is_array:
            return None
        if a.VariantType == ua.VariantType.Null or (a.VariantType == ua.VariantType.String and a.Value is None):
            out.append("")
        elif a.VariantType == ua.VariantType.String and isinstance(a.Value, str):
            out.append(a.Value)
        else:
            return None
    return out


def _result_id(args: list) -> Optional[int]:
    """The one ResultId argument, of any integer type; None when it is missing, not an integer or negative."""
    if len(args) != 1 or not isinstance(args[0], ua.Variant) or args[0].is_array:
        return None
    a = args[0]
    if a.VariantType not in _INTEGERS or isinstance(a.Value, bool) or not isinstance(a.Value, int) or a.Value < 0:
        return None
    return a.Value
