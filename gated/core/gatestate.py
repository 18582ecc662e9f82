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
(phase, input type) in TABLE, applies its steps in order and returns the new state with the
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


# --- steps: small pure functions (state, input, rules) -> (state, effects) -------------------

def _add_grant(s: GateState, i: Grant, r: Rules):
    if i.confirmed:
        return s, []  # already committed as passed: nothing to wait for
    return replace(s, grants=s.grants + (PendingGrant(i.scan_id, i.at + r.passage_timeout_s),)), []


def _refuse_grant(s: GateState, i: Grant, r: Rules):
    # Only reachable if a scan grant races an emergency: the relay is latched anyway, and the
    # admission is rolled back so that the ticket stays good for later.
    return s, [RollBack(i.scan_id)] if i.scan_id and not i.confirmed else []


def _open_relay(s, i, r):
    return s, [OpenRelay()]


def _confirm_oldest(s: GateState, i, r):
    first, rest = s.grants[0], s.grants[1:]
    return replace(s, grants=rest), [Confirm(first.scan_id)] if first.scan_id else []


def _expire_grants(s: GateState, i, r):
    expired = [g for g in s.grants if g.deadline <= i.at]
    kept = tuple(g for g in s.grants if g.deadline > i.at)
    return replace(s, grants=kept), [RollBack(g.scan_id) for g in expired if g.scan_id]


def _close_if_done(s: GateState, i, r):
    return s, [] if s.grants else [CloseRelay()]


def _rollback_all(s: GateState, i, r):
    return replace(s, grants=()), [RollBack(g.scan_id) for g in s.grants if g.scan_id]


def _forced_entry(s, i, r):
    return s, [RaiseAlarm("forced_entry")]


def _count_exit(s, i, r):
    return s, [CountExit()]


def _start_open(s: GateState, i, r):
    return replace(s, open_since=i.at, held_alarmed=False), []


def _end_open(s: GateState, i, r):
    return replace(s, open_since=None, held_alarmed=False), []


def _check_held_open(s: GateState, i, r: Rules):
    if s.open_since is not None and not s.held_alarmed and i.at - s.open_since >= r.held_open_s:
        return replace(s, held_alarmed=True), [RaiseAlarm("held_open")]
    return s, []


def _add_lock(s: GateState, i: Lock, r):
    return replace(s, locks=s.locks | {i.source}), []


def _drop_lock(s: GateState, i: Unlock, r):
    return replace(s, locks=s.locks - {i.source}), []


def _add_emergency(s: GateState, i: EmergencyOn, r):
    return replace(s, emergency=s.emergency | {i.source}), []


def _enter_emergency(s, i, r):
    return s, [LatchRelay(), RaiseAlarm("emergency_on")]


def _drop_emergency(s: GateState, i: EmergencyOff, r):
    return replace(s, emergency=s.emergency - {i.source}), []


def _leave_emergency_if_clear(s: GateState, i, r):
    if s.emergency:
        return s, []
    # the door may have stood open all through the emergency: its held-open timer starts now
    s = replace(s, open_since=i.at if s.open_since is not None else None, held_alarmed=False)
    return s, [UnlatchRelay(), RaiseAlarm("emergency_off")]


STEPS = {
    "add_grant": _add_grant, "refuse_grant": _refuse_grant, "open_relay": _open_relay,
    "confirm_oldest": _confirm_oldest, "expire_grants": _expire_grants, "close_if_done": _close_if_done,
    "rollback_all": _rollback_all, "forced_entry": _forced_entry, "count_exit": _count_exit,
    "start_open": _start_open, "end_open": _end_open, "check_held_open": _check_held_open,
    "add_lock": _add_lock, "drop_lock": _drop_lock,
    "add_emergency": _add_emergency, "enter_emergency": _enter_emergency,
    "drop_emergency": _drop_emergency, "leave_emergency_if_clear": _leave_emergency_if_clear,
}


@dataclass(frozen=True)
class Row:
    steps: tuple[str, ...]
    ends_in: frozenset[Phase]


def _row(steps: str, *ends_in: Phase) -> Row:
    return Row(tuple(steps.split()), frozenset(ends_in))


I, G, L, E = Phase.IDLE, Phase.GRANTED, Phase.LOCKED, Phase.EMERGENCY

# (phase, input type): the steps in order, and the phases the row may end in.
TABLE: dict[tuple[Phase, type], Row] = {
    (I, Grant):        _row("add_grant open_relay", G, I),  # I: confirmed (no passage sensor)
    (I, Passage):      _row("forced_entry", I),
    (I, ExitPassage): _row("count_exit", I),  # going out, free: counted in every phase
    (I, Opened):       _row("start_open", I),
    (I, Closed):       _row("end_open", I),
    (I, Tick):         _row("check_held_open", I),
    (I, Lock):         _row("add_lock", L),
    (I, Unlock):       _row("drop_lock", I),
    (I, EmergencyOn):  _row("add_emergency enter_emergency", E),
    (I, EmergencyOff): _row("drop_emergency", I),

    (G, Grant):        _row("add_grant open_relay", G),
    (G, Passage):      _row("confirm_oldest close_if_done", G, I, L),
    (G, ExitPassage): _row("count_exit", G),  # going out, free: counted in every phase
    (G, Opened):       _row("start_open", G),
    (G, Closed):       _row("end_open", G),
    (G, Tick):         _row("expire_grants close_if_done check_held_open", G, I, L),
    (G, Lock):         _row("add_lock", G),  # the admissions already granted may finish
    (G, Unlock):       _row("drop_lock", G),
    (G, EmergencyOn):  _row("add_emergency rollback_all enter_emergency", E),
    (G, EmergencyOff): _row("drop_emergency", G),

    (L, Grant):        _row("add_grant open_relay", G, L),  # a remote `open` while locked
    (L, Passage):      _row("forced_entry", L),
    (L, ExitPassage): _row("count_exit", L),  # going out, free: counted in every phase
    (L, Opened):       _row("start_open", L),
    (L, Closed):       _row("end_open", L),
    (L, Tick):         _row("check_held_open", L),
    (L, Lock):         _row("add_lock", L),  # one more source
    (L, Unlock):       _row("drop_lock", I, L),  # L: another source still holds
    (L, EmergencyOn):  _row("add_emergency enter_emergency", E),
    (L, EmergencyOff): _row("drop_emergency", L),

    (E, Grant):        _row("refuse_grant", E),  # relay already latched open
    (E, Passage):      _row("", E),  # free passage
    (E, ExitPassage): _row("count_exit", E),  # going out, free: counted in every phase
    (E, Opened):       _row("start_open", E),
    (E, Closed):       _row("end_open", E),
    (E, Tick):         _row("", E),
    (E, Lock):         _row("add_lock", E),  # takes effect when the emergency ends
    (E, Unlock):       _row("drop_lock", E),
    (E, EmergencyOn):  _row("add_emergency", E),
    (E, EmergencyOff): _row("drop_emergency leave_emergency_if_clear", E, I, L),
}


def step(state: GateState, event: Input, rules: Rules) -> tuple[GateState, list[Effect]]:
    """Apply one input: the new state and the effects, in the order the shell must apply them."""
    phase, before = state.phase, state.mode
    row = TABLE[(phase, type(event))]
    effects: list[Effect] = []
    for name in row.steps:
        state, more = STEPS[name](state, event, rules)
        effects.extend(more)
    if state.phase not in row.ends_in:
        raise AssertionError(f"row {phase.value}/{type(event).__name__} ended in {state.phase}, table says {set(row.ends_in)}")
    if state.mode is not before:
        effects.append(ModeChanged(state.mode))
    return state, effects
