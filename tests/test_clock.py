"""Trusted time (gated/clock.py): beacons verified as PROTOCOL §7 says, the offset they reveal,
uncertainty, the deny/beacon policy, and time that never runs backwards across restarts."""

from __future__ import annotations

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated.core import cose
from gated.clock import Policy, TrustedClock, encode_beacon, read_beacon
from gated.store import GateStore
from tests.conftest import SITE

TRUE = 1_790_000_000.0  # the real time at the start of each story (unix seconds)
HOUR = 3600.0


class World:
    """The true time, the gate's wall clock (off by `skew`) and its monotonic clock, all moving together."""

    def __init__(self, skew: float = 0.0, ntp: bool = False):
        self.true, self.skew, self.mono, self.ntp = TRUE, skew, 1000.0, ntp

    @property
    def wall(self) -> float:
        return self.true + self.skew

    def advance(self, seconds: float) -> None:
        self.true += seconds
        self.mono += seconds

    def clock(self, authority, store=None, **kw) -> TrustedClock:
        return TrustedClock(site=SITE, keyring=authority.keyring, store=store, ntp_synced=lambda: self.ntp,
                            wall=lambda: self.wall, monotonic=lambda: self.mono, **kw)


def beacon(authority, seq, *, at: float, site=SITE, key=None) -> bytes:
    return encode_beacon(key or authority.command, site=site, unix_ms=int(at * 1000), seq=seq)


def test_beacon_round_trip(authority):
    got = read_beacon(beacon(authority, 7, at=TRUE), authority.keyring)
    assert (got.site, got.unix_ms, got.seq, got.signer) == (SITE, int(TRUE * 1000), 7, "command")


@pytest.mark.parametrize("case, reason", [
    ("issuer key", "unknown_key"),
    ("stranger key", "unknown_key"),
    ("tampered", "bad_signature"),
    ("garbage", "malformed"),
    ("wrong types", "malformed"),
    ("other site", "wrong_site"),
])
def test_beacons_that_are_ignored(authority, case, reason):
    world = World()
    payload = {
        "issuer key": lambda: beacon(authority, 1, at=TRUE, key=authority.issuer),
        "stranger key": lambda: beacon(authority, 1, at=TRUE, key=Ed25519PrivateKey.generate()),
        "tampered": lambda: _tamper(beacon(authority, 1, at=TRUE)),
        "garbage": lambda: b"\x01\x02not cbor",
        "wrong types": lambda: cose.sign(cbor2.dumps({1: SITE, 2: "now", 3: 1}), authority.command),
        "other site": lambda: beacon(authority, 1, at=TRUE, site="elsewhere"),
    }[case]()
    clock = world.clock(authority)
    outcome = clock.on_beacon(payload, world.wall, world.mono)
    assert (outcome.accepted, outcome.reason) == (False, reason)
    assert clock.offset_s is None  # nothing learned


def _tamper(blob: bytes) -> bytes:
    protected, unprotected, payload, sig = cbor2.loads(blob)
    body = cbor2.loads(payload)
    body[2] += 3_600_000
    return cbor2.dumps([protected, unprotected, cbor2.dumps(body), sig])


def test_sequence_must_rise(authority):
    world = World()
    clock = world.clock(authority)
    assert clock.on_beacon(beacon(authority, 5, at=world.true), world.wall, world.mono).accepted
    again = clock.on_beacon(beacon(authority, 5, at=world.true + 10), world.wall, world.mono)
    older = clock.on_beacon(beacon(authority, 4, at=world.true + 10), world.wall, world.mono)
    assert (again.reason, older.reason) == ("not_newer", "not_newer")


def test_gate_an_hour_behind_is_corrected_by_beacons(authority):
    world = World(skew=-HOUR)  # booted without network: the clock is an hour late
    clock = world.clock(authority, policy=Policy.BEACON)
    before = clock.reading(world.wall, world.mono)
    assert before.uncertain and not before.trusted and before.source == "none"
    outcome = clock.on_beacon(beacon(authority, 1, at=world.true), world.wall, world.mono)
    assert outcome.accepted and outcome.offset_s == pytest.approx(HOUR, abs=0.01)
    world.advance(25)
    reading = clock.reading(world.wall, world.mono)
    assert reading.offset_s == pytest.approx(HOUR, abs=0.01)
    assert reading.uncertain and reading.source == "offset"  # an hour is beyond max_offset_s: alarm-worthy
    assert reading.trusted and reading.now == pytest.approx(world.true, abs=0.01)  # policy: the beacons' time


def test_same_gate_under_deny_policy_denies_time_checks(authority):
    world = World(skew=-HOUR)
    clock = world.clock(authority, policy=Policy.DENY)
    clock.on_beacon(beacon(authority, 1, at=world.true), world.wall, world.mono)
    reading = clock.reading(world.wall, world.mono)
    assert reading.uncertain and not reading.trusted


