"""End-to-end delivery cannot stall (issue #22, item 1): the ledger's confirmation says what it holds
(its prefix and the ranges above it), each gate's status says its floor (the lowest seq it still
holds), and what the ledger lacks below a floor is a declared loss it moves past. Each case ends with
the gate's outbox holding only what the ledger lacks: a first deployment, a new ledger database, a
broker killed before the ledger's first confirmation, a quarantined event, a gate state restored from
an old backup, the retention bound; and the upgrade path (old gate + new ledger, new gate + old
ledger). Real Mosquitto, real SQLite ledgers, the default settings unless a test says why not."""

from __future__ import annotations

import json
import random
import shutil
import string
import time

import paho.mqtt.client as mqtt

from gated.central.ledger import Ledger
from gated.central.ledger_report import format_report
from gated.central.ledger_service import LedgerService
from gated.cli import main
from gated.core import confirmation
from gated.gate.store import GateStore
from gated.gate.uplink import Uplink
from gated.topics import committed_topic, events_topic, status_topic
from tests.conftest import SITE
from tests.support.broker import Broker
from tests.support.uplink import LedgerThread, admit, device_keyring, fast_settings, pump
from tests.support.waiting import wait_for


def _uplink(store, authority, url, **settings) -> Uplink:
    return Uplink(
        store=store, keyring=authority.keyring, site=SITE, gate=store.gate, settings=fast_settings(url, **settings)
    )


def _one_gate(tmp_path, authority):
    """A started broker, gate g1's store, a ledger keyring trusting it, and its uplink (not started)."""
    broker = Broker(tmp_path / "broker").start()
    store = GateStore(tmp_path / "g1.db", site=SITE, gate="g1")
    ring = device_keyring(tmp_path / "ring", store)
    return broker, store, ring, _uplink(store, authority, broker.url, resend_after_s=1.0)


def _settled(ledger, stores):
    """Every event of every store at the ledger and confirmed back: nothing left in any outbox."""
    return lambda: (
        ledger.count() >= sum(s.last_seq for s in stores) and all(s.outbox_counts() == (0, 0) for s in stores)
    )


def test_first_deployment_gates_publish_before_any_ledger_exists(tmp_path, authority):
    """No ledger session at the broker yet: what the gates send before the ledger's first start
    reaches nobody. The gates keep it; the ledger, once up, hears their status and confirms what it
    holds (nothing); the gates send again after resend_after_s (the default, 30 s)."""
    broker = Broker(tmp_path / "broker").start()
    stores = [GateStore(tmp_path / f"{g}.db", site=SITE, gate=g) for g in ("g1", "g2")]
    ring = device_keyring(tmp_path / "ring", *stores)
    uplinks = [_uplink(s, authority, broker.url) for s in stores]
    try:
        for u in uplinks:
            u.start()
        for _ in range(20):
            for s in stores:
                admit(s)
        pump(uplinks, lambda: all(u.delivered == 20 for u in uplinks), what="PUBACKs")
        assert all(s.outbox_counts() == (0, 20) for s in stores)  # the broker had them; nobody confirmed
        with LedgerThread(tmp_path / "ledger.db", broker.url, SITE, keyring=ring) as ledger:
            pump(uplinks, _settled(ledger, stores), timeout=90, what="every event at the ledger, confirmed")
            for u in uplinks:
                u.stop()
            report = ledger.report()
        for s in stores:
            g = report["gates"][s.gate]
            assert (g["events"], g["missing"], g["declared_lost"]) == (20, 0, 0)
        assert report["clean"]
    finally:
        broker.stop()
        for s in stores:
            s.close()


def test_a_broker_killed_before_the_ledgers_first_confirmation_loses_nothing(tmp_path, authority):
    broker, store, ring, uplink = _one_gate(tmp_path, authority)
    try:
        uplink.start()
        with LedgerThread(tmp_path / "ledger.db", broker.url, SITE, keyring=ring) as ledger:
            ledger.stop()  # its session exists and queues, but it confirms nothing
            for _ in range(30):
                admit(store)
            pump([uplink], lambda: uplink.delivered == 30, what="PUBACKs")
            broker.stop(kill=True)  # what it acknowledged since its last save is gone
            broker.start()
        with LedgerThread(tmp_path / "ledger.db", broker.url, SITE, keyring=ring) as ledger:
            pump([uplink], _settled(ledger, [store]), timeout=60, what="every event at the ledger, confirmed")
            uplink.stop()
            g = ledger.report()["gates"]["g1"]
        assert (g["events"], g["missing"], g["declared_lost"]) == (30, 0, 0)
    finally:
        broker.stop()
        store.close()


