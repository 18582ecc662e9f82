"""The gate's state machine: pure, written as one table, no I/O and no clock.

Theory of operation (after h11's `_state.py`). The gate is in one of four phases, derived
from its state rather than stored, so the state can never disagree with itself:

    EMERGENCY  an emergency source is active (the fire-alarm input, or a remote command):
               relay latched open, free passage, no alarms for passages or a door held open
    GRANTED    admissions are waiting for their passage (first in, first out)
    LOCKED     a lock source holds: the operator's `lock` command, or the stale-list policy
               (revocations.when_stale = closed); scans are denied `locked` (decide() does that)
    IDLE       none of the above

Inputs are immutable values stamped with the time they happened (`at`, unix seconds):
a committed admission (`Grant`), the passage sensor (`Passage`), the gate/arm opening and
closing (`Opened`/`Closed`), the clock (`Tick`), and the commands (`Lock`, `Unlock`,
`EmergencyOn`, `EmergencyOff`). `step(state, input, rules)` looks up the row for
(phase, input type) in TABLE, applies its steps (functions below, each (state, event, rules) ->
(state, effects)) in order and returns the new state with the
effects the shell must carry out: relay commands, store writes (confirm or roll back an
admission, an alarm) and a change of mode. Every row is one parametrized test.

Rules the table encodes:
- an admission is confirmed by the first passage after it, or rolled back when nobody passed
  within `passage_timeout_s` (the ticket then works again);
- a passage with no admission waiting is `forced_entry` (also when locked);
- a free exit (ExitPassage: the out contact of a sensor that tells direction, or the passage
  sensor of a free-exit gate) is counted (CountExit) in every phase and changes nothing else;
- the gate open longer than `held_open_s` raises `held_open`, once per opening;
- emergency on: admissions waiting are rolled back (nobody can tell who passed during free
  passage), the relay is latched open, `emergency_on`; it ends when the last source clears
  (a remote `emergency_off` does not override a fire-alarm contact still active);
- a lock while admissions are waiting lets them finish: it only stops new ones;
- locks have sources, like emergencies: the operator (`command`) and the revocation policy
  (`stale_list`). The gate is locked while any source holds; an Unlock clears only its own
  source (a fresh list does not undo an operator's lock, an operator's unlock does not lift
  the fail-closed lock of a stale list).
The gate's mode (GateMode, also the `state` of a state event) follows from the state; `step`
adds a ModeChanged effect whenever a row changes it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Callable

from gated.core.decide import GateMode


class Phase(str, enum.Enum):
    IDLE = "idle"
    GRANTED = "granted"
    LOCKED = "locked"
    EMERGENCY = "emergency"


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """An admission committed to the store (scan_id), or a remote `open` (scan_id None).
    `confirmed`: no passage sensor, the admission counts as the relay opens."""

    at: float
    scan_id: str | None = None
    confirmed: bool = False


@dataclass(frozen=True)
class Passage:
    at: float


@dataclass(frozen=True)
class ExitPassage:
    """Somebody went out through a free exit (a free-exit gate's passage sensor, or the out
    contact of a sensor that tells direction): counted, nothing else."""

    at: float


@dataclass(frozen=True)
class Opened:
    at: float


@dataclass(frozen=True)
class Closed:
    at: float


@dataclass(frozen=True)
class Tick:
    at: float


LOCK_COMMAND = "command"  # the operator's remote `lock`/`unlock`
LOCK_STALE_LIST = "stale_list"  # the revocation list is stale and the policy is fail closed
LOCK_SOURCES = (LOCK_COMMAND, LOCK_STALE_LIST)


@dataclass(frozen=True)
class Lock:
    at: float
    source: str = LOCK_COMMAND


@dataclass(frozen=True)
class Unlock:
    at: float
    source: str = LOCK_COMMAND


@dataclass(frozen=True)
class EmergencyOn:
    at: float
    source: str = "input"  # "input" (fire-alarm contact) or "command"


@dataclass(frozen=True)
class EmergencyOff:
    at: float
    source: str = "input"


Input = Grant | Passage | ExitPassage | Opened | Closed | Tick | Lock | Unlock | EmergencyOn | EmergencyOff


# --- effects --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenRelay:
    """Let one person through: a pulse, or hold until the grants are done (per board profile)."""


@dataclass(frozen=True)
class CloseRelay:
    """No admission is waiting any more: end a held relay."""


@dataclass(frozen=True)
class LatchRelay:
    """Emergency: relay on and held, free passage."""


@dataclass(frozen=True)
class UnlatchRelay:
    pass


@dataclass(frozen=True)
class Confirm:
    scan_id: str


@dataclass(frozen=True)
class RollBack:
    scan_id: str


@dataclass(frozen=True)
class RaiseAlarm:
    alarm: str  # PROTOCOL §5: forced_entry, held_open, emergency_on, emergency_off, tamper


@dataclass(frozen=True)
class CountExit:
    """Record a free exit (a `passage` event `dir: out, free: true`)."""


@dataclass(frozen=True)
class ModeChanged:
    mode: GateMode


Effect = OpenRelay | CloseRelay | LatchRelay | UnlatchRelay | Confirm | RollBack | RaiseAlarm | CountExit | ModeChanged


# --- state ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    passage_timeout_s: float
    held_open_s: float


@dataclass(frozen=True)
class PendingGrant:
    scan_id: str | None
    deadline: float


@dataclass(frozen=True)
class GateState:
    grants: tuple[PendingGrant, ...] = ()
    locks: frozenset[str] = field(default_factory=frozenset)
    emergency: frozenset[str] = field(default_factory=frozenset)
    open_since: float | None = None
    held_alarmed: bool = False

    @property
    def locked(self) -> bool:
        """Any lock source holds."""
        return bool(self.locks)

    @property
    def phase(self) -> Phase:
        if self.emergency:
            return Phase.EMERGENCY
        if self.grants:
            return Phase.GRANTED
        if self.locked:
            return Phase.LOCKED
        return Phase.IDLE

    @property
    def mode(self) -> GateMode:
        if self.emergency:
            return GateMode.EMERGENCY
        if self.locked:
            return GateMode.LOCKED
        return GateMode.NORMAL


def next_deadline(state: GateState, rules: Rules) -> float | None:
    """When a Tick would next change something (None: nothing is timed)."""
    times = [g.deadline for g in state.grants]
    if state.open_since is not None and not state.held_alarmed and not state.emergency:
        times.append(state.open_since + rules.held_open_s)
    return min(times, default=None)


# --- steps: small pure functions (state, event, rules) -> (state, effects) ------------------


def add_grant(state: GateState, event: Grant, rules: Rules):
    if event.confirmed:
        return state, []  # already committed as passed: nothing to wait for
    return replace(state, grants=state.grants + (PendingGrant(event.scan_id, event.at + rules.passage_timeout_s),)), []


def refuse_grant(state: GateState, event: Grant, rules: Rules):
    # Only reachable if a scan grant races an emergency: the relay is latched anyway, and the
    # admission is rolled back so that the ticket stays good for later.
    return state, [RollBack(event.scan_id)] if event.scan_id and not event.confirmed else []


def open_relay(state: GateState, event: Input, rules: Rules):
    return state, [OpenRelay()]


def confirm_oldest(state: GateState, event: Input, rules: Rules):
    first, rest = state.grants[0], state.grants[1:]
    return replace(state, grants=rest), [Confirm(first.scan_id)] if first.scan_id else []


def expire_grants(state: GateState, event: Input, rules: Rules):
    expired = [g for g in state.grants if g.deadline <= event.at]
    kept = tuple(g for g in state.grants if g.deadline > event.at)
    return replace(state, grants=kept), [RollBack(g.scan_id) for g in expired if g.scan_id]


def close_if_done(state: GateState, event: Input, rules: Rules):
    return state, [] if state.grants else [CloseRelay()]


def rollback_all(state: GateState, event: Input, rules: Rules):
    return replace(state, grants=()), [RollBack(g.scan_id) for g in state.grants if g.scan_id]


def forced_entry(state: GateState, event: Input, rules: Rules):
    return state, [RaiseAlarm("forced_entry")]


def count_exit(state: GateState, event: Input, rules: Rules):
    return state, [CountExit()]


def start_open(state: GateState, event: Input, rules: Rules):
    return replace(state, open_since=event.at, held_alarmed=False), []


def end_open(state: GateState, event: Input, rules: Rules):
    return replace(state, open_since=None, held_alarmed=False), []


def check_held_open(state: GateState, event: Input, rules: Rules):
    if state.open_since is not None and not state.held_alarmed and event.at - state.open_since >= rules.held_open_s:
        return replace(state, held_alarmed=True), [RaiseAlarm("held_open")]
    return state, []


def add_lock(state: GateState, event: Lock, rules: Rules):
    return replace(state, locks=state.locks | {event.source}), []


def drop_lock(state: GateState, event: Unlock, rules: Rules):
    return replace(state, locks=state.locks - {event.source}), []


def add_emergency(state: GateState, event: EmergencyOn, rules: Rules):
    return replace(state, emergency=state.emergency | {event.source}), []


def enter_emergency(state: GateState, event: Input, rules: Rules):
    return state, [LatchRelay(), RaiseAlarm("emergency_on")]


def drop_emergency(state: GateState, event: EmergencyOff, rules: Rules):
    return replace(state, emergency=state.emergency - {event.source}), []


def leave_emergency_if_clear(state: GateState, event: Input, rules: Rules):
    if state.emergency:
        return state, []
    # the door may have stood open all through the emergency: its held-open timer starts now
    state = replace(state, open_since=event.at if state.open_since is not None else None, held_alarmed=False)
    return state, [UnlatchRelay(), RaiseAlarm("emergency_off")]


Step = Callable[[GateState, Input, Rules], tuple[GateState, list[Effect]]]


@dataclass(frozen=True)
class Row:
    steps: tuple[Step, ...]
    ends_in: frozenset[Phase]


def _row(steps: tuple[Step, ...], *ends_in: Phase) -> Row:
    return Row(steps, frozenset(ends_in))


I, G, L, E = Phase.IDLE, Phase.GRANTED, Phase.LOCKED, Phase.EMERGENCY

# (phase, input type): the steps in order, and the phases the row may end in.
TABLE: dict[tuple[Phase, type], Row] = {
    (I, Grant): _row((add_grant, open_relay), G, I),  # I: confirmed (no passage sensor)
    (I, Passage): _row((forced_entry,), I),
    (I, ExitPassage): _row((count_exit,), I),  # going out, free: counted in every phase
    (I, Opened): _row((start_open,), I),
    (I, Closed): _row((end_open,), I),
    (I, Tick): _row((check_held_open,), I),
    (I, Lock): _row((add_lock,), L),
    (I, Unlock): _row((drop_lock,), I),
    (I, EmergencyOn): _row((add_emergency, enter_emergency), E),
    (I, EmergencyOff): _row((drop_emergency,), I),
    (G, Grant): _row((add_grant, open_relay), G),
    (G, Passage): _row((confirm_oldest, close_if_done), G, I, L),
    (G, ExitPassage): _row((count_exit,), G),  # going out, free: counted in every phase
    (G, Opened): _row((start_open,), G),
    (G, Closed): _row((end_open,), G),
    (G, Tick): _row((expire_grants, close_if_done, check_held_open), G, I, L),
    (G, Lock): _row((add_lock,), G),  # the admissions already granted may finish
    (G, Unlock): _row((drop_lock,), G),
    (G, EmergencyOn): _row((add_emergency, rollback_all, enter_emergency), E),
    (G, EmergencyOff): _row((drop_emergency,), G),
    (L, Grant): _row((add_grant, open_relay), G, L),  # a remote `open` while locked
    (L, Passage): _row((forced_entry,), L),
    (L, ExitPassage): _row((count_exit,), L),  # going out, free: counted in every phase
    (L, Opened): _row((start_open,), L),
    (L, Closed): _row((end_open,), L),
    (L, Tick): _row((check_held_open,), L),
    (L, Lock): _row((add_lock,), L),  # one more source
    (L, Unlock): _row((drop_lock,), I, L),  # L: another source still holds
    (L, EmergencyOn): _row((add_emergency, enter_emergency), E),
    (L, EmergencyOff): _row((drop_emergency,), L),
    (E, Grant): _row((refuse_grant,), E),  # relay already latched open
    (E, Passage): _row((), E),  # free passage
    (E, ExitPassage): _row((count_exit,), E),  # going out, free: counted in every phase
    (E, Opened): _row((start_open,), E),
    (E, Closed): _row((end_open,), E),
    (E, Tick): _row((), E),
    (E, Lock): _row((add_lock,), E),  # takes effect when the emergency ends
    (E, Unlock): _row((drop_lock,), E),
    (E, EmergencyOn): _row((add_emergency,), E),
    (E, EmergencyOff): _row((drop_emergency, leave_emergency_if_clear), E, I, L),
}


def step(state: GateState, event: Input, rules: Rules) -> tuple[GateState, list[Effect]]:
    """Apply one input: the new state and the effects, in the order the shell must apply them."""
    phase, before = state.phase, state.mode
    row = TABLE[(phase, type(event))]
    effects: list[Effect] = []
    for apply in row.steps:
        state, more = apply(state, event, rules)
        effects.extend(more)
    if state.phase not in row.ends_in:
        raise AssertionError(
            f"row {phase.value}/{type(event).__name__} ended in {state.phase}, table says {set(row.ends_in)}"
        )
    if state.mode is not before:
        effects.append(ModeChanged(state.mode))
    return state, effects
