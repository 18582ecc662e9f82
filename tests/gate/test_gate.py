"""The Gate end to end on one machine: real tickets, a real SQLite store, real gpiozero devices on
MockFactory pins. Timers run on an injected clock; relay and lamp pulses on real (short) time."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest
from gpiozero import DigitalInputDevice
from gpiozero.pins.mock import MockConnectedPin
from structlog.testing import capture_logs

from gated.core import events
from gated.core.decide import GateMode
from gated.core.reasons import Reason
from gated.gate.boards import load_board, shipped_boards
from gated.gate.gate import Gate
from gated.gate.store import GateStore, StoreError
from gated.gate.turnstile import Turnstile
from tests.support.pins import FakeClock, drive, pins, profile, relay_on  # noqa: F401  (pins is a fixture)
from tests.support.waiting import wait_for

SHIPPED = shipped_boards()
TIMEOUT_S, HELD_S = 5.0, 20.0

COMMON = {"v", "id", "site", "gate", "seq", "ts", "kind", "prev", "hash", "sig"}
FIELDS = {
    "scan": {"ticket", "event", "type", "zone", "decision", "reason", "rev", "latency_us"},
    "passage": {"ref", "result"},
    "alarm": {"alarm"},
    "state": {"state", "rev"},
}


class Rig:
    """A gate, its turnstile and its pins, with helpers to read what it recorded."""

    def __init__(self, *, store, authority, context, pins, board, clock, world=None):
        """`world(rig)` runs between claiming the pins and starting the gate: a mock pin takes its
        pull's level when claimed, so inputs that are active at start are driven there."""
        self.store, self.authority, self.context, self.pins, self.board, self.clock = (
            store,
            authority,
            context,
            pins,
            board,
            clock,
        )
        self.turnstile = Turnstile(board, pin_factory=pins)
        if world is not None:
            world(self)
        self.gate = Gate(
            store=store,
            keyring=authority.keyring,
            context=context,
            turnstile=self.turnstile,
            clock=clock,
            passage_timeout_s=TIMEOUT_S,
            held_open_s=HELD_S,
        )

    def events(self, kind: str | None = None) -> list[dict]:
        found = [json.loads(e) for _, e in self.store.outbox(0, 10_000)]
        return [e for e in found if kind is None or e["kind"] == kind]

    def alarms(self) -> list[str]:
        return [e["alarm"] for e in self.events("alarm")]

    def drive(self, kind: str, active: bool) -> None:
        drive(self.pins, getattr(self.board, kind), active)

    def relay_on(self) -> bool:
        return relay_on(self.pins, self.board)

    def restart(self) -> "Rig":
        self.gate.close()
        return Rig(
            store=self.store,
            authority=self.authority,
            context=self.context,
            pins=self.pins,
            board=self.board,
            clock=self.clock,
        )


@pytest.fixture
def clock():
    return FakeClock(time.time())


@pytest.fixture
def rig(store, authority, gate_context, pins, clock):
    made = []

    def make(board=None):
        r = Rig(
            store=store, authority=authority, context=gate_context, pins=pins, board=board or profile(), clock=clock
        )
        made.append(r)
        return r

    yield make
    for r in made:
        r.gate.close()


# --- every shipped board ------------------------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_a_gate_from_every_shipped_board_opens_on_an_admitted_scan(rig, authority, pins, path):
    r = rig(load_board(path))
    relay = pins.pin(r.board.relay.pin)
    relay.clear_states()
    text = authority.ticket()
    decision = r.gate.on_code(text, captured_at=time.monotonic())
    assert decision.admit and decision.reason is Reason.OK
    assert wait_for(lambda: len(relay.states) >= 2)
    on = r.board.relay.active_high
    assert relay.states[1].state is on  # the relay moved, at its own polarity
    cti = decision.cti
    [admission] = r.store.admissions(cti)
    if r.board.counts_passages:
        assert admission["state"] == "pending"
        r.drive("passage" if r.board.passage else "door", True)
        r.gate.poll()
        assert r.store.admissions(cti)[0]["state"] == "passed"
        assert [e["result"] for e in r.events("passage")] == ["passed"]
    else:
        assert admission["state"] == "passed"  # no sensor: it counts as the relay opens
        assert r.events("passage") == []
    if r.board.relay.mode == "pulse":
        assert wait_for(lambda: len(relay.states) >= 3), "the pulse never ended"
        assert [s.state for s in relay.states] == [not on, on, not on]
        assert relay.states[2].timestamp == pytest.approx(r.board.relay.pulse_ms / 1000, abs=0.05)
    else:
        assert not r.relay_on()  # a held relay let go at the passage
    assert not r.gate.on_code(text).admit  # used