def test_small_offset_without_ntp_is_corrected_silently(authority):
    world = World(skew=-12)
    clock = world.clock(authority)  # deny policy, but nothing is uncertain
    clock.on_beacon(beacon(authority, 1, at=world.true), world.wall, world.mono)
    world.advance(40)
    reading = clock.reading(world.wall, world.mono)
    assert (reading.uncertain, reading.trusted, reading.source) == (False, True, "beacon")
    assert reading.now == pytest.approx(world.true, abs=0.01)


def test_ntp_alone_is_a_time_source_and_a_disagreeing_beacon_overrules_it(authority):
    world = World(skew=0, ntp=True)
    clock = world.clock(authority)
    reading = clock.reading(world.wall, world.mono)
    assert (reading.uncertain, reading.source, reading.now) == (False, "ntp", world.wall)
    world.skew = 300  # NTP says synced, but the signed beacons say five minutes
    clock.on_beacon(beacon(authority, 1, at=world.true), world.wall, world.mono)
    assert clock.reading(world.wall, world.mono).uncertain


def test_a_stale_retained_beacon_is_outweighed_by_a_live_one(authority):
    world = World(ntp=False)
    clock = world.clock(authority)
    # the broker hands over a retained beacon published 8 s ago, then the live ones follow
    clock.on_beacon(beacon(authority, 1, at=world.true - 8), world.wall, world.mono)
    assert clock.reading(world.wall, world.mono).offset_s == pytest.approx(-8, abs=0.01)
    world.advance(2)
    clock.on_beacon(beacon(authority, 2, at=world.true), world.wall, world.mono)
    world.advance(5)
    assert clock.reading(world.wall, world.mono).offset_s == pytest.approx(0, abs=0.01)


def test_beacons_age_out(authority):
    world = World()
    clock = world.clock(authority, beacon_max_age_s=600)
    clock.on_beacon(beacon(authority, 1, at=world.true), world.wall, world.mono)
    world.advance(601)
    reading = clock.reading(world.wall, world.mono)
    assert reading.uncertain and reading.source == "none" and not reading.trusted
    beacon_policy = world.clock(authority, policy="beacon")
    beacon_policy.on_beacon(beacon(authority, 2, at=world.true), world.wall, world.mono)
    world.advance(601)
    late = beacon_policy.reading(world.wall, world.mono)
    assert late.uncertain and late.trusted and late.now == pytest.approx(world.true, abs=0.01)  # carried forward


def test_time_never_runs_backwards_across_a_restart(authority, tmp_path):
    world = World(ntp=False)
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        clock = world.clock(authority, store)
        clock.on_beacon(beacon(authority, 10, at=world.true), world.wall, world.mono)
        world.advance(5)
        clock.checkpoint(world.wall, world.mono)
        last_trusted = world.true
    # power cut; the Pi boots with its clock two days behind and no network yet
    world.advance(60)
    world.skew, world.mono = -2 * 86400, 3.0
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        clock = world.clock(authority, store, policy="beacon")
        reading = clock.reading(world.wall, world.mono)
        assert reading.now >= last_trusted  # clamped to the persisted trusted time
        assert reading.uncertain and reading.source == "behind" and not reading.trusted
        # the retained beacon it accepted before the restart is not accepted again
        replay = clock.on_beacon(beacon(authority, 10, at=last_trusted - 5), world.wall, world.mono)
        assert replay.reason == "not_newer"
        clock.on_beacon(beacon(authority, 11, at=world.true), world.wall, world.mono)
        after = clock.reading(world.wall, world.mono)
        assert after.trusted and after.now == pytest.approx(world.true, abs=0.01)


def test_health_fields_are_integers(authority):
    world = World(skew=-HOUR)
    clock = world.clock(authority)
    clock.on_beacon(beacon(authority, 1, at=world.true), world.wall, world.mono)
    world.advance(3)
    health = clock.health(world.wall, world.mono)
    assert health == {"clock_source": "offset", "clock_uncertain": 1, "clock_offset_ms": 3_600_000, "beacon_age_s": 3}


def test_from_config_takes_the_policy_and_limits(authority):
    from gated.config import ClockSection

    section = ClockSection(when_uncertain="beacon", max_offset_s=5.0, beacon_max_age_s=60.0)
    clock = TrustedClock.from_config(section, site=SITE, keyring=authority.keyring, store=None)
    assert (clock.policy, clock.max_offset_s, clock.beacon_max_age_s) == (Policy.BEACON, 5.0, 60.0)
    assert TrustedClock.from_config(ClockSection(), site=SITE, keyring=authority.keyring, store=None).policy \
        is Policy.DENY
