"""Trusted time (gated/gate/clock.py): beacons verified as PROTOCOL §7 says, the offset they reveal,
uncertainty, the deny/beacon policy, and time that never runs backwards across restarts."""

from __future__ import annotations

import json

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated.core import cose
from gated.core.beacon import encode_beacon, read_beacon
from gated.gate.clock import Policy, TrustedClock, reset_trust
from gated.gate.store import GateStore
from tests.conftest import SITE

TRUE = 1_790_000_000.0  # the real time at the start of each story (unix seconds)
HOUR = 3600.0


class World:
    """The true time, the gate's wall clock (off by `skew`) and its monotonic clock, all moving together."""

    def __init__(self, skew: float = 0.0, ntp: bool = False, rtc: bool = False):
        self.true, self.skew, self.mono, self.ntp, self.rtc = TRUE, skew, 1000.0, ntp, rtc
        self.boot = "boot-1"

    @property
    def wall(self) -> float:
        return self.true + self.skew

    def advance(self, seconds: float) -> None:
        self.true += seconds
        self.mono += seconds

    def reboot(self, *, skew: float) -> None:
        """A new boot: the boot-time clock starts again, the wall clock is whatever the board had."""
        self.boot, self.mono, self.skew = self.boot + "'", 3.0, skew

    def clock(self, authority, store=None, **kw) -> TrustedClock:
        return TrustedClock(
            site=SITE,
            keyring=authority.keyring,
            store=store,
            ntp_synced=lambda: self.ntp,
            rtc=lambda: self.rtc,
            wall=lambda: self.wall,
            monotonic=lambda: self.mono,
            boot=lambda: self.boot,
            **kw,
        )


def beacon(authority, seq, *, at: float, site=SITE, key=None) -> bytes:
    return encode_beacon(key or authority.command, site=site, unix_ms=int(at * 1000), seq=seq)


def test_beacon_round_trip(authority):
    got = read_beacon(beacon(authority, 7, at=TRUE), authority.keyring)
    assert (got.site, got.unix_ms, got.seq, got.signer) == (SITE, int(TRUE * 1000), 7, "command")


@pytest.mark.parametrize(
    "case, reason",
    [
        ("issuer key", "unknown_key"),
        ("stranger key", "unknown_key"),
        ("tampered", "bad_signature"),
        ("garbage", "malformed"),
        ("wrong types", "malformed"),
        ("other site", "wrong_site"),
    ],
)
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


def test_a_sequence_far_above_its_own_time_is_not_taken(authority):
    """The publisher's sequence is its unix ms (or the last + 1). A correctly signed beacon whose
    sequence is far above its own time (a publisher counting in microseconds) used to stand above
    every later beacon, so the gate took none until `gated clock reset`; now it is refused."""
    world = World()
    clock = world.clock(authority)
    now_ms = int(world.true * 1000)
    runaway = clock.on_beacon(beacon(authority, now_ms * 1000, at=world.true), world.wall, world.mono)
    assert (runaway.accepted, runaway.reason) == (False, "too_far_ahead") and "sequence" in runaway.detail
    world.advance(10)
    assert clock.on_beacon(beacon(authority, now_ms + 10_000, at=world.true), world.wall, world.mono).accepted
    world.advance(10)  # a publisher whose clock stepped back a little goes on counting from its last sequence
    assert clock.on_beacon(beacon(authority, now_ms + 10_001, at=world.true - 30), world.wall, world.mono).accepted


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
        world.advance(120)  # still certain on that beacon, two minutes on
        clock.checkpoint(world.wall, world.mono)
        last_trusted = world.true
    # power cut; the Pi boots with its clock two days behind and no network yet
    world.advance(60)
    world.reboot(skew=-2 * 86400)
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        clock = world.clock(authority, store, policy="beacon")
        reading = clock.reading(world.wall, world.mono)
        assert reading.now >= last_trusted  # clamped to the persisted trusted time
        assert reading.uncertain and reading.source == "behind" and not reading.trusted
        # the retained beacon it accepted before the restart, older than the trusted time, is not taken again
        replay = clock.on_beacon(beacon(authority, 10, at=last_trusted - 120), world.wall, world.mono)
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
    from gated.gate.config import ClockSection

    section = ClockSection(when_uncertain="beacon", max_offset_s=5.0, beacon_max_age_s=60.0)
    clock = TrustedClock.from_config(section, site=SITE, keyring=authority.keyring, store=None)
    assert (clock.policy, clock.max_offset_s, clock.beacon_max_age_s) == (Policy.BEACON, 5.0, 60.0)
    assert (
        TrustedClock.from_config(ClockSection(), site=SITE, keyring=authority.keyring, store=None).policy is Policy.DENY
    )