def test_a_new_ledger_database_declares_what_no_gate_holds_and_does_not_wait_for_it(tmp_path, authority):
    """The first ledger confirmed events 1..10 and the gate let them go. A second, empty database
    cannot get them again: they are a declared loss there (its own kind in the report), and its
    confirmations move past them, so the gate's later events leave its outbox as they should."""
    broker, store, ring, uplink = _one_gate(tmp_path, authority)
    try:
        uplink.start()
        with LedgerThread(tmp_path / "first.db", broker.url, SITE, keyring=ring, client_id="ledger-a") as first:
            for _ in range(10):
                admit(store)
            pump([uplink], _settled(first, [store]), what="the first ledger's confirmation")
        uplink.stop()
        uplink = _uplink(store, authority, broker.url, resend_after_s=1.0)
        uplink.start()
        with LedgerThread(tmp_path / "second.db", broker.url, SITE, keyring=ring, client_id="ledger-b") as second:
            for _ in range(5):
                admit(store)
            pump(
                [uplink],
                lambda: second.count() == 5 and store.outbox_counts() == (0, 0),
                timeout=30,
                what="the new events at the new ledger and confirmed",
            )
            uplink.stop()
            report = second.report()
        g = report["gates"]["g1"]
        assert (g["events"], g["missing"], g["declared_lost"], g["declared_losses"]) == (5, 0, 10, [[1, 10]])
        assert report["totals"]["declared_lost"] == 10 and not report["clean"]
        with Ledger(tmp_path / "second.db") as ledger:
            assert ledger.committed() == {"g1": 15}
            text = format_report(ledger.report())
            assert "no longer held by it): 1-10\n" in text and "10 declared lost" in text
        assert main(["reconcile", "--db", str(tmp_path / "second.db")]) == 1
    finally:
        broker.stop()
        store.close()


def test_a_gate_restored_from_an_old_backup_drains_its_outbox(tmp_path, authority):
    """The gate's state goes back to a copy taken at seq 5 while the ledger holds 1..12: its new
    events 6.. reuse seqs the ledger holds with other content (conflicts, quarantined). The ledger
    holds those seqs (the events stored under them), so they leave the outbox instead of being sent
    for the whole retention."""
    broker = Broker(tmp_path / "broker").start()
    path = tmp_path / "g1.db"
    store = GateStore(path, site=SITE, gate="g1")
    ring = device_keyring(tmp_path / "ring", store)
    uplink = _uplink(store, authority, broker.url, resend_after_s=1.0)
    try:
        uplink.start()
        with LedgerThread(tmp_path / "ledger.db", broker.url, SITE, keyring=ring) as ledger:
            for _ in range(5):
                admit(store)
            pump([uplink], _settled(ledger, [store]), what="1..5 confirmed")
            uplink.stop()
            store.close()
            for suffix in ("", "-wal", "-shm"):  # the backup: a copy of the state at seq 5
                if (tmp_path / f"g1.db{suffix}").exists():
                    shutil.copy(tmp_path / f"g1.db{suffix}", tmp_path / f"backup.db{suffix}")
            store = GateStore(path, site=SITE, gate="g1")
            uplink = _uplink(store, authority, broker.url, resend_after_s=1.0)
            uplink.start()
            for _ in range(7):
                admit(store)
            pump([uplink], _settled(ledger, [store]), what="6..12 confirmed")
            uplink.stop()
            store.close()
            for suffix in ("", "-wal", "-shm"):
                target = tmp_path / f"g1.db{suffix}"
                if (tmp_path / f"backup.db{suffix}").exists():
                    shutil.copy(tmp_path / f"backup.db{suffix}", target)
                elif target.exists():
                    target.unlink()
            store = GateStore(path, site=SITE, gate="g1")
            assert store.last_seq == 5
            uplink = _uplink(store, authority, broker.url, resend_after_s=1.0)
            uplink.start()
            for _ in range(4):
                admit(store)  # seqs 6..9 again, other content
            pump(
                [uplink], lambda: store.outbox_counts() == (0, 0), timeout=30, what="the restored gate's outbox drained"
            )
            uplink.stop()
            report = ledger.report()
        g = report["gates"]["g1"]
        assert (g["events"], g["missing"], g["conflicts"]) == (12, 0, 4)
        assert report["totals"]["quarantined"] == 4
    finally:
        broker.stop()
        store.close()


