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
            [(f"{g}:{q}", g, q, f"{g}-{q}".ljust(32, "0"), d) for g, q, d in rows],
        )
        db.executemany(
            "INSERT INTO movements (id, gate, seq, ticket, zone, dir, reentry, free, ts) "
            "VALUES (?, ?, ?, ?, '', 'in', 0, 0, '2026-12-01T20:00:00.000Z')",
            [(f"{g}:{q}", g, q, f"{g}-{q}".ljust(32, "0")) for g, q, d in rows if d == "admit"],
        )


def problem(path, kind, gate, seq):
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO problems (kind, gate, seq, event_id, detail, received_ms) VALUES (?, ?, ?, ?, 'x', 0)",
            (kind, gate, seq, f"{gate}:{seq}"),
        )


def agree(collector, path):
    assert collector.refresh()
    shown = collector.snapshot()
    with Ledger(str(path)) as ledger:
        report = ledger_report.report(ledger.db)
    assert sorted(shown.gates) == sorted(report["gates"])
    for gate, figures in report["gates"].items():
        mine = shown.gates[gate]
        assert (mine.events, mine.admits, mine.missing, mine.declared_lost, mine.chain_breaks, mine.bad_signatures) == (
            figures["events"],
            figures["admits"],
            figures["missing"],
            figures["declared_lost"],
            figures["chain_breaks"],
            figures["bad_signatures"],
        ), gate
    return shown


def test_declared_losses_follow_the_gates_floors(ledger_db):
    """A gate's floor (issue #22): what the ledger lacks below it is declared lost, not missing; the
    figures follow a floor that moves and an event that arrives below it after all (SQLite's
    incremental rounds and PostgreSQL's recount alike)."""
    Ledger(str(ledger_db)).close()
    collector = LedgerCollector(ledger_db, "S", slow_every=0)
    store_in(ledger_db, [("g1", q, "admit") for q in (2, 5, 6, 9)] + [("g2", 1, "admit")])
    with Ledger(str(ledger_db)) as ledger:
        ledger.declare_floors({"g1": 5, "g3": 4})  # g3: nothing stored, everything below its floor lost
    shown = agree(collector, ledger_db)
    assert (shown.gates["g1"].declared_lost, shown.gates["g1"].missing, shown.gates["g3"].declared_lost) == (3, 2, 3)
    store_in(ledger_db, [("g1", 3, "admit")])  # late, below the floor
    with Ledger(str(ledger_db)) as ledger:
        ledger.declare_floors({"g1": 8})  # the gate moved on
    shown = agree(collector, ledger_db)
    assert (shown.gates["g1"].declared_lost, shown.gates["g1"].missing) == (3, 1)  # 1, 4, 7 lost; 8 missing


def test_the_figures_follow_the_ledger_round_by_round(tmp_path):
    path = tmp_path / "ledger.db"
    Ledger(str(path)).close()
    # every round counts over-admissions: no pause between counts, and no CPU share to keep (with
    # the default share the next count waited nine times the last one's duration, which on a
    # loaded machine outlasted the next round: `over` was still empty)
    collector = LedgerCollector(path, "S", slow_every=0, share=1.0)
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


def store_in(target, rows, *, same_ticket_as=None):
    """store() through the ledger's own connection: a SQLite file or a PostgreSQL database alike.
    `same_ticket_as`: every row admits that gate-seq's ticket (an over-admission)."""

    def ticket(g, q):
        return (same_ticket_as or f"{g}-{q}").ljust(32, "0")

    with Ledger(str(target)) as ledger:
        ledger.db.executemany(
            "INSERT INTO events (id, site, gate, seq, kind, ts, ticket, decision, reason, ref, result, hash, prev, "
            "signed, received_ms, body) VALUES (?, 'S', ?, ?, 'scan', '2026-12-01T20:00:00.000Z', ?, ?, 'ok', NULL, "
            "NULL, 'h', 'p', 1, 1796155200000, '{}')",
            [(f"{g}:{q}", g, q, ticket(g, q), d) for g, q, d in rows],
        )
        ledger.db.executemany(
            "INSERT INTO movements (id, gate, seq, ticket, zone, dir, reentry, free, ts) "
            "VALUES (?, ?, ?, ?, '', 'in', 0, 0, '2026-12-01T20:00:00.000Z')",
            [(f"{g}:{q}", g, q, ticket(g, q)) for g, q, d in rows if d == "admit"],
        )


def test_the_figures_survive_a_database_restart_and_still_agree_with_the_report(ledger_db):
    """Both backends agree with the report; a round that fails (PostgreSQL restarted under the
    figures: their connection is gone) keeps the last figures, and the next round's agree with the
    report again, the over-admissions included (they are recounted only every SLOW_EVERY)."""
    collector = LedgerCollector(ledger_db, "S", slow_every=3600)
    store_in(ledger_db, [("g1", q, "admit" if q % 2 else "deny") for q in (1, 2, 3, 4, 6)] + [("g2", 1, "admit")])
    store_in(ledger_db, [("g3", 1, "admit")], same_ticket_as="g2-1")
    shown = agree(collector, ledger_db)
    assert shown.over == {"g2": 1, "g3": 1} and shown.gates["g1"].missing == 1
    if ledger_db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(ledger_db, autocommit=True) as admin:  # what a restart does to a connection
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
    else:
        collector._ledger.db.conn.close()  # a SQLite connection that fails from now on (sqlite3.Error)
    store_in(ledger_db, [("g1", 5, "admit")])
    assert collector.refresh() is False  # the round failed: said, the last figures kept
    assert collector.snapshot() is shown
    shown = agree(collector, ledger_db)  # connected again: the figures read afresh
    assert shown.gates["g1"].missing == 0 and shown.gates["g1"].events == 6
    assert shown.over == {"g2": 1, "g3": 1}, "an over-admission forgotten after a database error"


def test_gates_arriving_during_a_round_on_postgresql_do_not_stop_the_figures(postgres):
    """PostgreSQL's round is several statements: a gate whose first event is stored between two of
    them must not end the figures (a KeyError killed the thread: no figures until a restart); after
    the arrivals the figures agree with the report."""
    import threading

    url = postgres.database()
    Ledger(url).close()
    collector = LedgerCollector(url, "S", slow_every=3600)
    done = threading.Event()

    def arrivals():
        try:
            for i in range(400):
                with psycopg_connect(url) as db:
                    db.execute(
                        "INSERT INTO events (id, site, gate, seq, kind, ts, ticket, decision, reason, ref, "
                        "result, hash, prev, signed, received_ms, body) VALUES (%s, 'S', %s, 2, 'scan', "
                        "'2026-12-01T20:00:00.000Z', NULL, 'deny', 'x', NULL, NULL, 'h', 'p', 1, 1, %s)",
                        (f"n{i:03d}:2", f"n{i:03d}", '{"kind": "scan", "decision": "deny"}'),
                    )
        finally:
            done.set()

    thread = threading.Thread(target=arrivals)
    thread.start()
    try:
        rounds = 0
        while not done.is_set():
            collector.refresh()
            rounds += 1
    finally:
        thread.join()
    shown = agree(collector, url)
    assert len(shown.gates) == 400 and rounds > 1


def psycopg_connect(url):
    import psycopg

    return psycopg.connect(url, autocommit=True)
