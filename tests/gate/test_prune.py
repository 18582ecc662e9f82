"""Bounded state (gated/gate/prune.py): pruning drops only what decides nothing any more. A recorded
stretch of days is played against two stores, one pruned often and hard, one never: every
decision is the same (a used ticket stays `already_used` while it is valid), and the pruned store
holds a fraction of the rows."""

from __future__ import annotations

import json
import os
import random
import sqlite3
from contextlib import closing

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated import keys
from gated.core.decide import GateContext
from gated.core.pretix_secret import NO_END, Fields, encode_secret
from gated.core.reasons import Reason
from gated.gate.prune import Pruner
from gated.gate.store import GateStore
from gated.gate.validate import record, scan_fields, validate
from tests.conftest import EVENT, SITE

T0 = 1_800_000_000  # the first day, unix seconds
DAY = 86_400


def _recorded_days(authority, days=4, per_day=120, seed=25):
    """(time, gate, text) scans over `days`: each day's tickets valid that day (some two days, some with
    two entries), shown at g1 or g2, a tenth of them shown again later (the copies and second entries
    that must stay `already_used`), some shown after they expired."""
    rng = random.Random(seed)
    scans = []
    for day in range(days):
        start = T0 + day * DAY
        for i in range(per_day):
            span = DAY * (2 if i % 7 == 0 else 1)
            text = authority.ticket(cti=rng.randbytes(16), nbf=start, exp=start + span, ent=2 if i % 11 == 0 else 1)
            at = start + rng.randrange(0, DAY // 2)
            scans.append((at, rng.choice(("g1", "g2")), text))
            if rng.random() < 0.15:  # shown again: later that day, the next day, or after it expired
                scans.append((at + rng.choice((600, DAY - 600, DAY + 3600, 3 * DAY)), rng.choice(("g1", "g2")), text))
    return sorted(scans)


def _play(tmp_path, authority, name, scans, pruner_kwargs=None):
    """Play the scans at g1 (g2's admissions reach g1 as peer events); g1's decisions, and g1's store."""
    context = GateContext(site=SITE, events=frozenset({EVENT}), skew_s=60)
    g1 = GateStore(tmp_path / name / "g1.db", site=SITE, gate="g1")
    g2 = GateStore(tmp_path / name / "g2.db", site=SITE, gate="g2")
    pruner = Pruner(g1, **pruner_kwargs, every_s=0, batch=7) if pruner_kwargs else None
    decisions = []
    for n, (at, gate, text) in enumerate(scans):
        store = g1 if gate == "g1" else g2
        decision = validate(text, authority.keyring, context, store, at)
        event = record(store, decision, scan_fields(decision, context, 0), at * 1000)
        if gate == "g2":
            g1.record_peer_event(event)
        decisions.append((gate, decision.cti, decision.reason))
        if pruner is not None and n % 5 == 0:
            pruner.run_to_end(at)
    g2.close()
    return decisions, g1


def test_pruning_keeps_every_decision_the_same(tmp_path, authority):
    scans = _recorded_days(authority)
    kept, plain = _play(tmp_path, authority, "plain", scans)
    pruned_decisions, pruned = _play(
        tmp_path, authority, "pruned", scans, {"expired_margin_s": 120.0, "peer_retention_s": 0.5 * DAY}
    )
    assert pruned_decisions == kept
    reasons = {r for _, _, r in kept}
    assert {Reason.OK, Reason.ALREADY_USED, Reason.EXPIRED} <= reasons  # the recording exercises what matters
    # the used tickets stayed used while valid, though the store was pruned all along
    assert sum(1 for *_, r in kept if r is Reason.ALREADY_USED) >= 5
    full, small = plain.state_counts(), pruned.state_counts()
    assert small["admissions"] + small["peer_admissions"] < (full["admissions"] + full["peer_admissions"]) / 2, (
        small,
        full,
    )
    plain.close()
    pruned.close()


def test_pruning_leaves_pending_admissions_and_movements_where_they_are_counted(tmp_path, authority):
    context = GateContext(site=SITE, events=frozenset({EVENT}))
    with GateStore(tmp_path / "g1.db", site=SITE, gate="g1") as store:
        for confirmed in (True, False):
            text = authority.ticket(cti=os.urandom(16), nbf=T0, exp=T0 + 3600)
            decision = validate(text, authority.keyring, context, store, T0 + 10)
            store.record_scan(
                scan_fields(decision, context, 0),
                (T0 + 10) * 1000,
                admit_cti=decision.cti,
                confirmed=confirmed,
                exp=decision.ticket.claims.exp,
            )
        later = T0 + 10 * DAY
        counting = Pruner(store, expired_margin_s=3600, peer_retention_s=DAY, every_s=0, movements=False)
        assert counting.run_to_end(later)["admissions"] == 0  # a capacity without day_starts: the count needs them
        Pruner(store, expired_margin_s=3600, peer_retention_s=DAY, every_s=0).run_to_end(later)
        assert store.state_counts()["admissions"] == 1  # the pending one: somebody may be in the turnstile
        assert [json.loads(e)["kind"] for _, e in store.outbox()] == ["scan", "scan"]  # events are not pruning's


def test_a_ticket_valid_without_end_does_not_stop_pruning(tmp_path, authority):
    """A ticket with no end (a pretix code's exp is 2^63-1) makes the longest validity a gate has
    seen endless: peers' rows then never go by age, and the batch must still run (the time it gave,
    before 1970 by 2^63 ms, was no SQLite integer: an OverflowError stopped `gated run`)."""
    context = GateContext(site=SITE, events=frozenset({EVENT}))
    with GateStore(tmp_path / "g1.db", site=SITE, gate="g1") as store:
        text = authority.ticket(cti=os.urandom(16), nbf=0, exp=2**63 - 1)
        decision = validate(text, authority.keyring, context, store, T0)
        assert decision.admit
        store.record_scan(
            scan_fields(decision, context, 0), T0 * 1000, admit_cti=decision.cti, confirmed=True, exp=2**63 - 1, nbf=0
        )
        assert store.max_validity_s == 0 and store.open_ended  # it says nothing of how long tickets live
        done = Pruner(store, expired_margin_s=3600, peer_retention_s=DAY, every_s=0).run_to_end(T0 + DAY)
        assert done["admissions"] == 0 and store.state_counts()["admissions"] == 1


def test_the_marks_of_peers_rollbacks_go_with_the_peers_rows(tmp_path, authority):
    """A peer's rolled-back admission leaves a mark (so a late copy stays rolled back); the mark goes
    by time like the peers' admissions, and a recent one stays."""
    context = GateContext(site=SITE, events=frozenset({EVENT}))
    with (
        GateStore(tmp_path / "g1.db", site=SITE, gate="g1") as g1,
        GateStore(tmp_path / "g2.db", site=SITE, gate="g2") as g2,
    ):
        for at in (T0, T0 + 9 * DAY):
            text = authority.ticket(cti=os.urandom(16), nbf=at, exp=at + 3600)
            decision = validate(text, authority.keyring, context, g2, at)
            scan = record(g2, decision, scan_fields(decision, context, 0), at * 1000, confirmed=False)
            g1.record_peer_event(scan)
            g1.record_peer_event(g2.record_passage(scan["id"], False, at * 1000 + 8000))
        assert g1.state_counts()["rolled_back"] == 2
        done = Pruner(g1, expired_margin_s=3600, peer_retention_s=DAY, every_s=0).run_to_end(T0 + 10 * DAY)
        assert done["rolled_back"] == 1 and g1.state_counts()["rolled_back"] == 1


def test_a_mark_is_kept_from_when_it_was_heard_though_the_peer_s_clock_says_1970(tmp_path, authority):
    """The peer's own time (its clock wrong, in 1970) would have the mark pruned at the next round,
    and a late copy of the admission taken in again: a false already_used at this gate."""
    context = GateContext(site=SITE, events=frozenset({EVENT}))
    with (
        GateStore(tmp_path / "g1.db", site=SITE, gate="g1") as g1,
        GateStore(tmp_path / "g2.db", site=SITE, gate="g2") as g2,
    ):
        text = authority.ticket(cti=os.urandom(16), nbf=0, exp=T0 + 3600)
        decision = validate(text, authority.keyring, context, g2, 100)  # the peer thinks it is 1970
        scan = record(g2, decision, scan_fields(decision, context, 0), 100_000, confirmed=False)
        g1.record_peer_event(scan, heard_ms=T0 * 1000)
        g1.record_peer_event(g2.record_passage(scan["id"], False, 108_000), heard_ms=T0 * 1000 + 8000)
        Pruner(g1, expired_margin_s=3600, peer_retention_s=DAY, every_s=0).run_to_end(T0 + 60)
        assert g1.state_counts()["rolled_back"] == 1  # kept: heard a minute ago
        assert not g1.record_peer_event(scan, heard_ms=T0 * 1000 + 60_000)  # the late copy stays out
        assert validate(text, authority.keyring, context, g1, T0 + 60).reason is Reason.OK


def _pretix_gate(tmp_path):
    """A pretix issuer key of EVENT in a keyring, and a gate context of EVENT."""
    issuer = Ed25519PrivateKey.generate()
    (tmp_path / "pretix.pem").write_bytes(keys.public_pem(issuer.public_key()))
    keys.trust_key_file(tmp_path / "ring", tmp_path / "pretix.pem", "issuer", events=(EVENT,))
    return issuer, keys.load_keyring(tmp_path / "ring"), GateContext(site=SITE, events=frozenset({EVENT}))


def _used_at_both(tmp_path, issuer, ring, context, g1, g2, at):
    """A pretix code without validUntil let in at g1, another at g2 (heard at g1): the codes."""
    codes = []
    for n, store in enumerate((g1, g2)):
        code = encode_secret(Fields(seed=f"no-end-{n}-{at}", item=1), issuer)
        decision = validate(code, ring, context, store, at)
        assert decision.admit and decision.ticket.claims.exp == NO_END
        event = record(store, decision, scan_fields(decision, context, 0), at * 1000)
        if store is g2:
            g1.record_peer_event(event)
        codes.append(code)
    return codes


def test_a_pretix_code_without_end_stays_used_and_its_admissions_go_with_its_event(tmp_path):
    """pretix codes without validUntil never expire: by default their admissions, own and peers',
    stay while the gate admits for their event (a year on, both codes are still `already_used`),
    and go once the event has been out of the gate's events for `dropped_event_days` (then
    `wrong_event` anyway); an event taken out and put back within that time keeps its codes used."""
    issuer, ring, context = _pretix_gate(tmp_path)
    with (
        GateStore(tmp_path / "g1.db", site=SITE, gate="g1") as g1,
        GateStore(tmp_path / "g2.db", site=SITE, gate="g2") as g2,
    ):
        codes = _used_at_both(tmp_path, issuer, ring, context, g1, g2, T0)
        assert g1.max_validity_s == 0 and g1.open_ended
        a_year_on = T0 + 365 * DAY
        kept = Pruner(g1, expired_margin_s=3600, peer_retention_s=DAY, every_s=0, events=frozenset({EVENT}))
        kept.run_to_end(a_year_on)
        assert [validate(c, ring, context, g1, a_year_on).reason for c in codes] == [Reason.ALREADY_USED] * 2

        def moved_on(events, when):
            pruner = Pruner(
                g1, expired_margin_s=3600, peer_retention_s=DAY, every_s=0, events=events, event_grace_s=7 * DAY
            )
            return pruner.run_to_end(when)

        # out for six days (another event at this gate), then back: nothing of it went
        assert moved_on(frozenset({"next"}), a_year_on)["admissions"] == 0
        assert moved_on(frozenset({"next"}), a_year_on + 6 * DAY)["admissions"] == 0
        moved_on(frozenset({EVENT}), a_year_on + 6 * DAY + 60)
        back = a_year_on + 6 * DAY + 120
        assert [validate(c, ring, context, g1, back).reason for c in codes] == [Reason.ALREADY_USED] * 2
        # out again: counted afresh from when it went out, then gone after seven days
        assert moved_on(frozenset({"next"}), back)["admissions"] == 0
        assert moved_on(frozenset({"next"}), back + 7 * DAY - 60)["admissions"] == 0
        done = moved_on(frozenset({"next"}), back + 7 * DAY)
        assert done["admissions"] == 1 and done["peer_admissions"] == 1
        counts = g1.state_counts()
        assert counts["admissions"] == 0 and counts["peer_admissions"] == 0


def test_open_ended_days_prunes_pretix_codes_without_end_by_age(tmp_path):
    """`[state] open_ended_days`: the operator says how long such a code can still be shown; its
    admissions stay used that long (plus the margin), then go; a peer's too."""
    issuer, ring, context = _pretix_gate(tmp_path)
    with (
        GateStore(tmp_path / "g1.db", site=SITE, gate="g1") as g1,
        GateStore(tmp_path / "g2.db", site=SITE, gate="g2") as g2,
    ):
        codes = _used_at_both(tmp_path, issuer, ring, context, g1, g2, T0)
        pruner = Pruner(
            g1, expired_margin_s=DAY, peer_retention_s=DAY, every_s=0, events=frozenset({EVENT}), open_ended_s=3 * DAY
        )
        pruner.run_to_end(T0 + 4 * DAY - 60)
        assert [validate(c, ring, context, g1, T0 + 4 * DAY - 60).reason for c in codes] == [Reason.ALREADY_USED] * 2
        done = pruner.run_to_end(T0 + 4 * DAY + 60)
        assert done["admissions"] == 1 and done["peer_admissions"] == 1


def test_open_ended_days_keeps_a_code_a_peer_let_in_lately_though_it_came_here_long_ago(tmp_path):
    """A code without end let in here a year ago and at a peer today (a season code, once a day):
    its old admission here is past open_ended_days, the peer's is not, so the code stays used here
    (pruning it whole took the peer's fresh row with it, and the code came in twice today)."""
    issuer, ring, context = _pretix_gate(tmp_path)
    with (
        GateStore(tmp_path / "g1.db", site=SITE, gate="g1") as g1,
        GateStore(tmp_path / "g2.db", site=SITE, gate="g2") as g2,
    ):
        code = encode_secret(Fields(seed="season", item=1), issuer)
        first = validate(code, ring, context, g1, T0)
        record(g1, first, scan_fields(first, context, 0), T0 * 1000)
        today = T0 + 365 * DAY
        again = validate(code, ring, context, g2, today - 600)
        assert again.admit  # g2 never heard of g1's admission: a multi-entry day at another gate
        g1.record_peer_event(record(g2, again, scan_fields(again, context, 0), (today - 600) * 1000))
        pruner = Pruner(
            g1, expired_margin_s=DAY, peer_retention_s=DAY, every_s=0, events=frozenset({EVENT}), open_ended_s=3 * DAY
        )
        pruner.run_to_end(today)
        assert validate(code, ring, context, g1, today).reason is Reason.ALREADY_USED
        assert g1.state_counts()["peer_admissions"] == 1


def _config(tmp_path, state=""):
    from gated.gate.config import load

    path = tmp_path / "gated.toml"
    path.write_text(
        f'[gate]\nsite = "{SITE}"\nid = "g1"\nevents = ["{EVENT}"]\nkeyring = "{tmp_path}"\n'
        f'state_dir = "{tmp_path}"\n[turnstile]\nboard = "generic-relay"\n[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n'
        f"[state]\n{state}"
    )
    return load(path)


def test_the_gate_prunes_by_its_events_and_open_ended_days_from_its_config(tmp_path):
    with GateStore(tmp_path / "g1.db", site=SITE, gate="g1") as store:
        pruner = Pruner.from_config(store, _config(tmp_path, "open_ended_days = 3\n"))
        assert pruner.events == frozenset({EVENT}) and pruner.open_ended_s == 3 * DAY
        assert Pruner.from_config(store, _config(tmp_path)).open_ended_s is None  # the default: by event only


def test_a_state_an_older_gated_left_with_an_endless_validity_is_read_as_open_ended(tmp_path):
    GateStore(tmp_path / "g1.db", site=SITE, gate="g1").close()
    with closing(sqlite3.connect(tmp_path / "g1.db")) as db, db:
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('max_validity_s', ?)", (2**63 - 1,))
    with GateStore(tmp_path / "g1.db", site=SITE, gate="g1") as store:
        assert store.max_validity_s == 0 and store.open_ended
