"""The trigger board of a triggered camera: where protocols offer triggers and the camera's lane takes them.

A triggered camera reads only when asked. Every protocol that can ask (MQTT, HTTP, OPC UA, Modbus) offers a
Trigger to the camera's one TriggerBoard; the lane takes it, runs the read cycle and finishes it. The board is
the PLC-facing state every protocol reads (ready, busy, the last result id and status, the counters), so they
all tell the same story.

    ready ──offer──► waiting ──take──► busy ──finish──► ready
                       │                 │
                     offer             offer
                       ▼                 ▼
               missed ("waiting")  missed ("busy")

One trigger at most waits: a trigger offered while one waits or a cycle is busy is missed, and so is every trigger
once the daemon has begun to stop (close): its cameras are gone, and the part would wait for the next start. A
missed trigger is counted and answered (TriggerAnswer.accepted False, with the reason), never dropped silently; the
protocol tells its client (a Modbus bit, an HTTP 409, an MQTT reply). A trigger the camera could not judge (its
recipe's template has a field the trigger gives no value for: the lane's `check`) is refused, as a bad command is:
answered with the reason (TriggerAnswer.refused), not counted, and nothing runs, so a part is never failed for what
the PLC did not send.

The board also holds the camera's active recipe: the one a trigger naming none is judged by. Any protocol selects
it (select_recipe); it applies to the triggers accepted after it, with no reload and no model load. A trigger takes
the active recipe when it is accepted, so a changeover sent right after a trigger (a PLC's "next product") does not
change how that part is judged, and the open-cycle marker names the recipe its result will name. An unknown name is
refused and the active recipe stays. Pure (no I/O, no clock reads beyond a Trigger's default arrival times) apart
from the hooks others register: on_accept (the lane's open-cycle marker) and the subscribers.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping, Optional, Sequence

from daemon.printable import printable

log = logging.getLogger(__name__)

SOURCES = ("mqtt", "http", "opcua", "modbus", "restart")   # restart: a cycle a restart interrupted, answered

ACCEPTED = "accepted"
MISSED_BUSY = "busy"          # a cycle is running
MISSED_WAITING = "waiting"    # a trigger was accepted and the lane has not taken it yet
MISSED_STOPPING = "stopping"  # the daemon is stopping: its cameras are gone, no cycle can run
REFUSED = "refused"           # the trigger cannot be judged as sent (TriggerBoard.check)


@dataclass(frozen=True)
class Trigger:
    """One request to read, as a protocol received it. `fields` are template field values for the
    verification (``LOT {lot}``); `expected` replaces the recipe's expectation for this one cycle."""
    camera: str
    source: str                                   # one of SOURCES
    trigger_id: Optional[str] = None              # the client's id, echoed in the result
    expected: Optional[str] = None
    recipe: Optional[str] = None
    fields: Mapping[str, str] = field(default_factory=dict, hash=False)
    received_at: float = field(default_factory=time.time)          # wall clock, for the payload
    received_mono: float = field(default_factory=time.monotonic)   # for trigger-to-result latency

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"trigger source {self.source!r} is not one of {', '.join(SOURCES)}")
        # A read-only copy: the caller's dict changing later does not change the trigger.
        object.__setattr__(self, "fields", MappingProxyType({str(k): str(v) for k, v in dict(self.fields).items()}))


@dataclass(frozen=True)
class BoardCounters:
    triggers: int = 0    # offered
    accepted: int = 0
    missed: int = 0      # offered while busy or while one waited (triggers == accepted + missed)
    recipe_changes: int = 0   # selections that changed the active recipe


@dataclass(frozen=True)
class BoardState:
    """A snapshot of one board. `version` grows with every change: callbacks run outside the board's lock, so two
    of them may arrive out of order, and a subscriber drops a state older than the one it has."""
    camera: str
    ready: bool                        # a trigger now would be accepted
    waiting: bool                      # a trigger was accepted and waits for the lane
    busy: bool                         # the lane runs a cycle
    cycle_seq: int                     # the last accepted trigger's cycle (0: none yet)
    last_result_id: Optional[int]      # of the last finished cycle
    last_status: Optional[str]
    counters: BoardCounters
    version: int
    recipe: Optional[str] = None       # the active recipe (None: the camera's own expect_*)
    recipes: tuple = ()                # the recipes it may select, in config order (Modbus numbers them from 1)
    camera_error: Optional[str] = None   # why the camera cannot read now (not streaming); None: it can

    @property
    def recipe_number(self) -> int:
        """The active recipe's number: its place in the config's recipes from 1; 0: none (the camera's own)."""
        return self.recipes.index(self.recipe) + 1 if self.recipe in self.recipes else 0

    def as_dict(self) -> dict:
        return {"camera": self.camera, "ready": self.ready, "waiting": self.waiting, "busy": self.busy,
                "cycle_seq": self.cycle_seq, "last_result_id": self.last_result_id, "last_status": self.last_status,
                "recipe": self.recipe, "camera_error": self.camera_error,
                "counters": {"triggers": self.counters.triggers, "accepted": self.counters.accepted,
                             "missed": self.counters.missed, "recipe_changes": self.counters.recipe_changes}}


