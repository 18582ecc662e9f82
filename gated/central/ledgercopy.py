"""`gated ledger copy --from DB --to DB`: carry a ledger whole between SQLite and PostgreSQL.

A venue that starts on a SQLite file and moves to PostgreSQL (or back, for an archive) keeps
everything its checks rest on, so `gated reconcile` reads the same on both:

    events          by id (`<gate>:<seq>`); an id the target holds with another hash is a conflict:
                    nothing is copied (two ledgers that disagree are not merged silently)
    problems        the checks' findings (gaps, chain breaks, conflicts...), by their content
    quarantine      messages that were not stored as events, by their content
    gate_progress   per gate the contiguous seq, the higher of the two
    movements, tickets, capacities   by their keys (the target's own values win)

Idempotent: a second copy adds nothing. One site per ledger (docs/central.md): a copy that would
put two sites' events in one database is refused before anything is written. The target's schema
is made or migrated as `gated ledger` would; the copy is one transaction on the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gated.central.ledgerdb import LedgerError, ledger_exists, open_db

BATCH = 5000
# table -> (columns to copy, key columns; None: the whole row is the key)
TABLES = {
    "events": (
        (
            "id",
            "site",
            "gate",
            "seq",
            "kind",
            "ts",
            "ticket",
            "decision",
            "reason",
            "ref",
            "result",
            "hash",
            "prev",
            "signed",
            "received_ms",
            "body",
        ),
        ("id",),
    ),
    "problems": (("kind", "gate", "seq", "event_id", "detail", "received_ms"), None),
    "quarantine": (("event_id", "body", "why", "received_ms"), None),
    "movements": (("id", "gate", "seq", "ticket", "zone", "dir", "reentry", "free", "ts"), ("id",)),
    "tickets": (("cti", "ent"), ("cti",)),
    "capacities": (("zone", "capacity"), ("zone",)),
}


@dataclass
class CopyResult:
    copied: dict[str, int] = field(default_factory=dict)
    present: dict[str, int] = field(default_factory=dict)  # rows the target already had

    def summary(self) -> str:
        return ", ".join(
            f"{table} {self.copied.get(table, 0)} new ({self.present.get(table, 0)} there already)"
            for table in (*TABLES, "gate_progress")
        )


def _sites(db) -> set[str]:
    return {row[0] for row in db.execute("SELECT DISTINCT site FROM events").fetchall()}


def _rows(db, table: str, columns: tuple[str, ...]):
    order = "n" if table in ("problems", "quarantine") else columns[0]
    cursor = db.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}")
    while True:
        batch = cursor.fetchmany(BATCH)
        if not batch:
            return
        yield [tuple(row) for row in batch]


def copy_ledger(source: str, target: str) -> CopyResult:
    if not ledger_exists(source):
        raise LedgerError(f"{source}: no ledger database here")
    if str(source) == str(target):
        raise LedgerError("--from and --to are the same ledger")
    src, dst = open_db(source), open_db(target)
    try:
        sites = _sites(src) | _sites(dst)
        if len(sites) > 1:
            raise LedgerError(
                f"refused: {src.where} and {dst.where} hold events of sites {', '.join(sorted(sites))}; "
                f"one ledger database per site (docs/central.md)"
            )
        result = CopyResult()
        dst.begin()
        try:
            for table, (columns, key) in TABLES.items():
                _copy_table(src, dst, table, columns, key, result)
            _copy_progress(src, dst, result)
            dst.commit()
        except BaseException:
            dst.rollback()
            raise
        return result
    except tuple(src.errors) + tuple(dst.errors) as exc:
        raise LedgerError(f"copy from {src.where} to {dst.where} failed: {exc}") from exc
    finally:
        src.close()
        dst.close()


def _copy_table(src, dst, table, columns, key, result: CopyResult) -> None:
    key_columns = key or columns
    at = [columns.index(k) for k in key_columns]
    held = {tuple(row) for row in dst.execute(f"SELECT {', '.join(key_columns)} FROM {table}").fetchall()}
    hashes = (
        {row[0]: row[1] for row in dst.execute("SELECT id, hash FROM events").fetchall()} if table == "events" else {}
    )
    copied = present = 0
    for batch in _rows(src, table, columns):
        fresh = []
        for row in batch:
            k = tuple(row[i] for i in at)
            if k in held:
                present += 1
                if table == "events" and hashes.get(row[0]) != row[columns.index("hash")]:
                    raise LedgerError(
                        f"conflict: event {row[0]} is in both ledgers with different contents; nothing copied"
                    )
                continue
            held.add(k)
            fresh.append(row)
        if fresh and key is None:  # numbered rows (problems, quarantine): the target numbers them anew
            dst.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
                "ON CONFLICT DO NOTHING",
                fresh,
            )
        elif fresh:
            dst.insert_ignoring(table, columns, fresh)
        copied += len(fresh)
    result.copied[table], result.present[table] = copied, present


def _copy_progress(src, dst, result: CopyResult) -> None:
    theirs = dict(src.execute("SELECT gate, contiguous FROM gate_progress").fetchall())
    ours = dict(dst.execute("SELECT gate, contiguous FROM gate_progress").fetchall())
    copied = 0
    for gate, contiguous in sorted(theirs.items()):
        if gate not in ours:
            dst.execute("INSERT INTO gate_progress (gate, contiguous) VALUES (?, ?)", (gate, contiguous))
            copied += 1
        elif contiguous > ours[gate]:
            dst.execute("UPDATE gate_progress SET contiguous = ? WHERE gate = ?", (contiguous, gate))
            copied += 1
    result.copied["gate_progress"] = copied
    result.present["gate_progress"] = len(theirs) - copied
