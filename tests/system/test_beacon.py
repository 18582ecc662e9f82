"""Time beacons over a real Mosquitto: `gated beacon` publishes them retained, a gate's uplink hands
them to its TrustedClock, and a gate whose clock is an hour slow is corrected (or applies its policy)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import cbor2
import pytest

from gated.central import wallet
from gated.central.beacon import BeaconSource
from gated.central.issuer import issue, new_claims
from gated.core import cose
from gated.core.beacon import read_beacon
from gated.core.reasons import Reason
from gated.gate.clock import TrustedClock, beacon_topic
from gated.gate.uplink import Uplink
from gated.gate.validate import validate
from tests.conftest import EVENT, SITE
from tests.support.uplink import fast_settings, pump

GATED = str(Path(sys.executable).with_name("gated"))  # the installed entry point
HOUR = 3600.0


def beacon_command(authority, broker, *extra, site=SITE) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            GATED,
            "beacon",
            "--broker",
            broker.url,
            "--site",
            site,
            "--signing-key",
            str(authority.key_dir / "command.key"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def gate(store, broker, authority, clock: TrustedClock) -> Uplink:
    uplink = Uplink(
        store=store, keyring=authority.keyring, settings=fast_settings(broker.url), site=SITE, gate=store.gate
    )
    uplink.subscribe(beacon_topic(SITE), lambda topic, payload: clock.on_beacon(payload))
    return uplink


def slow_clock(authority, store, policy) -> TrustedClock:
    """A gate whose wall clock is an hour behind (booted after a power cut without network)."""
    return TrustedClock(
        site=SITE,
        keyring=authority.keyring,
        store=store,
        policy=policy,
        ntp_synced=lambda: False,
        wall=lambda: time.time() - HOUR,
    )


def test_beacon_source_sequence_strictly_increases(authority):
    source = BeaconSource(authority.command, SITE)
    seqs = [read_beacon(source.next(ms), authority.keyring).seq for ms in (5000, 5000, 4000, 9000)]
    assert seqs == [5000, 5001, 5002, 9000]


@pytest.mark.parametrize("policy, expected", [("beacon", Reason.OK), ("deny", Reason.STALE_CODE)])
def test_gate_an_hour_slow_corrects_through_beacons_or_applies_its_policy(
    broker, store, authority, gate_context, policy, expected
):
    clock = slow_clock(authority, store, policy)
    dyn = issue(
        new_claims(event=EVENT, nbf=int(time.time()) - 7200, exp=int(time.time()) + 7200),
        authority.issuer,
        dynamic=True,
    )
    code = wallet.current_code(dyn.cose, dyn.device_key, time.time())  # the phone's clock is right

    before = clock.reading()
    assert before.uncertain and not before.trusted
    assert (
        validate(code, authority.keyring, gate_context, store, before.now, time_trusted=before.trusted).reason
        is Reason.STALE_CODE
    )

    done = beacon_command(authority, broker, "--interval", "0.2", "--count", "3")
    assert done.returncode == 0, done.stderr
    assert "3 of 3 beacon(s) acknowledged" in done.stdout

    uplink = gate(store, broker, authority, clock)
    uplink.start()
    try:
        pump([uplink], lambda: clock.last_outcome is not None, what="the retained beacon")
    finally:
        uplink.stop()
    assert clock.last_outcome.accepted, clock.last_outcome
    reading = clock.reading()
    assert reading.offset_s == pytest.approx(HOUR, abs=30)  # the retained beacon is at most seconds old
    assert reading.uncertain and reading.source == "offset"
    decision = validate(code, authority.keyring, gate_context, store, reading.now, time_trusted=reading.trusted)
    assert decision.reason is expected
    if policy == "beacon":
        assert reading.now == pytest.approx(time.time(), abs=30)


def test_live_beacons_then_a_restart_keeps_the_bound_and_a_reboot_retakes_the_retained_beacon(
    broker, tmp_path, authority
):
    from gated.gate.store import GateStore

    publisher = subprocess.Popen(
        [
            GATED,
            "beacon",
            "--broker",
            broker.url,
            "--site",
            SITE,
            "--signing-key",
            str(authority.key_dir / "command.key"),
            "--interval",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
            clock = TrustedClock(site=SITE, keyring=authority.keyring, store=store, ntp_synced=lambda: False)
            accepted = []
            uplink = Uplink(
                store=store, keyring=authority.keyring, settings=fast_settings(broker.url), site=SITE, gate="g1"
            )
            uplink.subscribe(beacon_topic(SITE), lambda t, p: accepted.append(clock.on_beacon(p).accepted))
            uplink.start()
            try:
                pump([uplink], lambda: accepted.count(True) >= 3, what="three live beacons")
            finally:
                uplink.stop()
            reading = clock.reading()
            assert not reading.uncertain and reading.source == "beacon"
            assert abs(reading.offset_s) < 5
    finally:
        publisher.terminate()
        publisher.wait(timeout=10)
    assert publisher.returncode == 0  # `gated beacon` stops cleanly on SIGTERM

    # the publisher is gone; its last beacon stays retained. A restarted gate has already taken it,
    # and within the same boot it needs it not: the bound it persisted carries the restart.
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        clock = TrustedClock(site=SITE, keyring=authority.keyring, store=store, ntp_synced=lambda: False)
        assert not clock.reading().uncertain and clock.reading().source == "beacon"
        take_retained(clock, broker, store, "g1-b")
        assert clock.last_outcome.reason == "not_newer"
        assert not clock.reading().uncertain

    # after a reboot the bound is void; the retained beacon, not older than the trusted time, is enough
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as store:
        clock = TrustedClock(
            site=SITE,
            keyring=authority.keyring,
            store=store,
            ntp_synced=lambda: False,
            boot=lambda: "the next boot",
            monotonic=lambda: time.monotonic() - 1e5,
        )
        assert clock.reading().uncertain
        take_retained(clock, broker, store, "g1-c")
        assert clock.last_outcome.accepted, clock.last_outcome
        assert not clock.reading().uncertain


def take_retained(clock, broker, store, client_id) -> None:
    from gated.gate.uplink import Uplink

    uplink = Uplink(
        store=store,
        keyring=clock.keyring,
        settings=fast_settings(broker.url, client_id=client_id),
        site=SITE,
        gate="g1",
    )
    uplink.subscribe(beacon_topic(SITE), lambda t, p: clock.on_beacon(p))
    uplink.start()
    try:
        pump([uplink], lambda: clock.last_outcome is not None, what="the retained beacon")
    finally:
        uplink.stop()


def test_beacon_for_another_site_is_ignored(broker, store, authority):
    done = beacon_command(authority, broker, "--count", "1", site="other-site")
    assert done.returncode == 0, done.stderr
    clock = TrustedClock(site=SITE, keyring=authority.keyring, store=store, ntp_synced=lambda: False)
    uplink = gate(store, broker, authority, clock)
    uplink.subscribe(beacon_topic("other-site"), lambda topic, payload: clock.on_beacon(payload))
    uplink.start()
    try:
        pump([uplink], lambda: clock.last_outcome is not None, what="the other site's beacon")
    finally:
        uplink.stop()
    assert clock.last_outcome.reason == "wrong_site" and clock.offset_s is None


def test_published_payload_is_protocol_section_7(broker, authority):
    import paho.mqtt.client as mqtt

    done = beacon_command(authority, broker, "--count", "1")
    assert done.returncode == 0, done.stderr
    got = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: got.append((m.topic, bytes(m.payload), m.retain))
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(beacon_topic(SITE), qos=1)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        time.sleep(0.02)
    client.disconnect()
    client.loop_stop()
    ((topic, payload, retained),) = got
    assert topic == f"gated/v1/{SITE}/time" and retained
    sign1 = cose.parse(payload)
    assert sign1.kid == cose.kid_of(authority.command.public_key())
    assert sign1.verify(authority.command.public_key())
    body = cbor2.loads(sign1.payload)
    assert set(body) == {1, 2, 3} and body[1] == SITE
    assert abs(body[2] / 1000 - time.time()) < 10 and body[3] >= body[2]


def test_bad_arguments_exit_2(authority, tmp_path):
    done = subprocess.run(
        [
            GATED,
            "beacon",
            "--broker",
            "http://x",
            "--site",
            SITE,
            "--signing-key",
            str(authority.key_dir / "command.key"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "mqtt://" in done.stderr
