"""A site bridged to the centre, with the shipped files (systemd/mosquitto/gated-site.conf,
gated-bridge.conf, gated-central.conf, make-dynsec.py) on two real Mosquittos over TLS: the gates
talk only to the site broker; the ledger only to the central one."""

from __future__ import annotations

import os
import queue
import time

import pytest

from gated.central.publisher import publish_revocations
from gated.core import revocation
from gated.gate.store import GateStore
from gated.gate.uplink import Uplink
from tests.conftest import SITE
from tests.support.sites import BridgedSite
from tests.support.uplink import LedgerThread, device_keyring, fast_settings, pump
from tests.support.uplink import admit_for as shared_admit_for

GATES = ["g1", "g2"]


@pytest.fixture
def bridged(tmp_path):
    site = BridgedSite(tmp_path, SITE, GATES).start()
    yield site
    site.stop()


def test_bridge_cut_for_30_s_while_gates_admit_delivers_every_event_once(bridged, tmp_path, authority):
    stores = [GateStore(tmp_path / f"{g}.db", site=SITE, gate=g) for g in GATES]
    ring = device_keyring(tmp_path / "ring", *stores)
    uplinks = [
        Uplink(
            store=s,
            keyring=authority.keyring,
            site=SITE,
            gate=s.gate,
            settings=fast_settings(bridged.url(bridged.site, s.gate)),
        )
        for s in stores
    ]
    with LedgerThread(
        str(tmp_path / "ledger.db"), bridged.url(bridged.central, "ledger"), SITE, keyring=ring
    ) as ledger:
        for u in uplinks:
            u.start()
        try:
            pump(uplinks, lambda: all(u.connected for u in uplinks), what="gates connected to the site broker")
            # down the bridge: a revocation published at the centre reaches the gates
            update = revocation.encode_updates(
                authority.revocation, site=SITE, version=1, add=[os.urandom(16)], iat=int(time.time())
            )
            publish_revocations(fast_settings(bridged.url(bridged.central, "central")), SITE, update)
            pump(uplinks, lambda: all(s.revocation_state().version == 1 for s in stores), what="v1 at the gates")

            def admit_for(seconds: float) -> None:
                shared_admit_for(stores, uplinks, seconds, 0.1)

            admit_for(2.0)
            pump(uplinks, lambda: ledger.count() > 10, what="events through the bridge")
            bridged.central.stop()  # the wide-area link is down for 30 s: the gates go on admitting
            admit_for(30.0)
            assert all(u.connected for u in uplinks)  # the gates never noticed
            assert ledger.count() < sum(s.last_seq for s in stores)
            bridged.central.start()
            admit_for(2.0)
            made = sum(s.last_seq for s in stores)
            pump(uplinks, lambda: ledger.count() >= made, timeout=60, what="every event at the ledger")
        finally:
            for u in uplinks:
                u.stop()
        report = ledger.report()
    for s in stores:
        g = report["gates"][s.gate]
        assert s.last_seq > 100
        assert (g["events"], g["last_seq"], g["missing"], g["chain_breaks"], g["bad_signatures"]) == (
            s.last_seq,
            s.last_seq,
            0,
            0,
            0,
        )
        s.close()
    assert report["clean"] and report["totals"]["quarantined"] == 0


def test_each_broker_sigkilled_while_gates_publish_leaves_no_gap_by_default(bridged, tmp_path, authority, ledger_db):
    """Power cuts at the site broker and at the central one, twice each, while two gates admit, with
    the default settings: the ledger's `committed` comes down the bridge, and the gates send again
    what either broker lost; every event reaches the ledger once (a SQLite and a PostgreSQL ledger)."""
    stores = [GateStore(tmp_path / f"{g}.db", site=SITE, gate=g) for g in GATES]
    ring = device_keyring(tmp_path / "ring", *stores)
    uplinks = [
        Uplink(
            store=s,
            keyring=authority.keyring,
            site=SITE,
            gate=s.gate,
            settings=fast_settings(bridged.url(bridged.site, s.gate)),
        )
        for s in stores
    ]

    def admit_for(seconds: float) -> None:
        shared_admit_for(stores, uplinks, seconds, 0.01)

    with LedgerThread(ledger_db, bridged.url(bridged.central, "ledger"), SITE, keyring=ring) as ledger:
        for u in uplinks:
            u.start()
        try:
            admit_for(1.5)
            for broker in (bridged.site, bridged.central, bridged.site, bridged.central):
                broker.stop(kill=True)
                admit_for(0.5)
                broker.start()
                admit_for(1.5)
            made = sum(s.last_seq for s in stores)
            pump(
                uplinks,
                lambda: ledger.count() >= made and all(s.outbox_counts() == (0, 0) for s in stores),
                timeout=150,
                what="every event at the ledger and confirmed to its gate",
            )
        finally:
            for u in uplinks:
                u.stop()
        report = ledger.report()
    for s in stores:
        g = report["gates"][s.gate]
        assert (g["events"], g["last_seq"], g["missing"], g["declared_lost"], g["chain_breaks"]) == (
            s.last_seq,
            s.last_seq,
            0,
            0,
            0,
        )
        s.close()
    assert report["clean"]


