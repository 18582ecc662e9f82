"""Schema migrations are atomic (issue #22, item 5): the version is read and every migration applied
inside one write transaction, so processes opening one new file at the same moment (two ledger
workers starting together, a metrics scrape during a ledger's first start, a gate and its doctor)
all start, and the file stays usable. Real processes, released together at one instant."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import pytest

from gated.central.ledgerdb import SCHEMA_VERSION, open_db
from gated.gate.schema import MIGRATIONS
from gated.gate.store import GateStore
from gated.sqlitedb import migrate
from tests.conftest import SITE

OPENERS = 8

LEDGER = """
import sys, time
from gated.central.ledgerdb import open_db
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
db = open_db(sys.argv[1])
print(db.schema_version())
db.close()
"""

STORE = """
import sys, time
from gated.gate.store import GateStore
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
store = GateStore(sys.argv[1], site=sys.argv[3], gate="g1")
print(store.last_seq)
store.close()
"""


def _open_together(code: str, target: str, *extra: str) -> list[subprocess.CompletedProcess]:
    start = time.time() + 3.0  # every interpreter is up and waiting by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, target, repr(start), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(OPENERS)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append((proc.returncode, out.strip(), err.strip()[-500:]))
    return results


def test_eight_processes_opening_one_new_sqlite_ledger_all_start(tmp_path):
    path = tmp_path / "ledger.db"
    results = _open_together(LEDGER, str(path))
    assert [r[0] for r in results] == [0] * OPENERS, results
    assert {r[1] for r in results} == {str(SCHEMA_VERSION)}
    db = open_db(path)  # and it opens afterwards, at the current version
    assert db.schema_version() == SCHEMA_VERSION
    assert db.execute("SELECT COUNT(*) FROM gate_progress").fetchone()[0] == 0
    db.close()


def test_eight_processes_opening_one_new_gate_store_all_start(tmp_path):
    path = tmp_path / "gate.db"
    results = _open_together(STORE, str(path), SITE)
    assert [r[0] for r in results] == [0] * OPENERS, results
    with GateStore(path, site=SITE, gate="g1") as store:
        assert store.last_seq == 0
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    conn.close()


def test_eight_processes_opening_one_new_postgres_ledger_all_start(postgres):
    url = postgres.database()
    results = _open_together(LEDGER, url)
    assert [r[0] for r in results] == [0] * OPENERS, results
    db = open_db(url)
    assert db.schema_version() == SCHEMA_VERSION
    assert db.execute("SELECT COUNT(*) FROM gated_schema").fetchone()[0] == 1
    db.close()


def test_a_version_is_never_lowered(tmp_path):
    """A file at a higher version (a newer release made it) is left at it: no migration runs again."""
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    assert migrate(conn, ["CREATE TABLE a (x)", "CREATE TABLE b (x)"]) == 2
    conn.execute("PRAGMA user_version = 5")
    assert migrate(conn, ["CREATE TABLE a (x)", "CREATE TABLE b (x)"]) == 5
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 5


def test_a_failing_migration_leaves_the_file_as_it_was(tmp_path):
    """All or nothing: a migration that fails rolls back the ones before it in the same run."""
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, ["CREATE TABLE a (x)", "CREATE TABLE a (x)"])
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'a'").fetchone()[0] == 0
