"""A replaced gate (docs/protocol.md, "Replacing a gate"): its new state is a new chain of the same
gate id, the ledger keeps the chains apart (no conflict, no gap), holds the new chain's events until
the new device key is approved and then links them, and the new gate recovers the site's admissions
from the ledger's signed snapshot before it lets single-entry tickets in again."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated import keys
from gated.central import admissions
from gated.central.ledger import Ledger
from gated.core import checkinlist, events, snapshot
from gated.core.decide import GateContext
from gated.core.pretix_secret import Fields, encode_secret
from gated.core.reasons import Reason
from gated.gate import checkinlists
from gated.gate.admissions import Recovery
from gated.gate.store import GateStore
from gated.gate.validate import scan_fields, validate
from tests.conftest import EVENT, SITE

NOW_MS = int(time.time() * 1000)


def _admit(store, authority, context, text, ts_ms):
    decision = validate(text, authority.keyring, context, store, ts_ms / 1000)
    body = scan_fields(decision, context, 0)
    if decision.admit:
        return decision, store.record_scan(body, ts_ms, admit_cti=decision.cti, confirmed=True)
    return decision, store.record_scan(body, ts_ms)


def _device_ring(tmp_path, store, name="g1", replace=False):
    ring = tmp_path / "ledger-keyring"
    pub = tmp_path / f"{name}-{keys.kid_of(store.device_public_key).hex()}.pub"
    pub.write_bytes(keys.public_pem(store.device_public_key))
    keys.trust_key_file(ring, pub, "device", name=name, replace=replace)
    return keys.load_keyring(ring)


def _outbox(store):
    return [json.loads(e) for _, e in store.outbox(0, 100_000)]


def test_a_new_chain_starts_at_its_epoch_base_and_says_so(tmp_path):
    with GateStore(tmp_path / "new.db", site=SITE, gate="g1") as store:
        store.start_epoch(5, NOW_MS)
        assert not store.synced and store.epoch == 5
        first = store.record_event({"kind": "state", "state": "online", "rev": 0}, NOW_MS)
        second = store.record_event({"kind": "state", "state": "online", "rev": 0}, NOW_MS)
    assert first["seq"] == (5 << 40) + 1 and first["id"] == f"g1:{(5 << 40) + 1}" and first["epoch"] == 5
    assert first["prev"] == events.GENESIS and second["prev"] == first["hash"]
    for event in (first, second):
        assert events.read_event(json.dumps(event)) == event  # a strict reader (the ledger's, peers') takes it
    with GateStore(tmp_path / "new.db") as again:  # survives a restart
        assert not again.synced and again.epoch == 5
        with pytest.raises(Exception, match="new state"):
            again.start_epoch(6, NOW_MS)


def test_the_ledger_keeps_the_chains_apart_and_links_the_new_one_once_approved(tmp_path, authority, ledger_db):
    context = GateContext(site=SITE, events=frozenset({EVENT}))
    used = [authority.ticket() for _ in range(3)]
    with GateStore(tmp_path / "old.db", site=SITE, gate="g1") as old:
        for i, text in enumerate(used):
            _admit(old, authority, context, text, NOW_MS + i)
        old_events = _outbox(old)
        ring = _device_ring(tmp_path, old)
    with Ledger(ledger_db, keyring=ring, site=SITE) as ledger:
        assert ledger.ingest(old_events).new == 3
        with GateStore(tmp_path / "new.db", site=SITE, gate="g1") as new:
            new.start_epoch(7, NOW_MS + 10)
            for i in range(2):
                _admit(new, authority, context, authority.ticket(), NOW_MS + 20 + i)
            new_events = _outbox(new)
            # before the operator approves the new key: held back, neither a conflict nor a bad signature
            held = ledger.ingest(new_events)
            assert held.new == 0 and {p["kind"] for p in held.problems} == {"unapproved_key"}
            report = ledger.report()
            assert report["totals"]["conflicts"] == 0 and report["totals"]["bad_signatures"] == 0
            assert report["totals"]["unapproved"] == 2 and not report["clean"]  # not in the ledger yet
            # approved (gated keys enrol --replace rewrites the keyring): taken in, linked, no gap
            result = ledger.set_keyring(_device_ring(tmp_path, new, replace=True))
            assert result.new == 2 and result.committed == {"g1": (7 << 40) + 2}
        report = ledger.report()
    g1 = report["gates"]["g1"]
    assert g1["conflicts"] == 0 and g1["gaps"] == [] and g1["missing"] == 0 and g1["chain_breaks"] == 0
    assert [c["epoch"] for c in g1["chains"]] == [0, 7]
    assert report["totals"]["replacements"] == 1 and report["totals"]["unapproved"] == 0
    (replaced,) = report["replacements"]
    assert replaced["gate"] == "g1" and replaced["after_last_seq"] == 3 and replaced["first_seq"] == (7 << 40) + 1
    assert report["clean"]


def test_approving_one_replaced_gate_keeps_the_other_s_events_waiting_for_approval(tmp_path, authority, ledger_db):
    context = GateContext(site=SITE, events=frozenset({EVENT}))
    new_events, new_stores = {}, {}
    for name in ("g1", "g2"):
        with GateStore(tmp_path / f"{name}-old.db", site=SITE, gate=name) as old:
            ring = _device_ring(tmp_path, old, name)  # both gates' first keys
        new_stores[name] = GateStore(tmp_path / f"{name}-new.db", site=SITE, gate=name)
        new_stores[name].start_epoch(7, NOW_MS)
        for i in range(2):
            _admit(new_stores[name], authority, context, authority.ticket(), NOW_MS + 10 + i)
        new_events[name] = _outbox(new_stores[name])
    try:
        with Ledger(ledger_db, keyring=ring, site=SITE) as ledger:
            assert ledger.ingest(new_events["g1"] + new_events["g2"]).new == 0
            assert ledger.report()["totals"]["unapproved"] == 4

            def waiting() -> list[str]:
                return sorted(i for (i,) in ledger.query("SELECT event_id FROM quarantine"))

            # the operator approves g1's new key only: g2's messages still wait for theirs
            result = ledger.set_keyring(_device_ring(tmp_path, new_stores["g1"], "g1", replace=True))
            assert result.new == 2 and result.rejected == 2
            assert waiting() == [e["id"] for e in new_events["g2"]]
            assert ledger.report()["totals"]["unapproved"] == 2
            # any later rewrite of the keyring keeps them too, and g2's approval takes them in
            assert ledger.set_keyring(ledger.keyring).new == 0 and waiting() == [e["id"] for e in new_events["g2"]]
            result = ledger.set_keyring(_device_ring(tmp_path, new_stores["g2"], "g2", replace=True))
            assert result.new == 2 and waiting() == []
            report = ledger.report()
        assert report["totals"]["unapproved"] == 0 and report["gates"]["g2"]["events"] == 2
    finally:
        for store in new_stores.values():
            store.close()


def _snapshot_from(ledger_db, authority, *, iat=None, per_part=None, monkeypatch=None):
    with Ledger(ledger_db, site=SITE) as ledger:
        found = admissions.collect(ledger, EVENT)
    if per_part is not None:
        monkeypatch.setattr(snapshot, "PER_PART", per_part)
    return found, snapshot.encode(
        authority.revocation,
        site=SITE,
        event=EVENT,
        version=NOW_MS + 1,
        admissions=found,
        iat=iat if iat is not None else int(time.time()),
    )


@pytest.mark.parametrize("policy", ["deny_used_check", "admit"])
def test_a_replaced_gate_recovers_the_admissions_before_it_checks_tickets_again(
    tmp_path, authority, policy, monkeypatch
):
    context = GateContext(site=SITE, events=frozenset({EVENT}), until_synced=policy)
    used = [authority.ticket() for _ in range(3)]
    rolled_back = authority.ticket()
    ledger_db = str(tmp_path / "ledger.db")
    with GateStore(tmp_path / "old.db", site=SITE, gate="g1") as old:
        for i, text in enumerate(used):
            _admit(old, authority, context, text, NOW_MS + i)
        decision = validate(rolled_back, authority.keyring, context, old, NOW_MS / 1000)
        scan = old.record_scan(scan_fields(decision, context, 0), NOW_MS + 5, admit_cti=decision.cti)
        old.record_passage(scan["id"], False, NOW_MS + 6)  # nobody passed: the ticket may be used again
        with Ledger(ledger_db, site=SITE) as ledger:
            ledger.ingest(_outbox(old))
    with GateStore(tmp_path / "new.db", site=SITE, gate="g1") as new:
        new.start_epoch(9, NOW_MS + 10)
        # before the snapshot: a used ticket cannot be checked
        decision, event = _admit(new, authority, context, used[0], NOW_MS + 20)
        if policy == "deny_used_check":
            assert decision.reason is Reason.UNSYNCED and event["reason"] == "unsynced" and not decision.admit
        else:
            assert decision.admit and event["unsynced"] is True
        # an old snapshot (taken before this chain started) is not enough; a forged one is nothing
        recovery = Recovery(new, authority.keyring, site=SITE, events=[EVENT])
        _, stale = _snapshot_from(ledger_db, authority, iat=int(NOW_MS / 1000) - 3600)
        recovery.on_message("t", stale[0])
        forged = snapshot.encode(
            authority.issuer, site=SITE, event=EVENT, version=1, admissions=[], iat=int(time.time())
        )
        recovery.on_message("t", forged[0])
        assert not new.synced
        found, parts = _snapshot_from(ledger_db, authority, per_part=2, monkeypatch=monkeypatch)
        assert len(found) == 3 and len(parts) == 2  # the rolled-back admission is not in it
        recovery.on_message("t", parts[1])
        assert not new.synced  # one part of two
        recovery.on_message("t", parts[0])
        assert new.synced
        for text in used[1:]:
            assert _admit(new, authority, context, text, NOW_MS + 30)[0].reason is Reason.ALREADY_USED
        assert _admit(new, authority, context, rolled_back, NOW_MS + 31)[0].admit
        fresh, event = _admit(new, authority, context, authority.ticket(), NOW_MS + 32)
        assert fresh.admit and "unsynced" not in event
    with GateStore(tmp_path / "new.db") as again:
        assert again.synced  # for good


def test_gated_replace_makes_a_new_chain_and_keeps_an_old_state_only_aside(tmp_path, capsys):
    from gated.cli import main

    state = tmp_path / "state"
    config = tmp_path / "gated.toml"
    config.write_text(
        f'[gate]\nsite = "{SITE}"\nid = "g1"\nevents = ["{EVENT}"]\nkeyring = "{tmp_path}"\n'
        f'state_dir = "{state}"\n[turnstile]\nboard = "generic-relay"\n'
        '[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n'
    )
    with GateStore(state / "gate.db", site=SITE, gate="g1") as old:
        old.record_event({"kind": "state", "state": "online", "rev": 0}, NOW_MS)
        old_kid = keys.kid_of(old.device_public_key)
    assert main(["replace", "--config", str(config)]) == 2  # a state is there: never overwritten
    assert "--move-aside" in capsys.readouterr().err
    assert main(["replace", "--config", str(config), "--move-aside"]) == 0
    out = capsys.readouterr().out
    (aside,) = [
        p
        for p in state.iterdir()
        if p.name.startswith("gate.db.replaced-") and "-wal" not in p.name and "-shm" not in p.name
    ]
    with GateStore(aside) as kept:
        assert kept.last_seq == 1  # the old state, whole, for inspection
    with GateStore(state / "gate.db") as new:
        assert new.epoch >= 1 and not new.synced and new.last_seq == new.epoch << 40
        assert keys.kid_of(new.device_public_key) != old_kid
        assert f"device key kid {keys.kid_of(new.device_public_key).hex()}" in out


def test_gated_replace_refuses_an_event_no_snapshot_can_reach_unless_until_synced_admits(tmp_path, capsys):
    """An event id that is no MQTT topic level ("acme/2026") has no snapshot topic: under the default
    until_synced the new chain would deny every limited ticket for good, so replace refuses, saying
    why; with until_synced = "admit" it goes ahead and says for which event that holds."""
    from gated.cli import main

    config = tmp_path / "gated.toml"

    def configured(until_synced: str) -> None:
        config.write_text(
            f'[gate]\nsite = "{SITE}"\nid = "g1"\nevents = ["{EVENT}", "acme/2026"]\nkeyring = "{tmp_path}"\n'
            f'state_dir = "{tmp_path / "state"}"\nuntil_synced = "{until_synced}"\n[turnstile]\n'
            'board = "generic-relay"\n[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n'
        )

    configured("deny_used_check")
    assert main(["replace", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "'acme/2026' cannot be an MQTT topic level" in err and 'until_synced = "admit"' in err
    assert not (tmp_path / "state" / "gate.db").exists()  # nothing made
    configured("admit")
    assert main(["replace", "--config", str(config)]) == 0
    assert "for 'acme/2026' (no topic level: no snapshot can come)" in capsys.readouterr().err


def test_gated_status_names_a_replaced_gate_waiting_for_its_snapshot():
    from gated.central.fleet import GateView, gate_row
    from gated.core.events import format_ts

    now = time.time()
    health = {"ts": format_ts(int(now * 1000)), "mode": "online", "rev": 1}
    waiting = gate_row(GateView("g1", {"state": "online", "epoch": 7, "synced": False}, health), now)
    assert any("admissions snapshot" in a for a in waiting["alarms"])
    synced = gate_row(GateView("g1", {"state": "online", "epoch": 7, "synced": True}, health), now)
    assert not any("admissions snapshot" in a for a in synced["alarms"])


def _chain(tmp_path, name, epoch, count):
    """A gate state's events: epoch 0 is a first state, else a replaced gate's chain (`gated replace`),
    made in turn (the report orders a gate's chains by time)."""
    start = NOW_MS + 1000 * len(list(tmp_path.glob("*.db")))
    with GateStore(tmp_path / name, site=SITE, gate="g1") as store:
        if epoch:
            store.start_epoch(epoch, start)
        for i in range(count):
            store.record_event({"kind": "state", "state": "online", "rev": 0}, start + i)
        return _outbox(store)


def _figures(ledger_db):
    from gated.central.ledger_metrics import LedgerCollector

    collector = LedgerCollector(ledger_db, SITE, slow_every=3600)
    assert collector.refresh()
    return collector.snapshot().gates["g1"]


def test_floors_and_confirmations_are_per_chain_and_nothing_below_a_new_base_is_declared_lost(tmp_path, ledger_db):
    base = 7 << 40
    old, new = _chain(tmp_path, "old.db", 0, 3), _chain(tmp_path, "new.db", 7, 4)
    with Ledger(ledger_db, site=SITE) as ledger:
        ledger.ingest(old)
        assert ledger.declare_floors({"g1": 4}) == {"g1": 3}  # the old gate held nothing unconfirmed
        # the new gate's status comes before any of its events: its floor moves the gate to the new chain
        assert ledger.declare_floors({"g1": base + 1}) == {"g1": base}
        report = ledger.report()["gates"]["g1"]
        assert report["declared_lost"] == 0 and report["missing"] == 0 and report["declared_losses"] == []
        # the new chain with a hole: a gap of the chain, not 2^40 lost, and a confirmation of the chain
        ledger.ingest([new[0], new[1], new[3]])
        assert ledger.confirmations(["g1"]) == {"g1": (base + 2, [(base + 4, base + 4)])}
        report = ledger.report()
        g1 = report["gates"]["g1"]
        assert g1["gaps"] == [[base + 3, base + 3]] and g1["missing"] == 1 and g1["declared_lost"] == 0
        figures = _figures(ledger_db)
        assert figures.missing == 1 and figures.declared_lost == 0
        # the gate no longer holds base + 3 (its floor rose past it): declared lost, in this chain only
        assert ledger.declare_floors({"g1": base + 4}) == {"g1": base + 4}
        g1 = ledger.report()["gates"]["g1"]
        assert g1["declared_losses"] == [[base + 3, base + 3]] and g1["declared_lost"] == 1 and g1["missing"] == 0
        figures = _figures(ledger_db)
        assert figures.missing == 0 and figures.declared_lost == 1
        # a second replacement with a lower epoch: its floor wins (the gate's current state), and the
        # confirmation says nothing of the epoch-7 chain (whose seqs are all above it)
        assert ledger.declare_floors({"g1": (3 << 40) + 1}) == {"g1": 3 << 40}
        ledger.declare_floors({"g2": 1})  # another gate's status: the epoch-7 chain's start is not taken again
        assert ledger.confirmations(["g1"]) == {"g1": (3 << 40, [])}
        third = _chain(tmp_path, "third.db", 3, 2)
        assert ledger.ingest(third).committed == {"g1": (3 << 40) + 2}
        report = ledger.report()
        # the gate's floor is the current chain's, and nothing below the new base is declared lost; the
        # epoch-7 chain keeps its own floor (docs/protocol.md "Replacing a gate"): its hole stays declared lost
        g1 = report["gates"]["g1"]
        assert g1["floor"] == (3 << 40) + 1 and g1["declared_losses"] == [[base + 3, base + 3]]
        assert g1["declared_lost"] == 1 and g1["missing"] == 0 and g1["gaps"] == []
        assert [c["epoch"] for c in g1["chains"]] == [0, 7, 3]
        assert _figures(ledger_db).missing == 0 and _figures(ledger_db).declared_lost == 1


def test_a_new_chain_started_in_a_batch_moves_the_gate_s_progress_and_floor_to_it(tmp_path, ledger_db):
    base = 11 << 40
    with Ledger(ledger_db, site=SITE) as ledger:
        ledger.ingest(_chain(tmp_path, "old.db", 0, 2))
        ledger.declare_floors({"g1": 3})
        assert ledger.ingest(_chain(tmp_path, "new.db", 11, 2)).committed == {"g1": base + 2}
        report = ledger.report()["gates"]["g1"]
        assert report["declared_lost"] == 0 and report["missing"] == 0 and report["floor"] == base + 1


def test_a_floor_below_the_ledger_s_prefix_moves_nothing_back(tmp_path, ledger_db):
    """A floor of the same chain below `contiguous` leaves it where it is (the chain of `floor - 1`
    is that expression's, not `floor`'s: an SQL precedence slip once moved every gate back to it)."""
    with GateStore(tmp_path / "g.db", site=SITE, gate="g1") as store:
        made = [store.record_event({"kind": "state", "state": "online", "rev": 0}, NOW_MS + i) for i in range(3)]
        ring = _device_ring(tmp_path, store)
    with Ledger(ledger_db, site=SITE) as ledger:  # before the ledger had the gate's key: stored unchecked
        assert ledger.ingest([made[0], made[2]]).committed == {"g1": 1}
    with Ledger(ledger_db, site=SITE, keyring=ring) as ledger:
        assert ledger.declare_floors({"g1": 1}) == {"g1": 1}
        assert ledger.confirmations(["g1"]) == {"g1": (1, [])}  # 3 unchecked: not held


def test_a_replaced_gate_s_earlier_declared_losses_stay_declared_lost_in_its_old_chain(tmp_path, ledger_db, capsys):
    """The old chain: events 1..5 stored, 6..8 never, the gate's floor 9 believed (it no longer holds
    them), 9..10 stored. The gate is replaced: its new chain has a floor of its own (base + 2 declared
    lost below it, base + 4 still missing). The old chain keeps its floor: 6..8 stay declared lost, and
    nothing of it is missing, in the report, `gated reconcile` and the metrics (kept across rounds)."""
    from gated.central.ledger_metrics import LedgerCollector
    from gated.central.ledger_report import format_report
    from gated.cli import main

    base = 5 << 40
    old = _chain(tmp_path, "old.db", 0, 10)
    collector = LedgerCollector(ledger_db, SITE, slow_every=3600)
    with Ledger(ledger_db, site=SITE) as ledger:
        ledger.ingest(old[:5] + old[8:])
        assert ledger.declare_floors({"g1": 9}) == {"g1": 10}
        g1 = ledger.report()["gates"]["g1"]
        assert g1["declared_losses"] == [[6, 8]] and g1["missing"] == 0 and g1["floor"] == 9
        assert collector.refresh()
        figures = collector.snapshot().gates["g1"]
        assert figures.declared_lost == 3 and figures.missing == 0
        new = _chain(tmp_path, "new.db", 5, 5)
        ledger.ingest([new[0], new[2], new[4]])
        assert ledger.declare_floors({"g1": base + 3}) == {"g1": base + 3}
        assert ledger.confirmations(["g1"]) == {"g1": (base + 3, [(base + 5, base + 5)])}  # the new chain's
        report = ledger.report()
    g1 = report["gates"]["g1"]
    assert g1["declared_losses"] == [[6, 8], [base + 2, base + 2]] and g1["declared_lost"] == 4
    assert g1["gaps"] == [[base + 4, base + 4]] and g1["missing"] == 1 and g1["floor"] == base + 3
    assert report["totals"]["declared_lost"] == 4 and report["totals"]["missing"] == 1
    assert [c["epoch"] for c in g1["chains"]] == [0, 5]
    assert "declared lost (below the floor of their chain, no longer held by the gate): 6-8, " in format_report(report)
    assert main(["reconcile", "--db", ledger_db, "--json"]) == 1  # declared lost: not clean
    assert json.loads(capsys.readouterr().out)["gates"]["g1"]["declared_losses"] == [[6, 8], [base + 2, base + 2]]
    assert collector.refresh()  # a round after the replacement (SQLite: only what was stored since)
    figures = collector.snapshot().gates["g1"]
    assert figures.declared_lost == 4 and figures.missing == 1
    assert _figures(ledger_db).declared_lost == 4 and _figures(ledger_db).missing == 1  # and read afresh


def test_a_ledger_made_before_chain_floors_keeps_its_floor_as_its_chain_s(tmp_path, ledger_db):
    """A ledger database of the schema before chain_floors (migration 7), with a floor that declared
    6..8 lost: migrated, nothing stored changes, and the floor stays its chain's once the gate is replaced."""
    from gated.central.ledgerdb import SCHEMA_VERSION, SqliteDb, open_db

    old = _chain(tmp_path, "old.db", 0, 10)
    with Ledger(ledger_db, site=SITE) as ledger:
        ledger.ingest(old[:5] + old[8:])
        ledger.declare_floors({"g1": 9})
        before = ledger.report()
        progress = ledger.query("SELECT gate, contiguous, floor FROM gate_progress")
    db = open_db(ledger_db)  # back to the schema of before
    db.execute("DROP TABLE chain_floors")
    if isinstance(db, SqliteDb):
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    else:
        db.execute(f"UPDATE gated_schema SET version = {SCHEMA_VERSION - 1}")
    db.close()
    with Ledger(ledger_db, site=SITE) as ledger:
        assert ledger.db.schema_version() == SCHEMA_VERSION
        assert ledger.query("SELECT gate, epoch, floor FROM chain_floors") == [("g1", 0, 9)]
        assert ledger.query("SELECT gate, contiguous, floor FROM gate_progress") == progress
        assert ledger.report() == before
        ledger.ingest(_chain(tmp_path, "new.db", 5, 2))  # the gate replaced: its new chain starts
        g1 = ledger.report()["gates"]["g1"]
    assert g1["declared_losses"] == [[6, 8]] and g1["declared_lost"] == 3
    assert g1["gaps"] == [] and g1["missing"] == 0 and g1["floor"] == (5 << 40) + 1


def test_a_late_first_event_of_a_chain_the_ledger_has_followed_moves_nothing_back(tmp_path, ledger_db):
    """The epoch-7 chain: base + 2..5 and + 9..10 stored, the gate's floor base + 9 believed (base + 1
    and + 6..8 declared lost); then the gate is replaced again (epoch 3). The epoch-7 chain's first
    event, queued at a broker, arrives last: it is stored (no longer lost), and the gate stays on its
    current chain, whose confirmation names it; the epoch-7 chain keeps its floor and its losses."""
    base, current = 7 << 40, 3 << 40
    old = _chain(tmp_path, "old.db", 7, 10)
    with Ledger(ledger_db, site=SITE) as ledger:
        ledger.ingest(old[1:5] + old[8:])
        assert ledger.declare_floors({"g1": base + 9}) == {"g1": base + 10}
        assert ledger.ingest(_chain(tmp_path, "new.db", 3, 2)).committed == {"g1": current + 2}
        assert ledger.ingest(old[:1]).committed == {"g1": current + 2}
        assert ledger.confirmations(["g1"]) == {"g1": (current + 2, [])}
        g1 = ledger.report()["gates"]["g1"]
    assert g1["floor"] == current + 1 and g1["declared_losses"] == [[base + 6, base + 8]]
    assert g1["declared_lost"] == 3 and g1["missing"] == 0 and g1["gaps"] == []
    assert [c["epoch"] for c in g1["chains"]] == [7, 3]


def test_a_new_chain_whose_first_event_comes_last_still_becomes_the_gate_s_current_one(tmp_path, ledger_db):
    base = 11 << 40
    with Ledger(ledger_db, site=SITE) as ledger:
        ledger.ingest(_chain(tmp_path, "old.db", 0, 2))
        new = _chain(tmp_path, "new.db", 11, 3)
        assert ledger.ingest(new[1:]).committed == {"g1": 2}  # no start yet: the gate's chain is the old one
        assert ledger.ingest(new[:1]).committed == {"g1": base + 3}
        assert ledger.confirmations(["g1"]) == {"g1": (base + 3, [])}
        g1 = ledger.report()["gates"]["g1"]
    assert g1["floor"] == base + 1 and g1["declared_lost"] == 0 and g1["missing"] == 0 and g1["gaps"] == []


def _pretix_ring(tmp_path):
    """A keyring with a pretix issuer key of EVENT and a revocation key (that signs check-in lists)."""
    issuer, revocation = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    ring = tmp_path / "pretix-ring"
    for name, key, role in (("pretix", issuer, "issuer"), ("rev", revocation, "revocation")):
        (tmp_path / f"{name}.pem").write_bytes(keys.public_pem(key.public_key()))
        events_ = (EVENT,) if role == "issuer" else ()
        keys.trust_key_file(ring, tmp_path / f"{name}.pem", role, events=events_)
    return issuer, revocation, keys.load_keyring(ring)


def _checkin_list(revocation, **settings) -> bytes:
    return checkinlist.encode_list(
        revocation,
        site=SITE,
        version=1,
        iat=int(time.time()),
        event=EVENT,
        settings={
            "id": 3,
            "name": "Gates",
            "include_pending": False,
            "allow_multiple_entries": False,
            "allow_entry_after_exit": True,
            "all_products": True,
            "limit_products": [],
            "subevent": None,
            "rules": "{}",
            "exit_all_at": None,
            **settings,
        },
        times={"tz": "Europe/Berlin", "date_from": 1_780_000_000, "date_to": None, "date_admission": None},
        gates={},
    )


@pytest.mark.parametrize("policy", ["deny_used_check", "admit"])
def test_a_replaced_gate_holding_the_check_in_list_does_not_let_a_used_pretix_ticket_in_unchecked(tmp_path, policy):
    """A pretix ticket used at the dead card, shown at its replacement holding the event's check-in
    list before the snapshot came: as without a list, unsynced (or admitted and flagged)."""
    issuer, revocation, ring = _pretix_ring(tmp_path)
    context = GateContext(site=SITE, events=frozenset({EVENT}), until_synced=policy)
    used = encode_secret(Fields(seed="used-at-the-dead-card", item=1), issuer)
    with GateStore(tmp_path / "new.db", site=SITE, gate="g1") as new:
        new.start_epoch(9, NOW_MS)
        assert checkinlists.accept(new, _checkin_list(revocation), ring, site=SITE).status == "applied"
        decision = validate(used, ring, context, new, NOW_MS / 1000)
        event = new.record_scan(scan_fields(decision, context, 0), NOW_MS)
        if policy == "deny_used_check":
            assert decision.reason is Reason.UNSYNCED and event["reason"] == "unsynced"
        else:
            assert decision.admit and decision.unsynced and event["unsynced"] is True


def test_a_replaced_gate_judges_a_multi_entry_check_in_list_by_whether_its_rules_count_entries(tmp_path):
    """Multiple entries and no rules on entries: nothing to check, admitted. Rules that read the
    ticket's movements (here: once a day) cannot be judged without the site's admissions: unsynced."""
    issuer, revocation, ring = _pretix_ring(tmp_path)
    context = GateContext(site=SITE, events=frozenset({EVENT}))
    ticket = encode_secret(Fields(seed="day-pass", item=1), issuer)
    once_a_day = json.dumps({"<": [{"var": "entries_today"}, 1]})
    for rules, reason in (("{}", Reason.OK), (once_a_day, Reason.UNSYNCED)):
        with GateStore(tmp_path / f"new-{reason.value}.db", site=SITE, gate="g1") as new:
            new.start_epoch(9, NOW_MS)
            clist = _checkin_list(revocation, allow_multiple_entries=True, rules=rules)
            assert checkinlists.accept(new, clist, ring, site=SITE).status == "applied"
            decision = validate(ticket, ring, context, new, NOW_MS / 1000)
            assert decision.reason is reason and not decision.unsynced


def test_a_snapshot_taken_before_a_rollback_does_not_bring_the_admission_back(tmp_path, authority):
    """The ledger's snapshot holds a peer's admission and one of the replaced gate's own, both still
    waiting for their passage when it was taken; then nobody passed (timeouts). Applied after the
    rollbacks, the snapshot must not make either ticket `already_used`: their holders never got in.
    A ticket the peer let in stays used."""
    context = GateContext(site=SITE, events=frozenset({EVENT}))
    ledger_db = str(tmp_path / "ledger.db")
    at_peer, at_own, used = authority.ticket(), authority.ticket(), authority.ticket()
    with (
        GateStore(tmp_path / "g2.db", site=SITE, gate="g2") as g2,
        GateStore(tmp_path / "new.db", site=SITE, gate="g1") as g1,
    ):
        g1.start_epoch(9, NOW_MS)
        _admit(g2, authority, context, used, NOW_MS + 1)
        decision = validate(at_peer, authority.keyring, context, g2, NOW_MS / 1000)
        peer_scan = g2.record_scan(scan_fields(decision, context, 0), NOW_MS + 2, admit_cti=decision.cti)
        admitting = dataclasses.replace(context, until_synced="admit")
        decision = validate(at_own, authority.keyring, admitting, g1, NOW_MS / 1000)
        assert decision.admit
        own_scan = g1.record_scan(scan_fields(decision, admitting, 0), NOW_MS + 3, admit_cti=decision.cti)
        with Ledger(ledger_db, site=SITE) as ledger:
            ledger.ingest(_outbox(g2) + _outbox(g1))
        found, parts = _snapshot_from(ledger_db, authority)
        assert {(a.gate, a.seq) for a in found} >= {("g2", peer_scan["seq"]), ("g1", own_scan["seq"])}
        # the timeouts, then the snapshot
        g1.record_peer_event(g2.record_passage(peer_scan["id"], False, NOW_MS + 10_000))
        g1.record_passage(own_scan["id"], False, NOW_MS + 10_001)
        Recovery(g1, authority.keyring, site=SITE, events=[EVENT]).on_message("t", parts[0])
        assert g1.synced
        now = NOW_MS / 1000 + 20
        assert validate(used, authority.keyring, context, g1, now).reason is Reason.ALREADY_USED
        assert validate(at_peer, authority.keyring, context, g1, now).reason is Reason.OK
        assert validate(at_own, authority.keyring, context, g1, now).reason is Reason.OK


def test_only_a_replaced_gate_s_readable_status_asks_for_the_snapshot_once_a_minute(tmp_path, authority):
    auto = admissions.AutoSnapshot(Ledger(tmp_path / "ledger.db", site=SITE), authority.revocation, SITE)

    def asks(status, now=0.0) -> bool:
        return auto.wanted("g1", status if isinstance(status, bytes) else json.dumps(status).encode(), now)

    unsynced = {"state": "online", "synced": False}
    for epoch in (None, "9", 9.0, True, 0, -1, events.MAX_EPOCH + 1, 1 << 40):  # a fresh key each: no limit
        assert not asks({**unsynced, "epoch": epoch}), epoch
    assert not asks(b"[" * 200_000) and not asks(b"{" + b" " * 70_000 + b"}")
    assert asks({**unsynced, "epoch": 9}) and not asks({**unsynced, "epoch": 9}, 59.0)
    assert asks({**unsynced, "epoch": 9}, 61.0)
    # a new epoch (or gate name) each time: at most one publish per GAP_S for the whole site
    assert [asks({**unsynced, "epoch": e}, 62.0 + e / 10) for e in range(1, 150)].count(True) == 1
    assert asks({**unsynced, "epoch": events.MAX_EPOCH}, 71.0 + admissions.AutoSnapshot.GAP_S)