def test_an_old_gate_that_let_events_go_at_the_puback_is_not_waited_for_after_its_upgrade(tmp_path, authority):
    """Before the upgrade the gate deleted rows at the broker's PUBACK, and a broker power cut lost
    seq 3 for good. After it, its floor (4) tells the ledger not to wait for 3: a declared loss, and
    everything from 4 on is confirmed and leaves the outbox (the stall of the reverted attempt)."""
    broker = Broker(tmp_path / "broker").start()
    store = GateStore(tmp_path / "g1.db", site=SITE, gate="g1")
    ring = device_keyring(tmp_path / "ring", store)
    made = [admit(store) for _ in range(5)]
    try:
        with LedgerThread(tmp_path / "ledger.db", broker.url, SITE, keyring=ring) as ledger:
            old_gate = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gated-site-g1", protocol=mqtt.MQTTv5)
            old_gate.connect("127.0.0.1", broker.port)
            old_gate.loop_start()
            for event in (made[0], made[1]):  # the old gate's status carries no floor
                old_gate.publish(events_topic(SITE, "g1"), json.dumps(event).encode(), qos=1).wait_for_publish(5)
            old_gate.publish(status_topic(SITE, "g1"), b'{"state":"online","rev":0}', qos=1, retain=True)
            old_gate.disconnect()
            old_gate.loop_stop()
            store.acknowledge(1, 2, 3)  # 1 and 2 delivered, 3 acknowledged by a broker that then died
            for _ in range(3):
                admit(store)
            uplink = _uplink(store, authority, broker.url, resend_after_s=1.0)
            uplink.start()
            pump([uplink], lambda: store.outbox_counts() == (0, 0), timeout=30, what="4..8 confirmed")
            uplink.stop()
            report = ledger.report()
        g = report["gates"]["g1"]
        assert (g["events"], g["missing"], g["declared_lost"], g["declared_losses"]) == (7, 0, 1, [[3, 3]])
    finally:
        broker.stop()
        store.close()


def test_an_event_that_arrives_after_it_was_declared_lost_is_stored_and_no_longer_counted(tmp_path):
    stores = GateStore(tmp_path / "g1.db", site=SITE, gate="g1")
    made = [json.dumps(admit(stores)) for _ in range(4)]
    stores.close()
    with Ledger(tmp_path / "ledger.db", site=SITE) as ledger:
        ledger.ingest([made[0], made[3]])
        assert ledger.declare_floors({"g1": 4}) == {"g1": 4}
        assert ledger.report()["gates"]["g1"]["declared_losses"] == [[2, 3]]
        assert ledger.confirmations(["g1"]) == {"g1": (4, [])}
        ledger.ingest([made[1]])  # it was queued at the broker all along
        g = ledger.report()["gates"]["g1"]
        assert (g["events"], g["declared_losses"], g["declared_lost"], g["missing"]) == (3, [[3, 3]], 1, 0)
        assert ledger.declare_floors({"g1": 2}) == {"g1": 4}  # a floor is never lowered


def test_gated_report_names_a_declared_loss(tmp_path):
    """`gated report`: a declared loss is a problem of its own in the verdict and in report.json."""
    store = GateStore(tmp_path / "g1.db", site=SITE, gate="g1")
    made = [json.dumps(admit(store)) for _ in range(4)]
    store.close()
    with Ledger(tmp_path / "ledger.db", site=SITE) as ledger:
        ledger.ingest([made[2], made[3]])
        ledger.declare_floors({"g1": 3})
    assert main(["report", "--db", str(tmp_path / "ledger.db"), "--out", str(tmp_path / "day")]) == 1
    day = json.loads((tmp_path / "day" / "report.json").read_text())
    assert "2 events declared lost" in day["verdict"]
    assert day["integrity"]["declared_lost"] == 2 and day["integrity"]["declared_losses"] == {"g1": [[1, 2]]}
    assert "Gate g1: events 1 to 2 (2 events) are declared lost." in (tmp_path / "day" / "report.html").read_text()


