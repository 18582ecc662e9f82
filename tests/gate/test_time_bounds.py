"""No source of time takes a gate where it cannot stamp events: a signed beacon, a persisted trusted
time or beacon anchor, and the system clock are bounded at MAX_TIME_MS (year 9000), far below the
end of year 9999 that format_ts() cannot pass, so time running on from an accepted time never
overflows. And a fault while recording a failed scan stays inside that scan's boundary."""

from __future__ import annotations

import json
import time

from structlog.testing import capture_logs

from gated.core import events
from gated.core.beacon import encode_beacon
from gated.core.events import MAX_TIME_MS
from gated.core.reasons import Reason
from gated.gate.clock import ANCHOR_KEY, TRUSTED_KEY, TrustedClock
from gated.gate.gate import Gate
from gated.gate.store import GateStore
from gated.gate.turnstile import Turnstile
from tests.conftest import SITE
from tests.support.pins import FakeClock, pins, profile, relay_on  # noqa: F401  (pins is a fixture)

END_OF_9999_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last time format_ts() can write


class Board:
    """The true time (the gate's wall clock) and its boot-time clock, moving together."""

    def __init__(self):
        self.wall, self.mono = 1_790_000_000.0, 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds

    def clock(self, authority, store) -> TrustedClock:
        return TrustedClock(
            site=SITE,
            keyring=authority.keyring,
            store=store,
            policy="beacon",  # judge with the beacons' time: what a beacon in year 9999 would take over
            ntp_synced=lambda: False,
            wall=lambda: self.wall,
            monotonic=lambda: self.mono,
            boot=lambda: "boot-1",
        )


def gate_on(clock: TrustedClock, store, authority, gate_context, pins) -> Gate:
    return Gate(
        store=store,
        keyring=authority.keyring,
        context=gate_context,
        turnstile=Turnstile(profile(), pin_factory=pins),
        clock=clock.now,
        time_reading=clock.reading,
        passage_timeout_s=5.0,
        held_open_s=20.0,
    )


def judged(gate: Gate, authority, store, at: float) -> tuple[Reason, int]:
    """Scan a ticket valid at `at`: the reason and the unix ms the scan event was stamped with."""
    decision = gate.on_code(authority.ticket(nbf=int(at) - 3600, exp=int(at) + 3600))
    return decision.reason, events.parse_ts(recorded(store)[-1]["ts"])


def recorded(store) -> list[dict]:
    return [json.loads(text) for _, text in store.outbox(0, 10_000)]


def test_a_signed_beacon_in_year_9999_is_refused_and_scans_go_on(tmp_path, authority, gate_context, pins):
    board = Board()
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        clock = board.clock(authority, store)
        beacon = encode_beacon(authority.command, site=SITE, unix_ms=END_OF_9999_MS - 5000, seq=1)
        outcome = clock.on_beacon(beacon)
        assert (outcome.accepted, outcome.reason) == (False, "malformed")
        assert "beyond 9000-01-01" in outcome.detail
        gate = gate_on(clock, store, authority, gate_context, pins)
        try:
            board.advance(10)  # before: the gate's time passed 9999-12-31 here and every scan raised
            live = encode_beacon(authority.command, site=SITE, unix_ms=int(board.wall * 1000), seq=2)
            assert clock.on_beacon(live).accepted
            clock.checkpoint()
            reason, ts_ms = judged(gate, authority, store, board.wall)
            assert reason is Reason.OK and ts_ms == int(board.wall * 1000)
            assert store.get_value(TRUSTED_KEY, 0) <= board.wall * 1000
        finally:
            gate.close()


