"""Where the ledger keeps its rows: a SQLite file (the embedded default) or PostgreSQL (psycopg 3).

The ledger's logic (gated/central/ledger.py) is written once, in the SQL both engines share
(`INSERT ... ON CONFLICT DO NOTHING`, savepoints, window functions, `?` placeholders). This module
is the seam: opening, transactions, the few words the dialects spell differently, and numbered
schema migrations per backend.

    open_db("ledger.db")                       -> SqliteDb   (WAL, synchronous=FULL)
    open_db("postgresql://user@host/ledger")   -> PostgresDb (autocommit off the driver's books:
                                                  BEGIN/COMMIT are ours, like SQLite's)

Migrations: SQLite records its version in `PRAGMA user_version`; PostgreSQL in the table
`gated_schema`, and several workers starting at once on one database migrate under an advisory
lock (one migrates, the others wait and find it done).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from gated.core.errors import GatedError
from gated.core.events import EPOCH_SHIFT
from gated.sqlitedb import NewerSchema, migrate, rollback, table_names, use_wal

_SQLITE_MIGRATIONS = [
    # 1: the first schema (CREATE ... IF NOT EXISTS: ledgers made before migrations were numbered adopt it)
    """
    CREATE TABLE IF NOT EXISTS events (
        id TEXT PRIMARY KEY, site TEXT NOT NULL, gate TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
        ts TEXT, ticket TEXT, decision TEXT, reason TEXT, ref TEXT, result TEXT,
        hash TEXT NOT NULL, prev TEXT NOT NULL, signed INTEGER NOT NULL, received_ms INTEGER NOT NULL, body TEXT NOT NULL
    );
    CREATE UNIQUE INDEX IF NOT EXISTS events_by_gate ON events (gate, seq);
    CREATE INDEX IF NOT EXISTS events_by_ticket ON events (ticket) WHERE ticket IS NOT NULL;
    CREATE INDEX IF NOT EXISTS events_by_ref ON events (ref) WHERE ref IS NOT NULL;
    CREATE TABLE IF NOT EXISTS problems (
        n INTEGER PRIMARY KEY, kind TEXT NOT NULL, gate TEXT, seq INTEGER, event_id TEXT, detail TEXT NOT NULL,
        received_ms INTEGER NOT NULL, UNIQUE (kind, gate, seq, detail)
    );
    CREATE TABLE IF NOT EXISTS quarantine (n INTEGER PRIMARY KEY, event_id TEXT, body TEXT NOT NULL, why TEXT NOT NULL,
        received_ms INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS tickets (cti TEXT PRIMARY KEY, ent INTEGER NOT NULL) WITHOUT ROWID;
    """,
]

_POSTGRES_MIGRATIONS = [
    # 1: the first schema; BIGINT where SQLite's INTEGER holds 64 bits (seq goes to 2^63-1)
    """
    CREATE TABLE events (
        id TEXT PRIMARY KEY, site TEXT NOT NULL, gate TEXT NOT NULL, seq BIGINT NOT NULL, kind TEXT NOT NULL,
        ts TEXT, ticket TEXT, decision TEXT, reason TEXT, ref TEXT, result TEXT,
        hash TEXT NOT NULL, prev TEXT NOT NULL, signed INTEGER NOT NULL, received_ms BIGINT NOT NULL, body TEXT NOT NULL
    );
    CREATE UNIQUE INDEX events_by_gate ON events (gate, seq);
    CREATE INDEX events_by_ticket ON events (ticket) WHERE ticket IS NOT NULL;
    CREATE INDEX events_by_ref ON events (ref) WHERE ref IS NOT NULL;
    CREATE TABLE problems (
        n BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, kind TEXT NOT NULL, gate TEXT, seq BIGINT,
        event_id TEXT, detail TEXT NOT NULL, received_ms BIGINT NOT NULL, UNIQUE (kind, gate, seq, detail)
    );
    CREATE TABLE quarantine (n BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id TEXT, body TEXT NOT NULL,
        why TEXT NOT NULL, received_ms BIGINT NOT NULL);
    CREATE TABLE tickets (cti TEXT PRIMARY KEY, ent INTEGER NOT NULL);
    """,
]

# 2 (both): per gate, the highest seq up to which the ledger holds every event (1..contiguous), which
# it publishes to the gate (docs/protocol.md, "Committed events"); filled from what is already stored
_PROGRESS = """
    CREATE TABLE gate_progress (gate TEXT PRIMARY KEY, contiguous {int} NOT NULL);
    INSERT INTO gate_progress (gate, contiguous)
        SELECT e.gate, CASE WHEN EXISTS (SELECT 1 FROM events o WHERE o.gate = e.gate AND o.seq = 1)
                       THEN MIN(e.seq) ELSE 0 END
        FROM events e WHERE NOT EXISTS (SELECT 1 FROM events n WHERE n.gate = e.gate AND n.seq = e.seq + 1)
        GROUP BY e.gate;
"""
_SQLITE_MIGRATIONS.append(_PROGRESS.format(int="INTEGER"))
_POSTGRES_MIGRATIONS.append(_PROGRESS.format(int="BIGINT"))

# 3 (both): movements and zone capacities for occupancy (gated/central/occupancy.py, issue #16);
# a ledger made before it gets its movements from the stored events when it is opened
_MOVEMENTS = """
    CREATE TABLE IF NOT EXISTS movements (
        id TEXT PRIMARY KEY, gate TEXT NOT NULL, seq {int} NOT NULL, ticket TEXT, zone TEXT NOT NULL,
        dir TEXT NOT NULL, reentry INTEGER NOT NULL, free INTEGER NOT NULL, ts TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS movements_by_ticket ON movements (ticket) WHERE ticket IS NOT NULL;
    CREATE INDEX IF NOT EXISTS movements_by_ts ON movements (ts);
    CREATE TABLE IF NOT EXISTS capacities (zone TEXT PRIMARY KEY, capacity INTEGER NOT NULL);
"""
_SQLITE_MIGRATIONS.append(_MOVEMENTS.format(int="INTEGER"))
_POSTGRES_MIGRATIONS.append(_MOVEMENTS.format(int="BIGINT"))

# 4: the admissions a ticket allows and a zone's capacity are numbers up to 2^63-1 like every other
# count (PostgreSQL's INTEGER stopped at 2^31-1; SQLite's INTEGER is 64 bits already)
_SQLITE_MIGRATIONS.append("SELECT 1")
_POSTGRES_MIGRATIONS.append(
    "ALTER TABLE tickets ALTER COLUMN ent TYPE BIGINT; ALTER TABLE capacities ALTER COLUMN capacity TYPE BIGINT"
)

# 5 (both): end-to-end delivery that cannot stall (docs/protocol.md, "Committed events"): each gate's
# floor (the lowest seq it still holds, from its status: below it, what the ledger lacks is a declared
# loss and `contiguous` moves past it)
_FLOORS = """
    ALTER TABLE gate_progress ADD COLUMN floor {int} NOT NULL DEFAULT 0;
"""
_SQLITE_MIGRATIONS.append(_FLOORS.format(int="INTEGER"))
_POSTGRES_MIGRATIONS.append(_FLOORS.format(int="BIGINT"))

# 6 (both): quarantined messages by event id: a gate keeps an event the ledger refused (it is not held)
# and sends it again with its backoff until the retention; the same message again is kept once
_QUARANTINE_BY_EVENT = (
    "CREATE INDEX IF NOT EXISTS quarantine_by_event ON quarantine (event_id) WHERE event_id IS NOT NULL"
)
_SQLITE_MIGRATIONS.append(_QUARANTINE_BY_EVENT)
_POSTGRES_MIGRATIONS.append(_QUARANTINE_BY_EVENT)

# 7 (both): per gate and chain (docs/protocol.md, "Replacing a gate"), the highest floor the gate announced
# in that chain: what the ledger lacks below it stays a declared loss once the gate is replaced and
# gate_progress.floor follows the new chain; a gate's floor so far becomes its chain's row (IF NOT EXISTS, ON
# CONFLICT: a SQLite ledger made before migrations were numbered runs them all again)
_CHAIN_FLOORS = """
    CREATE TABLE IF NOT EXISTS chain_floors (
        gate TEXT NOT NULL, epoch {int} NOT NULL, floor {int} NOT NULL, PRIMARY KEY (gate, epoch)
    );
    INSERT INTO chain_floors (gate, epoch, floor) SELECT gate, floor / {span}, floor FROM gate_progress
        WHERE floor > 0 ON CONFLICT DO NOTHING;
"""
_SQLITE_MIGRATIONS.append(_CHAIN_FLOORS.format(int="INTEGER", span=1 << EPOCH_SHIFT))
_POSTGRES_MIGRATIONS.append(_CHAIN_FLOORS.format(int="BIGINT", span=1 << EPOCH_SHIFT))

SCHEMA_VERSION = len(_SQLITE_MIGRATIONS)
assert SCHEMA_VERSION == len(_POSTGRES_MIGRATIONS)


class LedgerError(GatedError, RuntimeError):
    """The ledger database failed; check the disk, the file's permissions or the database server."""


def is_database_url(target) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def ledger_exists(target) -> bool:
    """For tools that read a ledger (reconcile, report, audit, ledger copy's source, admissions,
    pretix upload): a database URL, or a SQLite file that is there and holds tables. Opening a path
    that is not there, or an empty file, would make an empty ledger of it; a file with tables that
    are not a ledger's is refused when it is opened (SqliteDb)."""
    if is_database_url(str(target)):
        return True
    if not Path(target).is_file():
        return False
    try:
        return bool(_tables(Path(target)))
    except sqlite3.Error:
        return True  # not a database at all: opening it says so


# tables only a gate's state file has (gated/gate/schema.py): named in the refusal
_GATE_STATE_TABLES = {"meta", "outbox", "admissions"}  # a pretix sync state has meta and outbox too


def _tables(path: Path) -> set[str]:
    """The names of the tables in a SQLite file, read without writing to it (nor creating it)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return table_names(conn)
    finally:
        conn.close()


def open_db(target: str | os.PathLike) -> "SqliteDb | PostgresDb":
    """A SQLite path, or a postgresql:// URL (libpq's form: user, password, host, port, dbname, ?options)."""
    return PostgresDb(target) if is_database_url(target) else SqliteDb(target)


class SqliteDb:
    errors: tuple = (sqlite3.Error,)
    message_errors: tuple = (sqlite3.DataError, sqlite3.IntegrityError)  # what one message's values can cause
    lock_row = ""  # SQLite's BEGIN IMMEDIATE already holds the only write lock
    byte_order = ""  # SQLite's BINARY collation compares UTF-8 bytes: Python's order of str

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.where = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._refuse_other_files()
            use_wal(self.conn)
            self.conn.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except NewerSchema as exc:
            self.conn.close()
            raise LedgerError(f"{self.where}: the ledger was {exc}") from None
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.where}: cannot open the ledger ({exc})") from exc

    def _refuse_other_files(self) -> None:
        """A SQLite file with tables but not the ledger's is not made one (nor switched to WAL): a
        gate's state file or any other database given as --db by mistake is left as it was."""
        tables = table_names(self.conn)
        if not tables or "events" in tables:
            return
        self.conn.close()
        if _GATE_STATE_TABLES <= tables:
            raise LedgerError(f"{self.where}: not a ledger but a gate's state file (gated run --state)")
        raise LedgerError(f"{self.where}: not a ledger (a SQLite file with other tables: {', '.join(sorted(tables))})")

    def _migrate(self) -> None:
        migrate(self.conn, _SQLITE_MIGRATIONS)  # one write transaction: the version read under the lock

    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def execute(self, sql: str, params=()):
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows) -> None:
        self.conn.executemany(sql, rows)

    def insert_events(self, columns: tuple[str, ...], rows: list) -> list[bool]:
        """Rows into `events` unless their id is taken; per row, whether it went in."""
        sql = (
            f"INSERT INTO events ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) ON CONFLICT DO NOTHING"
        )
        return [self.conn.execute(sql, row).rowcount == 1 for row in rows]

    def insert_ignoring(self, table: str, columns: tuple[str, ...], rows: list) -> None:
        """Rows into `table`, each unless its key is taken."""
        self.conn.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
            "ON CONFLICT DO NOTHING",
            rows,
        )

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        rollback(self.conn)  # not again if SQLite already rolled back (a full disk): keep the real error

    @staticmethod
    def group_concat(expr: str) -> str:
        return f"GROUP_CONCAT({expr}, ',')"

    def close(self) -> None:
        self.conn.close()


