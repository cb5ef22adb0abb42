"""The Modbus TCP server (pymodbus) for PLCs: read-cycle triggers in, one result per cycle out, with a handshake.

A sink and a source of triggers at once. Triggers: a rising edge on a camera's `trigger` coil offers a Trigger
(source "modbus") to that camera's TriggerBoard (daemon/readings/triggers.py). Results: the cycle lane stores
each result in the outbox like every reading; this sink shows a camera's oldest result the PLC has not yet
acknowledged, and a row leaves the outbox for this sink only when the PLC acknowledged it (`result_ack`). So a
daemon restart loses none, and re-shows an unacknowledged result with the same result_id: a PLC that sees the
result_id it already handled must not count that part twice. Rows without a result_id (continuous-mode readings)
and messages that are not readings are acknowledged unsent (counted as skipped); rows of a camera without a block
here likewise.

Address map. One unit id (ModbusConfig.unit_id, default 1; any other unit id is answered with exception 0x0B,
gateway target failed to respond). Camera c has a base address B (ModbusConfig.cameras, conventionally camera i at
i*100); each table has its own address space, as Modbus defines, so every table's block starts at B. Addresses
are 0-based, as on the wire (a PLC numbering from 1, "40001", adds 1). Offsets not listed are refused (exception
0x02, illegal address) for registers and for coil writes.

    table              offset  name             meaning
    coils (PLC writes) B+0     trigger          0->1 offers a trigger; set it back to 0 after trigger_ack
    FC 1, 5, 15        B+1     result_ack       0->1 acknowledges the result shown; set it back to 0 after
                                                result_valid dropped: the next result is shown only then
    discrete inputs    B+0     trigger_ready    a trigger now would be accepted: no cycle busy or waiting (busy is
                                                0), the camera streams, and the trigger coil is back at 0 (a 1
                                                written over a 1 is no edge, and offers nothing)
    FC 2               B+1     trigger_ack      the board accepted the trigger; cleared when `trigger` goes to 0
                       B+2     busy             a trigger was accepted and its result is not yet here: shown, or
                                                queued behind the one shown (overrun)
                       B+3     result_valid     a result is shown and not yet acknowledged
                       B+4     overrun          more than one result waits (the one shown and at least one
                                                behind it); they queue in the outbox, none is lost
                       B+5     pass             the result shown is good_read          } valid only while
                       B+6     fail             the result shown is anything else      } result_valid is 1;
                       B+7     no_read          ... and nothing was read (no_read, no_label)  0 otherwise
                       B+8     missed_trigger   a trigger was missed (busy, one waiting, or the camera is not
                                                triggered); stays 1 until the next accepted trigger
                       B+9     recipe_refused   the last recipe number written names no recipe (the active one
                                                stays); cleared by the next accepted one
                       B+10    camera_error     the camera does not stream (trigger_ready is 0 meanwhile; a
                                                trigger is still taken and answered no_read if no frame comes)
    input registers    B+0-1   result_id        uint32, high word first; the result shown (kept after its ack)
    FC 4               B+2     status           0 none yet, 1 good_read, 2 no_read, 3 no_label, 4 mismatch,
                                                5 multiple, 255 a status this version does not know (a fail)
                       B+3-4   trigger_id       uint32, high word first: the result's trigger id when it is a
                                                decimal number that fits, else 0
                       B+5     text_length      characters in the result's first line (more than 40: cut)
                       B+6-25  text             the first line, 40 ASCII characters, 2 per register, first
                                                character in the high byte, NUL padded; non-ASCII shown as '?'
                       B+26-27 cycles           uint32 each, high word first, since the daemon started:
                       B+28-29 good_reads         results shown (each result_id once) and, by status,
                       B+30-31 no_reads           good_read, no_read, no_label, mismatch, multiple;
                       B+32-33 no_labels          missed_triggers is the camera's board's (every protocol's)
                       B+34-35 mismatches
                       B+36-37 multiples
                       B+38-39 missed_triggers
                       B+40    recipe           the active recipe's number (1: the config's first recipe; 0: none,
                                                the camera's own expect_*)
    holding registers  B+0-1   trigger_id       uint32, high word first: the next trigger's id (0: none)
    FC 3, 6, 16, 23    B+2-21  expected         40 ASCII characters, as `text`: the next cycles' expected text
                                                (trailing NULs and spaces cut; all zero: the camera's own)
                       B+22    recipe           write N to make the config's N-th recipe active (0: none);
                                                it judges the triggers accepted after it; a bad N sets recipe_refused

The handshake, per part:
    1. PLC waits for trigger_ready = 1, writes trigger_id (and expected), sets trigger = 1.
    2. Daemon sets trigger_ack = 1 (busy = 1, trigger_ready = 0), or missed_trigger = 1 when it cannot take it.
    3. PLC sets trigger = 0; trigger_ack drops.
    4. The cycle ends: its result is stored, then shown: result_id, status, text, pass/fail/no_read,
       result_valid = 1; in the same instant busy = 0 and trigger_ready = 1 (the next part may be triggered
       before this result is acknowledged: results queue, and overrun says one waits behind the one shown).
       So the fall of busy, or the rise of trigger_ready, is never seen before the result is there.
    5. PLC reads the result, sets result_ack = 1; result_valid, pass, fail and no_read drop at once.
    6. PLC sets result_ack = 0; the next waiting result (if any) is shown (back to 4).
A result_id the PLC has already handled (shown again after a daemon restart before its acknowledgement reached
the outbox) is acknowledged again and not counted twice.

Exposure: Modbus has no authentication and no encryption; whoever reaches the port can trigger cycles and
acknowledge (and so hide) results. ModbusConfig.host defaults to 127.0.0.1; set it to the address of the NIC on
the PLC side, never to an office or internet-facing network. The default port is 5020: 502 needs root or
CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE), or a port redirect.

Slow and idle clients: at most ModbusConfig.max_connections connections; a new one past that evicts first a
connection that never sent a request, else the one whose last request is oldest (a polling PLC is never it), so
silent sockets cannot lock a PLC out. A connection with no complete request for idle_timeout_s is closed (a
trickling or half-sent request counts as none). One that does not read its replies is closed when more than
_MAX_UNREAD_REPLY_BYTES of them wait. pymodbus has none of these itself. Several requests sent at once (a master
with outstanding transactions) are each answered, in order; pymodbus alone answers the first of a segment.

Threads: pymodbus runs on an asyncio loop in a thread of its own; requests are handled there. The sink's thread
(QueueSink's) reads the outbox and decides what each camera shows. Both meet in the per-camera state under one
lock; board state (trigger_ready, busy) is read from the board at each request, so it is never stale. Relies on
pymodbus 3.16.1's server (pinned in setup.py and requirements-lock.txt): SimDevice's action hook and the
connection handler class the server builds per connection.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Optional

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ExceptionResponse
from pymodbus.pdu.bit_message import WriteSingleCoilRequest
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simutils import SimUtils

from daemon.publish.outbox import OutboxRow, SinkQueue
from daemon.publish.sinks.base import QueueSink, SinkDown, Undeliverable
from daemon.publish.sinks.loop_thread import LoopThread
from daemon.readings.trigger_commands import select_recipe
from daemon.readings.triggers import Trigger, TriggerBoard

log = logging.getLogger(__name__)

# Offsets from a camera's base address, per table (the module docstring's map).
COIL_TRIGGER, COIL_RESULT_ACK = 0, 1
COILS = 2
DI_TRIGGER_READY, DI_TRIGGER_ACK, DI_BUSY, DI_RESULT_VALID, DI_OVERRUN = 0, 1, 2, 3, 4
DI_PASS, DI_FAIL, DI_NO_READ, DI_MISSED_TRIGGER, DI_RECIPE_REFUSED, DI_CAMERA_ERROR = 5, 6, 7, 8, 9, 10
DISCRETE_INPUTS = 11
IR_RESULT_ID, IR_STATUS, IR_TRIGGER_ID, IR_TEXT_LENGTH, IR_TEXT = 0, 2, 3, 5, 6
TEXT_CHARS = 40
IR_COUNTERS = IR_TEXT + TEXT_CHARS // 2   # 26
COUNTERS = ("cycles", "good_reads", "no_reads", "no_labels", "mismatches", "multiples", "missed_triggers")
IR_RECIPE = IR_COUNTERS + 2 * len(COUNTERS)   # 40
INPUT_REGISTERS = IR_RECIPE + 1
HR_TRIGGER_ID, HR_EXPECTED = 0, 2
HR_RECIPE = HR_EXPECTED + TEXT_CHARS // 2   # 22
HOLDING_REGISTERS = HR_RECIPE + 1
BLOCK_SPAN = 50   # a camera's block in every table fits in this many addresses; bases at least this far apart

STATUS_CODES = {"good_read": 1, "no_read": 2, "no_label": 3, "mismatch": 4, "multiple": 5}
STATUS_UNKNOWN = 255
_STATUS_COUNTER = {"good_read": "good_reads", "no_read": "no_reads", "no_label": "no_labels",
                   "mismatch": "mismatches", "multiple": "multiples"}
_NOTHING_READ = ("no_read", "no_label")

_CALL_TIMEOUT_S = 10.0
_MAX_UNREAD_REPLY_BYTES = 64 * 1024   # replies a client has not read; far above any PLC's pipelining
_MAX_PIPELINED = 64   # requests one connection sent and was not yet answered (a master's outstanding transactions)
_SCAN_ROWS = 64


@dataclass(frozen=True)
class ModbusConfig:
    """The Modbus TCP server: where it listens, and each camera's base address (see the module's map)."""
    cameras: Mapping[str, int]              # camera name -> base address (conventionally camera i at i * 100)
    host: str = "127.0.0.1"                 # Modbus has no authentication: bind to the PLC-side NIC only
    port: int = 5020                        # 502 needs root or CAP_NET_BIND_SERVICE
    unit_id: int = 1
    max_connections: int = 16               # a PLC, an HMI, a SCADA poller and room for reconnects
    idle_timeout_s: float = 60.0            # a connection without a request this long is closed

    def __post_init__(self):
        cams = {str(k): int(v) for k, v in dict(self.cameras).items()}
        object.__setattr__(self, "cameras", MappingProxyType(cams))
        if not cams:
            raise ValueError("modbus: cameras: name at least one camera and its base address")
        for name, base in cams.items():
            if not 0 <= base <= 65536 - BLOCK_SPAN:
                raise ValueError(f"modbus: cameras.{name}: base address {base} is not within 0..{65536 - BLOCK_SPAN}")
        ordered = sorted(cams.items(), key=lambda kv: kv[1])
        for (a, base_a), (b, base_b) in zip(ordered, ordered[1:]):
            if base_b - base_a < BLOCK_SPAN:
                raise ValueError(f"modbus: cameras.{b}: base address {base_b} is within {a}'s block "
                                 f"({base_a}..{base_a + BLOCK_SPAN - 1})")
        if not 1 <= int(self.port) <= 65535:
            raise ValueError(f"modbus: port: {self.port} is not a TCP port")
        if not 1 <= int(self.unit_id) <= 255:
            raise ValueError(f"modbus: unit_id: {self.unit_id} is not within 1..255")
        if int(self.max_connections) < 1:
            raise ValueError(f"modbus: max_connections: {self.max_connections} is below 1")
        if not float(self.idle_timeout_s) > 0:
            raise ValueError(f"modbus: idle_timeout_s: {self.idle_timeout_s} is not above 0")

    @classmethod
    def for_cameras(cls, names, **kw) -> "ModbusConfig":
        """The conventional layout: the i-th camera at base address i * 100."""
        return cls(cameras={name: i * 100 for i, name in enumerate(names)}, **kw)


# ------------------------------------------------------------------ values as registers

def uint32_registers(value: int) -> list[int]:
    """High word first (big-endian word order, what most PLCs read as a DINT/UDINT)."""
    value &= 0xFFFFFFFF
    return [value >> 16, value & 0xFFFF]


def registers_uint32(regs) -> int:
    return ((int(regs[0]) & 0xFFFF) << 16) | (int(regs[1]) & 0xFFFF)


def ascii_registers(text: str, chars: int = TEXT_CHARS) -> list[int]:
    """Up to `chars` characters, 2 per register, first in the high byte, NUL padded; non-ASCII or control
    characters become '?'."""
    raw = bytes(ord(c) if 32 <= ord(c) < 127 else ord("?") for c in text[:chars]).ljust(chars, b"\0")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, chars, 2)]


def registers_ascii(regs) -> str:
    """The inverse: up to the first NUL; trailing spaces cut; bytes outside printable ASCII become '?'."""
    raw = bytearray()
    for reg in regs:
        raw += bytes(((int(reg) >> 8) & 0xFF, int(reg) & 0xFF))
    raw = raw.split(b"\0", 1)[0]
    return "".join(chr(b) if 32 <= b < 127 else "?" for b in raw).rstrip(" ")


def _trigger_id_number(trigger_id: Optional[str]) -> int:
    text = (trigger_id or "").strip()
    if text.isdigit() and int(text) <= 0xFFFFFFFF:
        return int(text)
    return 0


def _check_bindable(host: str, port: int) -> None:
    """Raises the OSError a bind would (address in use, not an address of this machine), for the log line."""
    family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as asyncio's server binds
        s.bind(address)


# ------------------------------------------------------------------ pymodbus's own log

_PYMODBUS_LOG = logging.getLogger("pymodbus.logging")   # where pymodbus 3.16 logs everything


class PymodbusLogLimit(logging.Filter):
    """pymodbus logs each bad request a client sends (an ERROR with a traceback, a hex dump): a client on the plant
    network could write megabytes a second into the journal. One of its lines a minute passes, without the
    traceback (pymodbus's own code, nothing to act on), with the count of those left out since."""

    def __init__(self, every_s: float = 60.0, clock=time.monotonic):
        super().__init__()
        self._every_s, self._clock = every_s, clock
        self._lock = threading.Lock()
        self._next = float("-inf")
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            now = self._clock()
            if now < self._next:
                self._dropped += 1
                return False
            self._next = now + self._every_s
            dropped, self._dropped = self._dropped, 0
        message = record.getMessage().splitlines()[0][:300] if record.msg else ""
        if dropped:
            message += f" ({dropped} more pymodbus lines left out in the last {self._every_s:.0f} s or so)"
        record.msg, record.args = message, ()
        record.exc_info = record.exc_text = record.stack_info = None
        return True


# ------------------------------------------------------------------ results, as a row shows them

@dataclass(frozen=True)
class ShownResult:
    """What the PLC sees of one outbox row (the cycle result's fields of the ocr-result payload)."""
    row_id: int
    camera: str
    result_id: int
    status: str
    trigger_id: Optional[str]
    text: str                 # the first line

    @property
    def status_code(self) -> int:
        return STATUS_CODES.get(self.status, STATUS_UNKNOWN)

    @classmethod
    def of_row(cls, row: OutboxRow) -> Optional["ShownResult"]:
        """None for a row the PLC is not shown (not a reading, or a continuous reading without result_id);
        Undeliverable for a broken one."""
        try:
            doc = json.loads(row.payload)
        except ValueError as exc:
            raise Undeliverable(f"payload is not JSON: {exc}") from None
        if not isinstance(doc, dict) or not str(doc.get("schema", "")).startswith("ocr-result/"):
            return None
        if doc.get("result_id") is None:
            return None
        try:
            result_id = doc["result_id"]
            if isinstance(result_id, bool) or not isinstance(result_id, int) or result_id < 0:
                raise ValueError(f"result_id {result_id!r} is not a non-negative integer")
            texts = doc.get("texts") or []
            trigger_id = doc.get("trigger_id")
            return cls(row_id=row.id, camera=str(doc.get("camera", row.camera)), result_id=result_id,
                       status=str(doc.get("status", "")),
                       trigger_id=None if trigger_id is None else str(trigger_id),
                       text=str(texts[0].get("text", "")) if texts else "")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise Undeliverable(f"not a readable cycle result: {exc}") from None


@dataclass
class _Station:
    """One camera's Modbus state. Guarded by the sink's lock; the loop thread (requests) and the sink's thread
    (results) both change it."""
    camera: str
    base: int
    board: Optional[TriggerBoard]
    trigger: bool = False             # the coils as the PLC last wrote them
    result_ack: bool = False
    holding: list = field(default_factory=lambda: [0] * HOLDING_REGISTERS)
    trigger_ack: bool = False
    missed_trigger: bool = False
    recipe_refused: bool = False
    shown: Optional[ShownResult] = None   # the result in the registers (kept after its acknowledgement)
    valid: bool = False                   # result_valid
    acked_row: Optional[int] = None       # the row the PLC acknowledged; the sink deletes its line
    deferred: Optional[ShownResult] = None   # the next result, shown once result_ack is back to 0
    overrun: bool = False
    counted: Optional[int] = None         # the last result_id counted
    # The board's last result id that an outbox scan has looked past (shown, or queued behind the one shown): the
    # board is ready as soon as the result is stored, and this sink shows it a scan later; until then the PLC is
    # told busy, so that busy never falls before result_valid rises.
    released: int = 0
    counters: dict = field(default_factory=lambda: {name: 0 for name in COUNTERS[:-1]})

    def show(self, result: ShownResult) -> None:
        self.shown, self.valid, self.deferred, self.acked_row = result, True, None, None
        if self.counted != result.result_id:
            self.counted = result.result_id
            self.counters["cycles"] += 1
            name = _STATUS_COUNTER.get(result.status)
            if name is not None:
                self.counters[name] += 1


# ------------------------------------------------------------------ the server, with bounded connections

class _Connection(ServerRequestHandler):
    """pymodbus's per-connection handler, remembering when it last got a whole request, and answering every
    request of a segment in order: pymodbus takes one request per received segment and keeps the rest until more
    bytes come, so a master that sends several at once (Modbus TCP allows it) had all but the first ignored."""

    def __init__(self, owner, *args):
        super().__init__(owner, *args)
        self.opened = self.loop.time()
        self.last_request: Optional[float] = None
        self._requests: collections.deque = collections.deque()   # (pdu, addr) received, not yet answered
        self._answering = False

    def callback_data(self, data: bytes, addr=None) -> int:
        used = 0
        while used < len(data):
            n = super().callback_data(data[used:], addr)
            if self.last_pdu is not None:
                self._requests.append((self.last_pdu, self.last_addr))
                self.last_pdu = None
            if n <= 0:   # the rest is not a whole request yet: kept by pymodbus for the next bytes
                break
            used += n
        if len(self._requests) > _MAX_PIPELINED:
            log.debug("modbus: closing a connection with more than %d requests unanswered", _MAX_PIPELINED)
            self._requests.clear()
            self.close()
        elif self._requests and not self._answering:
            self._answering = True
            self.loop.create_task(self._answer_all())
        return used

    def handle_later(self) -> None:
        """pymodbus's own scheduling of one request: every request is answered by _answer_all instead."""

    async def _answer_all(self) -> None:
        try:
            while self._requests:
                self.last_pdu, self.last_addr = self._requests.popleft()
                await self.handle_request()
        finally:
            self.last_pdu = None
            self._answering = False

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if self.is_closing:   # evicted between asyncio's accept and this call (a burst of connections)
            transport.close()

    async def handle_request(self):
        self.last_request = self.loop.time()
        await super().handle_request()

    def server_send(self, pdu, addr):
        transport = self.transport
        if transport is not None and transport.get_write_buffer_size() > _MAX_UNREAD_REPLY_BYTES:
            log.debug("modbus: closing a connection that does not read its replies")
            self.close()
            return
        super().server_send(pdu, addr)

    @property
    def idle_since(self) -> float:
        return self.last_request if self.last_request is not None else self.opened


class _WriteSingleCoil(WriteSingleCoilRequest):
    """FC 5 as the Modbus specification has it: 0xFF00 is ON, 0x0000 OFF, and any other value exception 03
    (pymodbus takes every value that is not 0 as ON)."""

    def decode(self, data: bytes) -> None:
        super().decode(data)
        self.value = int.from_bytes(data[2:4], "big")

    async def datastore_update(self, context, device_id: int):
        if getattr(self, "value", 0xFF00) not in (0x0000, 0xFF00):
            return ExceptionResponse(self.function_code, ExcCodes.ILLEGAL_VALUE)
        return await super().datastore_update(context, device_id)


class _Server(ModbusTcpServer):
    def __init__(self, devices, address, max_connections: int, idle_timeout_s: float):
        super().__init__(devices, address=address, custom_pdu=[_WriteSingleCoil])
        self._max_connections = max_connections
        self._idle_timeout_s = idle_timeout_s
        self._sweeper: Optional[asyncio.Task] = None
        self.evicted = 0
        self.timed_out = 0

    def callback_new_connection(self):
        # The new connection is not in active_connections yet: make room for it.
        open_now = [c for c in self.active_connections.values() if isinstance(c, _Connection)]
        while len(open_now) >= self._max_connections:
            # A connection that never sent a request goes first, then the one idle longest.
            victim = min(open_now, key=lambda c: (c.last_request is not None, c.idle_since))
            open_now.remove(victim)
            victim.close()
            self.evicted += 1
            log.debug("modbus: %d connections open, closed the one idle longest for a new one",
                      self._max_connections)
        return _Connection(self, self.trace_packet, self.trace_pdu, self.trace_connect)

    async def start(self) -> None:
        await self.serve_forever(background=True)   # RuntimeError when it cannot listen
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self._idle_timeout_s / 4))
            cutoff = self.loop.time() - self._idle_timeout_s
            for conn in [c for c in self.active_connections.values() if isinstance(c, _Connection)]:
                if conn.idle_since < cutoff:
                    conn.close()
                    self.timed_out += 1

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        await self.shutdown()


