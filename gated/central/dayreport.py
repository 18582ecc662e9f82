"""`gated report --db LEDGER --out DIR [--from T] [--to T]`: the day at a site for its managers,
from the ledger: report.json for machines and report.html for people (self-contained: the plots
are PNGs embedded as base64, no scripts, nothing fetched; the verdict comes first, as in the
rehearsal's report, and the plots are the same code: gated/central/plots.py).

What it holds (all from the events the ledger stored; times are the gates' `ts`, UTC):

    totals        events, admit scans, entries (admissions not rolled back, re-entries included),
                  re-entries, exits (scanned and free), denials, per reason
    per bin       (a quarter hour unless --bin-minutes): entries per gate and per zone
    occupancy     people inside per zone at the start of the window, over it, at its end, the peak,
                  against the zone's capacity (`gated ledger --capacity`); the site's total
    ticket types  entries per ticket type
    revocations   the revocation list versions the gates decided with (scan and state events' `rev`),
                  when each gate first used each, and the `revoked` denials
    integrity     from the ledger's checks (the whole ledger, not only the window): missing events
                  (gaps), chain breaks, bad signatures, conflicts, over-admitted tickets, re-entries
                  beyond recorded exits
    gates         per gate: first and last event, quiet spans (no event for longer than
                  --silence-minutes: the gate was down, or nobody came), link outages (events that
                  reached the ledger more than a minute after they were made: kept in the gate's
                  outbox while it could not reach the broker), and the share of the window outside both

Uptime here is what the events show; the gates' status and health topics (`gated status`) see more.
"""

from __future__ import annotations

import html
import json
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

from gated.atomicfile import write_atomic
from gated.central import daytables
from gated.central import occupancy as occ
from gated.central.plots import figures, page_head
from gated.core.events import MAX_TIME_MS, format_ts, parse_ts

HELD_BACK_MS = 60_000
# Event times the report places on the venue's clock; an event dated outside (a gate's clock gone
# wrong: year 1970 or 9999) is counted but its time is unknown: listed as such, in no hour, bin or
# span, and the window never reaches it. The end is the bound no gate's clock passes.
KNOWN_FROM_MS = 946_684_800_000  # 2000-01-01T00:00:00.000Z
KNOWN_UNTIL_MS = MAX_TIME_MS  # 9000-01-01T00:00:00.000Z
UNKNOWN_LISTED = 100  # events of unknown time listed by id (all are counted)


def ts_ms(ts: str) -> int:
    """An event `ts` the ledger stored (read_event checked its form) as unix ms."""
    return parse_ts(ts) or 0


