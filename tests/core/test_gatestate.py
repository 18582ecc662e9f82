"""The gate state table, row by row, then the rules that span rows."""

from __future__ import annotations

import pytest

from gated.core import gatestate as gs
from gated.core.decide import GateMode
from gated.core.gatestate import (
    Closed,
    CloseRelay,
    Confirm,
    CountExit,
    EmergencyOff,
    EmergencyOn,
    ExitPassage,
    GateState,
    Grant,
    LatchRelay,
    Lock,
    ModeChanged,
    Opened,
    OpenRelay,
    Passage,
    PendingGrant,
    Phase,
    RaiseAlarm,
    RollBack,
    Tick,
    UnlatchRelay,
    Unlock,
)

RULES = gs.Rules(passage_timeout_s=5.0, held_open_s=3.0)
I, G, L, E = Phase.IDLE, Phase.GRANTED, Phase.LOCKED, Phase.EMERGENCY

# one state per phase; the granted one waits for g:1 until t=10
START = {
    I: GateState(),
    G: GateState(grants=(PendingGrant("g:1", 10.0),)),
    L: GateState(locks=frozenset({"command"})),
    E: GateState(emergency=frozenset({"input"})),
}

ROWS = [
    # phase, input, phase after, effects
    (I, Grant(5, "g:2"), G, [OpenRelay()]),
    (I, Passage(5), I, [RaiseAlarm("forced_entry")]),
    (I, ExitPassage(5), I, [CountExit()]),
    (I, Opened(5), I, []),
    (I, Closed(5), I, []),
    (I, Tick(5), I, []),
    (I, Lock(5), L, [ModeChanged(GateMode.LOCKED)]),
    (I, Unlock(5), I, []),
    (I, EmergencyOn(5), E, [LatchRelay(), RaiseAlarm("emergency_on"), ModeChanged(GateMode.EMERGENCY)]),
    (I, EmergencyOff(5), I, []),
    (G, Grant(5, "g:2"), G, [OpenRelay()]),
    (G, Passage(5), I, [Confirm("g:1"), CloseRelay()]),
    (G, ExitPassage(5), G, [CountExit()]),
    (G, Opened(5), G, []),
    (G, Closed(5), G, []),
    (G, Tick(10), I, [RollBack("g:1"), CloseRelay()]),  # nobody passed by the deadline
    (G, Lock(5), G, [ModeChanged(GateMode.LOCKED)]),  # g:1 may still pass
    (G, Unlock(5), G, []),
    (
        G,
        EmergencyOn(5),
        E,
        [RollBack("g:1"), LatchRelay(), RaiseAlarm("emergency_on"), ModeChanged(GateMode.EMERGENCY)],
    ),
    (G, EmergencyOff(5), G, []),
    (L, Grant(5, None), G, [OpenRelay()]),  # a remote open while locked
    (L, Passage(5), L, [RaiseAlarm("forced_entry")]),
    (L, ExitPassage(5), L, [CountExit()]),
    (L, Opened(5), L, []),
    (L, Closed(5), L, []),
    (L, Tick(5), L, []),
    (L, Lock(5), L, []),
    (L, Unlock(5), I, [ModeChanged(GateMode.NORMAL)]),
    (L, EmergencyOn(5), E, [LatchRelay(), RaiseAlarm("emergency_on"), ModeChanged(GateMode.EMERGENCY)]),
    (L, EmergencyOff(5), L, []),
    (E, Grant(5, "g:2"), E, [RollBack("g:2")]),
    (E, Passage(5), E, []),  # free passage: no forced entry
    (E, ExitPassage(5), E, [CountExit()]),  # people going out are counted in an emergency too
    (E, Opened(5), E, []),
    (E, Closed(5), E, []),
    (E, Tick(5), E, []),
    (E, Lock(5), E, []),
    (E, Unlock(5), E, []),
    (E, EmergencyOn(5), E, []),  # already on
    (E, EmergencyOff(5), I, [UnlatchRelay(), RaiseAlarm("emergency_off"), ModeChanged(GateMode.NORMAL)]),
]


def test_rows_cover_the_table_exactly():
    covered = {(phase, type(event)) for phase, event, _, _ in ROWS}
    assert covered == set(gs.TABLE)
    assert len(ROWS) == len(gs.TABLE) == 4 * 10


@pytest.mark.parametrize(
    "phase, event, after, effects", ROWS, ids=[f"{p.value}-{type(e).__name__}" for p, e, _, _ in ROWS]
)
def test_row(phase, event, after, effects):
    state = START[phase]
    assert state.phase is phase
    new, out = gs.step(state, event, RULES)
    assert new.phase is after
    assert out == effects
    assert after in gs.TABLE[(phase, type(event))].ends_in


def test_admissions_wait_in_line_and_each_passage_confirms_the_oldest():
    state = GateState()
    state, _ = gs.step(state, Grant(0, "g:1"), RULES)
    state, _ = gs.step(state, Grant(1, "g:2"), RULES)
    state, out = gs.step(state, Passage(2), RULES)
    assert out == [Confirm("g:1")] and state.phase is G  # g:2 still waiting: relay stays
    state, out = gs.step(state, Passage(3), RULES)
    assert out == [Confirm("g:2"), CloseRelay()] and state.phase is I
    state, out = gs.step(state, Passage(4), RULES)
    assert out == [RaiseAlarm("forced_entry")]


def test_only_the_admissions_past_their_deadline_are_rolled_back():
    state = GateState()
    state, _ = gs.step(state, Grant(0, "g:1"), RULES)
    state, _ = gs.step(state, Grant(3, "g:2"), RULES)
    state, out = gs.step(state, Tick(4.999), RULES)
    assert out == [] and len(state.grants) == 2
    state, out = gs.step(state, Tick(5), RULES)
    assert out == [RollBack("g:1")] and [g.scan_id for g in state.grants] == ["g:2"]
    assert gs.next_deadline(state, RULES) == 8


