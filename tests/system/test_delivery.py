"""End-to-end delivery (docs/protocol.md, "Committed events"): with [mqtt] keep_until_committed a
gate keeps each event until the ledger's retained `committed` says it holds it, so a broker killed
by a power cut (SIGKILL: it loses what it acknowledged since its last save) leaves no gap."""

from __future__ import annotations

import json
import time

import pytest

from gated.gate.store import GateStore
from gated.topics import committed_topic
from gated.gate.uplink import Uplink
from tests.conftest import SITE
from tests.support.broker import Broker
from tests.support.uplink import LedgerThread, admit, device_keyring, fast_settings, pump
from tests.support.uplink import admit_for as shared_admit_for


def run_with_broker_kills(tmp_path, authority, keep: bool, kills: int = 3) -> tuple[dict, list]:
    """Two gates admit while the broker is SIGKILLed `kills` times with the ledger away (so events
    wait in the broker's queue for its session, as in a burst); then the ledger comes back. The
    ledger's report and the stores."""
    broker = Broker(tmp_path / "broker").start()
    stores = [GateStore(tmp_path / f"{g}.db", site=SITE, gate=g) for g in ("g1", "g2")]
    ring = device_keyring(tmp_path / "ring", *stores)
    uplinks = [Uplink(store=s, keyring=authority.keyring, site=SITE, gate=s.gate,
                      settings=fast_settings(broker.url, keep_until_committed=keep, resend_after_s=1.0))
               for s in stores]
    db = str(tmp_path / "ledger.db")

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
            if keep:
                pump(uplinks, lambda: ledger.count() >= made and all(s.outbox_depth() == 0 for s in stores),
                     timeout=60, what="every event at the ledger and confirmed to its gate")
            else:
                pump(uplinks, lambda: all(s.outbox_depth() == 0 for s in stores), what="outboxes drained")
                deadline = time.monotonic() + 5
                while ledger.count() < made and time.monotonic() < deadline:
                    time.sleep(0.05)
            for u in uplinks:
                u.stop()
            report = ledger.report()
    finally:
        broker.stop()
    return report, stores


def test_a_broker_sigkilled_while_gates_publish_leaves_no_gap_when_gates_keep_until_committed(tmp_path, authority):
    report, stores = run_with_broker_kills(tmp_path, authority, keep=True)
    for s in stores:
        g = report["gates"][s.gate]
        assert s.last_seq > 100
        assert (g["events"], g["last_seq"], g["missing"], g["chain_breaks"]) == (s.last_seq, s.last_seq, 0, 0)
        s.close()
    assert report["clean"] and report["totals"]["quarantined"] == 0


def test_committed_prunes_the_outbox_and_a_bad_or_impossible_one_is_ignored(broker, tmp_path, authority):
    store = GateStore(tmp_path / "g1.db", site=SITE, gate="g1")
    for _ in range(5):
        admit(store)
    uplink = Uplink(store=store, keyring=authority.keyring, site=SITE, gate="g1",
                    settings=fast_settings(broker.url, keep_until_committed=True, outbox_retention_s=3600))
    from tests.support.uplink import Listener

    central = Listener(broker.port, "unused/#")
    try:
        uplink.start()
        pump([uplink], lambda: uplink.delivered == 5, what="PUBACKs")
        assert store.outbox_depth() == 5  # the broker has them; the ledger has not said so
        topic = committed_topic(SITE, "g1")
        for bad in (b"not json", b'{"seq": -1}', b'{"seq": 1.5}', b'[3]', b'{"seq": 99}'):
            central.client.publish(topic, bad, qos=1, retain=True)
        central.client.publish(topic, json.dumps({"seq": 3}).encode(), qos=1, retain=True)
        pump([uplink], lambda: store.outbox_depth() == 2, what="rows 1-3 pruned")
        assert [seq for seq, _ in store.outbox()] == [4, 5] and uplink.committed == 3
        # the retention: rows the broker acknowledged before the bound go, with a warning
        assert store.prune_expired(time.time_ns() // 1_000_000 + 1) == 2 and store.outbox_depth() == 0
    finally:
        uplink.stop()
        central.close()
        store.close()


def test_without_keep_until_committed_the_same_kills_leave_gaps(tmp_path, authority):
    """The control: the same run with the broker's PUBACK as the end of a gate's duty loses what the
    killed broker had acknowledged (docs/protocol.md, the known limit this mode removes)."""
    report, stores = run_with_broker_kills(tmp_path, authority, keep=False)
    for s in stores:
        s.close()
    assert report["totals"]["missing"] > 0


def test_gated_toml_turns_end_to_end_delivery_on_with_its_bounds(tmp_path):
    from gated.gate import config
    from gated.gate.build import uplink_settings
    from tests.system.test_config import MINIMAL, write

    off = uplink_settings(config.load(write(tmp_path, MINIMAL)))
    assert not off.keep_until_committed
    on = uplink_settings(config.load(write(tmp_path, MINIMAL + "keep_until_committed = true\nresend_after_s = 5\n"
                                                               "outbox_retention_h = 48\n")))
    assert (on.keep_until_committed, on.resend_after_s, on.outbox_retention_s) == (True, 5.0, 48 * 3600)
    bad = write(tmp_path, MINIMAL + "outbox_retention_h = 0\n")
    with pytest.raises(config.ConfigError, match="outbox_retention_h"):
        config.load(bad)