def test_the_confirmation_lists_what_the_ledger_holds_above_a_hole(tmp_path):
    store = GateStore(tmp_path / "g1.db", site=SITE, gate="g1")
    made = [json.dumps(admit(store)) for _ in range(9)]
    store.close()
    with Ledger(tmp_path / "ledger.db", site=SITE) as ledger:
        renumbered = {**json.loads(made[5]), "seq": 66}  # malformed (its id says 6): not held, no seq to trust
        result = ledger.ingest([made[i] for i in (0, 1, 3, 4, 7)] + [json.dumps(renumbered)])
        assert result.committed == {"g1": 2}
        assert ledger.confirmations(["g1"]) == {"g1": (2, [(4, 5), (8, 8)])} and result.rejected == 1
        bad = json.loads(made[6])
        bad["ticket"] = "0" * 32  # its hash no longer matches: quarantined, and not held (not g1's event)
        ledger.ingest([json.dumps(bad)], topics=[events_topic(SITE, "g1")])
        assert ledger.confirmations(["g1"]) == {"g1": (2, [(4, 5), (8, 8)])}
        ledger.ingest([made[2], made[5]])
        assert ledger.committed() == {"g1": 6}
        ledger.ingest([made[6]])  # the gate's own #7, sent again because it was not confirmed
        assert ledger.committed() == {"g1": 8}
    body = confirmation.read(confirmation.encode(2, [(4, 5), (7, 8)]))
    assert body.covers(8) and not body.covers(6) and body.fresh_format


def test_rows_past_the_retention_are_dropped_counted_and_the_floor_announced(tmp_path, authority, broker):
    store = GateStore(tmp_path / "g1.db", site=SITE, gate="g1")
    for _ in range(3):
        admit(store)
    uplink = _uplink(store, authority, broker.url, outbox_retention_s=0.5)
    from tests.support.uplink import Listener

    listener = Listener(broker.port, status_topic(SITE, "g1"))
    try:
        uplink.start()
        pump([uplink], lambda: uplink.delivered == 3, what="PUBACKs")
        time.sleep(0.6)
        uplink._pruned_at = 0.0  # the minute between retention checks has passed
        pump([uplink], lambda: uplink.dropped_unconfirmed == 3, what="rows dropped after the retention")
        assert store.outbox_counts() == (0, 0)
        pump(
            [uplink],
            lambda: any(json.loads(p).get("floor") == 4 for p in listener.on(status_topic(SITE, "g1"))),
            what="the new floor in a status",
        )
    finally:
        uplink.stop()
        listener.close()
        store.close()


class OldLedgerService(LedgerService):
    """The ledger's wire behaviour as of main before issue #22: `{"seq": n}` alone, unsigned, no status read."""

    def _floors(self, statuses) -> None:
        for message in statuses:
            self.link.ack(message)

    def _confirm(self, committed) -> None:
        for gate, seq in committed.items():
            self.link.publish(committed_topic(self.site, gate), json.dumps({"seq": seq}).encode(), 1, True)


def test_a_new_gate_with_an_old_ledger_keeps_its_events_and_loses_none(tmp_path, authority, broker):
    """An old ledger stores everything, but its confirmations are unsigned: the new gate does not take
    them (only a `ledger` key can confirm), keeps its rows and counts the messages it ignored; once
    the ledger is upgraded (signed confirmations), the rows go."""
    store = GateStore(tmp_path / "g1.db", site=SITE, gate="g1")
    ring = device_keyring(tmp_path / "ring", store)
    uplink = _uplink(store, authority, broker.url, resend_after_s=1.0)
    try:
        uplink.start()
        with LedgerThread(
            tmp_path / "ledger.db",
            broker.url,
            SITE,
            keyring=ring,
            service=OldLedgerService,
            signing_key=None,
            client_id="the-ledger",
        ) as old:
            for _ in range(12):
                admit(store)
            pump([uplink], lambda: old.count() == 12 and uplink.unverified_ledger_messages > 0, what="stored")
        assert store.outbox_counts() == (0, 12)
        with LedgerThread(tmp_path / "ledger.db", broker.url, SITE, keyring=ring, client_id="the-ledger") as new:
            pump([uplink], _settled(new, [store]), timeout=30, what="the upgraded ledger's confirmation")
    finally:
        uplink.stop()
        store.close()


