"""`gated ledger copy`: SQLite -> PostgreSQL -> SQLite keeps every row (events, problems, quarantine,
progress, chain floors, movements, tickets, capacities), a second copy adds nothing, `gated
reconcile` reads the same on all three, and two sites are never mixed."""

from __future__ import annotations

import json
import os

import pytest

from gated.central.ledger import Ledger
from gated.central.ledgercopy import PROGRESS, TABLES, columns_of
from gated.central.ledgerdb import open_db
from gated.cli import main
from gated.gate.store import GateStore
from tests.conftest import SITE
from tests.support.uplink import device_keyring

pytestmark = pytest.mark.timeout(300)


def _outbox(store) -> list[str]:
    return [event for _, event in store.outbox(0, 100000)]


def _scan(store, cti, admit, reason="ok", ts=1_700_000_000_000):
    body = {
        "ticket": cti.hex() if cti else None,
        "event": "FINAL-2026",
        "type": "general",
        "zone": "north",
        "decision": "admit" if admit else "deny",
        "reason": reason,
        "rev": 0,
        "latency_us": 0,
    }
    return store.record_scan(body, ts, admit_cti=cti if admit else None, confirmed=True)


def _rows(target) -> dict[str, list]:
    db = open_db(target)
    try:
        out = {}
        for table in (*TABLES, *PROGRESS):
            columns = columns_of(db, table)
            if columns is not None:
                out[table] = sorted(tuple(r) for r in db.execute(f"SELECT {', '.join(columns)} FROM {table}"))
        return out
    finally:
        db.close()


def _reconcile(target, capsys) -> dict:
    main(["reconcile", "--db", target, "--json"])
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def first_ledger(tmp_path):
    """A SQLite ledger with a bit of everything: admissions, denials, a gap, a quarantined forgery,
    tickets and a capacity."""
    path = str(tmp_path / "first.db")
    with (
        GateStore(tmp_path / "g1.db", site=SITE, gate="g1") as g1,
        GateStore(tmp_path / "g2.db", site=SITE, gate="g2") as g2,
    ):
        for _ in range(4):
            _scan(g1, os.urandom(16), True)
            _scan(g2, None, False, "static_copy")
        ring = device_keyring(tmp_path / "ring", g1, g2)
        rows = _outbox(g1)
        with Ledger(path, keyring=ring, site=SITE) as ledger:
            ledger.ingest(rows[:1] + rows[2:] + _outbox(g2))  # g1:2 never arrives: a gap
            ledger.ingest([json.dumps({"not": "an event"})])  # quarantined
            ledger.declare_floors({"g2": 5})  # g2's floor: its chain's too
            ledger.set_capacity("north", 500)
    (tmp_path / "tickets.csv").write_text("ticket_id,entries\n" + os.urandom(16).hex() + ",2\n")
    with Ledger(path) as ledger:
        ledger.load_tickets(str(tmp_path / "tickets.csv"))
    return path


def test_sqlite_to_postgres_to_sqlite_keeps_every_row_and_reads_the_same(tmp_path, postgres, first_ledger, capsys):
    url, back = postgres.database(), str(tmp_path / "back.db")
    before = _rows(first_ledger)
    assert all(
        before[t]
        for t in ("events", "problems", "quarantine", "gate_progress", "chain_floors", "tickets", "capacities")
    )
    assert main(["ledger", "copy", "--from", first_ledger, "--to", url]) == 0
    assert "events 7 new" in capsys.readouterr().out
    assert main(["ledger", "copy", "--from", url, "--to", back]) == 0
    capsys.readouterr()
    assert _rows(url) == before and _rows(back) == before

    assert main(["ledger", "copy", "--from", first_ledger, "--to", url]) == 0  # again: nothing new
    assert "events 0 new (7 there already)" in capsys.readouterr().out
    assert _rows(url) == before

    reports = [_reconcile(target, capsys) for target in (first_ledger, url, back)]
    assert reports[0] == reports[1] == reports[2]
    assert reports[0]["gates"]["g1"]["gaps"] == [[2, 2]]


def test_two_sites_are_never_mixed(tmp_path, first_ledger, capsys):
    other = str(tmp_path / "other.db")
    with GateStore(tmp_path / "x.db", site="museum", gate="g1") as g:
        _scan(g, None, False, "malformed")
        with Ledger(other, site="museum") as ledger:
            ledger.ingest(_outbox(g))
    before = _rows(other)
    assert main(["ledger", "copy", "--from", first_ledger, "--to", other]) == 2
    assert "one ledger database per site" in capsys.readouterr().err
    assert _rows(other) == before  # nothing written


def test_a_conflicting_event_stops_the_copy_before_anything_is_written(tmp_path, first_ledger, capsys):
    target = str(tmp_path / "target.db")
    assert main(["ledger", "copy", "--from", first_ledger, "--to", target]) == 0
    db = open_db(target)
    db.execute("UPDATE events SET hash = 'x' WHERE id = 'g1:1'")
    db.execute("DELETE FROM tickets")
    db.close()
    before = _rows(target)
    assert main(["ledger", "copy", "--from", first_ledger, "--to", target]) == 2
    assert "conflict: event g1:1" in capsys.readouterr().err
    assert _rows(target) == before


