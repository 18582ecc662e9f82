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
one) and for the site; a zone that is not a zone name (gated/core/occupancy.py is_zone_name: at most
128 characters, no control character) is not counted, and `not_counted` says how many such zones
and movements there were. A re-entry is an entry (somebody came in), an exit scan and a free exit are
exits. What the gates could not have known offline: re-entries of a ticket beyond its recorded
exits (two gates that did not hear each other both let it back in), reported per ticket.
"""

from __future__ import annotations

import json

from gated.core.events import MAX_INT
from gated.core.occupancy import is_zone_name

# The tables are the ledger's migration 3 (gated/central/ledgerdb.py), on SQLite and PostgreSQL alike:
# everything below is the SQL both engines share, through the ledger's database seam (`db`).

_IS_IN = "SUM(CASE WHEN m.dir = 'in' THEN 1 ELSE 0 END)"
_IS_OUT = "SUM(CASE WHEN m.dir = 'out' THEN 1 ELSE 0 END)"
# a movement counts unless its own gate rolled it back
_COUNTED = (
    "NOT EXISTS (SELECT 1 FROM events p WHERE p.ref = m.id AND p.gate = m.gate AND p.kind = 'passage' "
    "AND p.result = 'timeout')"
)


def backfill(db) -> None:
    """A ledger whose events predate the movements table: record their movements once."""
    if db.execute("SELECT 1 FROM movements LIMIT 1").fetchone() is not None:
        return
    bodies = db.execute("SELECT body FROM events WHERE kind IN ('scan', 'passage')").fetchall()
    if not bodies:
        return
    db.begin()
    try:
        record(db, [json.loads(body) for (body,) in bodies])
    except BaseException:
        db.rollback()
        raise
    db.commit()


def record(db, events: list[dict]) -> None:
    """New events stored by the ledger (already read and checked): the movements among them."""
    rows = []
    for event in events:
        if event["kind"] == "scan" and event.get("decision") == "admit":
            row = (event.get("ticket"), event.get("dir", "in"), int(event.get("reentry") is True), 0)
        elif event["kind"] == "passage" and event.get("free") is True and event.get("dir") == "out":
            row = (None, "out", 0, 1)
        else:
            continue
        rows.append((event["id"], event["gate"], event["seq"], row[0], event.get("zone") or "", *row[1:], event["ts"]))
    db.insert_ignoring("movements", ("id", "gate", "seq", "ticket", "zone", "dir", "reentry", "free", "ts"), rows)


def set_capacity(db, zone: str, capacity: int) -> None:
    db.execute(
        "INSERT INTO capacities (zone, capacity) VALUES (?, ?) "
        "ON CONFLICT (zone) DO UPDATE SET capacity = excluded.capacity",
        (zone, capacity),
    )


def parse_capacity(text: str) -> tuple[str, int]:
    """`ZONE=N` (an option's value); ValueError with what is wrong."""
    zone, sep, number = text.partition("=")
    number = number.strip()
    if (
        not sep
        or not (number.isascii() and number.isdigit())
        or not 1 <= int(number) <= MAX_INT
        or not is_zone_name(zone.strip())
    ):
        raise ValueError(
            f"{text!r}: expected ZONE=N with N a whole number in 1..2^63-1 "
            "(and ZONE at most 128 characters, no control characters)"
        )
    return zone.strip(), int(number)


def occupancy(db, until_ts: str | None = None, since_ts: str | None = None) -> dict:
    """{"inside": n, "zones": {zone: {"inside", "entries", "exits", "capacity"}}} from the movements
    from `since_ts` (an event `ts`, inclusive: the venue's day start; None: all) up to `until_ts`
    (inclusive; None: all). Inside is entries - exits, never below 0. Movements in a zone that is not
    a zone name are left out; `not_counted` ({"zones", "movements"}) is there when there were some."""
    zones: dict[str, dict] = {}
    for zone, capacity in db.execute("SELECT zone, capacity FROM capacities"):
        zones[zone] = {"inside": 0, "entries": 0, "exits": 0, "capacity": capacity}
    rows = db.execute(
        f"SELECT m.zone, {_IS_IN}, {_IS_OUT} FROM movements m WHERE {_COUNTED} "
        "AND (CAST(? AS TEXT) IS NULL OR m.ts <= ?) AND (CAST(? AS TEXT) IS NULL OR m.ts >= ?) GROUP BY m.zone",
        (until_ts, until_ts, since_ts, since_ts),
    )
    not_counted = {"zones": 0, "movements": 0}
    for zone, entries, exits in rows:
        if not is_zone_name(zone):
            not_counted["zones"] += 1
            not_counted["movements"] += (entries or 0) + (exits or 0)
            continue
        entry = zones.setdefault(zone, {"inside": 0, "entries": 0, "exits": 0, "capacity": None})
        entry.update(entries=entries or 0, exits=exits or 0, inside=max(0, (entries or 0) - (exits or 0)))
    figures = {"inside": sum(z["inside"] for z in zones.values()), "zones": dict(sorted(zones.items()))}
    if not_counted["zones"]:
        figures["not_counted"] = not_counted
    return figures


def timeline(db, since_ts: str | None = None, until_ts: str | None = None) -> list[tuple]:
    """Counted movements in time order: (ts, gate, zone, +1 in / -1 out, reentry, free), for plots.
    People inside at `since_ts` come from occupancy(until_ts=since_ts)."""
    return db.execute(
        f"SELECT m.ts, m.gate, m.zone, CASE m.dir WHEN 'in' THEN 1 ELSE -1 END, m.reentry, m.free FROM movements m "
        f"WHERE {_COUNTED} AND (CAST(? AS TEXT) IS NULL OR m.ts > ?) AND (CAST(? AS TEXT) IS NULL OR m.ts <= ?) "
        "ORDER BY m.ts, m.id",
        (since_ts, since_ts, until_ts, until_ts),
    ).fetchall()


def reentries_without_exit(db) -> list[dict]:
    """Tickets let back in more often than they were recorded leaving: what gates that could not
    hear each other could not have known."""
    return [
        {"ticket": ticket, "reentries": reentries, "exits": exits, "gates": sorted(set(gates.split(",")))}
        for ticket, reentries, exits, gates in db.execute(
            f"SELECT m.ticket, SUM(m.reentry), {_IS_OUT}, {db.group_concat('m.gate')} FROM movements m "
            f"WHERE m.ticket IS NOT NULL AND {_COUNTED} GROUP BY m.ticket "
            f"HAVING SUM(m.reentry) > {_IS_OUT} ORDER BY m.ticket"
        )
    ]


def not_an_entry_sql(alias: str) -> str:
    """SQL: the scan `alias` is an exit or a re-entry, which spends no entry (for the ledger's
    over-admission count)."""
    return f"EXISTS (SELECT 1 FROM movements x WHERE x.id = {alias}.id AND (x.dir = 'out' OR x.reentry = 1))"