@pytest.mark.parametrize(
    "ntp, synced, source", [("auto", True, "ntp"), ("auto", False, "none"), ("ignore", True, "none")]
)
def test_a_site_can_tell_the_gate_to_ignore_the_systems_ntp(authority, ntp, synced, source):
    from gated.gate.config import ClockSection

    clock = TrustedClock.from_config(
        ClockSection(ntp=ntp), site=SITE, keyring=authority.keyring, store=None, ntp_synced=lambda: synced
    )
    reading = clock.reading()
    assert (reading.source, reading.uncertain) == (source, source == "none")


# --- a restart is not a reboot (issue #11 item 5) -------------------------------------------------


def test_a_restart_within_the_same_boot_keeps_the_beacon_bound(authority, tmp_path):
    world = World(skew=-12)  # no NTP, no RTC: the beacons are the only source
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        clock = world.clock(authority, store)
        clock.on_beacon(beacon(authority, 1, at=world.true - 1), world.wall, world.mono)
        assert clock.reading(world.wall, world.mono).source == "beacon"
    world.advance(40)  # the broker went away, then the daemon was SIGKILLed and restarted: same boot
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        clock = world.clock(authority, store)
        reading = clock.reading(world.wall, world.mono)
        assert (reading.uncertain, reading.trusted, reading.source) == (False, True, "beacon")
        assert reading.now == pytest.approx(world.true - 1, abs=0.01)  # the bound carried on the boot-time clock
        world.advance(600)  # the restored bound ages out as the live one would have
        assert clock.reading(world.wall, world.mono).source == "none"


def test_after_a_reboot_the_anchor_is_void_and_only_a_source_makes_the_clock_certain(authority, tmp_path):
    world = World()
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        world.clock(authority, store).on_beacon(beacon(authority, 1, at=world.true), world.wall, world.mono)
    world.advance(30)
    world.reboot(skew=0)
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        reading = world.clock(authority, store).reading(world.wall, world.mono)
        assert reading.uncertain and reading.source == "none"
        world.rtc = True  # [clock] rtc = true and the board has one
        reading = world.clock(authority, store).reading(world.wall, world.mono)
        assert (reading.uncertain, reading.source, reading.now) == (False, "rtc", world.wall)


def test_an_rtc_behind_the_trusted_time_is_not_believed(authority, tmp_path):
    world = World(rtc=True)
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        world.clock(authority, store).on_beacon(beacon(authority, 1, at=world.true), world.wall, world.mono)
    world.reboot(skew=-3 * HOUR)  # the RTC's battery ran flat
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        reading = world.clock(authority, store).reading(world.wall, world.mono)
        assert reading.uncertain and reading.source == "behind"