def _when(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def known_time(ms: int) -> bool:
    return KNOWN_FROM_MS <= ms < KNOWN_UNTIL_MS


def _clamped(seconds: float | None) -> float | None:
    """A window bound (unix seconds) within the times the report places (KNOWN_FROM_MS..KNOWN_UNTIL_MS)."""
    if seconds is None:
        return None
    return min(max(seconds, KNOWN_FROM_MS / 1000), (KNOWN_UNTIL_MS - 1) / 1000)


def build(
    ledger,
    *,
    since: float | None = None,
    until: float | None = None,
    bin_s: int = 900,
    silence_s: int = 900,
    timezone_name: str = "UTC",
    day: str | None = None,
) -> dict:
    """The report of `ledger` (gated.central.ledger.Ledger) for [since, until] (unix seconds; None: open).
    `timezone_name`: the venue's (times on the page are its local times); `day`: the venue's day the
    window is, for the title (gated report --day)."""
    db = ledger.db
    since, until = _clamped(since), _clamped(until)
    since_ts = format_ts(int(since * 1000)) if since is not None else None
    until_ts = format_ts(int(until * 1000)) if until is not None else None
    rows = db.execute(
        "SELECT body, received_ms FROM events WHERE (CAST(? AS TEXT) IS NULL OR ts >= ?) "
        "AND (CAST(? AS TEXT) IS NULL OR ts <= ?) ORDER BY ts, id",
        (since_ts, since_ts, until_ts, until_ts),
    ).fetchall()
    events = [(json.loads(body), received) for body, received in rows]
    timed_out = {
        e["ref"]
        for e, _ in events
        if e["kind"] == "passage" and e.get("result") == "timeout" and e["ref"].rpartition(":")[0] == e["gate"]
    }
    # rollbacks after the window still undo admissions inside it
    timed_out |= {
        ref
        for (ref, gate) in db.execute(
            "SELECT ref, gate FROM events WHERE kind = 'passage' AND result = 'timeout' AND ref IS NOT NULL"
        )
        if ref.rpartition(":")[0] == gate
    }  # a gate rolls back only its own admissions
    dated = [ts_ms(e["ts"]) for e, _ in events if known_time(ts_ms(e["ts"]))]  # in ts order
    start_ms = int(since * 1000) if since is not None else (dated[0] if dated else KNOWN_FROM_MS)
    end_ms = int(until * 1000) if until is not None else (dated[-1] if dated else start_ms)
    bin_ms = bin_s * 1000
    origin_ms = start_ms // bin_ms * bin_ms
    modes = daytables.modes_before(db, since_ts)  # each gate's mode as the window opens
    mode_spans: dict[str, dict[str, list]] = defaultdict(lambda: {"locked": [], "emergency": []})
    mode_since: dict[str, tuple[str, int]] = {g: (m, start_ms) for g, m in modes.items()}
    alarms: dict[str, Counter] = defaultdict(Counter)
    hours = daytables.HourTable(timezone_name)

    totals = Counter()
    denials, types = Counter(), Counter()
    per_gate_bins, per_zone_bins = defaultdict(Counter), defaultdict(Counter)
    gates: dict[str, dict] = {}
    revs: dict[str, dict[int, str]] = defaultdict(dict)
    last_seen: dict[str, int] = {}
    unknown: list[dict] = []  # events dated outside KNOWN_FROM_MS..KNOWN_UNTIL_MS
    for e, received in events:
        gate, when = e["gate"], ts_ms(e["ts"])
        known = known_time(when)
        g = gates.setdefault(
            gate,
            {
                "events": 0,
                "entries": 0,
                "reentries": 0,
                "exits": 0,
                "admit_scans": 0,
                "denials": Counter(),
                "first": None,
                "last": None,
                "quiet": [],
                "held_back": [],
                "held_back_events": 0,
                "time_unknown_events": 0,
            },
        )
        g["events"] += 1
        totals["events"] += 1
        if known:
            _place(e, received, when, g, last_seen, silence_s)
        else:  # counted below like any other, but in no hour, bin or span
            g["time_unknown_events"] += 1
            if len(unknown) < UNKNOWN_LISTED:
                unknown.append({"id": e["id"], "gate": gate, "kind": e["kind"], "ts": e["ts"]})
        if e["kind"] in ("scan", "state") and isinstance(e.get("rev"), int) and e["rev"] not in revs[gate]:
            revs[gate][e["rev"]] = e["ts"]
        if e["kind"] == "state" and known:
            daytables.mode_change(mode_spans[gate], mode_since, gate, e["state"], when)
        elif e["kind"] == "alarm":
            alarms[gate][e["alarm"]] += 1
            if e["alarm"] in ("emergency_on", "emergency_off") and known:
                daytables.mode_change(
                    mode_spans[gate], mode_since, gate, "emergency" if e["alarm"] == "emergency_on" else "online", when
                )
        if known:
            hours.add(e, when, timed_out)
        if e["kind"] == "scan" and e["decision"] == "deny":
            denials[e["reason"]] += 1
            g["denials"][e["reason"]] += 1
        elif e["kind"] == "scan":
            totals["admit_scans"] += 1
            g["admit_scans"] += 1
            if e["id"] in timed_out:
                totals["rolled_back"] += 1
                continue
            if e.get("dir", "in") == "out":
                totals["exits"] += 1
                g["exits"] += 1
                continue
            totals["entries"] += 1
            g["entries"] += 1
            if e.get("reentry") is True:
                totals["reentries"] += 1
                g["reentries"] += 1
            types[e.get("type") or "general"] += 1
            if known:
                b = (when - origin_ms) // bin_ms
                per_gate_bins[gate][b] += 1
                per_zone_bins[e.get("zone") or ""][b] += 1
        elif e["kind"] == "passage" and e.get("free") is True and e.get("dir") == "out":
            totals["exits"] += 1
            g["exits"] += 1
    span_ms = max(1, end_ms - start_ms)
    if since is not None and until is not None:  # a gate the ledger knows that made nothing all window
        for gate in daytables.known_gates(db):
            if gate not in gates:
                gates[gate] = {
                    "events": 0,
                    "entries": 0,
                    "reentries": 0,
                    "exits": 0,
                    "admit_scans": 0,
                    "denials": Counter(),
                    "first": None,
                    "last": None,
                    "held_back": [],
                    "held_back_events": 0,
                    "time_unknown_events": 0,
                    "quiet": [[format_ts(start_ms), format_ts(end_ms)]],
                }
    for gate, (mode, at) in mode_since.items():  # a mode that lasts to the end of the window
        if mode in ("locked", "emergency") and end_ms > at:
            mode_spans[gate][mode].append([format_ts(at), format_ts(end_ms)])
    for gate, g in gates.items():
        g["denials"] = dict(sorted(g["denials"].items()))
        # silent from the window's start to its first event, or from its last to the window's end
        if since is not None and g["first"] and ts_ms(g["first"]) - start_ms > silence_s * 1000:
            g["quiet"].insert(0, [format_ts(start_ms), g["first"]])
        if until is not None and g["last"] and end_ms - ts_ms(g["last"]) > silence_s * 1000:
            g["quiet"].append([g["last"], format_ts(end_ms)])
        g["locked"], g["emergency"] = mode_spans[gate]["locked"], mode_spans[gate]["emergency"]
        g["alarms"] = dict(sorted(alarms[gate].items()))
        offline = daytables.union_ms(g["quiet"] + g["held_back"])
        g["offline_s"] = offline // 1000
        g["locked_s"] = daytables.union_ms(g["locked"]) // 1000
        g["emergency_s"] = daytables.union_ms(g["emergency"]) // 1000
        out_of_service = daytables.union_ms(g["quiet"] + g["held_back"] + g["locked"] + g["emergency"])
        g["up_share"] = round(max(0.0, 1 - out_of_service / span_ms), 4)  # in service: online, not locked, no emergency
        g["revocation_versions"] = {str(v): t for v, t in sorted(revs[gate].items())}

    # occupancy: at the start, each change in the window, at the end
    before = occ.occupancy(db, until_ts=since_ts) if since_ts is not None else {"zones": {}}
    after = occ.occupancy(db, until_ts=until_ts)
    capacities = {z: v["capacity"] for z, v in after["zones"].items()}
    inside = {z: v["inside"] for z, v in before["zones"].items()}
    points = {z: [(start_ms, n)] for z, n in inside.items()}
    peaks = {z: [n, since_ts] for z, n in inside.items()}
    over_capacity = defaultdict(int)
    for ts, _gate, zone, change, _re, _free in occ.timeline(db, since_ts, until_ts):
        inside[zone] = max(0, inside.get(zone, 0) + change)
        if not known_time(ts_ms(ts)):
            continue  # counted; no point on the day's curve
        points.setdefault(zone, [(start_ms, 0)]).append((ts_ms(ts), inside[zone]))
        if inside[zone] > peaks.get(zone, [-1])[0]:
            peaks[zone] = [inside[zone], ts]
        if capacities.get(zone) is not None and inside[zone] > capacities[zone] and change > 0:
            over_capacity[zone] += 1
    zones = {
        z: {
            "inside_at_start": before["zones"].get(z, {}).get("inside", 0),
            "inside_at_end": inside.get(z, 0),
            "peak": peaks.get(z, [0, None])[0],
            "peak_at": peaks.get(z, [0, None])[1],
            "capacity": capacities.get(z),
            "entries_over_capacity": over_capacity.get(z, 0),
        }
        for z in sorted(set(inside) | set(capacities))
    }

    integrity = ledger.report()
    t = integrity["totals"]
    problems = []
    if t["missing"]:
        problems.append(
            f"{t['missing']} event{'s' if t['missing'] != 1 else ''} missing (gaps in the gates' sequences)"
        )
    if t.get("declared_lost"):
        problems.append(
            f"{t['declared_lost']} event{'s' if t['declared_lost'] != 1 else ''} declared lost "
            f"(below a gate's floor: no gate holds them any more)"
        )
    if t["chain_breaks"]:
        problems.append(f"{t['chain_breaks']} hash chain breaks")
    if t["bad_signatures"] + t["bad_hashes"]:
        problems.append(f"{t['bad_signatures'] + t['bad_hashes']} events with a bad hash or signature")
    if t["conflicts"]:
        problems.append(f"{t['conflicts']} conflicting events")
    if t["over_admitted"]:
        problems.append(f"{t['over_admitted']} tickets admitted more often than they allow")
    if t.get("reentries_without_exit"):
        problems.append(f"{t['reentries_without_exit']} tickets let back in more often than they left")
    time_unknown = sum(g["time_unknown_events"] for g in gates.values())
    if time_unknown:
        problems.append(
            f"{time_unknown} event{'s' if time_unknown != 1 else ''} dated outside {format_ts(KNOWN_FROM_MS)[:10]} "
            f"to {format_ts(KNOWN_UNTIL_MS)[:10]} (a gate's clock was wrong): counted, but their time is unknown"
        )
    for zone, n in over_capacity.items():
        problems.append(f"zone {zone or '(no zone)'} went over its capacity {capacities[zone]} ({n} entries)")
    if not events:
        problems.append(
            "no events in the ledger for this window: nothing to report (is it the right database, "
            "and --from/--to the right day?)"
        )
    verdict = (
        "CLEAN: every event accounted for, no ticket over its limit, no zone over its capacity"
        if not problems
        else "ATTENTION: " + "; ".join(problems)
    )
    return {
        "site": sorted({e["site"] for e, _ in events})[0] if events else daytables.site_of(db),
        "event_names": sorted(
            {
                e["event"]
                for e, _ in events  # what the gates admitted for, not what forgers wrote
                if e["kind"] == "scan" and e.get("decision") == "admit" and isinstance(e.get("event"), str)
            }
        ),
        "day": day,
        "timezone": timezone_name,
        "silence_min": silence_s // 60,
        "window": {
            "from": format_ts(start_ms),
            "to": format_ts(end_ms),
            "bin_s": bin_s,
            "origin": format_ts(origin_ms),
        },
        "per_hour": hours.rows(),
        "ok": not problems,
        "verdict": verdict,
        "problems": problems,
        "totals": {
            "events": totals["events"],
            "admit_scans": totals["admit_scans"],
            "entries": totals["entries"],
            "reentries": totals["reentries"],
            "exits": totals["exits"],
            "rolled_back": totals["rolled_back"],
            "denials": sum(denials.values()),
            "inside_at_end": sum(z["inside_at_end"] for z in zones.values()),
        },
        "denials": dict(sorted(denials.items())),
        "ticket_types": dict(sorted(types.items())),
        "entries_per_bin": {
            "gates": {g: {str(b): n for b, n in sorted(c.items())} for g, c in sorted(per_gate_bins.items())},
            "zones": {z: {str(b): n for b, n in sorted(c.items())} for z, c in sorted(per_zone_bins.items())},
        },
        "occupancy": {"zones": zones, "points": {z: [[format_ts(x), n] for x, n in pts] for z, pts in points.items()}},
        "revocations": {
            "versions_used": sorted({int(v) for g in gates.values() for v in g["revocation_versions"]}),
            "revoked_denials": denials.get("revoked", 0),
        },
        "integrity": {
            "missing": t["missing"],
            "gaps": {g: v["gaps"] for g, v in integrity["gates"].items() if v["gaps"]},
            "declared_lost": t.get("declared_lost", 0),
            "declared_losses": {
                g: v["declared_losses"] for g, v in integrity["gates"].items() if v.get("declared_losses")
            },
            "chain_breaks": t["chain_breaks"],
            "bad_signatures": t["bad_signatures"] + t["bad_hashes"],
            "conflicts": t["conflicts"],
            "over_admitted": integrity["over_admitted"],
            "reentries_without_exit": integrity.get("reentries_without_exit", []),
        },
        "gates": dict(sorted(gates.items())),
        "time_unknown": {"events": time_unknown, "listed": unknown},
    }


def _place(e: dict, received: int, when: int, g: dict, last_seen: dict[str, int], silence_s: int) -> None:
    """An event of known time in its gate's first and last event, quiet spans and held-back spans."""
    gate = e["gate"]
    g["first"] = g["first"] or e["ts"]
    g["last"] = e["ts"]
    if gate in last_seen and when - last_seen[gate] > silence_s * 1000:
        g["quiet"].append([format_ts(last_seen[gate]), e["ts"]])
    last_seen[gate] = when
    if received - when > HELD_BACK_MS:
        g["held_back_events"] += 1
        if g["held_back"] and when - ts_ms(g["held_back"][-1][1]) <= HELD_BACK_MS:
            g["held_back"][-1][1] = e["ts"]
        else:
            g["held_back"].append([e["ts"], e["ts"]])


def plots(report: dict) -> dict[str, str]:
    """PNG (base64) per plot, from gated/central/plots.py: bars per bin on the venue's clock, the
    x axis the whole window, one colour per zone and per gate throughout. A plot with nothing to
    show is left out (the page says so in words)."""
    from gated.central import plots as p
    from gated.daystart import time_zone

    tz = time_zone(report.get("timezone", "UTC"))
    w = report["window"]
    origin, bin_ms = ts_ms(w["origin"]), w["bin_s"] * 1000
    if report.get("day"):  # the venue's day, whatever the data
        window = (_when(ts_ms(w["from"])).astimezone(tz), _when(ts_ms(w["to"])).astimezone(tz))
    else:  # the data's span in whole bins: one event is one bin wide, not a dot on an axis of years
        last = -(-max(ts_ms(w["to"]) + 1, origin + 1) // bin_ms) * bin_ms
        window = (_when(origin).astimezone(tz), _when(last).astimezone(tz))
    minutes = w["bin_s"] / 60
    zones = set(report["occupancy"]["zones"]) | set(report["entries_per_bin"]["zones"])
    colours = {"gates": p.colours_for(report["gates"]), "zones": p.colours_for(z or "(no zone)" for z in zones)}
    out = {}
    for key, label in (("gates", "gate"), ("zones", "zone")):
        series = {
            (name or "(no zone)"): {int(b): n for b, n in counts.items()}
            for name, counts in report["entries_per_bin"][key].items()
        }
        lefts = {b: _when(origin + b * bin_ms).astimezone(tz) for counts in series.values() for b in counts}
        out[f"entries_per_{label}"] = p.binned_bars(
            series,
            lefts=lefts,
            width_days=bin_ms / 86_400_000,
            window=window,
            tz=tz,
            title=f"Entries per {minutes:g} min, by {label}",
            ylabel=f"entries per {minutes:g} min",
            xlabel=f"time ({report.get('timezone', 'UTC')})",
            colours=colours[key],
        )
    points = {
        (z or "(no zone)"): [(_when(ts_ms(t)).astimezone(tz), n) for t, n in pts]
        for z, pts in report["occupancy"]["points"].items()
    }
    if any(len(pts) > 1 or (pts and pts[0][1]) for pts in points.values()):
        out["occupancy"] = p.occupancy_day(
            points,
            {(z or "(no zone)"): v["capacity"] for z, v in report["occupancy"]["zones"].items()},
            window=window,
            tz=tz,
            title="People inside per zone",
            xlabel=f"time ({report.get('timezone', 'UTC')})",
            colours=colours["zones"],
        )
    if report["denials"]:
        out["denials"] = p.bars(report["denials"], title="Denials by reason", ylabel="denials")
    if report["ticket_types"]:
        out["ticket_types"] = p.bars(
            report["ticket_types"], title="Entries by ticket type", ylabel="entries", colour="#1f77b4"
        )
    return out


def write(out_dir: Path, report: dict) -> tuple[Path, Path]:
    """report.json, report.html, and gates.csv and hours.csv for spreadsheets."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    write_atomic(json_path, json.dumps(report, indent=2) + "\n")
    write_atomic(html_path, render_html(report, plots(report)))
    daytables.write_csv(out_dir, report)
    return json_path, html_path


def title(report: dict) -> str:
    """'arena, FINAL-2026: Sunday 6 December 2026' (the venue's day), or the window in local time."""
    zone = report.get("timezone", "UTC")
    names = ", ".join(x for x in [report.get("site") or "", ", ".join(report.get("event_names") or [])] if x)
    w = report["window"]
    if report.get("day"):
        from datetime import date

        when = date.fromisoformat(report["day"]).strftime("%A %-d %B %Y")
        span = f"{daytables.local(w['from'], zone)[:5]} to {daytables.local(w['to'], zone)[:5]} {zone}"
        return f"{names or 'The gates'}: {when} ({span})"
    return (
        f"{names or 'The gates'}: {daytables.local(w['from'], zone, with_date=True)} to "
        f"{daytables.local(w['to'], zone, with_date=True)} ({zone})"
    )


def render_html(report: dict, images: dict[str, str]) -> str:
    e = html.escape
    ok = report["ok"]
    colour = "#1a7f37" if ok else "#cf222e"
    zone = report.get("timezone", "UTC")
    t = report["totals"]
    loc = lambda ts: daytables.local(ts, zone)  # noqa: E731
    rows = [
        (
            "entries",
            f"{t['entries']} ({t['reentries']} re-entries after an exit); {t['rolled_back']} admissions "
            f"rolled back (nobody passed)",
        ),
        ("exits", t["exits"]),
        ("inside at the end", t["inside_at_end"]),
        ("denials", t["denials"]),
        ("ticket types", ", ".join(f"{k} {n}" for k, n in report["ticket_types"].items()) or "none"),
        ("revocation lists used", ", ".join(f"v{v}" for v in report["revocations"]["versions_used"]) or "none"),
        ("revoked tickets refused", report["revocations"]["revoked_denials"]),
        ("events", t["events"]),
    ]
    table = "".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
    reasons = "".join(
        f"<tr><td><code>{e(code)}</code></td><td>{e(meaning)}</td><td>{n}</td></tr>"
        for code, meaning, n in daytables.reason_rows(report["denials"])
    )
    reasons = (
        (
            f'<div class="scroll"><table><tr><th>reason</th><th>what it means</th><th>how often</th></tr>{reasons}'
            f"</table></div>"
        )
        if reasons
        else "<p>No ticket was refused.</p>"
    )
    zones = "".join(
        f"<tr><td>{e(z or '(no zone)')}</td><td>{v['inside_at_start']}</td><td>{v['inside_at_end']}</td>"
        f"<td>{v['peak']}</td><td>{e(loc(v['peak_at']))}</td><td>{'' if v['capacity'] is None else v['capacity']}</td>"
        f"<td>{v['entries_over_capacity']}</td></tr>"
        for z, v in report["occupancy"]["zones"].items()
    )
    zones = (
        (
            f'<div class="scroll"><table><tr><th>zone</th><th>at start</th><th>at end</th><th>peak</th><th>peak at</th>'
            f"<th>capacity</th><th>entries over capacity</th></tr>{zones}</table></div>"
        )
        if zones
        else "<p>No zone had anyone in it.</p>"
    )
    spans = lambda pairs: "; ".join(f"{loc(a)[:5]} to {loc(b)[:5]}" for a, b in pairs) or "-"  # noqa: E731
    gates = "".join(
        f"<tr><td>{e(g)}</td><td>{v['entries']}</td><td>{v['exits']}</td>"
        f"<td>{sum(v['denials'].values())}</td><td>{e(loc(v['first']))}</td><td>{e(loc(v['last']))}</td>"
        f"<td>{e(daytables.duration(v.get('offline_s', 0)))}</td><td>{e(daytables.duration(v.get('locked_s', 0)))}</td>"
        f"<td>{e(daytables.duration(v.get('emergency_s', 0)))}</td>"
        f"<td>{e('; '.join(f'{k} {n}' for k, n in v.get('alarms', {}).items()) or '-')}</td>"
        f"<td>{v['up_share'] * 100:.0f} %</td>"
        f"<td>{e(spans(v['quiet'] + v['held_back']))}</td></tr>"
        for g, v in report["gates"].items()
    )
    gates = (
        (
            f'<div class="scroll"><table><tr><th>gate</th><th>entries</th><th>exits</th><th>denials</th>'
            f"<th>first event</th><th>last event</th><th>offline</th><th>locked</th><th>emergency</th><th>alarms</th>"
            f"<th>in service</th><th>when offline</th></tr>{gates}</table></div>"
        )
        if gates
        else "<p>No gate reported anything in this window.</p>"
    )
    i = report["integrity"]
    findings = [daytables.gap_sentence(g, a, b) for g, gaps in i["gaps"].items() for a, b in gaps]
    findings += [
        daytables.loss_sentence(g, a, b) for g, spans in i.get("declared_losses", {}).items() for a, b in spans
    ]
    findings += [
        f"Ticket {o['ticket']} was admitted {o['admits']} times but allows {o['allowed']}"
        + (" (one assumed: no tickets.csv was loaded)." if o["assumed"] else ".")
        for o in i["over_admitted"]
    ]
    findings += [
        f"Ticket {r['ticket']} came back in {r['reentries']} times but was recorded leaving {r['exits']} times "
        f"({', '.join(r['gates'])})."
        for r in i["reentries_without_exit"]
    ]
    found = "".join(f"<li>{e(f)}</li>" for f in findings[:500]) or "<li>None: every event is accounted for.</li>"
    unknown = report.get("time_unknown") or {"events": 0, "listed": []}
    undated = (
        f"<h2>Events of unknown time</h2><p>{unknown['events']} event{'s' if unknown['events'] != 1 else ''} "
        f"dated outside {format_ts(KNOWN_FROM_MS)[:10]} to {format_ts(KNOWN_UNTIL_MS)[:10]}: the gate's clock was "
        "wrong when it made them. They are counted in the totals, but in no hour, plot or span.</p><ul>"
        + "".join(f"<li>{e(u['id'])} ({e(u['kind'])}) dated {e(u['ts'])}</li>" for u in unknown["listed"])
        + (
            f"<li>and {unknown['events'] - len(unknown['listed'])} more</li>"
            if unknown["events"] > len(unknown["listed"])
            else ""
        )
        + "</ul>"
        if unknown["events"]
        else ""
    )
    figs = figures(images, e) or "<p>Nothing to plot in this window.</p>"
    heading = title(report)
    return (
        page_head(e(heading), colour, 64)
        + f"""<h1>{e(heading)}</h1>
<p class="verdict"><strong style="color:{colour}">{"CLEAN" if ok else "ATTENTION"}</strong> {e(report["verdict"].split(": ", 1)[-1])}</p>
<table>{table}</table>
<h2>Denials</h2>{reasons}
<h2>Gates</h2><p>Offline: no event for over {report.get("silence_min", 15)} minutes, or events held back while the gate could not reach the broker. In service: the share of the window a gate was online, not locked and not in emergency mode.</p>{gates}
<h2>Occupancy</h2>{zones}
<h2>Plots</h2><p>Times are {e(zone)} local time; bars are entries per {w_bin(report)} minutes.</p>{figs}
<h2>Missing events, over-admissions and re-entries</h2><p>From the ledger's checks over everything it holds.</p><ul>{found}</ul>
{undated}
<p>Also in this folder: report.json, and gates.csv and hours.csv for a spreadsheet.</p>
</body></html>
"""
    )


def w_bin(report: dict) -> str:
    return f"{report['window']['bin_s'] / 60:g}"
