"""The ledger's figures are kept incrementally (gated/central/ledger_metrics.py): after each round
they agree with the ledger's report, a gap filled in later included."""

from __future__ import annotations

import sqlite3

from gated.central import ledger_report
from gated.central.ledger import Ledger
from gated.central.ledger_metrics import LedgerCollector


def store(path, rows):
    """(gate, seq, decision) rows as stored events (direct SQL: only the figures read them)."""
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO events (id, site, gate, seq, kind, ts, ticket, decision, reason, ref, result, hash, prev, "
            "signed, received_ms, body) VALUES (?, 'S', ?, ?, 'scan', '2026-12-01T20:00:00.000Z', ?, ?, 'ok', NULL, "
            "NULL, 'h', 'p', 1, 1796155200000, '{}')",
            [(f"{g}:{q}", g, q, f"{g}-{q}".ljust(32, "0"), d) for g, q, d in rows])
        db.executemany("INSERT INTO movements (id, gate, seq, ticket, zone, dir, reentry, free, ts) "
                       "VALUES (?, ?, ?, ?, '', 'in', 0, 0, '2026-12-01T20:00:00.000Z')",
                       [(f"{g}:{q}", g, q, f"{g}-{q}".ljust(32, "0")) for g, q, d in rows if d == "admit"])


def problem(path, kind, gate, seq):
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO problems (kind, gate, seq, event_id, detail, received_ms) VALUES (?, ?, ?, ?, 'x', 0)",
                   (kind, gate, seq, f"{gate}:{seq}"))


def agree(collector, path):
    assert collector.refresh()
    shown = collector.snapshot()
    with Ledger(str(path)) as ledger:
        report = ledger_report.report(ledger.db)
    assert sorted(shown.gates) == sorted(report["gates"])
    for gate, figures in report["gates"].items():
        mine = shown.gates[gate]
        assert (mine.events, mine.admits, mine.missing, mine.chain_breaks, mine.bad_signatures) == (
            figures["events"], figures["admits"], figures["missing"], figures["chain_breaks"],
            figures["bad_signatures"]), gate
    return shown


def test_the_figures_follow_the_ledger_round_by_round(tmp_path):
    path = tmp_path / "ledger.db"
    Ledger(str(path)).close()
    collector = LedgerCollector(path, "S", slow_every=0)
    store(path, [("g1", q, "admit" if q % 2 else "deny") for q in (1, 2, 3, 4, 6, 7)] + [("g2", 1, "admit")])
    shown = agree(collector, path)
    assert shown.gates["g1"].missing == 1 and shown.gates["g1"].admits == 3
    store(path, [("g1", 5, "admit"), ("g2", 2, "admit")])  # the gap filled in, a round later
    problem(path, "chain_break", "g2", 2)
    problem(path, "bad_signature", "g1", 3)
    shown = agree(collector, path)
    assert shown.gates["g1"].missing == 0 and shown.gates["g1"].events == 7 and shown.gates["g2"].chain_breaks == 1
    store(path, [("g3", 1, "admit")])
    with sqlite3.connect(path) as db:  # the same ticket admitted again at another gate: over-admitted
        db.execute("UPDATE events SET ticket = ? WHERE id = 'g3:1'", ("g2-1".ljust(32, "0"),))
        db.execute("UPDATE movements SET ticket = ? WHERE id = 'g3:1'", ("g2-1".ljust(32, "0"),))
    shown = agree(collector, path)
    assert shown.over == {"g2": 1, "g3": 1}