def test_confirmed_grant_opens_the_relay_and_waits_for_nothing():
    state, out = gs.step(GateState(), Grant(0, "g:1", confirmed=True), RULES)
    assert out == [OpenRelay()] and state.phase is I and state.grants == ()


def test_remote_open_is_not_recorded_either_way():
    state, out = gs.step(GateState(), Grant(0, None), RULES)
    assert out == [OpenRelay()]
    _, out = gs.step(state, Passage(1), RULES)
    assert out == [CloseRelay()]  # no Confirm, and no forced entry
    _, out = gs.step(state, Tick(10), RULES)
    assert out == [CloseRelay()]  # no RollBack


def test_held_open_is_raised_once_per_opening():
    state, _ = gs.step(GateState(), Opened(0), RULES)
    assert gs.next_deadline(state, RULES) == 3
    state, out = gs.step(state, Tick(2.9), RULES)
    assert out == []
    state, out = gs.step(state, Tick(3), RULES)
    assert out == [RaiseAlarm("held_open")]
    state, out = gs.step(state, Tick(60), RULES)
    assert out == [] and gs.next_deadline(state, RULES) is None
    state, _ = gs.step(state, Closed(61), RULES)
    state, _ = gs.step(state, Opened(62), RULES)
    _, out = gs.step(state, Tick(65), RULES)
    assert out == [RaiseAlarm("held_open")]


def test_closing_in_time_raises_nothing():
    state, _ = gs.step(GateState(), Opened(0), RULES)
    state, _ = gs.step(state, Closed(2), RULES)
    _, out = gs.step(state, Tick(100), RULES)
    assert out == []


def test_no_held_open_during_an_emergency_and_its_timer_restarts_after():
    state, _ = gs.step(GateState(), EmergencyOn(0, "input"), RULES)
    state, _ = gs.step(state, Opened(1), RULES)
    state, out = gs.step(state, Tick(100), RULES)
    assert out == []
    state, out = gs.step(state, EmergencyOff(200, "input"), RULES)
    assert RaiseAlarm("emergency_off") in out
    state, out = gs.step(state, Tick(202), RULES)
    assert out == []
    _, out = gs.step(state, Tick(203), RULES)
    assert out == [RaiseAlarm("held_open")]


def test_emergency_ends_only_when_every_source_has_cleared():
    state, out = gs.step(GateState(), EmergencyOn(0, "input"), RULES)
    state, out = gs.step(state, EmergencyOn(1, "command"), RULES)
    assert out == []
    state, out = gs.step(state, EmergencyOff(2, "command"), RULES)  # the fire contact is still active
    assert out == [] and state.mode is GateMode.EMERGENCY
    state, out = gs.step(state, EmergencyOff(3, "input"), RULES)
    assert out[:2] == [UnlatchRelay(), RaiseAlarm("emergency_off")] and state.mode is GateMode.NORMAL


def test_a_lock_given_during_an_emergency_holds_after_it():
    state, _ = gs.step(GateState(), EmergencyOn(0, "command"), RULES)
    state, _ = gs.step(state, Lock(1), RULES)
    state, out = gs.step(state, EmergencyOff(2, "command"), RULES)
    assert state.phase is L and out[-1] == ModeChanged(GateMode.LOCKED)


def test_locked_gate_with_an_admission_still_waiting_is_locked_after_it():
    state = START[G]
    state, _ = gs.step(state, Lock(1), RULES)
    assert state.mode is GateMode.LOCKED and state.phase is G
    state, out = gs.step(state, Passage(2), RULES)
    assert out == [Confirm("g:1"), CloseRelay()] and state.phase is L


def test_an_operators_lock_during_a_stale_list_lock_survives_the_fresh_list():
    state, out = gs.step(GateState(), Lock(0, "stale_list"), RULES)
    assert state.mode is GateMode.LOCKED and out == [ModeChanged(GateMode.LOCKED)]
    state, out = gs.step(state, Lock(1, "command"), RULES)
    assert out == [] and state.locks == {"stale_list", "command"}
    state, out = gs.step(state, Unlock(2, "stale_list"), RULES)  # a current list arrives
    assert out == [] and state.phase is L and state.locks == {"command"}
    state, out = gs.step(state, Unlock(3, "command"), RULES)
    assert out == [ModeChanged(GateMode.NORMAL)] and state.phase is I


def test_an_operators_unlock_does_not_lift_a_stale_list_lock():
    state, _ = gs.step(GateState(), Lock(0, "stale_list"), RULES)
    state, out = gs.step(state, Unlock(1, "command"), RULES)
    assert out == [] and state.phase is L
    state, out = gs.step(state, Unlock(2, "stale_list"), RULES)
    assert out == [ModeChanged(GateMode.NORMAL)] and state.phase is I


def test_lock_sources_are_kept_through_admissions_and_emergencies():
    state, _ = gs.step(START[G], Lock(1, "stale_list"), RULES)
    state, _ = gs.step(state, EmergencyOn(2, "command"), RULES)
    state, _ = gs.step(state, Unlock(3, "command"), RULES)  # not the source that holds
    state, out = gs.step(state, EmergencyOff(4, "command"), RULES)
    assert state.phase is L and out[-1] == ModeChanged(GateMode.LOCKED)


def test_states_are_immutable_values():
    state = GateState()
    new, _ = gs.step(state, Lock(0), RULES)
    assert state.locked is False and new.locked is True
    with pytest.raises(AttributeError):
        new.locked = False  # frozen
