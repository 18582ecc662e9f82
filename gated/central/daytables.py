"""The day's report for people: the venue's local time, sentences instead of codes, and the tables
a spreadsheet takes (gated/central/dayreport.py builds the figures, this module words and files them).

- `venue_day(day, day_starts, zone)`: the window of a venue's day (from its day start to the next).
- `local(ts, zone)`: an event time as the venue's wall clock, to the second, no milliseconds.
- `gap_sentence`, `loss_sentence`, `reason_rows`: what a gap, a declared loss and each denial reason
  mean, in one sentence each.
- per gate: time locked and in emergency (from `state` events and emergency alarms), alarms counted;
  `union_ms` adds up spans without counting an overlap twice.
- `HourTable`: entries, exits and denials per local hour; `write_csv` writes gates.csv and hours.csv.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path

from gated.core.events import format_ts, parse_ts
from gated.core.reasons import MEANING, Reason
from gated.daystart import time_of_day, time_zone


def venue_day(day: str, day_starts: str = "00:00", zone: str = "UTC") -> tuple[float, float]:
    """(since, until) unix seconds of the venue's day `day` (YYYY-MM-DD): from its day start to the next."""
    hour, minute = time_of_day(day_starts)
    tz = time_zone(zone)
    first = date.fromisoformat(day)
    start = datetime(first.year, first.month, first.day, hour, minute, tzinfo=tz)
    nxt = first + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, hour, minute, tzinfo=tz)
    return start.timestamp(), end.timestamp() - 0.001


def local(ts: str | None, zone: str, *, with_date: bool = False) -> str:
    if not ts:
        return ""
    try:
        moment = datetime.fromtimestamp((parse_ts(ts) or 0) / 1000, time_zone(zone))
    except (OverflowError, ValueError, OSError):  # 9999-12-31T23:50Z is in year 10000 east of UTC
        return f"{ts} (time unknown)"
    return moment.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def duration(seconds: int) -> str:
    seconds = int(seconds)
    if seconds <= 0:
        return "-"
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min" if minutes else f"{seconds} s"


def union_ms(spans: list) -> int:
    """The time covered by [from_ts, to_ts] spans, overlaps counted once."""
    pieces = sorted((parse_ts(a) or 0, parse_ts(b) or 0) for a, b in spans)
    total, reach = 0, None
    for start, end in pieces:
        if reach is None or start > reach:
            total += max(0, end - start)
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


def modes_before(db, since_ts: str | None) -> dict[str, str]:
    """Each gate's mode when the window opens: its last `state` event before it (online if none)."""
    modes = {}
    if since_ts is None:
        return modes
    for gate, body in db.execute(
        "SELECT gate, body FROM events WHERE kind = 'state' AND ts < ? ORDER BY ts, id", (since_ts,)
    ).fetchall():
        modes[gate] = json.loads(body).get("state", "online")
    return modes


def mode_change(spans: dict[str, list], since: dict[str, tuple[str, int]], gate: str, mode: str, when: int) -> None:
    """A gate entered `mode` at `when` (ms): close the span of the mode it left, if it was one we count."""
    old, at = since.get(gate, ("online", when))
    if old == mode:
        return
    if old in spans and when > at:
        spans[old].append([format_ts(at), format_ts(when)])
    since[gate] = (mode, when)


def site_of(db) -> str | None:
    row = db.execute("SELECT site FROM events LIMIT 1").fetchone()
    return row[0] if row else None


def known_gates(db) -> list[str]:
    return [row[0] for row in db.execute("SELECT DISTINCT gate FROM events ORDER BY gate").fetchall()]


def gap_sentence(gate: str, first: int, last: int) -> str:
    n = last - first + 1
    which = f"event {first}" if n == 1 else f"events {first} to {last} ({n} events)"
    return (
        f"Gate {gate}: {which} never reached the ledger. The gate made them, and keeps each in its outbox "
        f"until the broker takes it, so they arrive when the gate reaches the broker again; if the gate's "
        f"state was lost or replaced, they are lost."
    )


