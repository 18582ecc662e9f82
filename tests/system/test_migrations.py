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
from gated.cli import main
from gated.gate.schema import MIGRATIONS
from gated.gate.store import GateStore
from gated.sqlitedb import NewerSchema, migrate
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
    """A file at a higher version (a newer release made it) is left at it and refused: no migration
    runs again, and no code runs on tables it does not know."""
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    assert migrate(conn, ["CREATE TABLE a (x)", "CREATE TABLE b (x)"]) == 2
    conn.execute("PRAGMA user_version = 5")
    with pytest.raises(NewerSchema, match=r"made by a newer gated \(schema 5, this one knows 2\): upgrade gated"):
        migrate(conn, ["CREATE TABLE a (x)", "CREATE TABLE b (x)"])
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 5


def test_a_failing_migration_leaves_the_file_as_it_was(tmp_path):
    """All or nothing: a migration that fails rolls back the ones before it in the same run."""
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, ["CREATE TABLE a (x)", "CREATE TABLE a (x)"])
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'a'").fetchone()[0] == 0


def _at_version(path, version):
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {version}")
    conn.close()


def test_a_gate_state_and_a_ledger_from_a_newer_release_are_refused_by_name(tmp_path, monkeypatch, capsys):
    """A newer release's file was "left as it is" and the code then ran on it: `no such table`
    tracebacks, or worse, writes to tables whose meaning changed."""
    monkeypatch.chdir(tmp_path)
    assert main(["keys", "generate", "--out", "k", "--name", "box"]) == 0
    assert main(["keys", "trust", "--keyring", "ring", "--role", "issuer", "--event", "E", "k/box.pub"]) == 0
    GateStore("gate.db", site=SITE, gate="g1").close()
    _at_version("gate.db", 42)
    open_db("ledger.db").close()
    _at_version("ledger.db", 42)
    capsys.readouterr()
    code = main(["verify", "--keyring", "ring", "--event", "E", "--state", "gate.db", "GT1:X"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"gate.db: the gate state was made by a newer gated (schema 42, this one knows {len(MIGRATIONS)})" in err
    assert code == 2 and "upgrade gated" in err and "Traceback" not in err
    assert main(["reconcile", "--db", "ledger.db"]) == 2
    err = capsys.readouterr().err
    assert f"ledger.db: the ledger was made by a newer gated (schema 42, this one knows {SCHEMA_VERSION})" in err


def test_a_ledger_given_as_a_gate_state_is_refused_and_left_as_it_was(tmp_path, monkeypatch, capsys):
    """`gated verify --state ledger.db` (or a gate config's state pointing at the ledger) made the
    ledger a gate state too: the gate's tables added, the file switched to WAL. Refused by name."""
    monkeypatch.chdir(tmp_path)
    assert main(["keys", "generate", "--out", "k", "--name", "box"]) == 0
    assert main(["keys", "trust", "--keyring", "ring", "--role", "issuer", "--event", "E", "k/box.pub"]) == 0
    open_db("ledger.db").close()
    before = (tmp_path / "ledger.db").read_bytes()
    capsys.readouterr()
    assert main(["verify", "--keyring", "ring", "--event", "E", "--state", "ledger.db", "GT1:X"]) == 2
    err = capsys.readouterr().err
    assert "ledger.db: not a gate's state but a ledger" in err and "Traceback" not in err, err
    assert (tmp_path / "ledger.db").read_bytes() == before


def test_a_postgres_ledger_from_a_newer_release_is_refused(postgres, capsys):
    url = postgres.database()
    open_db(url).close()
    db = open_db(url)
    db.execute("UPDATE gated_schema SET version = 42")
    db.close()
    assert main(["reconcile", "--db", url]) == 2
    assert f"made by a newer gated (schema 42, this one knows {SCHEMA_VERSION})" in capsys.readouterr().err


def test_reading_commands_leave_a_file_that_is_not_a_ledger_as_it_was(tmp_path, monkeypatch, capsys):
    """reconcile on an unrelated SQLite file said "clean" and added the ledger's tables to it; on a
    gate's state file it crashed with `no such table: movements`."""
    monkeypatch.chdir(tmp_path)
    with sqlite3.connect("other.db") as conn:
        conn.execute("CREATE TABLE photos (name TEXT)")
    conn.close()
    GateStore("gate.db", site=SITE, gate="g1").close()
    (tmp_path / "empty.db").touch()
    assert main(["keys", "generate", "--out", "k", "--name", "box"]) == 0
    assert main(["keys", "trust", "--keyring", "ring", "--role", "issuer", "--event", "E", "k/box.pub"]) == 0
    before = {name: (tmp_path / name).read_bytes() for name in ("other.db", "gate.db", "empty.db")}
    for argv, name, says in (
        (
            ["reconcile", "--db", "other.db"],
            "other.db",
            "other.db: not a ledger (a SQLite file with other tables: photos)",
        ),
        (["reconcile", "--db", "gate.db"], "gate.db", "gate.db: not a ledger but a gate's state file"),
        (["reconcile", "--db", "empty.db"], "empty.db", "empty.db: no ledger database here"),
        (["reconcile", "--db", "gate.db", "--verify-signatures", "ring"], "gate.db", "not a ledger"),
        (["ledger", "copy", "--from", "other.db", "--to", "new.db"], "other.db", "other.db: not a ledger"),
        (["ledger", "copy", "--from", "empty.db", "--to", "new.db"], "empty.db", "no ledger database here"),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, (argv, err)
        assert (tmp_path / name).read_bytes() == before[name], argv
    # the ledger itself does not adopt them either
    assert (
        main(["ledger", "--db", "other.db", "--site", SITE, "--keyring", "ring", "--broker", "mqtt://127.0.0.1:1"]) == 2
    )
    assert "other.db: not a ledger" in capsys.readouterr().err
    assert (tmp_path / "other.db").read_bytes() == before["other.db"]