def test_after_a_reboot_a_retained_beacon_bounded_by_the_trusted_time_is_enough(authority, tmp_path):
    world = World()
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        clock = world.clock(authority, store)
        clock.on_beacon(beacon(authority, 1, at=world.true), world.wall, world.mono)
        clock.checkpoint(world.wall, world.mono)
    taken = world.true
    world.advance(5)
    world.reboot(skew=-10)  # no RTC: the board starts from the time it saved at shutdown
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        clock = world.clock(authority, store)
        assert clock.reading(world.wall, world.mono).uncertain
        # the broker is back before the publisher: it holds the very beacon taken before the reboot
        retained = clock.on_beacon(beacon(authority, 1, at=taken), world.wall, world.mono)
        assert retained.accepted and "before the restart" in retained.detail
        reading = clock.reading(world.wall, world.mono)
        assert (reading.uncertain, reading.trusted, reading.source) == (False, True, "beacon")
        assert reading.now == pytest.approx(world.true - 5, abs=0.01)  # a lower bound, 5 s late
        assert clock.on_beacon(beacon(authority, 1, at=taken), world.wall, world.mono).reason == "not_newer"


# --- one fast beacon (issue #11 item 6) -----------------------------------------------------------

YEAR = 365 * 86400.0


@pytest.mark.parametrize("source", ["ntp", "beacon"])
def test_one_beacon_a_year_ahead_cannot_move_the_time(authority, tmp_path, source):
    world = World(ntp=source == "ntp")
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        clock = world.clock(authority, store, max_beacon_step_s=60)
        if source == "beacon":
            clock.on_beacon(beacon(authority, 1, at=world.true), world.wall, world.mono)
        fast = clock.on_beacon(beacon(authority, 2, at=world.true + YEAR), world.wall, world.mono)
        assert (fast.accepted, fast.reason) == (False, "too_far_ahead") and source in fast.detail
        reading = clock.reading(world.wall, world.mono)
        assert (reading.uncertain, reading.source) == (False, source)
        assert reading.now == pytest.approx(world.true, abs=0.01)
        clock.checkpoint(world.wall, world.mono)
        assert store.get_value("clock.trusted_ms") <= (world.true + 60) * 1000
        assert clock.disagreement["beacon_ms"] - clock.disagreement["reference_ms"] == pytest.approx(
            YEAR * 1000, abs=10
        )
        # its sequence was not taken: the next honest beacon counts
        assert clock.on_beacon(beacon(authority, 2, at=world.true), world.wall, world.mono).accepted
    world.advance(5)  # and after a restart nothing is judged a year ahead
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        reading = world.clock(authority, store).reading(world.wall, world.mono)
        assert not reading.uncertain and reading.now == pytest.approx(world.true, abs=1)


def test_a_beacon_within_the_step_does_not_lift_the_bound_for_the_next(authority, tmp_path):
    """NTP synchronised: +59 s is taken (within the step) and makes the clock "offset"-uncertain; a
    beacon a year ahead is still refused, and nothing persisted runs ahead (issue #11 item 6)."""
    world = World(ntp=True)
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        clock = world.clock(authority, store, max_beacon_step_s=60, max_offset_s=30)
        assert clock.on_beacon(beacon(authority, 1, at=world.true + 59), world.wall, world.mono).accepted
        assert clock.reading(world.wall, world.mono).source == "offset"
        fast = clock.on_beacon(beacon(authority, 2, at=world.true + YEAR), world.wall, world.mono)
        assert (fast.accepted, fast.reason) == (False, "too_far_ahead") and "ntp" in fast.detail
        assert clock.reading(world.wall, world.mono).now < world.true + 60
        clock.checkpoint(world.wall, world.mono)
        # the floor is raised only from certain readings: not to the +59 s beacon either
        assert store.get_value("clock.trusted_ms", 0) <= (world.true + 1) * 1000
    world.advance(5)
    world.reboot(skew=0)  # after a reboot, NTP's time is judged with, not a year ahead
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        reading = world.clock(authority, store).reading(world.wall, world.mono)
        assert (reading.uncertain, reading.source) == (False, "ntp")
        assert reading.now == pytest.approx(world.true, abs=0.01)


