"""The ledger's movements and occupancy (issue #16; docs/protocol.md part 2, "Exits, re-entry and
occupancy"). Kept apart from gated/central/ledger.py's own tables: the ledger calls in at three
points (schema, each new event, the report) and everything else is here.

    movements(id PK, gate, seq, ticket, zone, dir, reentry, free, ts)
        one row per event that moves somebody: an `admit` scan (dir in, or out at a scan-out exit;
        reentry 1 for a re-entry) and a free exit (`passage` dir out, free true). A movement
        rolled back by its gate's `passage` `timeout` does not count (joined at query time, so
        arrival order does not matter).
    capacities(zone PK, capacity)
        from `gated ledger --capacity ZONE=N`: what the occupancy message and the report show
        occupancy against.

Inside = entries - exits, per zone (the scan's `zone`, or the free exit's; "" for gates without
one) and for the site. A re-entry is an entry (somebody came in), an exit scan and a free exit are
exits. What the gates could not have known offline: re-entries of a ticket beyond its recorded
exits (two gates that did not hear each other both let it back in), reported per ticket.
"""

from __future__ import annotations

import json
import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS movements (
    id TEXT PRIMARY KEY, gate TEXT NOT NULL, seq INTEGER NOT NULL, ticket TEXT, zone TEXT NOT NULL,
    dir TEXT NOT NULL, reentry INTEGER NOT NULL, free INTEGER NOT NULL, ts TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS movements_by_ticket ON movements (ticket) WHERE ticket IS NOT NULL;
CREATE INDEX IF NOT EXISTS movements_by_ts ON movements (ts);
CREATE TABLE IF NOT EXISTS capacities (zone TEXT PRIMARY KEY, capacity INTEGER NOT NULL) WITHOUT ROWID;
"""

# a movement counts unless its own gate rolled it back
_COUNTED = ("NOT EXISTS (SELECT 1 FROM events p WHERE p.ref = m.id AND p.gate = m.gate AND p.kind = 'passage' "
            "AND p.result = 'timeout')")


def create(db: sqlite3.Connection) -> None:
    """Make the tables; a ledger made before them gets its movements from the stored events once."""
    existed = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'movements'").fetchone()
    db.executescript(SCHEMA)
    if not existed:
        db.execute("BEGIN IMMEDIATE")
        for (body,) in db.execute("SELECT body FROM events WHERE kind IN ('scan', 'passage')").fetchall():
            record(db, json.loads(body))
        db.execute("COMMIT")


def record(db: sqlite3.Connection, event: dict) -> None:
    """A new event stored by the ledger (already read and checked): its movement, if it is one."""
    if event["kind"] == "scan" and event.get("decision") == "admit":
        row = (event.get("ticket"), event.get("dir", "in"), int(event.get("reentry") is True), 0)
    elif event["kind"] == "passage" and event.get("free") is True and event.get("dir") == "out":
        row = (None, "out", 0, 1)
    else:
        return
    db.execute("INSERT OR IGNORE INTO movements (id, gate, seq, ticket, zone, dir, reentry, free, ts) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (event["id"], event["gate"], event["seq"], row[0], event.get("zone") or "", row[1], row[2], row[3],
                event["ts"]))


def set_capacity(db: sqlite3.Connection, zone: str, capacity: int) -> None:
    db.execute("INSERT INTO capacities (zone, capacity) VALUES (?, ?) "
               "ON CONFLICT (zone) DO UPDATE SET capacity = excluded.capacity", (zone, capacity))


def parse_capacity(text: str) -> tuple[str, int]:
    """`ZONE=N` (an option's value); ValueError with what is wrong."""
    zone, sep, number = text.partition("=")
    if not sep or not number.strip().isdigit() or int(number) < 1:
        raise ValueError(f"{text!r}: expected ZONE=N with N a whole number of at least 1")
    return zone.strip(), int(number)


def occupancy(db: sqlite3.Connection, until_ts: str | None = None) -> dict:
    """{"inside": n, "zones": {zone: {"inside", "entries", "exits", "capacity"}}} from the movements
    up to `until_ts` (an event `ts`, inclusive; None: all). Inside is entries - exits, never below 0."""
    zones: dict[str, dict] = {}
    for zone, capacity in db.execute("SELECT zone, capacity FROM capacities"):
        zones[zone] = {"inside": 0, "entries": 0, "exits": 0, "capacity": capacity}
    rows = db.execute(
        f"SELECT m.zone, SUM(m.dir = 'in'), SUM(m.dir = 'out') FROM movements m WHERE {_COUNTED} "
        "AND (?1 IS NULL OR m.ts <= ?1) GROUP BY m.zone", (until_ts,))
    for zone, entries, exits in rows:
        entry = zones.setdefault(zone, {"inside": 0, "entries": 0, "exits": 0, "capacity": None})
        entry.update(entries=entries or 0, exits=exits or 0, inside=max(0, (entries or 0) - (exits or 0)))
    return {"inside": sum(z["inside"] for z in zones.values()), "zones": dict(sorted(zones.items()))}


def timeline(db: sqlite3.Connection, since_ts: str | None = None, until_ts: str | None = None) -> list[tuple]:
    """Counted movements in time order: (ts, gate, zone, +1 in / -1 out, reentry, free), for plots.
    People inside at `since_ts` come from occupancy(until_ts=since_ts)."""
    return db.execute(
        f"SELECT m.ts, m.gate, m.zone, CASE m.dir WHEN 'in' THEN 1 ELSE -1 END, m.reentry, m.free FROM movements m "
        f"WHERE {_COUNTED} AND (?1 IS NULL OR m.ts > ?1) AND (?2 IS NULL OR m.ts <= ?2) ORDER BY m.ts, m.id",
        (since_ts, until_ts)).fetchall()


def reentries_without_exit(db: sqlite3.Connection) -> list[dict]:
    """Tickets let back in more often than they were recorded leaving: what gates that could not
    hear each other could not have known."""
    return [{"ticket": ticket, "reentries": reentries, "exits": exits, "gates": sorted(set(gates.split(",")))}
            for ticket, reentries, exits, gates in db.execute(
                f"SELECT m.ticket, SUM(m.reentry), SUM(m.dir = 'out'), GROUP_CONCAT(m.gate) FROM movements m "
                f"WHERE m.ticket IS NOT NULL AND {_COUNTED} GROUP BY m.ticket "
                "HAVING SUM(m.reentry) > SUM(m.dir = 'out') ORDER BY m.ticket")]


def not_an_entry_sql(alias: str) -> str:
    """SQL: the scan `alias` is an exit or a re-entry, which spends no entry (for the ledger's
    over-admission count)."""
    return f"EXISTS (SELECT 1 FROM movements x WHERE x.id = {alias}.id AND (x.dir = 'out' OR x.reentry = 1))"