# --- admission: committed first, confirmed or rolled back -----------------------------------------


def test_admission_is_committed_before_the_relay_moves(store, authority, gate_context, pins, clock):
    # The relay's pin is wired (MockConnectedPin) to a spare input; the moment the relay moves, that
    # input's callback looks into the database through a second connection, as another process would.
    spare = pins.pin("GPIO4")
    pins.pin("GPIO17", pin_class=MockConnectedPin, input_pin=spare)
    seen = []
    watcher = DigitalInputDevice("GPIO4", pull_up=None, active_state=True, pin_factory=pins)

    def look():
        with sqlite3.connect(store.path) as db:
            seen.append(
                (
                    db.execute("SELECT state FROM admissions").fetchall(),
                    [json.loads(e)["kind"] for (e,) in db.execute("SELECT event FROM outbox")],
                )
            )

    watcher.when_activated = look
    r = Rig(store=store, authority=authority, context=gate_context, pins=pins, board=profile(), clock=clock)
    try:
        r.gate.on_code(authority.ticket())
        assert wait_for(lambda: seen)
        assert seen[0] == ([("pending",)], ["scan"])
    finally:
        r.gate.close()
        watcher.close()


def test_passage_confirms_and_a_timeout_rolls_back(rig, authority, clock):
    r = rig()
    first, second = authority.ticket(), authority.ticket()
    admitted = r.gate.on_code(first)
    r.drive("passage", True)
    r.drive("passage", False)
    r.gate.poll()
    assert r.store.admissions(admitted.cti)[0]["state"] == "passed"

    unused = r.gate.on_code(second)
    scan_id = r.gate.last_scan["id"]
    clock.advance(TIMEOUT_S - 0.1)
    r.gate.poll()
    assert r.store.admissions(unused.cti)[0]["state"] == "pending"
    assert not r.gate.on_code(second).admit  # still counted while it waits
    clock.advance(0.2)
    r.gate.poll()
    assert r.store.admissions(unused.cti) == []
    passages = r.events("passage")
    assert [(p["result"]) for p in passages] == ["passed", "timeout"]
    assert passages[1]["ref"] == scan_id
    assert r.gate.on_code(second).admit  # nobody went through: the ticket works again
    assert r.alarms() == []


def test_two_admissions_in_a_row_are_confirmed_in_order(rig, authority):
    r = rig()
    a, b = r.gate.on_code(authority.ticket()), r.gate.on_code(authority.ticket())
    for _ in range(2):
        r.drive("passage", True)
        r.drive("passage", False)
    r.gate.poll()
    assert [r.store.admissions(d.cti)[0]["state"] for d in (a, b)] == ["passed", "passed"]
    scans = [e["id"] for e in r.events("scan")]
    assert [e["ref"] for e in r.events("passage")] == scans


def test_hold_mode_relay_stays_until_the_passage(rig, authority, clock):
    r = rig(profile(relay={"pin": "GPIO17", "mode": "hold"}))
    r.gate.on_code(authority.ticket())
    time.sleep(0.15)
    assert r.relay_on()
    clock.advance(1)
    r.gate.poll()
    assert r.relay_on()
    r.drive("passage", True)
    r.gate.poll()
    assert not r.relay_on()


def test_hold_mode_relay_lets_go_on_timeout(rig, authority, clock):
    r = rig(profile(relay={"pin": "GPIO17", "mode": "hold"}))
    r.gate.on_code(authority.ticket())
    clock.advance(TIMEOUT_S)
    r.gate.poll()
    assert not r.relay_on()
    assert [e["result"] for e in r.events("passage")] == ["timeout"]