@dataclass(frozen=True)
class TriggerAnswer:
    """What a protocol answers its client: accepted (served as cycle `cycle_seq`) or missed, and why."""
    accepted: bool
    reason: str                        # ACCEPTED, MISSED_BUSY, MISSED_WAITING, or "refused: why"
    cycle_seq: Optional[int]           # the cycle this trigger will be served as; None when missed
    state: BoardState                  # the board right after the offer

    @property
    def refused(self) -> bool:
        return self.reason.startswith(REFUSED)

    def as_dict(self) -> dict:
        return {"accepted": self.accepted, "reason": self.reason, "cycle_seq": self.cycle_seq,
                "state": self.state.as_dict()}


@dataclass(frozen=True)
class RecipeAnswer:
    """What a protocol answers a recipe selection: accepted (now active) or refused (the old one stays), and why."""
    accepted: bool
    reason: str
    state: BoardState

    def as_dict(self) -> dict:
        return {"camera": self.state.camera, "accepted": self.accepted, "reason": self.reason,
                "recipe": self.state.recipe}


class TriggerBoard:
    """One triggered camera's trigger slot and cycle state.

    Threads: offer() from any protocol thread, take() and finish() from the camera's lane (the work loop),
    state() from anyone; all are short and never block beyond the board's own lock. Subscribers are called after
    every change, outside the lock, in the thread that made the change, with the new BoardState: they must not
    block (a protocol hands the state to its own loop). A subscriber that raises is logged and kept.
    Guarantees: at most one trigger waits; every offer is counted and answered; take() hands a trigger out once.
    """

    def __init__(self, camera: str, recipes: Sequence[str] = (), recipe: Optional[str] = None,
                 camera_error: Optional[str] = None):
        self.camera = camera
        self._recipes = tuple(recipes)
        self._recipe = recipe if recipe in self._recipes else None
        self._recipe_changes = 0
        self._camera_error = camera_error   # the service's boards start "not streaming yet" (refresh_boards)
        self._closed: Optional[str] = None   # why no trigger is accepted any more (close)
        self._lock = threading.Lock()
        self._waiting: Optional[Trigger] = None
        self._busy = False
        self._cycle_seq = 0
        self._last_result_id: Optional[int] = None
        self._last_status: Optional[str] = None
        self._triggers = self._accepted = self._missed = 0
        self._version = 0
        self._subscribers: list[Callable[[BoardState], None]] = []
        # Called with each accepted trigger before offer() returns, so before any protocol answers "accepted": the
        # lane makes it durable there (its open-cycle marker), and a crash right after the answer still answers it.
        self.on_accept: Optional[Callable[[Trigger], None]] = None
        # Called under the board's lock with a trigger about to be accepted (its recipe bound): why it cannot be
        # judged, or None. Must be pure and quick (the lane resolves the expectation).
        self.check: Optional[Callable[[Trigger], Optional[str]]] = None

    # ------------------------------------------------------------ protocols

    def offer(self, trigger: Trigger) -> TriggerAnswer:
        if trigger.camera != self.camera:
            raise ValueError(f"a trigger for camera {trigger.camera!r} offered to {self.camera!r}'s board")
        with self._lock:
            missed = self._missed_because_locked()
            if missed is None:
                if trigger.recipe is None:
                    trigger = dataclasses.replace(trigger, recipe=self._recipe)
                why = self._check_locked(trigger)
                if why is not None:
                    log.warning("%s: trigger %s over %s refused: %s", self.camera,
                                printable(trigger.trigger_id or "")[:64] or "(no id)", trigger.source, why)
                    return TriggerAnswer(False, f"{REFUSED}: {why}", None, self._state_locked())
            self._triggers += 1
            if missed is not None:
                self._missed += 1
                reason, seq = missed, None
            else:
                self._accepted += 1
                self._cycle_seq += 1
                self._waiting = trigger
                reason, seq = ACCEPTED, self._cycle_seq
            state = self._changed_locked()
        if seq is not None and self.on_accept is not None:
            try:
                self.on_accept(trigger)
            except Exception:
                log.exception("trigger board %s: on_accept failed", self.camera)
        self._notify(state)
        return TriggerAnswer(accepted=seq is not None, reason=reason, cycle_seq=seq, state=state)

    def select_recipe(self, name: Optional[str]) -> RecipeAnswer:
        """Makes recipe `name` the active one (None: the camera's own expectation, no recipe); refused, and the
        active one kept, when name is not one of the board's recipes."""
        with self._lock:
            if name is not None and name not in self._recipes:
                known = ", ".join(self._recipes) or "none defined"
                reason = f"unknown recipe {printable(name)[:64]!r}: one of {known}"
                return RecipeAnswer(False, reason, self._state_locked())
            if name == self._recipe:
                return RecipeAnswer(True, "already active", self._state_locked())
            self._recipe = name
            self._recipe_changes += 1
            state = self._changed_locked()
        self._notify(state)
        return RecipeAnswer(True, "selected", state)

    def set_camera_error(self, error: Optional[str]) -> None:
        """The camera's state as the service sees it each turn: None while it streams, else why not. A trigger is
        still accepted meanwhile (and answered: no frame within the window is a no_read); the protocols show it
        (OPC UA's Error state, Modbus's camera_error bit)."""
        with self._lock:
            if error == self._camera_error or self._closed is not None:
                return
            self._camera_error = error
            state = self._changed_locked()
        self._notify(state)

    def close(self, why: str) -> None:
        """The daemon is stopping (why): every trigger from now on is missed (MISSED_STOPPING) and the protocols
        show the camera's error, so a PLC sees trigger_ready fall instead of a busy that ends at the next start."""
        with self._lock:
            if self._closed is not None:
                return
            self._closed = self._camera_error = why
            state = self._changed_locked()
        self._notify(state)

    def set_recipes(self, recipes: Sequence[str], default: Optional[str]) -> None:
        """A reload's recipes: the active one stays if it still exists, else the camera's configured one."""
        with self._lock:
            self._recipes = tuple(recipes)
            if self._recipe not in self._recipes:
                self._recipe = default if default in self._recipes else None
            state = self._changed_locked()
        self._notify(state)

    # ------------------------------------------------------------ the lane

    def hold(self) -> None:
        """Busy with a cycle the board never handed out: one a restart interrupted, until the lane's answer to it
        is stored (finish), so no protocol shows ready before the PLC's last part is answered."""
        with self._lock:
            if self._busy:
                return
            self._busy = True
            state = self._changed_locked()
        self._notify(state)

    def take(self) -> Optional[Trigger]:
        """The waiting trigger, once; the board is busy from now until finish(). None when none waits."""
        with self._lock:
            trigger, self._waiting = self._waiting, None
            if trigger is None:
                return None
            self._busy = True
            state = self._changed_locked()
        self._notify(state)
        return trigger

    def finish(self, result_id: int, status: str) -> None:
        """The lane ended the cycle with this result (stored): ready again."""
        with self._lock:
            self._busy = False
            self._last_result_id = int(result_id)
            self._last_status = str(status)
            state = self._changed_locked()
        self._notify(state)

    # ------------------------------------------------------------ everyone

    def state(self) -> BoardState:
        with self._lock:
            return self._state_locked()

    def waiting(self) -> bool:
        """Whether a trigger was accepted and waits for the lane (state().waiting, without building the state)."""
        with self._lock:
            return self._waiting is not None

    def subscribe(self, callback: Callable[[BoardState], None]) -> Callable[[], None]:
        """Calls callback(state) after each change; returns a function that unsubscribes it."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)
        return unsubscribe

    # ------------------------------------------------------------ inside

    def _missed_because_locked(self) -> Optional[str]:
        """Why a trigger offered now is missed (MISSED_STOPPING, MISSED_BUSY, MISSED_WAITING); None: it is taken."""
        if self._closed is not None:
            return MISSED_STOPPING
        if self._busy:
            return MISSED_BUSY
        return MISSED_WAITING if self._waiting is not None else None

    def _check_locked(self, trigger: Trigger) -> Optional[str]:
        if self.check is None:
            return None
        try:
            return self.check(trigger)
        except Exception:   # a bug in the check must not refuse every part: judged at the cycle's end instead
            log.exception("trigger board %s: the trigger check failed", self.camera)
            return None

    def _state_locked(self) -> BoardState:
        return BoardState(camera=self.camera, ready=not self._busy and self._waiting is None,
                          waiting=self._waiting is not None, busy=self._busy, cycle_seq=self._cycle_seq,
                          last_result_id=self._last_result_id, last_status=self._last_status,
                          counters=BoardCounters(self._triggers, self._accepted, self._missed, self._recipe_changes),
                          version=self._version, recipe=self._recipe, recipes=self._recipes,
                          camera_error=self._camera_error)

    def _changed_locked(self) -> BoardState:
        self._version += 1
        return self._state_locked()

    def _notify(self, state: BoardState) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(state)
            except Exception:
                log.exception("trigger board %s: a subscriber failed", self.camera)