def test_beacons_cannot_walk_the_time_away_from_ntp_in_steps(authority, tmp_path):
    world = World(ntp=True)
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        clock = world.clock(authority, store, max_beacon_step_s=60)
        outcomes = []
        for seq in range(1, 11):  # each beacon 50 s ahead of the one before, 10 s apart
            world.advance(10)
            outcomes.append(clock.on_beacon(beacon(authority, seq, at=world.true + 50 * seq), world.wall, world.mono))
        assert outcomes[0].accepted
        assert [o.reason for o in outcomes[1:]] == ["too_far_ahead"] * 9
        reading = clock.reading(world.wall, world.mono)
        assert reading.now <= world.true + 60
        clock.checkpoint(world.wall, world.mono)
        assert store.get_value("clock.trusted_ms", 0) <= (world.true + 60) * 1000
        assert clock.disagreement["source"] == "ntp"


def test_a_beacon_within_the_step_still_moves_the_time(authority):
    world = World(skew=-20)  # no NTP; beacons say the wall clock is 20 s late
    clock = world.clock(authority, max_beacon_step_s=60)
    clock.on_beacon(beacon(authority, 1, at=world.true - 20), world.wall, world.mono)  # a stale retained one
    assert clock.on_beacon(beacon(authority, 2, at=world.true), world.wall, world.mono).accepted
    assert clock.reading(world.wall, world.mono).now == pytest.approx(world.true, abs=0.01)


def test_live_beacons_agreeing_with_each_other_outvote_a_stale_retained_one(authority):
    """No NTP, no RTC: after a reboot the broker held only an hour-old beacon (its publisher was down),
    so the gate took it. Live beacons then run an hour ahead of it: the first two are refused, the
    third of a run that agrees with itself and with the gate's own clock outvotes the stale one."""
    world = World(ntp=False)
    clock = world.clock(authority, max_beacon_step_s=60)
    assert clock.on_beacon(beacon(authority, 1, at=world.true - 3600), world.wall, world.mono).accepted
    outcomes = []
    for seq in (2, 3, 4):
        world.advance(10)
        outcomes.append(clock.on_beacon(beacon(authority, seq, at=world.true), world.wall, world.mono))
    assert [o.reason for o in outcomes] == ["too_far_ahead", "too_far_ahead", "accepted"]
    assert "outvoted" in outcomes[-1].detail
    assert clock.reading(world.wall, world.mono).now == pytest.approx(world.true, abs=1)


def test_beacons_that_disagree_with_each_other_or_with_ntp_outvote_nothing(authority):
    world = World(ntp=False)
    clock = world.clock(authority, max_beacon_step_s=60)
    clock.on_beacon(beacon(authority, 1, at=world.true), world.wall, world.mono)
    # a run whose times do not advance with the gate's clock (each an hour further): no stream
    for seq in (2, 3, 4, 5):
        world.advance(10)
        assert (
            clock.on_beacon(beacon(authority, seq, at=world.true + 3600 * seq), world.wall, world.mono).reason
            == "too_far_ahead"
        )
    # with NTP, even a consistent run a year ahead never outvotes it
    synced = World(ntp=True)
    ntp_clock = synced.clock(authority, max_beacon_step_s=60)
    for seq in range(1, 6):
        synced.advance(10)
        assert (
            ntp_clock.on_beacon(beacon(authority, seq, at=synced.true + YEAR), synced.wall, synced.mono).reason
            == "too_far_ahead"
        )


def test_reset_forgets_a_poisoned_trusted_time(authority, tmp_path):

    world = World(ntp=True)
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        store.set_value("clock.trusted_ms", int((world.true + YEAR) * 1000))  # as an older release left it
        store.set_value("clock.beacon_seq", int((world.true + YEAR) * 1000))
        poisoned = world.clock(authority, store).reading(world.wall, world.mono)
        assert poisoned.now == pytest.approx(world.true + YEAR) and poisoned.source == "behind"
        before = reset_trust(store, int(world.wall * 1000))
        assert before["clock.trusted_ms"] == int((world.true + YEAR) * 1000)
        clock = world.clock(authority, store)
        reading = clock.reading(world.wall, world.mono)
        assert (reading.uncertain, reading.source, reading.now) == (False, "ntp", world.wall)
        now_ms = int(world.true * 1000)
        assert clock.on_beacon(beacon(authority, now_ms, at=world.true), world.wall, world.mono).accepted