def test_an_old_gate_reads_the_new_confirmation(tmp_path, broker):
    """What a gate of main before #22 does with the message: json.loads(payload)["seq"], other keys ignored."""
    store = GateStore(tmp_path / "g1.db", site=SITE, gate="g1")
    made = [json.dumps(admit(store)) for _ in range(3)]
    store.close()
    with Ledger(tmp_path / "ledger.db", site=SITE) as ledger:
        ledger.ingest([made[0], made[2]])
        ((seq, held),) = ledger.confirmations(["g1"]).values()
    body = json.loads(confirmation.encode(seq, held))
    assert body["seq"] == 1 and isinstance(body["seq"], int)


def test_a_row_the_broker_refused_before_a_restart_is_still_sent(tmp_path, authority):
    """Rows 1 and 3 were acknowledged by the broker (and reached the ledger), row 2 was refused (a
    PUBACK >= 0x80) just before the gate restarted. After the restart the gate waits for the ledger's
    answer on 1 and 3, but sends 2 at once: it is not left behind when 1 and 3 are confirmed."""
    broker, store, ring, uplink = _one_gate(tmp_path, authority)
    made = [json.dumps(admit(store)) for _ in range(3)]
    store.mark_delivered([1, 3], int(time.time() * 1000))
    with Ledger(tmp_path / "ledger.db", site=SITE) as ledger:
        ledger.ingest([made[0], made[2]])
    uplink = _uplink(store, authority, broker.url)  # made after the marks, as after a restart
    try:
        with LedgerThread(tmp_path / "ledger.db", broker.url, SITE, keyring=ring) as ledger:
            uplink.start()
            pump([uplink], _settled(ledger, [store]), timeout=20, what="row 2 stored, everything confirmed")
    finally:
        uplink.stop()
        broker.stop()
        store.close()


def test_an_event_the_broker_lost_is_sent_again_while_the_gate_keeps_admitting(tmp_path, authority):
    """A busy gate: new events keep arriving at the ledger and being confirmed (rows leave the outbox
    every few hundred ms), but the oldest rows, lost by a broker SIGKILL, stay unconfirmed. Their
    resend must not wait for a lull in the traffic: what counts is that the oldest waiting row has
    not moved for resend_after_s, not that some newer row was confirmed."""
    broker, store, ring, uplink = _one_gate(tmp_path, authority)
    try:
        uplink.start()
        with LedgerThread(tmp_path / "ledger.db", broker.url, SITE, keyring=ring) as ledger:
            ledger.stop()  # its session exists and queues, but it confirms nothing
            for _ in range(5):
                admit(store)
            pump([uplink], lambda: uplink.delivered == 5, what="PUBACKs")
            broker.stop(kill=True)  # the five it acknowledged are gone
            broker.start()
        with LedgerThread(tmp_path / "ledger.db", broker.url, SITE, keyring=ring) as ledger:
            end = time.monotonic() + 20  # resend_after_s is 1 s: twenty times that, never quiet for it
            while time.monotonic() < end and ledger_holds(ledger) < 5:
                admit(store)
                deadline = time.monotonic() + 0.3
                while time.monotonic() < deadline:
                    uplink.poll(0.01)
            held = ledger_holds(ledger)
            uplink.stop()
        assert held == 5, f"the lost events 1-5 were not sent again during 20 s of traffic ({held} of them held)"
    finally:
        broker.stop()
        store.close()


def ledger_holds(ledger, last: int = 5) -> int:
    """How many of g1's events 1..last the ledger has stored (its own connection)."""
    with Ledger(ledger.db) as db:
        return db.query("SELECT COUNT(*) FROM events WHERE gate = 'g1' AND seq <= ?", (last,))[0][0]


