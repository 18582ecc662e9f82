"""`gated ledger copy --from DB --to DB`: carry a ledger whole between SQLite and PostgreSQL.

A venue that starts on a SQLite file and moves to PostgreSQL (or back, for an archive) keeps
everything its checks rest on, so `gated reconcile` reads the same on both:

    events          by id (`<gate>:<seq>`); an id the target holds with another hash is a conflict:
                    nothing is copied (two ledgers that disagree are not merged silently); so is
                    a row whose columns do not say what its body says (ticket, decision...: an
                    edited row, ledger_audit.columns_problem), which the reports would believe
    problems        the checks' findings (gaps, chain breaks, conflicts...), by their content
    quarantine      messages that were not stored as events, by their content
    gate_progress   per gate the contiguous seq and the floor: of one chain, the higher of the two;
                    of two chains (a replaced gate), the row of the chain that started later (its
                    first event's ts, once the events are copied), else the target's (unless
                    it says nothing yet: contiguous and floor 0)
    chain_floors    per gate and chain the floor, the higher of the two
    movements, tickets, capacities   by their keys (the target's own values win)

Idempotent: a second copy adds nothing. One site per ledger (docs/central.md): a copy that would
put two sites' events in one database is refused before anything is written. The target's schema
is made or migrated as `gated ledger` would; the copy is one transaction on the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gated.central import chains
from gated.central.ledger_audit import DERIVED, columns_problem
from gated.central.ledgerdb import LedgerError, ledger_exists, open_db
from gated.core import events as ev

BATCH = 5000
# table -> its key columns (None: the whole row is the key; the row number `n` is never copied).
# The columns are read from the databases (both are migrated to the same schema by open_db), so
# a column a later migration adds is carried too.
TABLES = {
    "events": ("id",),
    "problems": None,
    "quarantine": None,
    "movements": ("id",),
    "tickets": ("cti",),
    "capacities": ("zone",),
}
# table -> its key columns: per key, the higher of each other figure of the two ledgers (a gate's
# progress on two chains: the later chain's row, _copy_progress)
PROGRESS = {"gate_progress": ("gate",), "chain_floors": ("gate", "epoch")}


def columns_of(db, table: str) -> tuple[str, ...] | None:
    """The table's columns but the row number, or None when the schema has no such table."""
    try:
        cursor = db.execute(f"SELECT * FROM {table} LIMIT 0")
    except tuple(db.errors):  # before the copy's transaction: nothing to roll back
        return None
    return tuple(d[0] for d in cursor.description if d[0] != "n")


@dataclass
class CopyResult:
    copied: dict[str, int] = field(default_factory=dict)
    present: dict[str, int] = field(default_factory=dict)  # rows the target already had

    def summary(self) -> str:
        return ", ".join(
            f"{table} {self.copied.get(table, 0)} new ({self.present.get(table, 0)} there already)"
            for table in (*TABLES, *PROGRESS)
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
        present = {t: columns_of(src, t) for t in TABLES}
        present = {t: c for t, c in present.items() if c is not None and columns_of(dst, t) == c}
        dst.begin()
        try:
            for table, columns in present.items():
                _copy_table(src, dst, table, columns, TABLES[table], result)
            for table, key in PROGRESS.items():
                _copy_progress(src, dst, table, key, result)
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
    derived = [columns.index(c) for c in DERIVED] if table == "events" else []
    copied = present = 0
    for batch in _rows(src, table, columns):
        fresh = []
        for row in batch:
            problem = derived and columns_problem(tuple(row[i] for i in derived), row[columns.index("body")])
            if problem:
                raise LedgerError(
                    f"event {row[columns.index('id')]} of {src.where}: {problem} (an edited row?); nothing copied"
                )
            k = tuple(row[i] for i in at)
            if k in held:
                present += 1
                event_id = row[columns.index("id")] if table == "events" else None
                if table == "events" and hashes.get(event_id) != row[columns.index("hash")]:
                    raise LedgerError(
                        f"conflict: event {event_id} is in both ledgers with different contents; nothing copied"
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


def _copy_progress(src, dst, table: str, key: tuple[str, ...], result: CopyResult) -> None:
    """Per key (a gate; a gate and chain) the higher of each figure (contiguous, floor, and whatever
    later migrations add); a gate's progress in two chains: the later chain's (_later_chain)."""
    figures = [c for c in columns_of(src, table) if c not in key]
    columns = (*key, *figures)
    names, size = ", ".join(columns), len(key)
    theirs = {tuple(row[:size]): tuple(row[size:]) for row in src.execute(f"SELECT {names} FROM {table}").fetchall()}
    ours = {tuple(row[:size]): tuple(row[size:]) for row in dst.execute(f"SELECT {names} FROM {table}").fetchall()}
    chain = figures.index("contiguous") if table == "gate_progress" else None
    started = None  # each gate's chains in the target, read once if two rows' chains differ
    copied = 0
    for k, values in sorted(theirs.items()):
        if k not in ours:
            dst.execute(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})", (*k, *values))
            copied += 1
            continue
        mine = ours[k]
        if chain is not None and ev.epoch_of(values[chain]) != ev.epoch_of(mine[chain]) and any(mine):
            started = started if started is not None else chains.per_gate(dst)
            kept = values if _later_chain(started.get(k[0], []), values[chain], mine[chain]) else mine
        else:  # one chain (or the target's row says nothing yet): the higher of each figure
            kept = tuple(max(v, o) for v, o in zip(values, mine))
        if kept != mine:
            dst.execute(
                f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in figures)} "
                f"WHERE {' AND '.join(f'{c} = ?' for c in key)}",
                (*kept, *k),
            )
            copied += 1
    result.copied[table] = copied
    result.present[table] = len(theirs) - copied


def _later_chain(found: list[dict], theirs: int, ours: int) -> bool:
    """Whether the chain of the seq `theirs` started after that of `ours` (the earliest ts of each
    chain's events: chains.per_gate's `found` for the gate); False when that cannot be told (no
    events of one of them): the target's row stays."""
    first = {c["epoch"]: c["first_ts"] for c in found}
    theirs_ts, ours_ts = first.get(ev.epoch_of(theirs)), first.get(ev.epoch_of(ours))
    return theirs_ts is not None and ours_ts is not None and theirs_ts > ours_ts