def test_a_reset_does_not_reopen_replays_of_old_signed_beacons(authority, tmp_path):
    """An attacker kept a signed beacon from an hour ago. After `gated clock reset` (or the signed
    `clock_reset` command) it is still refused: the sequence floor drops only to just before the
    reset's reference time, not to -1. A fresh beacon is taken."""
    world = World()  # no NTP: a beacon alone would set the time
    old = beacon(authority, int((world.true - 3600) * 1000), at=world.true - 3600)
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        clock = world.clock(authority, store)
        assert clock.on_beacon(
            beacon(authority, int(world.true * 1000), at=world.true), world.wall, world.mono
        ).accepted
        clock.reset(int(world.true * 1000))  # the command's iat
        assert clock.on_beacon(old, world.wall, world.mono).reason == "not_newer"
        reset_trust(store, int(world.wall * 1000))  # `gated clock reset`, the gate stopped
        again = world.clock(authority, store)
        assert again.on_beacon(old, world.wall, world.mono).reason == "not_newer"
        world.advance(10)
        assert again.on_beacon(
            beacon(authority, int(world.true * 1000), at=world.true), world.wall, world.mono
        ).accepted


@pytest.mark.parametrize("unix_ms", [2**53, 2**63 - 1, 2**64 - 1])
def test_a_beacon_beyond_any_plausible_time_is_malformed_even_with_no_other_source(authority, tmp_path, unix_ms):
    world = World()  # no NTP, no beacon yet: nothing bounds a first beacon's step
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        clock = world.clock(authority, store)
        outcome = clock.on_beacon(
            encode_beacon(authority.command, site=SITE, unix_ms=unix_ms, seq=1), world.wall, world.mono
        )
        assert (outcome.accepted, outcome.reason) == (False, "malformed")
        clock.checkpoint(world.wall, world.mono)
        assert store.get_value("clock.trusted_ms", 0) == 0


def test_diagnose_trust_says_what_the_persisted_trust_disagrees_with():
    """`gated doctor`'s reading of the trust a gate persisted (gated.gate.clock.diagnose_trust)."""
    from gated.gate.clock import ANCHOR_KEY, DISAGREEMENT_KEY, TRUSTED_KEY, diagnose_trust

    def diagnose(values, now=TRUE):
        return diagnose_trust(values.get, now=now, max_offset_s=30, boot=lambda: "boot-1", monotonic=lambda: 100.0)

    assert diagnose({}) is None
    assert diagnose({TRUSTED_KEY: int((TRUE + 20) * 1000)}) is None  # within max_offset_s
    ahead = diagnose({TRUSTED_KEY: int((TRUE + 3600) * 1000)})
    assert ahead.kind == "ahead" and ahead.trusted_s == TRUE + 3600
    refused = diagnose(
        {
            DISAGREEMENT_KEY: json.dumps(
                {"beacon_ms": 5_000_000, "reference_ms": 1_000_000, "source": "ntp", "seen_ms": 1_000_500}
            )
        }
    )
    assert (refused.kind, refused.beacon_s, refused.reference_s, refused.source, refused.seen_s) == (
        "refused",
        5000.0,
        1000.0,
        "ntp",
        1000.5,
    )
    assert diagnose({DISAGREEMENT_KEY: "not json"}) is None
    same_boot = {ANCHOR_KEY: json.dumps({"boot": "boot-1", "at": 90.0, "offset": TRUE - 100.0 + 120})}
    offset = diagnose(same_boot)
    assert offset.kind == "offset" and offset.offset_s == pytest.approx(120)
    assert diagnose({ANCHOR_KEY: same_boot[ANCHOR_KEY].replace("boot-1", "boot-0")}) is None  # another boot