def loss_sentence(gate: str, first: int, last: int) -> str:
    n = last - first + 1
    which = f"event {first} is" if n == 1 else f"events {first} to {last} ({n} events) are"
    return (
        f"Gate {gate}: {which} declared lost. The gate no longer holds them (kept past its outbox's "
        f"retention without reaching the ledger, or its state was replaced), so they will never arrive; "
        f"the ledger stopped waiting for them."
    )


def reason_rows(denials: dict[str, int]) -> list[tuple[str, str, int]]:
    """(code, what it means, count) for each denial reason that occurred, most frequent first."""
    rows = []
    for code, count in sorted(denials.items(), key=lambda kv: (-kv[1], kv[0])):
        try:
            meaning = MEANING[Reason(code)]
        except ValueError:
            meaning = "a reason this version of gated does not know"
        rows.append((code, meaning, count))
    return rows


class HourTable:
    """Entries, exits and denials per hour of the venue's local time (and entries per gate)."""

    def __init__(self, zone: str):
        self.zone = time_zone(zone)
        self.counts: dict[str, Counter] = defaultdict(Counter)
        self.gates: set[str] = set()

    def add(self, event: dict, when_ms: int, timed_out: set) -> None:
        hour = datetime.fromtimestamp(when_ms / 1000, self.zone).strftime("%Y-%m-%d %H:00")
        row = self.counts[hour]
        if event["kind"] == "scan" and event.get("decision") == "deny":
            row["denials"] += 1
        elif event["kind"] == "scan" and event["id"] not in timed_out:
            if event.get("dir", "in") == "out":
                row["exits"] += 1
            else:
                row["entries"] += 1
                row[f"entries {event['gate']}"] += 1
                self.gates.add(event["gate"])
        elif event["kind"] == "passage" and event.get("free") is True and event.get("dir") == "out":
            row["exits"] += 1

    def rows(self) -> list[dict]:
        columns = ["entries", "exits", "denials", *(f"entries {g}" for g in sorted(self.gates))]
        return [{"hour": hour, **{c: self.counts[hour].get(c, 0) for c in columns}} for hour in sorted(self.counts)]


GATE_COLUMNS = (
    "gate",
    "entries",
    "exits",
    "re-entries",
    "denials",
    "first event",
    "last event",
    "offline min",
    "locked min",
    "emergency min",
    "alarms",
    "in service %",
)


def gate_rows(report: dict) -> list[dict]:
    zone = report.get("timezone", "UTC")
    out = []
    for gate, g in report["gates"].items():
        out.append(
            {
                "gate": gate,
                "entries": g["entries"],
                "exits": g["exits"],
                "re-entries": g["reentries"],
                "denials": sum(g["denials"].values()),
                "first event": local(g["first"], zone, with_date=True),
                "last event": local(g["last"], zone, with_date=True),
                "offline min": round(g.get("offline_s", 0) / 60, 1),
                "locked min": round(g.get("locked_s", 0) / 60, 1),
                "emergency min": round(g.get("emergency_s", 0) / 60, 1),
                "alarms": "; ".join(f"{k} {n}" for k, n in g.get("alarms", {}).items()),
                "in service %": round(g["up_share"] * 100, 1),
            }
        )
    return out


def write_csv(out_dir: Path, report: dict) -> tuple[Path, Path]:
    """gates.csv (one row per gate) and hours.csv (one row per local hour), beside report.html."""
    gates_path, hours_path = Path(out_dir) / "gates.csv", Path(out_dir) / "hours.csv"
    with open(gates_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, GATE_COLUMNS)
        writer.writeheader()
        writer.writerows(gate_rows(report))
    hours = report.get("per_hour", [])
    columns = list(hours[0]) if hours else ["hour", "entries", "exits", "denials"]
    with open(hours_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(hours)
    return gates_path, hours_path
