"""The gate store's schema (gated/gate/store.py): its tables and the numbered migrations that make them.

Tables (migration 1):
    meta(key, value)        event seq and last hash, revocation list version/site/state,
                            the device key, the last command nonce
    admissions              one row per admission of this gate: scan id, ticket id, GT2 step, gate,
                            time, state ('pending' until the passage sensor confirms it, then 'passed')
    peer_admissions         (migration 2) admissions seen from other gates (cross-gate anti-passback),
                            keyed by (gate, seq): apart from this gate's own, so a peer's event can
                            never collide with or roll back one of them
    revoked(cti)            the revocation list, a WITHOUT ROWID b-tree: lookups stay O(log n) on
                            disk and memory does not grow with the list
    revocation_parts        deltas that arrived before their base, waiting for it
    revocation_staging(cti) (migration 3) the ids of a multi-part snapshot being assembled: each
                            part is verified and appended as it arrives (a plain rowid table, so a
                            part writes only its own pages); with the last part the new list is
                            built from it in id order and swapped in for `revoked`, one transaction
    revocation_staged       which parts of the snapshot being assembled are in the staging table
    outbox(seq, event, broker_ms)  sealed events not yet acknowledged by the broker (PUBACK), or with
                            [mqtt] keep_until_committed not yet held by the ledger (migration 4:
                            broker_ms, when the broker first acknowledged the row)
    (migration 5)           admissions and peer_admissions get dir ('in'/'out': an exit scan),
                            reentry (1: no entry spent) and zone; free_exits(gate, seq, zone, ts_ms)
                            holds exits without a ticket, this gate's and its peers': together they
                            are the gate's local estimate of the people inside its zone
    (migration 7)           admissions get exp (the ticket's, as read at the scan) and peer_admissions an
                            index by time: what gated/gate/prune.py needs to keep the state bounded
    rolled_back             (migration 8) the (gate, seq) of peers' admissions their `passage` timeout
                            rolled back, and the timeout's time: such an admission is never taken
                            in again (a resent copy, a snapshot taken before the timeout)
    (migration 9)           admissions and peer_admissions get event (the ticket's `aud`; NULL in rows
                            made before): what pruning by event needs

A database records in `PRAGMA user_version` how many migrations it has had; `migrate()` applies the
rest in one write transaction (read under the lock, so concurrent openers take turns; issue #22). A migration is never edited once released:
a change is a new one at the end.
"""

from __future__ import annotations

import sqlite3

from gated import sqlitedb

