"""The occupancy message (docs/protocol.md part 2, "Exits, re-entry and occupancy"): people inside
per zone and per site, as the ledger counts them, retained on `gated/v1/<site>/occupancy`.

    {"v": 1, "site": "arena", "ts": "2026-...Z", "inside": 812,
     "zones": {"north": {"inside": 500, "capacity": 500, "entries": 620, "exits": 120}, ...},
     "as_of": {"g1": 1234, "g2": 987, ...}}

`as_of`: per gate, the highest `seq` of its events the ledger held when it counted. A gate with a
capacity reads the message (strictly, here) and, while it is fresh, adds to the ledger's figure the
movements it knows of that came after it (own and peers' events with a higher seq): the figure
stays exact although it lags, and it includes what this gate missed. `gated status` shows it.
The zone of gates configured without one is "". Every number is an integer, as in events. A zone
is counted only under a zone name (is_zone_name): an event may carry any text of 1024 characters,
and a few gates naming zones of their own must not make the message too large for its readers.
"""

from __future__ import annotations

import json

from gated.core.errors import GatedError
from gated.core.events import MAX_INT, format_ts, parse_ts

VERSION = 1
MAX_BYTES = 65536
MAX_ZONES = 1000
MAX_ZONE_NAME = 128  # characters, as site and gate names


def is_zone_name(value) -> bool:
    """A zone the occupancy counts: text of at most MAX_ZONE_NAME characters, none of them a
    control character ("" is the zone of gates without one)."""
    return type(value) is str and len(value) <= MAX_ZONE_NAME and not any(ord(c) < 32 for c in value)


class OccupancyRejected(GatedError, ValueError):
    """A message on the occupancy topic that is not an occupancy message."""


def encode_occupancy(
    site: str, zones: dict[str, dict], now_ms: int, as_of: dict[str, int], since_ms: int | None = None
) -> bytes:
    """`zones`: {zone: {"inside", "capacity" (int or None), "entries", "exits"}}; `as_of`: {gate: seq};
    `since_ms`: the day start the counts begin at (`since`), None: they count everything."""
    body = {
        "v": VERSION,
        "site": site,
        "ts": format_ts(now_ms),
        "inside": sum(z["inside"] for z in zones.values()),
        "zones": {
            name: {k: zone[k] for k in ("inside", "capacity", "entries", "exits")}
            for name, zone in sorted(zones.items())
        },
        "as_of": dict(sorted(as_of.items())),
    }
    if since_ms is not None:
        body["since"] = format_ts(since_ms)
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _count(value) -> bool:
    return type(value) is int and 0 <= value <= MAX_INT


def read_occupancy(payload: bytes, *, site: str) -> tuple[dict[str, dict], dict[str, int], int]:
    """({zone: {"inside": n, "capacity": c or None}}, {gate: seq}, the unix ms its counts begin at, 0
    without `since`) from a message of `site`; OccupancyRejected otherwise."""
    if len(payload) > MAX_BYTES:
        raise OccupancyRejected(f"message of {len(payload)} bytes, over {MAX_BYTES}")
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise OccupancyRejected(f"not UTF-8 JSON: {exc}"[:200]) from None
    if not isinstance(body, dict) or body.get("v") != VERSION or body.get("site") != site:
        raise OccupancyRejected(f"not an occupancy message of version {VERSION} for site {site!r}")
    zones = body.get("zones")
    if not isinstance(zones, dict) or len(zones) > MAX_ZONES:
        raise OccupancyRejected(f"zones must be an object of at most {MAX_ZONES} zones")
    out = {}
    for name, zone in zones.items():
        if (
            not isinstance(zone, dict)
            or not _count(zone.get("inside"))
            or not (zone.get("capacity") is None or (_count(zone.get("capacity")) and zone["capacity"] >= 1))
        ):
            raise OccupancyRejected(
                f"zone {name[:40]!r}: inside must be an integer in 0..2^63-1 and capacity, if any, one in 1..2^63-1"
            )
        out[name] = {"inside": zone["inside"], "capacity": zone.get("capacity")}
    as_of = body.get("as_of", {})
    if not isinstance(as_of, dict) or len(as_of) > 10 * MAX_ZONES or not all(_count(v) for v in as_of.values()):
        raise OccupancyRejected("as_of must be an object of gate: seq (integers)")
    if "since" not in body:
        return out, as_of, 0
    since_ms = parse_ts(body["since"])
    if since_ms is None:
        raise OccupancyRejected("since must be a time like an event's ts (RFC 3339 UTC with milliseconds)")
    return out, as_of, since_ms