def test_denied_scan_is_recorded_and_the_relay_does_not_move(rig, authority, pins):
    r = rig()
    relay, red = pins.pin("GPIO17"), pins.pin("GPIO6")
    relay.clear_states()
    red.clear_states()
    decision = r.gate.on_code(authority.ticket(aud="OTHER-EVENT"))
    assert decision.reason is Reason.WRONG_EVENT
    [scan] = r.events("scan")
    assert (scan["decision"], scan["reason"], scan["event"]) == ("deny", "wrong_event", "OTHER-EVENT")
    assert wait_for(lambda: len(red.states) >= 3)
    assert [s.state for s in red.states] == [False, True, False]
    assert red.states[2].timestamp == pytest.approx(0.15, abs=0.05)  # the deny pattern's length
    assert len(relay.states) == 1


def test_unreadable_code_is_recorded_as_malformed(rig):
    r = rig()
    assert r.gate.on_code("GT1:???").reason is Reason.MALFORMED
    [scan] = r.events("scan")
    assert scan["ticket"] is None and scan["reason"] == "malformed" and scan["latency_us"] == 0


def test_latency_runs_from_the_frame_to_the_relay(rig, authority):
    r = rig()
    captured = time.monotonic() - 0.004
    r.gate.on_code(authority.ticket(), captured_at=captured)
    recorded = r.gate.last_scan["latency_us"]
    assert recorded >= 4000
    assert r.gate.last_latency_us >= recorded  # the full figure includes the commit


# --- alarms -------------------------------------------------------------------------------------


def test_passage_without_an_admission_is_forced_entry(rig, authority):
    r = rig()
    r.drive("passage", True)
    r.drive("passage", False)
    r.gate.poll()
    assert r.alarms() == ["forced_entry"]
    r.gate.on_code(authority.ticket())
    r.drive("passage", True)
    r.drive("passage", False)
    r.drive("passage", True)  # a second person right behind
    r.gate.poll()
    assert r.alarms() == ["forced_entry", "forced_entry"]
    assert [e["result"] for e in r.events("passage")] == ["passed"]


def test_beam_blocked_too_long_is_held_open_once(rig, clock):
    r = rig()
    r.gate.poll()
    r.drive("passage", True)
    r.gate.poll()
    clock.advance(HELD_S - 1)
    r.gate.poll()
    assert r.alarms() == ["forced_entry"]
    clock.advance(1)
    r.gate.poll()
    clock.advance(100)
    r.gate.poll()
    assert r.alarms() == ["forced_entry", "held_open"]


def test_door_board_door_confirms_and_held_open(rig, authority, clock):
    r = rig(load_board("pi-relay-hat"))
    decision = r.gate.on_code(authority.ticket())
    time.sleep(0.05)
    assert r.relay_on()  # strike released (hold)
    r.drive("door", True)
    r.gate.poll()
    assert r.store.admissions(decision.cti)[0]["state"] == "passed"
    assert not r.relay_on()
    clock.advance(HELD_S)
    r.gate.poll()
    assert r.alarms() == ["held_open"]
    r.drive("door", False)
    r.drive("door", True)  # opened again without a ticket
    r.gate.poll()
    assert r.alarms() == ["held_open", "forced_entry"]


# --- emergency ----------------------------------------------------------------------------------