@pytest.mark.parametrize(
    "column, value",
    [("ticket", "SAME AS g1:3"), ("decision", "deny"), ("seq", 9), ("ts", "2020-01-01T00:00:00.000Z")],
)
def test_an_edited_column_is_found_by_the_audit_and_refused_by_the_copy(tmp_path, first_ledger, capsys, column, value):
    """The reports read the events' columns (ticket, decision...), the signature covers the body: a
    row edited beside its body (`UPDATE events SET ticket = ...`) is bad in the audit, and a copy
    refuses it rather than carry what no gate said."""
    import sqlite3

    with sqlite3.connect(first_ledger) as db:
        if value == "SAME AS g1:3":  # the same ticket admitted twice, as far as the columns say
            (value,) = db.execute("SELECT ticket FROM events WHERE id = 'g1:3'").fetchone()
        db.execute(f"UPDATE events SET {column} = ? WHERE id = 'g1:4'", (value,))
    assert main(["reconcile", "--db", first_ledger, "--verify-signatures", str(tmp_path / "ring")]) == 1
    out = capsys.readouterr().out
    assert f"g1:4 ({column} not as in its body)" in out, out
    main(["reconcile", "--db", first_ledger, "--verify-signatures", str(tmp_path / "ring"), "--json"])
    audit = json.loads(capsys.readouterr().out)["signature_audit"]
    assert [b["id"] for b in audit["bad"]] == ["g1:4"] and audit["checked"] == 6, audit

    target = str(tmp_path / "target.db")
    assert main(["ledger", "copy", "--from", first_ledger, "--to", target]) == 2
    err = capsys.readouterr().err
    assert f"event g1:4 of {first_ledger}: {column} not as in its body" in err and "nothing copied" in err, err
    assert _rows(target)["events"] == []


def _chain(path, epoch, count, ts) -> list[str]:
    """A replaced gate g1's chain (`gated replace`: epoch `epoch`), its events made at ts, ts + 1..."""
    with GateStore(path, site=SITE, gate="g1") as store:
        store.start_epoch(epoch, ts)
        for i in range(count):
            store.record_event({"kind": "state", "state": "online", "rev": 0}, ts + i)
        return _outbox(store)


def test_a_copy_never_moves_a_gate_back_to_an_older_chain(tmp_path, ledger_db):
    """The live ledger followed g1's epoch-7 chain, then its epoch-3 one (a later replacement: epochs
    are random); an archive holds only the epoch-7 chain. Copied either way, the gate's progress is
    the epoch-3 chain's (it started later), and its confirmation names that chain."""
    seven, three = 7 << 40, 3 << 40
    old = _chain(tmp_path / "old.db", 7, 4, 1_700_000_000_000)
    new = _chain(tmp_path / "new.db", 3, 2, 1_700_000_100_000)
    archive, other = str(tmp_path / "archive.db"), str(tmp_path / "other.db")
    for path in (archive, other):
        with Ledger(path, site=SITE) as ledger:
            ledger.ingest(old)
            ledger.declare_floors({"g1": seven + 2})  # the epoch-7 chain's floor, a higher one in the archive
    with Ledger(ledger_db, site=SITE) as ledger:
        ledger.ingest(old)
        assert ledger.ingest(new).committed == {"g1": three + 2}
    assert main(["ledger", "copy", "--from", archive, "--to", ledger_db]) == 0
    with Ledger(ledger_db, site=SITE) as ledger:
        assert ledger.query("SELECT contiguous, floor FROM gate_progress") == [(three + 2, three + 1)]
        assert ledger.confirmations(["g1"]) == {"g1": (three + 2, [])}
        assert ledger.query("SELECT epoch, floor FROM chain_floors ORDER BY epoch") == [(3, three + 1), (7, seven + 2)]
    assert main(["ledger", "copy", "--from", ledger_db, "--to", other]) == 0  # the live one into an archive
    with Ledger(other, site=SITE) as ledger:
        assert ledger.query("SELECT contiguous, floor FROM gate_progress") == [(three + 2, three + 1)]


def test_a_copy_keeps_the_target_s_chain_when_which_is_later_cannot_be_told(tmp_path, ledger_db):
    """The live ledger knows g1's epoch-3 chain only from its floor (its status came before its
    events): which chain is later cannot be told, so it keeps its own. A ledger whose row for g1
    says nothing yet (it only heard the gate's status, no floor it believed) takes the archive's."""
    seven, three = 7 << 40, 3 << 40
    archive, heard = str(tmp_path / "archive.db"), str(tmp_path / "heard.db")
    with Ledger(archive, site=SITE) as ledger:
        ledger.ingest(_chain(tmp_path / "old.db", 7, 4, 1_700_000_000_000))
    with Ledger(ledger_db, site=SITE) as ledger:
        assert ledger.declare_floors({"g1": three + 1}) == {"g1": three}
    with Ledger(heard, site=SITE) as ledger:
        assert ledger.declare_floors({}, heard=["g1"]) == {"g1": 0}
    for target in (ledger_db, heard):
        assert main(["ledger", "copy", "--from", archive, "--to", target]) == 0
    with Ledger(ledger_db, site=SITE) as ledger:
        assert ledger.query("SELECT contiguous, floor FROM gate_progress") == [(three, three + 1)]
        assert ledger.confirmations(["g1"]) == {"g1": (three, [])}
    with Ledger(heard, site=SITE) as ledger:
        assert ledger.query("SELECT contiguous, floor FROM gate_progress") == [(seven + 4, seven + 1)]