def test_a_floor_the_gate_did_not_sign_makes_the_ledger_declare_and_confirm_nothing(tmp_path, authority):
    """Whoever can write a gate's status topic (at a central broker, a site's bridge identity) must
    not make the gate delete events no ledger holds: g1 made 5 events, the ledger got 1-2, the
    broker acknowledged 3-5 and died. A status saying `"floor": 1000000`, unsigned, then signed by
    g2's device key, is ignored (counted, logged): nothing declared lost, the ledger confirms 2, and
    g1 sends 3-5 again. (Before floors were signed, the ledger confirmed 999999 and g1 dropped 3-5.)"""
    broker = Broker(tmp_path / "broker").start()
    store = GateStore(tmp_path / "g1.db", site=SITE, gate="g1")
    peer = GateStore(tmp_path / "g2.db", site=SITE, gate="g2")
    ring = device_keyring(tmp_path / "ring", store, peer)
    made = [admit(store) for _ in range(5)]
    forged = [
        b'{"state":"online","rev":0,"floor":1000000}',
        json.dumps(
            {"state": "online", "floor": 10**6, "floor_sig": peer.floor_signature(SITE, 10**6)}
        ).encode(),  # g2's key, g1's topic
    ]
    try:
        with LedgerThread(tmp_path / "ledger.db", broker.url, SITE, keyring=ring) as ledger:
            bridge = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="site-bridge", protocol=mqtt.MQTTv5)
            bridge.connect("127.0.0.1", broker.port)
            bridge.loop_start()
            for event in made[:2]:
                bridge.publish(events_topic(SITE, "g1"), json.dumps(event).encode(), qos=1).wait_for_publish(5)
            for status in forged:
                bridge.publish(status_topic(SITE, "g1"), status, qos=1, retain=True).wait_for_publish(5)

            def committed():
                with Ledger(tmp_path / "ledger.db") as view:
                    return view.committed().get("g1", 0)

            wait_for(lambda: ledger.service.floors_ignored >= 2 or committed() > 2, timeout=20)
            bridge.disconnect()
            bridge.loop_stop()
            assert committed() == 2
            assert ledger.service.floors_ignored == 2
            store.mark_delivered([1, 2, 3, 4, 5], int(time.time() * 1000))  # the broker died after its PUBACKs
            uplink = _uplink(store, authority, broker.url, resend_after_s=1.0)
            uplink.start()
            pump([uplink], _settled(ledger, [store]), timeout=30, what="3-5 sent again and confirmed")
            uplink.stop()
            report = ledger.report()
        g = report["gates"]["g1"]
        assert (g["events"], g["missing"], g["declared_lost"]) == (5, 0, 0)
    finally:
        broker.stop()
        store.close()
        peer.close()


def test_a_gate_the_ledger_does_not_trust_yet_is_answered_and_sends_again(tmp_path, authority):
    """The first deployment as docs/central.md runs it: the ledger's keyring is empty until `gated
    keys enrol --approve` and a restart, so it believes no gate's floor. It still answers each gate's
    status with what it holds (nothing), live, so what reached no ledger before its first start is
    sent again at once, not only after the gate's next event (an idle gate: after the retention)."""
    broker = Broker(tmp_path / "broker").start()
    store = GateStore(tmp_path / "g1.db", site=SITE, gate="g1")
    uplink = _uplink(store, authority, broker.url, resend_after_s=1.0)
    try:
        uplink.start()
        for _ in range(5):
            admit(store)
        pump([uplink], lambda: uplink.delivered == 5, what="PUBACKs")
        with LedgerThread(tmp_path / "ledger.db", broker.url, SITE, keyring=None) as ledger:
            pump([uplink], _settled(ledger, [store]), timeout=30, what="the 5 events sent again and confirmed")
            uplink.stop()
            assert ledger.service.floors_ignored >= 1
            g = ledger.report()["gates"]["g1"]
        assert (g["events"], g["missing"], g["declared_lost"]) == (5, 0, 0)
    finally:
        broker.stop()
        store.close()