def test_emergency_input_latches_open_and_scans_say_emergency(rig, authority, pins):
    r = rig()
    waiting = r.gate.on_code(authority.ticket())
    relay = pins.pin("GPIO17")
    r.drive("emergency", True)
    r.gate.poll()
    assert r.gate.mode is GateMode.EMERGENCY
    assert r.relay_on()
    relay.clear_states()
    assert r.store.admissions(waiting.cti) == []  # rolled back: nobody can tell who passed
    decision = r.gate.on_code(authority.ticket())
    assert (decision.admit, decision.reason) == (False, Reason.EMERGENCY)
    assert r.events("scan")[-1]["reason"] == "emergency"
    r.drive("passage", True)  # free passage: no alarm
    r.drive("passage", False)
    time.sleep(0.15)  # longer than a pulse
    r.gate.poll()
    assert len(relay.states) == 1 and r.relay_on()  # latched throughout
    assert (r.turnstile.green.value, r.turnstile.red.value) == (1, 0)
    r.drive("emergency", False)
    r.gate.poll()
    assert r.gate.mode is GateMode.NORMAL and not r.relay_on()
    assert r.alarms() == ["emergency_on", "emergency_off"]
    assert [(e["state"]) for e in r.events("state")] == ["emergency", "online"]
    assert [e["result"] for e in r.events("passage")] == ["timeout"]
    assert r.gate.on_code(authority.ticket()).admit


def test_remote_emergency_does_not_end_an_active_fire_contact(rig):
    r = rig()
    r.gate.command("emergency_on")
    r.drive("emergency", True)
    r.gate.poll()
    r.gate.command("emergency_off")
    assert r.gate.mode is GateMode.EMERGENCY and r.relay_on()
    r.drive("emergency", False)
    r.gate.poll()
    assert r.gate.mode is GateMode.NORMAL and not r.relay_on()
    assert r.alarms() == ["emergency_on", "emergency_off"]


def test_emergency_input_active_at_start(store, authority, gate_context, pins, clock):
    board = profile()

    def start(emergency: bool) -> Rig:
        return Rig(
            store=store,
            authority=authority,
            context=gate_context,
            pins=pins,
            board=board,
            clock=clock,
            world=lambda rig: rig.drive("emergency", emergency),
        )

    r = start(emergency=True)
    try:
        assert r.gate.mode is GateMode.EMERGENCY and r.relay_on()
        assert r.alarms() == ["emergency_on"]
        r.gate.close()
        r = start(emergency=True)  # still on after a restart
        assert r.gate.mode is GateMode.EMERGENCY and r.relay_on()
        assert r.alarms() == ["emergency_on"]  # remembered, not recorded twice
        r.gate.close()
        r = start(emergency=False)  # it ended while the gate was down
        assert r.gate.mode is GateMode.NORMAL and not r.relay_on()
        assert r.alarms() == ["emergency_on", "emergency_off"]
    finally:
        r.gate.close()


# --- commands, lock -----------------------------------------------------------------------------


def test_lock_denies_scans_and_survives_a_restart(rig, authority):
    r = rig()
    r.gate.command("lock")
    assert r.gate.mode is GateMode.LOCKED and r.turnstile.red.value == 1
    text = authority.ticket()
    assert r.gate.on_code(text).reason is Reason.LOCKED
    r = r.restart()
    assert r.gate.mode is GateMode.LOCKED
    r.gate.command("unlock")
    assert r.gate.on_code(text).admit  # a locked denial used nothing up
    assert [e["state"] for e in r.events("state")] == ["locked", "online"]
    assert [e["reason"] for e in r.events("scan")] == ["locked", "ok"]


def test_an_operators_lock_during_a_stale_list_lock_survives_the_fresh_list(rig, authority):
    """Issue 12: the stale-list lock and the operator's lock are separate sources; a fresh list
    lifts only its own, across a restart too, and one `state` event per change of mode."""
    r = rig()
    text = authority.ticket()
    r.gate.list_stale(True)
    r.gate.command("lock")  # the operator locks while the list is stale
    r = r.restart()
    r.gate.list_stale(False)  # a current list arrives
    assert r.gate.mode is GateMode.LOCKED
    assert r.gate.on_code(text).reason is Reason.LOCKED
    r.gate.command("unlock")
    assert r.gate.mode is GateMode.NORMAL and r.gate.on_code(text).admit
    assert [e["state"] for e in r.events("state")] == ["locked", "online"]


def test_an_operators_unlock_does_not_lift_a_stale_list_lock(rig, authority):
    r = rig()
    r.gate.list_stale(True)
    r.gate.command("unlock")
    assert r.gate.on_code(authority.ticket()).reason is Reason.LOCKED
    r.gate.list_stale(False)
    assert r.gate.mode is GateMode.NORMAL


