"""One way to write to SQLite in gated: `write_transaction(db)`.

Used by the gate's store, the ledger's SQLite backend and the pretix sync state. The connection is
in autocommit mode (isolation_level=None), so the transaction is ours: BEGIN IMMEDIATE takes the
write lock at once (no deadlock between two writers that both read first), and on any exception
it rolls back, unless SQLite has already done so itself (SQLITE_FULL, SQLITE_IOERR): then a second
ROLLBACK would replace the real error ("database or disk is full") with "no transaction is active".
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager

from gated.core.errors import GatedError


class NewerSchema(GatedError, RuntimeError):
    """A database made by a newer release of gated (its schema version is above every migration
    this one knows): the code would run on tables it does not know; the caller names the file."""

    def __init__(self, found: int, known: int):
        super().__init__(f"made by a newer gated (schema {found}, this one knows {known}): upgrade gated")
        self.found, self.known = found, known


def table_names(db: sqlite3.Connection) -> set[str]:
    """The names of the tables a SQLite database holds (a file given as the wrong kind is refused by them)."""
    return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


@contextmanager
def write_transaction(db: sqlite3.Connection):
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        rollback(db)
        raise
    db.execute("COMMIT")


def rollback(db: sqlite3.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already rolled it back."""
    if db.in_transaction:
        db.execute("ROLLBACK")


def migrate(db: sqlite3.Connection, migrations: list[str]) -> int:
    """Bring a database to `len(migrations)` (numbered from 1, recorded in `PRAGMA user_version`)
    in ONE write transaction: the version is read under the write lock and every missing migration
    applied before COMMIT, so two processes opening one new file at once cannot interleave (the one
    that waited for the lock finds the work done). A version is never lowered: a file made by a
    newer release (a higher version) is left as it is and refused (NewerSchema). Returns the
    version the file is at.

    Not `executescript`, which commits any open transaction first (Python 3.11): each statement is
    run on its own, inside ours."""
    with write_transaction(db):
        (current,) = db.execute("PRAGMA user_version").fetchone()
        if current > len(migrations):
            raise NewerSchema(current, len(migrations))
        for number in range(current + 1, len(migrations) + 1):
            for statement in statements(migrations[number - 1]):
                db.execute(statement)
        if len(migrations) > current:
            db.execute(f"PRAGMA user_version = {len(migrations)}")
            current = len(migrations)
    return current


def statements(script: str) -> list[str]:
    """A script split into complete SQL statements (sqlite3.complete_statement: a `;` inside a string
    or a trigger body does not end one)."""
    out, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                out.append(pending.strip())
            pending = ""
    if pending.strip(" \t\r\n;"):
        out.append(pending.strip().rstrip(";"))
    return out


def use_wal(conn: sqlite3.Connection, patience_s: float = 30.0) -> None:
    """WAL mode. SQLite can answer "database is locked" at once, without waiting its busy timeout,
    while another process is switching a new file to WAL: try again for a while (several ledger
    workers, a metrics scrape, or `gated doctor` beside a gate's first start, opening one new file
    together)."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