MIGRATIONS = [
    # 1: the first schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
    CREATE TABLE admissions (
        scan_id TEXT PRIMARY KEY,
        cti BLOB NOT NULL,
        step INTEGER,
        gate TEXT NOT NULL,
        ts_ms INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'passed'))
    );
    CREATE INDEX admissions_by_ticket ON admissions (cti, step);
    CREATE TABLE revoked (cti BLOB PRIMARY KEY) WITHOUT ROWID;
    CREATE TABLE revocation_parts (
        version INTEGER NOT NULL, part INTEGER NOT NULL, parts INTEGER NOT NULL, base INTEGER NOT NULL,
        payload BLOB NOT NULL, PRIMARY KEY (version, part)
    );
    CREATE TABLE outbox (seq INTEGER PRIMARY KEY, event TEXT NOT NULL);
    """,
    # 2: other gates' admissions get a table of their own, keyed by (gate, seq): a peer's event can
    # neither take one of this gate's scan ids nor roll back one of this gate's admissions
    """
    CREATE TABLE peer_admissions (
        gate TEXT NOT NULL,
        seq INTEGER NOT NULL,
        cti BLOB NOT NULL,
        step INTEGER,
        ts_ms INTEGER NOT NULL,
        PRIMARY KEY (gate, seq)
    ) WITHOUT ROWID;
    CREATE INDEX peer_admissions_by_ticket ON peer_admissions (cti, step);
    INSERT OR IGNORE INTO peer_admissions (gate, seq, cti, step, ts_ms)
        SELECT a.gate, CAST(substr(a.scan_id, length(a.gate) + 2) AS INTEGER), a.cti, a.step, a.ts_ms
        FROM admissions a JOIN meta m ON m.key = 'gate' WHERE a.gate != m.value;
    DELETE FROM admissions WHERE gate != (SELECT value FROM meta WHERE key = 'gate');
    """,
    # 3: snapshot parts are staged id by id as they come, not kept whole and re-read (issue #11).
    # Whole parts kept by an older gated are dropped: they are retained at the broker, and the gate
    # subscribes again on every connect, so they come again after the upgrade's restart.
    """
    DELETE FROM revocation_parts WHERE base = 0;
    CREATE TABLE revocation_staging (cti BLOB NOT NULL);
    CREATE TABLE revocation_staged (part INTEGER PRIMARY KEY);
    """,
    # 4: end-to-end delivery: when the broker first acknowledged an outbox row (unix ms); with
    # [mqtt] keep_until_committed the row stays until the ledger says it holds it, or until the
    # operator's retention has passed since that time
    """
    ALTER TABLE outbox ADD COLUMN broker_ms INTEGER;
    """,
    # 5: exits, re-entries and occupancy (docs/protocol.md part 2, "Exits, re-entry and occupancy"):
    # a movement's direction, whether it was a re-entry (no entry spent), the zone it was made at,
    # and the free exits (no ticket) of this gate and its peers, keyed by (gate, seq) like peer_admissions
    """
    ALTER TABLE admissions ADD COLUMN dir TEXT NOT NULL DEFAULT 'in';
    ALTER TABLE admissions ADD COLUMN reentry INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE admissions ADD COLUMN zone TEXT;
    ALTER TABLE peer_admissions ADD COLUMN dir TEXT NOT NULL DEFAULT 'in';
    ALTER TABLE peer_admissions ADD COLUMN reentry INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE peer_admissions ADD COLUMN zone TEXT;
    CREATE INDEX admissions_by_zone ON admissions (zone, dir);
    CREATE INDEX peer_admissions_by_zone ON peer_admissions (zone, dir);
    CREATE TABLE free_exits (
        gate TEXT NOT NULL, seq INTEGER NOT NULL, zone TEXT, ts_ms INTEGER NOT NULL, PRIMARY KEY (gate, seq)
    ) WITHOUT ROWID;
    CREATE INDEX free_exits_by_zone ON free_exits (zone);
    """,
    # 6: occupancy counts from the venue's day start ([gate] day_starts): the zone's movements by time,
    # so the count on the scan path reads the index alone, not every row since the gate was installed
    """
    DROP INDEX admissions_by_zone;
    DROP INDEX peer_admissions_by_zone;
    DROP INDEX free_exits_by_zone;
    CREATE INDEX admissions_by_zone ON admissions (zone, ts_ms, dir);
    CREATE INDEX peer_admissions_by_zone ON peer_admissions (zone, ts_ms, dir);
    CREATE INDEX free_exits_by_zone ON free_exits (zone, ts_ms);
    """,
    # 7: bounded state (gated/gate/prune.py): the ticket's `exp` on each admission this gate makes (a
    # column, not a table: no page more to write per scan), so a ticket's admissions, own and peers',
    # can go once it has long expired; peers' admissions by time, for tickets this gate never admitted
    """
    ALTER TABLE admissions ADD COLUMN exp INTEGER;
    CREATE INDEX peer_admissions_by_time ON peer_admissions (ts_ms);
    """,
    # 8: a peer's rollback leaves a mark: the (gate, seq) of each admission a `passage` timeout rolled
    # back, with the timeout's time, so a late copy of the admission (a resend, a snapshot taken
    # before the timeout) is not taken in again; pruned by time with the peers' admissions
    """
    CREATE TABLE rolled_back (gate TEXT NOT NULL, seq INTEGER NOT NULL, ts_ms INTEGER NOT NULL, PRIMARY KEY (gate, seq))
        WITHOUT ROWID;
    CREATE INDEX rolled_back_by_time ON rolled_back (ts_ms);
    """,
    # 9: the event (the ticket's `aud`) of each admission, own and peers', by event: once the gate no
    # longer admits for an event its tickets are `wrong_event`, so their admissions go
    # (gated/gate/prune.py): the one safe end for a ticket valid without end (a pretix code)
    """
    ALTER TABLE admissions ADD COLUMN event TEXT;
    ALTER TABLE peer_admissions ADD COLUMN event TEXT;
    CREATE INDEX admissions_by_event ON admissions (event);
    CREATE INDEX peer_admissions_by_event ON peer_admissions (event);
    """,
]


def migrate(db: sqlite3.Connection) -> None:
    """Bring `db` (autocommit mode) up to the newest schema: the version read and every missing
    migration applied in ONE write transaction (gated.sqlitedb.migrate), so two processes opening a
    new file at once cannot interleave; a version is never lowered."""
    sqlitedb.migrate(db, MIGRATIONS)