def test_a_lock_stored_before_lock_sources_is_kept_by_its_source(rig, store):
    store.set_value("gate.locked", 1)
    store.set_value("daemon.stale_lock", 1)  # the daemon's stale-list lock, as stored before
    r = rig()
    assert r.gate.mode is GateMode.LOCKED
    r.gate.list_stale(False)
    assert r.gate.mode is GateMode.NORMAL
    store.set_value("gate.locked", 1)
    store.set_value("daemon.stale_lock", 0)  # an operator's lock
    r = r.restart()
    r.gate.list_stale(False)
    assert r.gate.mode is GateMode.LOCKED


def test_remote_open_lets_one_through_without_a_record(rig, pins):
    r = rig()
    relay = pins.pin("GPIO17")
    relay.clear_states()
    r.gate.command("open")
    assert wait_for(lambda: len(relay.states) >= 3)
    relay.assert_states_and_times([(0, False), (0, True), (0.1, False)])
    r.drive("passage", True)
    r.gate.poll()
    assert r.alarms() == [] and r.events("passage") == []


def test_unknown_command(rig):
    with pytest.raises(ValueError, match="unknown gate command 'explode'"):
        rig().gate.command("explode")


# --- faults and restarts ------------------------------------------------------------------------

FAIL_SCANS = """CREATE TRIGGER fail_scans BEFORE INSERT ON outbox WHEN NEW.event LIKE '%"kind": "scan"%'
                BEGIN SELECT RAISE(ABORT, 'injected write failure'); END"""
FAIL_ALL = """CREATE TRIGGER fail_all BEFORE INSERT ON outbox
              BEGIN SELECT RAISE(ABORT, 'injected write failure'); END"""


def other_connection(store, sql: str) -> None:
    """Change the database from outside, as another process (or a failing disk) would."""
    with sqlite3.connect(store.path) as db:
        db.execute(sql)


def test_store_fault_keeps_the_gate_shut(rig, authority, pins, store):
    r = rig()
    relay, red = pins.pin("GPIO17"), pins.pin("GPIO6")
    relay.clear_states()
    red.clear_states()
    text = authority.ticket()
    other_connection(store, FAIL_ALL)
    with capture_logs() as logs, pytest.raises(StoreError, match="injected write failure"):
        r.gate.on_code(text, captured_at=time.monotonic())
    assert wait_for(lambda: len(red.states) >= 2)  # the fault pattern
    time.sleep(0.15)
    assert len(relay.states) == 1  # the relay never moved
    assert {"gate.store_fault", "gate.alarm_not_recorded"} <= {entry["event"] for entry in logs}
    other_connection(store, "DROP TRIGGER fail_all")
    assert r.events() == []
    assert r.gate.on_code(text).admit  # the ticket was not burned
    assert r.gate.last_scan["seq"] == 1


def test_store_fault_alarm_is_recorded_when_the_store_still_takes_it(rig, authority, pins, store):
    r = rig()
    relay = pins.pin("GPIO17")
    relay.clear_states()
    other_connection(store, FAIL_SCANS)
    with pytest.raises(StoreError):
        r.gate.on_code(authority.ticket())
    assert r.alarms() == ["tamper"]
    assert r.events("scan") == []
    time.sleep(0.15)
    assert len(relay.states) == 1


def test_store_read_fault_keeps_the_gate_shut(rig, authority, pins, store):
    r = rig()
    relay = pins.pin("GPIO17")
    relay.clear_states()
    other_connection(store, "ALTER TABLE revoked RENAME TO revoked_elsewhere")
    with pytest.raises(StoreError, match="read failed"):
        r.gate.on_code(authority.ticket())
    other_connection(store, "ALTER TABLE revoked_elsewhere RENAME TO revoked")
    time.sleep(0.15)
    assert len(relay.states) == 1
    assert r.alarms() == ["tamper"]


