"""`gated ledger --admissions-key`: the ledger answers a replaced gate's status (`"synced": false`)
with every event's admissions snapshot, which the gate's recovery takes (docs/protocol.md,
"Replacing a gate"), with no operator step."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager

from gated.central.ledger import Ledger
from gated.central.ledger_service import LedgerService
from gated.cli import main
from gated.core.decide import GateContext
from gated.core.reasons import Reason
from gated.gate.admissions import Recovery
from gated.gate.store import GateStore
from gated.gate.validate import scan_fields, validate
from gated.mqtt import MqttLink
from gated.topics import admissions_topic, status_topic
from tests.conftest import EVENT, SITE
from tests.support.uplink import fast_settings
from tests.support.waiting import wait_for


def test_the_ledger_publishes_the_snapshot_a_replaced_gate_asks_for(tmp_path, broker, authority):
    context = GateContext(site=SITE, events=frozenset({EVENT}))
    used = [authority.ticket() for _ in range(3)]
    now_ms = int(time.time() * 1000)
    with GateStore(tmp_path / "old.db", site=SITE, gate="g1") as old:
        for text in used:
            decision = validate(text, authority.keyring, context, old, now_ms / 1000)
            old.record_scan(scan_fields(decision, context, 0), now_ms, admit_cti=decision.cti, confirmed=True)
        events = [json.loads(e) for _, e in old.outbox()]
    with ledger_and_replaced_gate(tmp_path, broker, authority, events, now_ms) as (_, gate, new, synced):
        gate.publish(
            status_topic(SITE, "g1"), json.dumps({"state": "online", "epoch": 9, "synced": False}).encode(), 1, True
        )
        assert wait_for(synced, timeout=20), "the ledger's snapshot did not reach the replaced gate"
        for text in used:  # used at the dead card: already_used at the new one
            assert validate(text, authority.keyring, context, new, time.time()).reason is Reason.ALREADY_USED


@contextmanager
def ledger_and_replaced_gate(tmp_path, broker, authority, events, now_ms):
    """A ledger service holding `events` with --admissions-key, and a replaced gate g1 (epoch 9)
    subscribed to EVENT's snapshot: (the service's thread, the gate's link, its store, synced()),
    where synced() hands what arrived to the gate's recovery and says whether it is synced."""
    ledger = Ledger(tmp_path / "ledger.db", site=SITE)
    assert ledger.ingest(events).new == len(events)
    service = LedgerService(
        ledger, fast_settings(broker.url, client_id="ledger-test"), site=SITE, admissions_key=authority.revocation
    )
    stop = threading.Event()
    service.start()
    assert service.link.wait_subscribed(15)
    runner = threading.Thread(target=service.run, args=(stop,), daemon=True)
    runner.start()
    gate = MqttLink(fast_settings(broker.url, client_id="g1-test"), "g1-test", persistent=False)
    new = GateStore(tmp_path / "new.db", site=SITE, gate="g1")
    try:
        new.start_epoch(9, now_ms)
        recovery = Recovery(new, authority.keyring, site=SITE, events=[EVENT])
        from paho.mqtt.subscribeoptions import SubscribeOptions

        gate.add_subscription(admissions_topic(SITE, EVENT), SubscribeOptions(qos=1))
        gate.start()
        assert gate.wait_subscribed(15)

        def synced() -> bool:
            for item in gate.settle(0.1, 0.5):
                if item[0] == "message":
                    recovery.on_message(item[1].topic, item[1].payload)
                    gate.ack(item[1])
            return new.synced

        yield runner, gate, new, synced
    finally:
        stop.set()
        runner.join(10)
        service.stop()
        gate.stop()
        new.close()
        ledger.close()


def test_hostile_statuses_and_an_event_id_that_is_no_topic_level_never_stop_the_ledger(tmp_path, broker, authority):
    # an event id is free text (`aud`): "conf#2026" is read and stored, but it cannot be a topic level
    odd = "conf#2026"
    context = GateContext(site=SITE, events=frozenset({EVENT, odd}))
    now_ms = int(time.time() * 1000)
    used = authority.ticket()
    with GateStore(tmp_path / "old.db", site=SITE, gate="g1") as old:
        for text in (used, authority.ticket(aud=odd)):
            decision = validate(text, authority.keyring, context, old, now_ms / 1000)
            assert decision.admit
            old.record_scan(scan_fields(decision, context, 0), now_ms, admit_cti=decision.cti, confirmed=True)
        events = [json.loads(e) for _, e in old.outbox()]
    with ledger_and_replaced_gate(tmp_path, broker, authority, events, now_ms) as (runner, gate, new, synced):
        # any gate may write its own status topic: nested too deeply for json, an epoch out of range,
        # then a good one, which makes the ledger take every event's snapshot, "conf#2026"'s too
        for name, status in (
            ("g7", b"[" * 200_000),
            ("g8", json.dumps({"state": "online", "epoch": 1 << 40, "synced": False}).encode()),
            ("g9", json.dumps({"state": "online", "epoch": 3, "synced": False}).encode()),
        ):
            gate.publish(status_topic(SITE, name), status, 1, True)
        gate.publish(
            status_topic(SITE, "g1"), json.dumps({"state": "online", "epoch": 9, "synced": False}).encode(), 1, True
        )
        try:
            assert wait_for(synced, timeout=20), "the ledger stopped answering after a hostile status"
            assert runner.is_alive()
            assert validate(used, authority.keyring, context, new, time.time()).reason is Reason.ALREADY_USED
        finally:
            for name in ("g7", "g8", "g9", "g1"):
                gate.publish(status_topic(SITE, name), b"", 1, True)


def test_a_replaced_gate_with_an_event_id_that_is_no_topic_level_keeps_its_link(tmp_path, broker, authority):
    """paho refuses a subscription filter with a `#` inside, in the connect callback, which ends its
    network thread: the replaced gate would lose its whole link. The event is left out instead."""
    with GateStore(tmp_path / "new.db", site=SITE, gate="g1") as new:
        new.start_epoch(9, int(time.time() * 1000))
        recovery = Recovery(new, authority.keyring, site=SITE, events=[EVENT, "conf#2026"])
        gate = MqttLink(fast_settings(broker.url, client_id="g1-test"), "g1-test", persistent=False)
        from paho.mqtt.subscribeoptions import SubscribeOptions

        for topic in recovery.topics():
            gate.add_subscription(topic, SubscribeOptions(qos=1))
        gate.start()
        try:
            assert gate.wait_subscribed(15), "the gate's link died on connecting"
            assert gate.publish(status_topic(SITE, "g1"), b'{"state": "online"}', 1, False) is not None
        finally:
            gate.stop()


def test_gated_admissions_publish_refuses_an_event_id_that_is_no_topic_level(tmp_path, authority, capsys):
    Ledger(tmp_path / "ledger.db", site=SITE).close()
    args = ["admissions", "publish", "--db", str(tmp_path / "ledger.db"), "--site", SITE, "--out", str(tmp_path)]
    key = ["--signing-key", str(authority.key_dir / "revocation.key")]
    assert main([*args, *key, "--event", EVENT, "--event", "conf#2026"]) == 2
    assert "--event 'conf#2026'" in capsys.readouterr().err and not list(tmp_path.glob("*.cose"))
    assert main([*args, *key, "--event", EVENT]) == 0
