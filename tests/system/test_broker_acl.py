"""The shipped site broker configuration (systemd/mosquitto/) run by a real Mosquitto: TLS with
client certificates, CN as user name and client id, and access rules (make-dynsec.py) that keep
each gate to its own topics."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gated.central.publisher import publish_revocations
from gated.core import revocation
from gated.gate.store import GateStore
from gated.gate.uplink import Uplink
from gated.mqtturl import parse_broker_url
from gated.topics import command_topic, events_topic, revocation_topic
from tests.conftest import SITE
from tests.support.signing import encode_command
from tests.support.sites import shipped_site_broker
from tests.support.uplink import LedgerThread, pump
from tests.support.waiting import wait_for

SHIPPED = Path(__file__).resolve().parents[2] / "systemd" / "mosquitto"
GATES = ("g1", "g2")
CLIENTS = (*GATES, "central", "beacon", "ledger")


@pytest.fixture
def site_broker(tmp_path):
    """Mosquitto running gated-site.conf as shipped, with the rules make-dynsec.py writes for g1 and g2;
    paths and port moved to tmp."""
    certs = tmp_path / "certs"
    subprocess.run([str(SHIPPED / "make-test-ca.sh"), str(certs), *CLIENTS], check=True, capture_output=True)
    broker = shipped_site_broker(tmp_path / "broker", certs, GATES)
    broker.start()
    broker.certs = certs
    yield broker
    broker.stop()


def url(broker, who: str) -> str:
    c = broker.certs
    return f"mqtts://127.0.0.1:{broker.port}?ca={c}/ca.crt&cert={c}/{who}.crt&key={c}/{who}.key"


class Client:
    """A plain TLS client under one identity, recording what it receives."""

    def __init__(
        self, broker, who: str | None, subscribe: str | None = None, *, client_id: str = "", persistent: bool = False
    ):
        self.messages: list[tuple[str, bytes]] = []
        self.acks: dict[int, int] = {}
        self.connected = threading.Event()
        self.refused = threading.Event()
        c = broker.certs
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.tls_set(
            ca_certs=str(c / "ca.crt"),
            certfile=str(c / f"{who}.crt") if who else None,
            keyfile=str(c / f"{who}.key") if who else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        self.client.on_connect = lambda cl, u, f, rc, p: (self.refused if rc.is_failure else self.connected).set()
        self.client.on_message = lambda cl, u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.on_publish = lambda cl, u, mid, rc, p: self.acks.__setitem__(mid, rc.value)
        self.subacks: list[list] = []
        self.client.on_subscribe = lambda cl, u, mid, codes, p: self.subacks.append(codes)
        self.client.reconnect_delay_set(0.1, 0.1)
        props = None
        if persistent:  # MQTT v5: the session outlives the connection (as the gates' and ledgers' do)
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        self.client.connect_async("127.0.0.1", broker.port, clean_start=not persistent, properties=props)
        self.client.loop_start()
        if who is not None:
            assert self.connected.wait(10), f"{who} could not connect"
        if subscribe:
            assert self.subscribe(subscribe) is True, f"{who} may not subscribe to {subscribe}"

    def subscribe(self, topic) -> bool:
        """True if the broker granted the subscription, False if it refused it."""
        before = len(self.subacks)
        self.client.subscribe(topic, qos=1)
        assert wait_for(lambda: len(self.subacks) > before, timeout=10.0), "no SUBACK"
        return not self.subacks[before][0].is_failure

    def publish(self, topic, payload: bytes) -> int:
        info = self.client.publish(topic, payload, qos=1)
        deadline = time.monotonic() + 10
        while info.mid not in self.acks and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.acks.get(info.mid, -1)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def test_a_gate_cannot_publish_as_another_gate_or_as_central(site_broker):
    watcher = Client(site_broker, "central", subscribe=f"gated/v1/{SITE}/#")
    g1 = Client(site_broker, "g1")
    try:
        for topic in (
            events_topic(SITE, "g2"),
            f"gated/v1/{SITE}/gates/g2/status",
            revocation_topic(SITE, 9, 0),
            command_topic(SITE, "g2"),
            f"gated/v1/{SITE}/time",
        ):
            g1.publish(topic, b'{"forged": true}')
        assert g1.publish(events_topic(SITE, "g1"), b'{"own": true}') < 0x80  # the sentinel, after the forgeries
        assert wait_for(lambda: any(t == events_topic(SITE, "g1") for t, _ in watcher.messages), timeout=10.0)
    finally:
        g1.close()
        watcher.close()
    assert [t for t, p in watcher.messages if p == b'{"forged": true}'] == []


def test_only_a_gate_reads_its_commands_and_nobody_without_a_certificate_gets_in(site_broker):
    g1 = Client(site_broker, "g1")
    assert g1.subscribe(f"gated/v1/{SITE}/gates/+/cmd") is False and g1.subscribe(command_topic(SITE, "g2")) is False
    assert g1.subscribe(command_topic(SITE, "g1")) is True
    g2 = Client(site_broker, "g2", subscribe=command_topic(SITE, "g2"))
    central = Client(site_broker, "central")
    try:
        assert central.publish(command_topic(SITE, "g2"), b"cmd for g2") < 0x80
        assert central.publish(command_topic(SITE, "g1"), b"cmd for g1") < 0x80
        assert wait_for(lambda: g2.messages and g1.messages, timeout=10.0)
        time.sleep(0.2)
        anonymous = Client(site_broker, None)
        time.sleep(1.0)
        assert not anonymous.connected.is_set()
        anonymous.close()
    finally:
        for c in (g1, g2, central):
            c.close()
    assert g1.messages == [(command_topic(SITE, "g1"), b"cmd for g1")]
    assert g2.messages == [(command_topic(SITE, "g2"), b"cmd for g2")]


def test_a_gate_using_another_gates_client_id_gets_neither_its_session_nor_its_commands(site_broker):
    """use_username_as_clientid: the session is keyed by the certificate's CN, not by the client id
    the client sends. Before, g2 connecting as `gated-arena-g1` took over g1's session and g1 later
    received 0 of 5 queued commands."""
    stolen = f"gated-{SITE}-g1"
    g1 = Client(site_broker, "g1", subscribe=command_topic(SITE, "g1"), client_id=stolen, persistent=True)
    g1.close()
    central = Client(site_broker, "central")
    try:
        for n in range(5):
            assert central.publish(command_topic(SITE, "g1"), b"cmd %d" % n) < 0x80
    finally:
        central.close()
    g2 = Client(site_broker, "g2", client_id=stolen, persistent=True)
    time.sleep(0.3)
    g1_online = Client(site_broker, "g1", client_id=stolen, persistent=True)  # g1 back, while g2 is still there
    try:
        assert wait_for(lambda: len(g1_online.messages) == 5, timeout=5)
        time.sleep(0.2)
        assert g1_online.connected.is_set() and g2.client.is_connected()  # nobody pushed off
    finally:
        g1_online.close()
        g2.close()
    assert g1_online.messages == [(command_topic(SITE, "g1"), b"cmd %d" % n) for n in range(5)]
    assert g2.messages == []


def test_a_gate_cannot_join_the_ledgers_shared_subscription(site_broker):
    """Before (acl_file, which never checks SUBSCRIBE), g2 joined the ledgers' group and took half of
    the events. Now its subscription is refused, and the ledger gets every event."""
    shared = f"$share/ledgers/{events_topic(SITE, '+')}"
    ledger = Client(site_broker, "ledger", subscribe=shared, persistent=True)
    intruder = Client(site_broker, "g2")
    assert intruder.subscribe(shared) is False  # 0x87 not authorised
    assert intruder.subscribe(f"$share/other/{events_topic(SITE, '+')}") is False
    g1 = Client(site_broker, "g1")
    try:
        for n in range(6):
            assert g1.publish(events_topic(SITE, "g1"), b"event %d" % n) < 0x80
        wait_for(lambda: len(ledger.messages) + len(intruder.messages) >= 6, timeout=5)
    finally:
        for c in (g1, intruder, ledger):
            c.close()
    assert intruder.messages == []
    assert len(ledger.messages) == 6


def test_the_beacon_writes_time_only_and_gate_ids_cannot_take_central_names(site_broker, tmp_path):
    g1 = Client(site_broker, "g1", subscribe=f"gated/v1/{SITE}/time")
    beacon = Client(site_broker, "beacon")
    try:
        assert beacon.publish(command_topic(SITE, "g1"), b"not a beacon's") >= 0x80
        assert beacon.publish(f"gated/v1/{SITE}/time", b"beacon") < 0x80
        assert beacon.subscribe(f"gated/v1/{SITE}/#") is False
        assert wait_for(lambda: g1.messages, timeout=10.0)
    finally:
        beacon.close()
        g1.close()
    assert g1.messages == [(f"gated/v1/{SITE}/time", b"beacon")]
    made = subprocess.run(
        [sys.executable, str(SHIPPED / "make-dynsec.py"), str(tmp_path / "rules.json"), "g1", "central"],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 2 and "'central': reserved" in made.stderr and not (tmp_path / "rules.json").exists()


def test_gates_publisher_and_ledger_work_through_tls_and_the_acl(site_broker, tmp_path, authority):
    """The real components under their identities: events reach the ledger, revocations and commands reach the gate."""
    ran = []
    with GateStore(tmp_path / "g1.db", site=SITE, gate="g1") as store:
        store.record_event({"kind": "state", "state": "online", "rev": 0}, 1_700_000_000_000)
        settings = parse_broker_url(url(site_broker, "g1"), reconnect_min_s=0.1)
        uplink = Uplink(
            store=store, keyring=authority.keyring, settings=settings, site=SITE, gate="g1", on_command=ran.append
        )
        with LedgerThread(tmp_path / "ledger.db", url(site_broker, "ledger"), SITE) as ledger:
            uplink.start()
            try:
                pump([uplink], lambda: uplink.connected and store.outbox_depth() == 0, what="g1's event delivered")
                blobs = revocation.encode_updates(
                    authority.revocation, site=SITE, version=1, add=[os.urandom(16)], iat=int(time.time())
                )
                publish_revocations(parse_broker_url(url(site_broker, "central")), SITE, blobs)
                central = Client(site_broker, "central")
                central.publish(
                    command_topic(SITE, "g1"), encode_command(authority.command, gate="g1", command="open", nonce=1)
                )
                central.close()
                pump([uplink], lambda: store.revocation_state().version == 1 and ran, what="revocation and command")
                assert wait_for(lambda: ledger.count() == 1, timeout=10.0)
                report = ledger.report()
            finally:
                uplink.stop()
    assert ran == ["open"]
    assert report["gates"]["g1"]["events"] == 1
