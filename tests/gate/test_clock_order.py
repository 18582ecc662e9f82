"""A gate's event times never run backwards: before its first live beacon, a retained beacon (up to
an interval old) must not stamp events earlier than the ones the gate made just before, in this run
or the last."""

from __future__ import annotations

import pytest

from gated.core.beacon import encode_beacon
from gated.gate.clock import Policy, TrustedClock
from gated.gate.store import GateStore
from tests.conftest import SITE

TRUE = 1_790_000_000.0


def _clock(authority, store, world, boot, behind_s=0.0) -> TrustedClock:
    """No NTP, beacons trusted when uncertain; the wall clock `behind_s` behind the world's."""
    return TrustedClock(
        site=SITE,
        keyring=authority.keyring,
        store=store,
        policy=Policy.BEACON,
        ntp_synced=lambda: False,
        wall=lambda: world["wall"] - behind_s,
        monotonic=lambda: world["mono"],
        boot=lambda: boot,
    )


def test_a_retained_beacon_older_than_the_last_event_does_not_stamp_earlier(tmp_path, authority):
    world = {"wall": TRUE, "mono": 100.0}
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        clock = _clock(authority, store, world, "boot-1")
        first = clock.now()
        store.record_event({"kind": "state", "state": "online", "rev": 0}, int(first * 1000))
        # the retained beacon, signed 9 s ago, arrives: the beacons' time is now 9 s behind the wall clock
        retained = encode_beacon(authority.command, site=SITE, unix_ms=int((TRUE - 9) * 1000), seq=1)
        assert clock.on_beacon(retained, world["wall"], world["mono"]).accepted
        assert clock.reading(world["wall"], world["mono"]).now < first  # what the beacon alone says
        assert clock.now() >= first
        world["wall"] += 1
        world["mono"] += 1
        later = clock.now()
        assert later >= first
        store.record_event({"kind": "state", "state": "online", "rev": 0}, int(later * 1000))

    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:  # a restart, same beacon again
        world["mono"] += 1
        clock = _clock(authority, store, world, "boot-2", behind_s=30)  # and a wall clock 30 s behind
        assert clock.now() * 1000 >= store.last_event_ms() >= int(first * 1000)


def test_a_wrong_clock_corrected_by_a_beacon_is_not_held_and_timers_run(tmp_path, authority):
    """A host clock 20 s ahead, then the first beacon: the step back is a correction, not a retained
    beacon's age, so now() takes it, and runs on at the world's pace (a held clock would stand still
    for 20 s, and with it every passage timeout)."""
    world = {"wall": TRUE, "mono": 100.0}
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        clock = _clock(authority, store, world, "boot-1", behind_s=-20.0)  # the wall clock 20 s ahead
        ahead = clock.now()
        live = encode_beacon(authority.command, site=SITE, unix_ms=int(world["wall"] * 1000), seq=1)
        assert clock.on_beacon(live, world["wall"] + 20.0, world["mono"]).accepted
        first = clock.now()
        assert first < ahead - 15.0
        world["wall"] += 2
        world["mono"] += 2
        assert clock.now() - first == pytest.approx(2.0, abs=0.05)
