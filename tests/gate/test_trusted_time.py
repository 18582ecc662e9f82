"""The daemon judges with its trusted clock, not the system clock: the revocation list's age and the
age of the ledger's occupancy figure are measured on the time scans are judged with (a Pi without
RTC or NTP whose system clock is days behind the beacons); while that clock has no trusted time, on
its best estimate."""

from __future__ import annotations

import json
import time

import pytest

from gated.core import revocation
from gated.core.beacon import encode_beacon
from gated.core.decide import GateMode
from gated.core.ledgersig import seal
from gated.core.occupancy import encode_occupancy
from gated.core.reasons import Reason
from gated.gate import build, config, revocations
from gated.gate.clock import TrustedClock
from gated.gate.daemon import REVOCATION_CHECK_S, Daemon
from gated.topics import occupancy_topic
from tests.conftest import EVENT, SITE
from tests.support.gatedaemon import gate_config, write_config
from tests.support.uplink import LEDGER_KEY

DAY = 86400


@pytest.fixture
def daemon(tmp_path, authority):
    """A daemon's parts as start() makes them, from a config file, without camera or broker."""
    made = []

    def make(*, when_uncertain: str) -> Daemon:
        cfg = gate_config(
            tmp_path,
            keyring=authority.keyring_dir,
            broker_url="mqtt://127.0.0.1:1",
            camera_source="files:/nonexistent",
            site=SITE,
            gate="g1",
            event=EVENT,
            clock={"trust_system_clock": False, "ntp": "ignore", "when_uncertain": when_uncertain},
            revocations={"when_stale": "closed", "max_age_s": float(DAY)},
        )
        cfg["gate"]["capacity"] = 5  # so that scans count the zone's occupancy
        d = Daemon(config.load(write_config(tmp_path / "gated.toml", cfg)))
        d.keyring, d.store = authority.keyring, build.open_store(d.cfg)
        d.clock = TrustedClock.from_config(d.cfg.clock, site=SITE, keyring=authority.keyring, store=d.store)
        d.turnstile = build.make_turnstile(d.cfg)
        d.gate = build.make_gate(d.cfg, store=d.store, keyring=d.keyring, turnstile=d.turnstile, clock=d.clock)
        made.append(d)
        return d

    yield make
    for d in made:
        d.gate.close()
        d.store.close()


def list_signed_at(daemon: Daemon, authority, iat: float, version: int = 7) -> None:
    blob = revocation.encode_updates(authority.revocation, site=SITE, version=version, add=[], iat=int(iat))[0]
    outcome = revocations.apply_update(daemon.store, blob, authority.keyring, site=SITE, now_ms=int(iat * 1000))
    assert outcome.status != "rejected", outcome


def check_revocations(daemon: Daemon) -> None:
    daemon._next_rev_check = 0.0
    daemon._revocation_policy(REVOCATION_CHECK_S)


def scan(daemon: Daemon, authority, at: float) -> Reason:
    text = authority.ticket(nbf=int(at) - 3600, exp=int(at) + 3600)
    return daemon.gate.on_code(text).reason


def test_a_list_old_on_the_beacons_time_is_stale_though_the_system_clock_is_days_behind(daemon, authority):
    d = daemon(when_uncertain="beacon")
    trusted = time.time() + 4 * DAY  # the beacons' time; this machine's clock is 4 days behind it
    assert d.clock.on_beacon(encode_beacon(authority.command, site=SITE, unix_ms=int(trusted * 1000), seq=1)).accepted
    list_signed_at(d, authority, trusted - 3 * DAY)  # the publisher is down: the newest list is 3 days old
    check_revocations(d)
    assert d._stale_why is not None and "259200 s old" in d._stale_why
    assert d.gate.mode is GateMode.LOCKED
    assert scan(d, authority, trusted) is Reason.LOCKED  # no new refunds: nobody is admitted on that list


def test_the_ledgers_occupancy_figure_is_aged_on_the_clock_that_judges_it(daemon, authority):
    d = daemon(when_uncertain="beacon")
    trusted = time.time() + 4 * DAY
    assert d.clock.on_beacon(encode_beacon(authority.command, site=SITE, unix_ms=int(trusted * 1000), seq=1)).accepted
    zones = {"north": {"inside": 3, "capacity": 5, "entries": 3, "exits": 0}}
    body = json.loads(encode_occupancy(SITE, zones, int(trusted * 1000), {"g1": 10**6}))
    d._occupancy(occupancy_topic(SITE), seal(body, LEDGER_KEY))
    assert d.store.zone_occupancy("north", d.clock.reading().now_ms) == (3, "central")


def test_with_no_trusted_time_the_list_is_aged_on_the_best_estimate_and_exits_are_not_locked(daemon, authority):
    """No time source yet (no NTP, no RTC, no beacon): the list's age is judged on the clock's best
    estimate, not taken for stale for that alone (a stale-list lock would stop a scan-out gate's
    exits too); entries are refused by the clock policy, and the first beacon lets them in."""
    d = daemon(when_uncertain="deny")
    list_signed_at(d, authority, time.time() - 3 * DAY)  # old on any clock: stale, locked
    assert not d.clock.reading().trusted
    check_revocations(d)
    assert d._stale_why is not None and "s old" in d._stale_why and d.gate.mode is GateMode.LOCKED
    list_signed_at(d, authority, time.time(), version=8)  # a current list: not stale, though the clock is uncertain
    check_revocations(d)
    assert d._stale_why is None and d.gate.mode is GateMode.NORMAL
    assert scan(d, authority, time.time()) is Reason.NOT_YET_VALID  # the clock policy: nothing timed is judged
    assert d.clock.on_beacon(
        encode_beacon(authority.command, site=SITE, unix_ms=time.time_ns() // 10**6, seq=1)
    ).accepted
    check_revocations(d)
    assert d._stale_why is None and d.gate.mode is GateMode.NORMAL
    assert scan(d, authority, time.time()) is Reason.OK
