"""End-to-end delivery (docs/protocol.md, "Committed events"), the only behaviour: a gate keeps each
event until the ledger's retained `committed` says it holds it, so a broker killed by a power cut
(SIGKILL: it loses what it acknowledged since its last save) leaves no gap, and tells the ledger its
floor, so nothing it no longer holds makes it wait (issue #22)."""

from __future__ import annotations

import json
import time

import pytest

from gated.core.ledgersig import seal
from gated.gate.store import GateStore
from gated.gate.uplink import Uplink
from gated.topics import committed_topic, status_topic
from tests.conftest import SITE
from tests.support.broker import Broker
from tests.support.uplink import LEDGER_KEY, LedgerThread, Listener, admit, device_keyring, fast_settings, pump
from tests.support.uplink import admit_for as shared_admit_for


def run_with_broker_kills(tmp_path, authority, db, kills: int = 3) -> tuple[dict, list]:
    """Two gates admit while the broker is SIGKILLed `kills` times with the ledger away (so events
    wait in the broker's queue for its session, as in a burst); then the ledger comes back. The
    ledger's report and the stores."""
    broker = Broker(tmp_path / "broker").start()
    stores = [GateStore(tmp_path / f"{g}.db", site=SITE, gate=g) for g in ("g1", "g2")]
    ring = device_keyring(tmp_path / "ring", *stores)
    uplinks = [
        Uplink(store=s, keyring=authority.keyring, site=SITE, gate=s.gate, settings=fast_settings(broker.url))
        for s in stores
    ]

    def admit_for(seconds: float) -> None:
        shared_admit_for(stores, uplinks, seconds, 0.005)

    try:
        for u in uplinks:
            u.start()
        with LedgerThread(db, broker.url, SITE, keyring=ring, client_id="ledger"):
            admit_for(1.0)
        for _ in range(kills):  # the ledger is away: its session's queue at the broker grows
            admit_for(0.7)
            broker.stop(kill=True)  # a power cut: what it acknowledged since its last save is gone
            admit_for(0.3)
            broker.start()
        with LedgerThread(db, broker.url, SITE, keyring=ring, client_id="ledger") as ledger:
            admit_for(1.0)
            made = sum(s.last_seq for s in stores)
            pump(
                uplinks,
                lambda: ledger.count() >= made and all(s.outbox_counts() == (0, 0) for s in stores),
                timeout=150,
                what="every event at the ledger and confirmed to its gate",
            )
            for u in uplinks:
                u.stop()
            report = ledger.report()
    finally:
        broker.stop()
    return report, stores


def test_a_broker_sigkilled_while_gates_publish_leaves_no_gap_by_default(tmp_path, authority, ledger_db):
    """SQLite and PostgreSQL ledgers alike (`ledger_db`)."""
    report, stores = run_with_broker_kills(tmp_path, authority, ledger_db)
    for s in stores:
        g = report["gates"][s.gate]
        assert s.last_seq > 20  # every kill had events in flight (over 100 on a quiet machine)
        assert (g["events"], g["last_seq"], g["missing"], g["declared_lost"], g["chain_breaks"]) == (
            s.last_seq,
            s.last_seq,
            0,
            0,
            0,
        )
        s.close()
    assert report["clean"] and report["totals"]["quarantined"] == 0