def test_a_persisted_time_past_the_bound_is_not_taken(tmp_path, authority, gate_context, pins):
    """What an older release left from a beacon in year 9999: the trusted time and the same boot's
    beacon anchor. Taken, the clock would run past 9999-12-31 seconds later."""
    board = Board()
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        store.set_value(TRUSTED_KEY, END_OF_9999_MS - 5000)
        anchor = {"boot": "boot-1", "at": board.mono, "offset": (END_OF_9999_MS - 5000) / 1000 - board.mono}
        store.set_value(ANCHOR_KEY, json.dumps(anchor))
        clock = board.clock(authority, store)
        gate = gate_on(clock, store, authority, gate_context, pins)
        try:
            board.advance(10)
            assert clock.reading().now == board.wall
            reason, ts_ms = judged(gate, authority, store, board.wall)
            assert ts_ms == int(board.wall * 1000) and reason is not Reason.INTERNAL_ERROR
        finally:
            gate.close()


def test_a_system_clock_past_the_bound_reads_as_the_bound(tmp_path, authority):
    board = Board()
    board.wall = END_OF_9999_MS / 1000 + 60  # a board whose clock says year 10000
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        reading = board.clock(authority, store).reading()
        assert reading.now_ms == MAX_TIME_MS
        assert events.format_ts(reading.now_ms) == "9000-01-01T00:00:00.000Z"


def test_a_system_clock_past_the_bound_is_no_source_so_nothing_is_admitted_on_a_stopped_time(
    tmp_path, authority, gate_context, pins
):
    """NTP says synced, the wall clock says year 10000: held at the bound, the time would stand still
    and an admitted visitor's passage never time out (the relay left open). Such a clock vouches for
    nothing: the reading is uncertain, the scan denied under `deny`, the relay never opened."""
    board = Board()
    board.wall = END_OF_9999_MS / 1000 + 60
    clock = TrustedClock(
        site=SITE,
        keyring=authority.keyring,
        store=None,
        policy="deny",
        ntp_synced=lambda: True,
        wall=lambda: board.wall,
        monotonic=lambda: board.mono,
        boot=lambda: "boot-1",
    )
    reading = clock.reading()
    assert reading.uncertain and not reading.trusted and reading.source == "none"
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        gate = gate_on(clock, store, authority, gate_context, pins)
        try:
            at = int(clock.now())
            decision = gate.on_code(authority.ticket(nbf=at - 3600, exp=at + 10**9))
            assert not decision.admit and not relay_on(pins, profile())
        finally:
            gate.close()


def test_a_fault_while_recording_a_failed_scan_stays_inside_the_scan(store, authority, gate_context, pins):
    """A gate handed a time format_ts() cannot write: the scan's own event fails (ValueError), and
    so do the internal_error scan and tamper alarm written for it. The scan is denied, the gate
    stays shut, and says so; the next scan on a sane time is judged as usual."""
    clock = FakeClock(END_OF_9999_MS / 1000 + 5)
    gate = Gate(
        store=store,
        keyring=authority.keyring,
        context=gate_context,
        turnstile=Turnstile(profile(), pin_factory=pins),
        clock=clock,
        passage_timeout_s=5.0,
        held_open_s=20.0,
    )
    try:
        with capture_logs() as logs:
            decision = gate.on_code(authority.ticket())
        assert (decision.admit, decision.reason) == (False, Reason.INTERNAL_ERROR)
        assert not relay_on(pins, profile())
        said = [entry for entry in logs if entry["event"] == "gate.alarm_not_recorded"]
        assert said and "year 10000" in said[0]["error"] and "stays shut" in said[0]["action"]
        assert recorded(store) == []
        clock.advance(time.time() - clock())
        assert gate.on_code(authority.ticket()).reason is Reason.OK
    finally:
        gate.close()


def test_the_uplinks_system_clock_reads_no_later_than_the_bound(monkeypatch):
    """The uplink stamps its status messages and broker marks with the system clock: a board whose
    clock says year 10000 reads as the bound, which events can be stamped with."""
    from gated.gate import uplink

    monkeypatch.setattr(time, "time_ns", lambda: (END_OF_9999_MS + 60_000) * 1_000_000)
    assert uplink.now_ms() == MAX_TIME_MS
    assert events.format_ts(uplink.now_ms()) == "9000-01-01T00:00:00.000Z"