class PostgresDb:
    lock_row = " FOR UPDATE"  # concurrent workers advancing one gate's progress take turns
    byte_order = ' COLLATE "C"'  # Python's order of str, whatever the database's collation

    def __init__(self, url: str):
        self.where = _without_password(url)
        try:
            import psycopg
        except ImportError:
            raise LedgerError(
                "a PostgreSQL ledger needs psycopg 3, which a gate does not: pip install 'gated[central]'"
            ) from None
        self._psycopg = psycopg
        self.errors = (psycopg.Error,)
        self.message_errors = (psycopg.DataError, psycopg.IntegrityError)  # what one message's values can cause
        try:
            # autocommit: the driver opens no transaction of its own; BEGIN/COMMIT are the ledger's
            self.conn = psycopg.connect(url, autocommit=True)
            self._migrate()
        except NewerSchema as exc:
            self.conn.close()
            raise LedgerError(f"{self.where}: the ledger was {exc}") from None
        except psycopg.Error as exc:
            raise LedgerError(f"{self.where}: cannot open the ledger ({exc})".strip()) from exc

    def _migrate(self) -> None:
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('gated-ledger-schema'))")
            self.conn.execute("CREATE TABLE IF NOT EXISTS gated_schema (version INTEGER NOT NULL)")
            row = self.conn.execute("SELECT version FROM gated_schema").fetchone()
            current = 0 if row is None else row[0]
            if current > len(_POSTGRES_MIGRATIONS):
                raise NewerSchema(current, len(_POSTGRES_MIGRATIONS))
            if row is None:
                self.conn.execute("INSERT INTO gated_schema (version) VALUES (0)")
            for number, script in enumerate(_POSTGRES_MIGRATIONS[current:], start=current + 1):
                self.conn.execute(script)
                self.conn.execute("UPDATE gated_schema SET version = %s", (number,))

    def schema_version(self) -> int:
        return self.conn.execute("SELECT version FROM gated_schema").fetchone()[0]

    def execute(self, sql: str, params=()):
        return self.conn.execute(sql.replace("?", "%s"), params or None)

    def executemany(self, sql: str, rows) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), list(rows))

    def insert_events(self, columns: tuple[str, ...], rows: list) -> list[bool]:
        """Rows into `events` unless their id is taken; per row, whether it went in. Two round trips
        for any number of rows (_staged_insert), the (id, hash) of each row that went in returned.
        `columns` start with id; `hash` is one."""
        if not rows:
            return []
        went_in = set(self._staged_insert("events", columns, rows, "RETURNING id, hash"))
        at = columns.index("hash")
        flags = []
        for row in rows:  # the same event twice in one batch: the first is new, the second a duplicate
            key = (row[0], row[at])
            flags.append(key in went_in)
            went_in.discard(key)
        return flags

    def insert_ignoring(self, table: str, columns: tuple[str, ...], rows: list) -> None:
        """Rows into `table`, each unless its key is taken (_staged_insert)."""
        if rows:
            self._staged_insert(table, columns, rows)

    def _staged_insert(self, table: str, columns: tuple[str, ...], rows: list, returning: str = "") -> list:
        """COPY the rows into a staging table for `table` (the fastest way into PostgreSQL), then
        one INSERT ... SELECT ... ON CONFLICT DO NOTHING that empties it, in the rows' order."""
        names = ", ".join(columns)
        with self.conn.cursor() as cur:
            # made in the transaction, dropped at its end: nothing of it outlives the batch, so it
            # works behind a connection pooler too (a session's own temporary table would not)
            cur.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS incoming_{table} (n INTEGER NOT NULL, LIKE {table}) ON COMMIT DROP"
            )
            with cur.copy(f"COPY incoming_{table} (n, {names}) FROM STDIN") as copy:
                for n, row in enumerate(rows):
                    copy.write_row((n, *row))
            cur.execute(
                f"WITH staged AS (DELETE FROM incoming_{table} RETURNING *) "
                f"INSERT INTO {table} ({names}) SELECT {names} FROM staged ORDER BY n "
                f"ON CONFLICT DO NOTHING {returning}"
            )
            return cur.fetchall() if returning else []

    def begin(self) -> None:
        self.conn.execute("BEGIN")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.closed:
            return
        self.conn.execute("ROLLBACK")

    @staticmethod
    def group_concat(expr: str) -> str:
        return f"STRING_AGG({expr}, ',')"

    def close(self) -> None:
        self.conn.close()


def _without_password(url: str) -> str:
    """The URL for messages: a password in it (user:PASSWORD@, up to the last @, or libpq's
    ?password=) is replaced by ***. LedgerError for a URL that cannot be read (urlsplit's
    ValueError, e.g. an IPv6 host without its closing bracket)."""
    import re
    from urllib.parse import urlsplit

    masked = re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", url)
    scheme, slashes, rest = masked.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if slashes and at and ":" in userinfo:
        masked = f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"
    try:
        urlsplit(url).port  # noqa: B018 - reading it is the check (a bad port or IPv6 host raises)
    except ValueError as exc:
        raise LedgerError(
            f"{masked}: not a database URL ({exc}); write postgresql://USER@HOST/DB, an IPv6 host in [brackets]"
        ) from None
    return masked