# ------------------------------------------------------------------ the sink

class ModbusSink(QueueSink):
    """The Modbus TCP server as a sink (results, acknowledged by the PLC) and a trigger source (the boards).

    Threads: start()/stop()/wake()/health() from the service; requests on the sink's asyncio thread; the outbox
    on the sink's own thread. Never blocks a request on the outbox: a PLC's acknowledgement is recorded at once
    and the row's delivery line is deleted by the sink's thread right after. stop(drain_timeout_s) gives the PLC
    that long to acknowledge what it is shown; what it did not acknowledge is shown again after the restart.
    health().up: the server listens.
    """

    name = "modbus"

    def __init__(self, cfg: ModbusConfig, queue: SinkQueue, boards: Mapping[str, TriggerBoard]):
        super().__init__(queue, 1.0, 30.0)
        self._cfg = cfg
        self._boards = dict(boards)
        self._lock = threading.Lock()
        self._stations = {cam: _Station(cam, base, self._boards.get(cam)) for cam, base in cfg.cameras.items()}
        self._by_base = sorted((st.base, st) for st in self._stations.values())
        self._loop = LoopThread("modbus-loop", "the Modbus server")   # the asyncio server's own thread
        self._server: Optional[_Server] = None
        self._unknown_cameras: set[str] = set()
        for cam in self._boards:
            if cam not in self._stations:
                log.warning("modbus: camera %s has a trigger board but no Modbus block (modbus cameras)", cam)
        logging.getLogger("pymodbus").setLevel(max(logging.WARNING, logging.getLogger("pymodbus").level))
        if not any(isinstance(f, PymodbusLogLimit) for f in _PYMODBUS_LOG.filters):
            _PYMODBUS_LOG.addFilter(PymodbusLogLimit())

    @property
    def address(self) -> tuple[str, int]:
        return self._cfg.host, self._cfg.port

    # ------------------------------------------------------------ QueueSink's hooks

    def _run(self, coro, timeout_s: float = _CALL_TIMEOUT_S):
        return self._loop.run(coro, timeout_s)

    def _connect(self) -> None:
        try:
            _check_bindable(self._cfg.host, self._cfg.port)
        except OSError as exc:   # pymodbus would only say "could not start listen"
            raise SinkDown(f"cannot serve Modbus TCP on {self._cfg.host}:{self._cfg.port}: {exc}") from None
        try:
            self._run(self._start_server())
        except SinkDown:
            raise
        except Exception as exc:   # the port is taken, the address is not ours
            self._run(self._stop_server())
            raise SinkDown(f"cannot serve Modbus TCP on {self._cfg.host}:{self._cfg.port}: "
                           f"{type(exc).__name__}: {exc}") from None

    def _disconnect(self) -> None:
        self._loop.close(self._shutdown, _CALL_TIMEOUT_S)

    def _send_some(self) -> None:
        """Not QueueSink's delivery: a row is shown and leaves only once the PLC acknowledged it. Each pass
        deletes the acknowledged rows, then shows each camera's oldest row still owed."""
        # Taken before the scan: a board finishes a cycle only after its result is stored, so this scan sees it.
        finished = {cam: st.board.state().last_result_id or 0 for cam, st in self._stations.items()
                    if st.board is not None}
        while True:
            heads, more = self._scan()
            with self._lock:
                acked = [(cam, r) for cam, r in heads.items() if self._stations[cam].acked_row == r.row_id]
            if not acked:
                break
            self._queue.delete_many([r.row_id for _, r in acked])   # raises: kept, deleted on a later pass
            self.counters.add("delivered", len(acked))
            with self._lock:
                for cam, r in acked:
                    if self._stations[cam].acked_row == r.row_id:
                        self._stations[cam].acked_row = None
        with self._lock:
            for cam, st in self._stations.items():
                self._present_locked(st, heads.get(cam), cam in more)
                st.released = max(st.released, finished.get(cam, 0))

    # ------------------------------------------------------------ the outbox side (the sink's thread)

    def _scan(self) -> tuple[dict[str, ShownResult], set[str]]:
        """Per camera its oldest result row still owed, and the cameras with more than one. Rows not shown to a
        PLC are acknowledged (skipped) and broken ones dead-lettered on the way."""
        heads: dict[str, ShownResult] = {}
        more: set[str] = set()
        # The rows shown (or about to be) first, by id: given to pending() as in flight, so neither the TTL nor a
        # cap removes a result while the PLC looks at it. Each is its camera's oldest row owed.
        with self._lock:
            showing = [r for st in self._stations.values()
                       for r in (st.shown if st.valid or st.acked_row is not None else None, st.deferred)
                       if r is not None]
        for result in showing:
            if self._queue.get(result.row_id) is not None:
                heads[result.camera] = result
        while True:
            rows = self._queue.pending(_SCAN_ROWS, [r.row_id for r in heads.values()], more)
            skipped: list[int] = []
            for row in rows:
                try:
                    result = ShownResult.of_row(row)
                except Undeliverable as exc:
                    if self._queue.dead_letter(row.id, str(exc)):
                        self.counters.add("dead_lettered")
                    continue
                if result is not None and row.camera not in self._stations:
                    if row.camera not in self._unknown_cameras:
                        self._unknown_cameras.add(row.camera)
                        log.warning("modbus: camera %s has no Modbus block; its results are not shown", row.camera)
                    result = None
                if result is None:
                    skipped.append(row.id)
                elif row.camera not in heads:
                    heads[row.camera] = result
                else:
                    more.add(row.camera)
            if skipped:
                self._queue.delete_many(skipped)
                self.counters.add("skipped", len(skipped))
            if len(rows) < _SCAN_ROWS:
                return heads, more

    def _present_locked(self, st: _Station, head: Optional[ShownResult], more: bool) -> None:
        st.overrun = more
        if head is None:
            st.deferred = None
            if st.valid:   # the row shown left the outbox without an acknowledgement (TTL, caps, CLI)
                st.valid = False
            return
        if st.shown is not None and st.shown.row_id == head.row_id:
            return   # shown already (and maybe acknowledged: deleted on the next pass)
        if st.valid or not st.result_ack:
            st.show(head)   # a valid one is replaced only when its row left the outbox unacknowledged
        else:
            st.deferred = head   # result_ack is still 1: shown when the PLC sets it back to 0

    # ------------------------------------------------------------ the PLC side (the loop thread)

    def _station_at(self, address: int) -> tuple[Optional[_Station], int]:
        for base, st in self._by_base:
            if base <= address < base + BLOCK_SPAN:
                return st, address - base
        return None, -1

    async def _action(self, func_code: int, start_address: int, address: int, count: int,
                      registers: list[int], values) -> Optional[ExcCodes]:
        """pymodbus calls this before each request touches a table: a write updates the stations (and may offer
        a trigger); a read gets the table rendered from them into `registers`, pymodbus's memory."""
        try:
            if values is not None and func_code in (5, 15):
                if any(self._station_at(address + i)[1] >= COILS for i in range(len(list(values)))):
                    return ExcCodes.ILLEGAL_ADDRESS   # a coil the map does not list: a PLC's wrong address
                self._write_coils(address, list(values))
            elif values is not None and func_code in (6, 16, 22, 23):
                self._write_holding(address, list(values))
            if func_code in (1, 5, 15):
                self._render_bits(registers, start_address, self._coil_bits)
            elif func_code == 2:
                self._render_bits(registers, start_address, self._discrete_bits)
            elif func_code == 4:
                self._render_registers(registers, start_address, self._input_registers)
            elif func_code in (3, 6, 16, 22, 23):
                self._render_registers(registers, start_address, lambda st: st.holding)
            return None
        except Exception:   # never let a bug here become pymodbus's ERROR with a traceback per request
            log.exception("modbus: handling function %d at %d failed", func_code, address)
            return ExcCodes.DEVICE_FAILURE

    @staticmethod
    async def _other_unit(*_args) -> ExcCodes:
        return ExcCodes.GATEWAY_NO_RESPONSE

    def _write_coils(self, address: int, bits: list) -> None:
        offers: list[_Station] = []
        wake = False
        with self._lock:
            for i, bit in enumerate(bits):
                st, offset = self._station_at(address + i)
                if st is None:
                    continue
                bit = bool(bit)
                if offset == COIL_TRIGGER:
                    if bit and not st.trigger:
                        offers.append(st)
                    elif not bit:
                        st.trigger_ack = False
                    st.trigger = bit
                elif offset == COIL_RESULT_ACK:
                    if bit and not st.result_ack and st.valid and st.shown is not None:
                        st.valid = False
                        st.acked_row = st.shown.row_id
                        wake = True
                    elif not bit and st.result_ack and st.deferred is not None and not st.valid:
                        st.show(st.deferred)
                    st.result_ack = bit
        for st in offers:   # outside the lock: the board calls its subscribers
            accepted = self._offer(st)
            with self._lock:
                st.trigger_ack = accepted
                if accepted:
                    st.missed_trigger = False
                else:
                    st.missed_trigger = True
        if wake:
            self.wake()

    def _offer(self, st: _Station) -> bool:
        if st.board is None:
            log.debug("modbus: a trigger for camera %s, which is not triggered", st.camera)
            return False
        with self._lock:
            trigger_id = registers_uint32(st.holding[HR_TRIGGER_ID:HR_TRIGGER_ID + 2])
            expected = registers_ascii(st.holding[HR_EXPECTED:HR_EXPECTED + TEXT_CHARS // 2])
        answer = st.board.offer(Trigger(camera=st.camera, source="modbus",
                                        trigger_id=str(trigger_id) if trigger_id else None,
                                        expected=expected or None))
        return answer.accepted

    def _write_holding(self, address: int, regs: list) -> None:
        selections: list[tuple[_Station, int]] = []
        with self._lock:
            for i, value in enumerate(regs):
                st, offset = self._station_at(address + i)
                if st is not None and 0 <= offset < HOLDING_REGISTERS:
                    st.holding[offset] = int(value) & 0xFFFF
                    if offset == HR_RECIPE:
                        selections.append((st, st.holding[offset]))
        for st, number in selections:   # outside the lock: the board calls its subscribers
            accepted = self._select_recipe(st, number)
            with self._lock:
                st.recipe_refused = not accepted

    @staticmethod
    def _select_recipe(st: _Station, number: int) -> bool:
        if st.board is None:
            log.warning("modbus: a recipe for camera %s, which is not triggered", st.camera)
            return False
        recipes = st.board.state().recipes
        if number > len(recipes):
            log.warning("%s: recipe selection over modbus refused: recipe number %d, and there are %d recipes",
                        st.camera, number, len(recipes))
            return False
        return select_recipe(st.board, recipes[number - 1] if number else None, "modbus").accepted

    def _render_bits(self, registers: list[int], start_register: int, bits_of) -> None:
        bits = SimUtils.registersToBits(registers)
        first = start_register * 16
        with self._lock:
            for base, st in self._by_base:
                for offset, bit in enumerate(bits_of(st)):
                    at = base + offset - first
                    if 0 <= at < len(bits):
                        bits[at] = bool(bit)
        registers[:] = SimUtils.bitsToRegisters(bits)

    def _render_registers(self, registers: list[int], start_address: int, regs_of) -> None:
        with self._lock:
            for base, st in self._by_base:
                for offset, value in enumerate(regs_of(st)):
                    at = base + offset - start_address
                    if 0 <= at < len(registers):
                        registers[at] = int(value) & 0xFFFF

    @staticmethod
    def _coil_bits(st: _Station) -> list[bool]:
        return [st.trigger, st.result_ack]

    @staticmethod
    def _discrete_bits(st: _Station) -> list[bool]:
        board = st.board.state() if st.board is not None else None
        shown = st.shown if st.valid else None
        # A finished cycle whose result no scan has looked past yet is still busy here (see _Station.released).
        busy = board is not None and (board.busy or board.waiting or (board.last_result_id or 0) > st.released)
        return [board is not None and not busy and not board.camera_error and not st.trigger, st.trigger_ack,
                busy, st.valid, st.overrun,
                shown is not None and shown.status == "good_read",
                shown is not None and shown.status != "good_read",
                shown is not None and shown.status in _NOTHING_READ, st.missed_trigger, st.recipe_refused,
                board is not None and bool(board.camera_error)]

    @staticmethod
    def _input_registers(st: _Station) -> list[int]:
        shown = st.shown
        regs = [0] * INPUT_REGISTERS
        if shown is not None:
            regs[IR_RESULT_ID:IR_RESULT_ID + 2] = uint32_registers(shown.result_id)
            regs[IR_STATUS] = shown.status_code
            regs[IR_TRIGGER_ID:IR_TRIGGER_ID + 2] = uint32_registers(_trigger_id_number(shown.trigger_id))
            regs[IR_TEXT_LENGTH] = min(len(shown.text), 0xFFFF)
            regs[IR_TEXT:IR_TEXT + TEXT_CHARS // 2] = ascii_registers(shown.text)
        counts = dict(st.counters)
        counts["missed_triggers"] = st.board.state().counters.missed if st.board is not None else 0
        for i, name in enumerate(COUNTERS):
            regs[IR_COUNTERS + 2 * i:IR_COUNTERS + 2 * i + 2] = uint32_registers(counts[name])
        regs[IR_RECIPE] = st.board.state().recipe_number if st.board is not None else 0
        return regs

    # ------------------------------------------------------------ the server (the loop thread)

    def _tables(self) -> tuple:
        """Each camera's block in each table; addresses between blocks are refused (registers) or unused."""
        def bits(n: int) -> list:
            # n values with count 1, not one value with count n: pymodbus 3.16.1's overlap check multiplies by
            # count twice, so count n took n * n addresses (bases closer than that were refused as overlapping)
            return [SimData(base, count=1, values=[False] * n, datatype=DataType.BITS) for base, _ in self._by_base]

        def regs(n: int) -> list:
            return [SimData(base, count=n, values=0, datatype=DataType.REGISTERS) for base, _ in self._by_base]
        return bits(COILS), bits(DISCRETE_INPUTS), regs(HOLDING_REGISTERS), regs(INPUT_REGISTERS)

    async def _start_server(self) -> None:
        await self._stop_server()
        cfg = self._cfg
        devices = [SimDevice(cfg.unit_id, simdata=self._tables(), action=self._action),
                   SimDevice(0, simdata=self._tables(), action=self._other_unit)]   # 0: every other unit id
        server = _Server(devices, (cfg.host, cfg.port), cfg.max_connections, cfg.idle_timeout_s)
        try:
            await server.start()
        except BaseException:
            await server.stop()
            raise
        self._server = server
        log.info("modbus: serving Modbus TCP on %s:%d, unit id %d, cameras %s%s", cfg.host, cfg.port, cfg.unit_id,
                 ", ".join(f"{st.camera} at {base}" for base, st in self._by_base),
                 " (every IPv4 interface: Modbus has no authentication)" if cfg.host in ("0.0.0.0", "") else "")

    async def _stop_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            try:
                await server.stop()
            except Exception as exc:
                log.debug("modbus: stopping the server: %s", exc)
            log.info("modbus: stopped serving; %d connections closed to make room, %d for being idle",
                     server.evicted, server.timed_out)

    async def _shutdown(self) -> None:
        """Stops the server, then ends what is left on the loop (a request being handled): a task still pending
        when the loop closes is an asyncio ERROR."""
        await self._stop_server()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