def test_pending_admission_left_by_a_crash_is_rolled_back_at_start(tmp_path, authority, gate_context, pins, clock):
    board = profile()
    path = tmp_path / "crash.db"
    text = authority.ticket()
    store = GateStore(path, site="arena", gate="g1")
    r = Rig(store=store, authority=authority, context=gate_context, pins=pins, board=board, clock=clock)
    decision = r.gate.on_code(text)
    scan_id = r.gate.last_scan["id"]
    r.turnstile.close()  # the process dies: no passage, no timeout
    store.close()

    store = GateStore(path, site="arena", gate="g1")
    try:
        r = Rig(store=store, authority=authority, context=gate_context, pins=pins, board=board, clock=clock)
        assert store.pending_admissions() == []
        assert store.admissions(decision.cti) == []
        [passage] = r.events("passage")
        assert (passage["ref"], passage["result"]) == (scan_id, "timeout")
        assert r.gate.on_code(text).admit
        r.gate.close()
    finally:
        store.close()


# --- threads and polling ------------------------------------------------------------------------


def test_callbacks_from_other_threads_wait_for_poll(rig, authority):
    r = rig()
    r.gate.on_code(authority.ticket())
    worker = threading.Thread(target=lambda: r.drive("passage", True))
    worker.start()
    worker.join()
    assert r.events("passage") == []  # nothing written off the owner thread
    r.gate.poll()
    assert [e["result"] for e in r.events("passage")] == ["passed"]


def test_poll_with_wait_returns_on_news(rig, authority):
    r = rig()
    r.gate.on_code(authority.ticket())
    timer = threading.Timer(0.05, lambda: r.drive("passage", True))
    timer.start()
    r.gate.poll(wait_s=5)
    timer.join()
    assert [e["result"] for e in r.events("passage")] == ["passed"]


def test_next_deadline(rig, authority, clock):
    r = rig()
    assert r.gate.next_deadline() is None
    r.gate.on_code(authority.ticket())
    assert r.gate.next_deadline() == pytest.approx(clock() + TIMEOUT_S)


# --- the events themselves ------------------------------------------------------------------------


def test_every_event_has_exactly_the_protocol_fields_and_a_valid_seal(rig, authority, clock):
    r = rig()
    r.gate.on_code(authority.ticket())
    r.drive("passage", True)
    r.drive("passage", False)
    r.gate.poll()
    r.gate.on_code(authority.ticket())
    clock.advance(TIMEOUT_S)
    r.gate.poll()
    r.drive("passage", True)
    r.drive("passage", False)
    r.gate.command("lock")
    r.drive("emergency", True)
    r.gate.poll()
    recorded = r.events()
    assert {e["kind"] for e in recorded} == {"scan", "passage", "alarm", "state"}
    prev = events.GENESIS
    for number, event in enumerate(recorded, start=1):
        assert set(event) == COMMON | FIELDS[event["kind"]], event
        assert event["seq"] == number and event["prev"] == prev
        assert events.check_seal(event, r.store.device_public_key) == []
        assert all(not isinstance(v, float) for v in event.values())
        prev = event["hash"]
    assert r.events("state")[-1] == {**r.events("state")[-1], "state": "emergency", "rev": 0}


def test_scans_are_judged_with_the_trusted_time_reading(store, authority, gate_context, pins, clock):
    from gated.gate.clock import TimeReading

    readings = [TimeReading(now=clock(), trusted=False, uncertain=True, source="none", offset_s=None)]
    turnstile = Turnstile(profile(), pin_factory=pins)
    gate = Gate(
        store=store,
        keyring=authority.keyring,
        context=gate_context,
        turnstile=turnstile,
        clock=clock,
        passage_timeout_s=TIMEOUT_S,
        held_open_s=HELD_S,
        time_reading=lambda: readings[-1],
    )
    try:
        text = authority.ticket()
        assert gate.on_code(text).reason is Reason.NOT_YET_VALID  # an uncertain clock cannot admit
        readings.append(TimeReading(now=clock(), trusted=True, uncertain=False, source="beacon", offset_s=0.0))
        assert gate.on_code(text).admit
        clock.advance(TIMEOUT_S)
        gate.poll()  # timers run on the gate clock
        assert store.admissions(bytes.fromhex(gate.last_scan["ticket"])) == []
    finally:
        gate.close()