def test_an_event_stored_before_the_ledger_knew_the_gates_key_is_not_held_until_checked(tmp_path):
    """Before `gated keys enrol --approve`, the ledger stores a gate's events unchecked: one of them
    could be anybody's (whoever can write the gate's events topic, a site's bridge identity at a
    central broker), so none is confirmed and the gate keeps its own. Once the key is in the
    keyring, the gate's copies sent again check the stored ones; a forged event that took a seq
    first is not the gate's, so that seq stays unconfirmed (the gate keeps its own row)."""
    store = GateStore(tmp_path / "g1.db", site=SITE, gate="g1")
    forger = GateStore(tmp_path / "forger.db", site=SITE, gate="g1")  # another key calling itself g1
    peer = GateStore(tmp_path / "g2.db", site=SITE, gate="g2")
    made = [json.dumps(admit(store)) for _ in range(3)]
    forged = [json.dumps(admit(forger)) for _ in range(3)]
    before = device_keyring(tmp_path / "before", peer)  # the ledger's keyring, g1 not enrolled yet
    after = device_keyring(tmp_path / "after", peer, store)
    db = tmp_path / "ledger.db"
    with Ledger(db, keyring=before, site=SITE) as ledger:
        ledger.ingest(made[:2] + [forged[2]])  # g1's 1-2 and a forged 3, all unchecked
        assert ledger.committed() == {"g1": 0}
        assert ledger.confirmations(["g1"]) == {"g1": (0, [])}
    with Ledger(db, keyring=after, site=SITE) as ledger:
        ledger.ingest(made)  # the gate sends again: 1-2 checked now; its 3 conflicts with the forged one
        assert ledger.committed() == {"g1": 2}
        assert ledger.confirmations(["g1"]) == {"g1": (2, [])}
    for s in (store, forger, peer):
        s.close()


def test_a_status_whose_topic_names_no_gate_is_ignored_and_the_ledger_goes_on(tmp_path, authority, broker, ledger_db):
    """Whoever may write gates/+/status (the bridge) can name any gate in the topic: one that no event
    could name (over 128 characters, docs/protocol.md section 5) is ignored before anything else, on
    both backends (PostgreSQL refused a 6,000-character key in gate_progress and stopped the ledger),
    and becomes no gate of the ledger."""
    store = GateStore(tmp_path / "g1.db", site=SITE, gate="g1")
    ring = device_keyring(tmp_path / "ring", store)
    made = [admit(store) for _ in range(3)]
    letters = random.Random(1).choices(string.ascii_letters + string.digits, k=6000)  # no compression saves it
    junk = ["".join(letters), "y" * 129]
    try:
        with LedgerThread(ledger_db, broker.url, SITE, keyring=ring) as ledger:
            bridge = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="site-bridge", protocol=mqtt.MQTTv5)
            bridge.connect("127.0.0.1", broker.port)
            bridge.loop_start()
            bridge.publish(events_topic(SITE, "g1"), json.dumps(made[0]).encode(), qos=1).wait_for_publish(5)
            for name in junk:
                status = json.dumps({"state": "online", "floor": 1}).encode()
                bridge.publish(status_topic(SITE, name), status, qos=1, retain=True).wait_for_publish(5)
            bridge.publish(events_topic(SITE, junk[0]), json.dumps(made[1]).encode(), qos=1).wait_for_publish(5)
            assert wait_for(lambda: ledger.service.floors_ignored >= 2, timeout=20)
            for event in made[1:]:
                bridge.publish(events_topic(SITE, "g1"), json.dumps(event).encode(), qos=1).wait_for_publish(5)

            def committed():
                with Ledger(ledger_db) as view:
                    return view.committed()

            assert wait_for(lambda: committed().get("g1") == 3, timeout=20), "the ledger stopped"
            for name in junk:
                bridge.publish(status_topic(SITE, name), b"", qos=1, retain=True).wait_for_publish(5)
            bridge.disconnect()
            bridge.loop_stop()
        with Ledger(ledger_db) as view:
            assert view.query("SELECT gate FROM gate_progress") == [("g1",)]
            (why,) = view.query("SELECT why FROM quarantine")  # the event on a topic of no gate
            assert why[0].startswith("the topic names no gate") and len(why[0]) < 200
    finally:
        store.close()