def test_a_confirmation_of_another_chain_of_the_gate_prunes_nothing(broker, tmp_path, authority):
    """A replaced gate (chain 3) whose ledger still follows its old chain 7 (higher: epochs are drawn
    at random) is told "7 * 2^40 + 3 held": clipped to the gate's last seq that covered its whole
    outbox, and events no ledger held were deleted. Now only a confirmation of chain 3 counts, and
    the gate sends its status again (once a connection), whose signed floor names chain 3."""
    store = GateStore(tmp_path / "g1.db", site=SITE, gate="g1")
    store.start_epoch(3, 0)
    base = 3 << 40
    for _ in range(5):
        admit(store)
    uplink = Uplink(store=store, keyring=authority.keyring, site=SITE, gate="g1", settings=fast_settings(broker.url))
    central = Listener(broker.port, status_topic(SITE, "g1"))
    try:
        uplink.start()
        pump([uplink], lambda: uplink.delivered == 5 and len(central.on(status_topic(SITE, "g1"))) == 1, what="PUBACKs")
        topic = committed_topic(SITE, "g1")

        def signed(body: dict) -> bytes:
            return seal({**body, "site": SITE, "gate": "g1"}, LEDGER_KEY)

        central.client.publish(topic, signed({"seq": (7 << 40) + 3, "held": [[(7 << 40) + 5, (7 << 40) + 9]]}), qos=1)
        central.client.publish(topic, signed({"seq": 4, "held": [[6, 9]]}), qos=1)  # chain 0's: none of chain 3
        central.client.publish(topic, signed({"seq": base + 1, "held": [[base + 4, base + 4]]}), qos=1)
        pump([uplink], lambda: store.outbox_counts() == (0, 3), what="chain 3's own confirmation taken")
        assert [seq - base for seq, _ in store.outbox()] == [2, 3, 5] and uplink.committed == base + 1
        pump([uplink], lambda: len(central.on(status_topic(SITE, "g1"))) >= 2, what="the status sent again")
        end = time.monotonic() + 0.5  # a third would come now: none does
        while time.monotonic() < end:
            uplink.poll(0.05)
        statuses = [json.loads(m) for m in central.on(status_topic(SITE, "g1"))]
        assert len(statuses) == 2 and statuses[-1]["floor"] == base + 1  # once, though told twice; chain 3's
    finally:
        uplink.stop()
        central.close()
        store.close()


def test_committed_prunes_the_outbox_and_a_bad_or_impossible_one_is_ignored(broker, tmp_path, authority):
    from tests.support.uplink import Listener, gate_with_delivered_events

    store, uplink = gate_with_delivered_events(broker, tmp_path, authority.keyring, 5)
    central = Listener(broker.port, "unused/#")
    try:
        assert store.outbox_counts() == (0, 5)  # the broker has them; the ledger has not said so
        topic = committed_topic(SITE, "g1")

        def signed(body: dict) -> bytes:
            return seal({**body, "site": SITE, "gate": "g1"}, LEDGER_KEY)

        for bad in (
            {"seq": -1},
            {"seq": 1.5},
            {"seq": 0, "held": [[2, 1]]},
            {"seq": 1, "held": [[2, 3]]},
            {"seq": 0, "held": [[2, 3], [3, 4]]},
            {"seq": 0, "held": 3},
        ):
            central.client.publish(topic, signed(bad), qos=1, retain=True)
        central.client.publish(topic, signed({"seq": 1, "held": [[3, 3]]}), qos=1, retain=True)
        pump([uplink], lambda: store.outbox_counts() == (0, 3), what="rows 1 and 3 pruned")
        assert [seq for seq, _ in store.outbox()] == [2, 4, 5] and uplink.committed == 1
        # a prefix alone (as an older ledger wrote it); beyond the gate's last seq (a restored state): up to it
        central.client.publish(topic, signed({"seq": 99}), qos=1, retain=True)
        pump([uplink], lambda: store.outbox_counts() == (0, 0), what="the rest pruned")
        assert uplink.committed == 5
    finally:
        uplink.stop()
        central.close()
        store.close()


def test_gated_toml_bounds_and_the_old_switch_is_still_read(tmp_path):
    from gated.gate import config
    from gated.gate.build import uplink_settings
    from tests.system.test_config import MINIMAL, write

    default = uplink_settings(config.load(write(tmp_path, MINIMAL)))
    assert (default.resend_after_s, default.outbox_retention_s) == (30.0, 168 * 3600)
    old = uplink_settings(
        config.load(
            write(tmp_path, MINIMAL + "keep_until_committed = false\nresend_after_s = 5\noutbox_retention_h = 48\n")
        )
    )
    assert (old.keep_until_committed, old.resend_after_s, old.outbox_retention_s) == (False, 5.0, 48 * 3600)
    bad = write(tmp_path, MINIMAL + "outbox_retention_h = 0\n")
    with pytest.raises(config.ConfigError, match="outbox_retention_h"):
        config.load(bad)
