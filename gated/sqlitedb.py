"""One way to write to SQLite in gated: `write_transaction(db)`.

Used by the gate's store, the ledger's SQLite backend and the pretix sync state. The connection is
in autocommit mode (isolation_level=None), so the transaction is ours: BEGIN IMMEDIATE takes the
write lock at once (no deadlock between two writers that both read first), and on any exception
it rolls back, unless SQLite has already done so itself (SQLITE_FULL, SQLITE_IOERR): then a second
ROLLBACK would replace the real error ("database or disk is full") with "no transaction is active".
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager


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