def test_a_bridge_may_carry_only_its_own_sites_topics(bridged):
    """make-dynsec.py --bridge at the centre: the arena bridge's certificate cannot write another
    site's events nor read another site's commands."""
    from tests.system.test_broker_acl import Client

    bridged.site.stop()  # the real bridge would push the test's client (same certificate) off
    bridged.central.certs = bridged.certs
    watcher = Client(bridged.central, "central", subscribe="gated/v1/#")
    intruder = Client(bridged.central, f"bridge-{SITE}")
    try:
        assert intruder.publish("gated/v1/other/gates/x1/events", b'{"forged": true}') >= 0x80
        assert intruder.publish(f"gated/v1/{SITE}/revocations/9/0", b'{"forged": true}') >= 0x80
        assert intruder.subscribe("gated/v1/other/gates/+/cmd") is False
        assert intruder.subscribe(f"gated/v1/{SITE}/gates/+/cmd") is True
        assert intruder.publish(f"gated/v1/{SITE}/gates/g1/events", b'{"own": true}') < 0x80
        deadline = time.monotonic() + 10
        while not any(p == b'{"own": true}' for _, p in watcher.messages) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        intruder.close()
        watcher.close()
    assert [t for t, p in watcher.messages if p == b'{"forged": true}'] == []


def test_the_centres_occupancy_comes_down_the_bridge(bridged):
    """The ledger at the centre publishes people inside per zone; a site's gates (and `gated status`
    against the site broker) read it there: the bridge carries the topic down, retained."""
    from paho.mqtt.subscribeoptions import SubscribeOptions

    from gated.core.occupancy import encode_occupancy, read_occupancy
    from gated.mqtt import MqttLink
    from gated.mqtturl import parse_broker_url
    from gated.topics import occupancy_topic

    ledger = MqttLink(parse_broker_url(bridged.url(bridged.central, "ledger")), "ledger", persistent=False)
    ledger.start()
    assert ledger.wait_connected(10)
    zones = {"hall": {"inside": 4, "capacity": 8, "entries": 5, "exits": 1}}
    ledger.publish(
        occupancy_topic(SITE), encode_occupancy(SITE, zones, int(time.time() * 1000), {"g1": 5}), qos=1, retain=True
    )
    gate = MqttLink(parse_broker_url(bridged.url(bridged.site, GATES[0])), GATES[0], persistent=False)
    gate.add_subscription(occupancy_topic(SITE), SubscribeOptions(qos=1))
    gate.start()
    try:
        deadline, got = time.monotonic() + 20, None
        while got is None and time.monotonic() < deadline:
            try:
                item = gate.inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            if item[0] == "message" and item[1].topic == occupancy_topic(SITE):
                got = item[1].payload
        assert got is not None, "no occupancy at the site broker"
        assert read_occupancy(got, site=SITE)[0] == {"hall": {"inside": 4, "capacity": 8}}
    finally:
        gate.stop()
        ledger.stop()


def test_one_sites_ledger_certificate_cannot_confirm_or_count_for_another_site(tmp_path):
    """make-dynsec.py --ledger NAME=SITE at the centre: the `other` site's ledger certificate may write
    its own site's `committed` and occupancy, not the arena's (and reads none of the arena's events)."""
    from tests.system.test_broker_acl import Client

    site = BridgedSite(tmp_path, SITE, GATES, ledgers=("ledger", "ledger-other=other")).start()
    site.central.certs = site.certs
    watcher = Client(site.central, "central", subscribe="gated/v1/#")
    other = Client(site.central, "ledger-other")
    try:
        assert other.publish(f"gated/v1/{SITE}/gates/g1/committed", b'{"seq": 99}') >= 0x80
        assert other.publish(f"gated/v1/{SITE}/occupancy", b'{"forged": true}') >= 0x80
        assert other.subscribe(f"gated/v1/{SITE}/gates/+/events") is False
        assert other.publish("gated/v1/other/gates/x1/committed", b'{"own": true}') < 0x80
        deadline = time.monotonic() + 10
        while not any(p == b'{"own": true}' for _, p in watcher.messages) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        other.close()
        watcher.close()
        site.stop()
    assert [t for t, p in watcher.messages if p in (b'{"seq": 99}', b'{"forged": true}')] == []
