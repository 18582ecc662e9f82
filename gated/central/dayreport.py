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

from gated.central import occupancy as occ
from gated.core.events import format_ts, parse_ts
from gated.central.plots import figures, page_head

HELD_BACK_MS = 60_000


def ts_ms(ts: str) -> int:
    """An event `ts` the ledger stored (read_event checked its form) as unix ms."""
    return parse_ts(ts) or 0


def _when(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def build(ledger, *, since: float | None = None, until: float | None = None, bin_s: int = 900,
          silence_s: int = 900) -> dict:
    """The report of `ledger` (gated.central.ledger.Ledger) for [since, until] (unix seconds; None: open)."""
    db = ledger.db
    since_ts = format_ts(int(since * 1000)) if since is not None else None
    until_ts = format_ts(int(until * 1000)) if until is not None else None
    rows = db.execute("SELECT body, received_ms FROM events WHERE (CAST(? AS TEXT) IS NULL OR ts >= ?) "
                      "AND (CAST(? AS TEXT) IS NULL OR ts <= ?) ORDER BY ts, id",
                      (since_ts, since_ts, until_ts, until_ts)).fetchall()
    events = [(json.loads(body), received) for body, received in rows]
    timed_out = {e["ref"] for e, _ in events if e["kind"] == "passage" and e.get("result") == "timeout"
                 and e["ref"].rpartition(":")[0] == e["gate"]}
    # rollbacks after the window still undo admissions inside it
    timed_out |= {ref for (ref, gate) in db.execute("SELECT ref, gate FROM events WHERE kind = 'passage' "
                                                    "AND result = 'timeout' AND ref IS NOT NULL")
                  if ref.rpartition(":")[0] == gate}  # a gate rolls back only its own admissions
    start_ms = int(since * 1000) if since is not None else (ts_ms(events[0][0]["ts"]) if events else 0)
    end_ms = int(until * 1000) if until is not None else (ts_ms(events[-1][0]["ts"]) if events else start_ms)
    bin_ms = bin_s * 1000
    origin_ms = start_ms // bin_ms * bin_ms

    totals = Counter()
    denials, types = Counter(), Counter()
    per_gate_bins, per_zone_bins = defaultdict(Counter), defaultdict(Counter)
    gates: dict[str, dict] = {}
    revs: dict[str, dict[int, str]] = defaultdict(dict)
    last_seen: dict[str, int] = {}
    for e, received in events:
        gate, when = e["gate"], ts_ms(e["ts"])
        g = gates.setdefault(gate, {"events": 0, "entries": 0, "reentries": 0, "exits": 0, "admit_scans": 0,
                                    "denials": Counter(), "first": e["ts"], "last": e["ts"], "quiet": [],
                                    "held_back": [], "held_back_events": 0})
        g["events"] += 1
        g["last"] = e["ts"]
        totals["events"] += 1
        if gate in last_seen and when - last_seen[gate] > silence_s * 1000:
            g["quiet"].append([format_ts(last_seen[gate]), e["ts"]])
        last_seen[gate] = when
        if received - when > HELD_BACK_MS:
            g["held_back_events"] += 1
            if g["held_back"] and when - ts_ms(g["held_back"][-1][1]) <= HELD_BACK_MS:
                g["held_back"][-1][1] = e["ts"]
            else:
                g["held_back"].append([e["ts"], e["ts"]])
        if e["kind"] in ("scan", "state") and isinstance(e.get("rev"), int) and e["rev"] not in revs[gate]:
            revs[gate][e["rev"]] = e["ts"]
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
            b = (when - origin_ms) // bin_ms
            per_gate_bins[gate][b] += 1
            per_zone_bins[e.get("zone") or ""][b] += 1
        elif e["kind"] == "passage" and e.get("free") is True and e.get("dir") == "out":
            totals["exits"] += 1
            g["exits"] += 1
    span_ms = max(1, end_ms - start_ms)
    for gate, g in gates.items():
        g["denials"] = dict(sorted(g["denials"].items()))
        lost = sum(ts_ms(b) - ts_ms(a) for a, b in g["quiet"]) + sum(ts_ms(b) - ts_ms(a) for a, b in g["held_back"])
        g["up_share"] = round(max(0.0, 1 - lost / span_ms), 4)
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
        points.setdefault(zone, [(start_ms, 0)]).append((ts_ms(ts), inside[zone]))
        if inside[zone] > peaks.get(zone, [-1])[0]:
            peaks[zone] = [inside[zone], ts]
        if capacities.get(zone) is not None and inside[zone] > capacities[zone] and change > 0:
            over_capacity[zone] += 1
    zones = {z: {"inside_at_start": before["zones"].get(z, {}).get("inside", 0), "inside_at_end": inside.get(z, 0),
                 "peak": peaks.get(z, [0, None])[0], "peak_at": peaks.get(z, [0, None])[1],
                 "capacity": capacities.get(z), "entries_over_capacity": over_capacity.get(z, 0)}
             for z in sorted(set(inside) | set(capacities))}

    integrity = ledger.report()
    t = integrity["totals"]
    problems = []
    if t["missing"]:
        problems.append(f"{t['missing']} events missing (gaps in the gates' sequences)")
    if t.get("declared_lost"):
        problems.append(f"{t['declared_lost']} events declared lost (below a gate's floor: no gate holds them any more)")
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
    for zone, n in over_capacity.items():
        problems.append(f"zone {zone or '(no zone)'} went over its capacity {capacities[zone]} ({n} entries)")
    if not events:
        problems.append("no events in the ledger for this window: nothing to report (is it the right database, "
                        "and --from/--to the right day?)")
    verdict = ("CLEAN: every event accounted for, no ticket over its limit, no zone over its capacity"
               if not problems else "ATTENTION: " + "; ".join(problems))
    return {
        "window": {"from": format_ts(start_ms), "to": format_ts(end_ms), "bin_s": bin_s,
                   "origin": format_ts(origin_ms)},
        "ok": not problems, "verdict": verdict, "problems": problems,
        "totals": {"events": totals["events"], "admit_scans": totals["admit_scans"], "entries": totals["entries"],
                   "reentries": totals["reentries"], "exits": totals["exits"], "rolled_back": totals["rolled_back"],
                   "denials": sum(denials.values()), "inside_at_end": sum(z["inside_at_end"] for z in zones.values())},
        "denials": dict(sorted(denials.items())),
        "ticket_types": dict(sorted(types.items())),
        "entries_per_bin": {"gates": {g: {str(b): n for b, n in sorted(c.items())} for g, c in sorted(per_gate_bins.items())},
                            "zones": {z: {str(b): n for b, n in sorted(c.items())} for z, c in sorted(per_zone_bins.items())}},
        "occupancy": {"zones": zones, "points": {z: [[format_ts(x), n] for x, n in pts] for z, pts in points.items()}},
        "revocations": {"versions_used": sorted({int(v) for g in gates.values() for v in g["revocation_versions"]}),
                        "revoked_denials": denials.get("revoked", 0)},
        "integrity": {"missing": t["missing"], "gaps": {g: v["gaps"] for g, v in integrity["gates"].items() if v["gaps"]},
                      "declared_lost": t.get("declared_lost", 0),
                      "declared_losses": {g: v["declared_losses"] for g, v in integrity["gates"].items()
                                          if v.get("declared_losses")},
                      "chain_breaks": t["chain_breaks"], "bad_signatures": t["bad_signatures"] + t["bad_hashes"],
                      "conflicts": t["conflicts"], "over_admitted": integrity["over_admitted"],
                      "reentries_without_exit": integrity.get("reentries_without_exit", [])},
        "gates": dict(sorted(gates.items())),
    }


def plots(report: dict) -> dict[str, str]:
    """PNG (base64) per plot, from gated/central/plots.py (the rehearsal's report uses the same)."""
    from gated.central import plots as p

    w = report["window"]
    origin, bin_ms = ts_ms(w["origin"]), w["bin_s"] * 1000
    last = max([int(b) for s in report["entries_per_bin"]["gates"].values() for b in s] + [0])
    bins = list(range(last + 1))
    xs = [_when(origin + b * bin_ms + bin_ms // 2) for b in bins]
    spans = [(_when(ts_ms(a)), _when(ts_ms(b)), f"outage {gate}")
             for gate, g in report["gates"].items() for a, b in g["held_back"] + g["quiet"]]
    minutes = w["bin_s"] / 60
    out = {}
    for key, label in (("gates", "gate"), ("zones", "zone")):
        series = {(name or "(no zone)"): {int(b): n for b, n in counts.items()}
                  for name, counts in report["entries_per_bin"][key].items()}
        out[f"entries_per_{label}"] = p.counts_per_bin(
            series, bins, xs=xs, title=f"Entries per {minutes:g} min per {label}",
            ylabel=f"entries per {minutes:g} min", xlabel="time (UTC)", spans=spans)
    points = {z: [(_when(ts_ms(t)), n) for t, n in pts] for z, pts in report["occupancy"]["points"].items()}
    out["occupancy"] = p.occupancy(points, {z: v["capacity"] for z, v in report["occupancy"]["zones"].items()},
                                   title="People inside per zone", xlabel="time (UTC)")
    out["denials"] = p.bars(report["denials"], title="Denials by reason", ylabel="denials")
    out["ticket_types"] = p.bars(report["ticket_types"], title="Entries by ticket type", ylabel="entries",
                                 colour="#1f77b4")
    return out


def write(out_dir: Path, report: dict) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    html_path.write_text(render_html(report, plots(report)))
    return json_path, html_path


def render_html(report: dict, images: dict[str, str]) -> str:
    e = html.escape
    ok = report["ok"]
    colour = "#1a7f37" if ok else "#cf222e"
    t, w = report["totals"], report["window"]
    rows = [("window", f"{w['from']} to {w['to']} (bins of {w['bin_s'] // 60} min)"),
            ("entries", f"{t['entries']} ({t['reentries']} re-entries after an exit); {t['rolled_back']} admissions "
                        f"rolled back (nobody passed)"),
            ("exits", t["exits"]),
            ("inside at the end", t["inside_at_end"]),
            ("denials", ", ".join(f"{r} {n}" for r, n in report["denials"].items()) or "none"),
            ("ticket types", ", ".join(f"{k} {n}" for k, n in report["ticket_types"].items()) or "none"),
            ("revocation lists used", ", ".join(f"v{v}" for v in report["revocations"]["versions_used"]) or "none"),
            ("revoked tickets refused", report["revocations"]["revoked_denials"]),
            ("events", t["events"])]
    table = "".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
    zones = "".join(
        f"<tr><td>{e(z or '(no zone)')}</td><td>{v['inside_at_start']}</td><td>{v['inside_at_end']}</td>"
        f"<td>{v['peak']}</td><td>{e(str(v['peak_at'] or ''))}</td><td>{'' if v['capacity'] is None else v['capacity']}</td>"
        f"<td>{v['entries_over_capacity']}</td></tr>" for z, v in report["occupancy"]["zones"].items())
    gates = "".join(
        f"<tr><td>{e(g)}</td><td>{v['entries']}</td><td>{v['exits']}</td><td>{v['reentries']}</td>"
        f"<td>{e(', '.join(f'{r} {n}' for r, n in v['denials'].items()) or '-')}</td><td>{e(v['first'])}</td>"
        f"<td>{e(v['last'])}</td><td>{v['up_share'] * 100:.1f} %</td>"
        f"<td>{e('; '.join(f'{a} to {b}' for a, b in v['quiet']) or '-')}</td>"
        f"<td>{e('; '.join(f'{a} to {b}' for a, b in v['held_back']) or '-')}</td></tr>"
        for g, v in report["gates"].items())
    i = report["integrity"]
    findings = [f"gaps at {g}: {', '.join(f'{a}-{b}' for a, b in spans)}" for g, spans in i["gaps"].items()]
    findings += [f"declared lost at {g}: {', '.join(f'{a}-{b}' for a, b in spans)}"
                 for g, spans in i.get("declared_losses", {}).items()]
    findings += [f"ticket {o['ticket']}: {o['admits']} admissions, {o['allowed']} allowed"
                 + (" (limit assumed)" if o["assumed"] else "") for o in i["over_admitted"]]
    findings += [f"ticket {r['ticket']}: {r['reentries']} re-entries, {r['exits']} exits ({', '.join(r['gates'])})"
                 for r in i["reentries_without_exit"]]
    found = "".join(f"<li>{e(f)}</li>" for f in findings[:500]) or "<li>none</li>"
    figs = figures(images, e)
    return page_head(f"gated report {e(w['from'][:10])}", colour, 64) + f"""<h1>The day at the gates: {e(w['from'])} to {e(w['to'])}</h1>
<p class="verdict"><strong style="color:{colour}">{'CLEAN' if ok else 'ATTENTION'}</strong> {e(report['verdict'].split(': ', 1)[-1])}</p>
<table>{table}</table>
<h2>Occupancy</h2><table><tr><th>zone</th><th>at start</th><th>at end</th><th>peak</th><th>peak at</th><th>capacity</th><th>entries over capacity</th></tr>{zones}</table>
<h2>Plots</h2><p>Shaded: spans a gate was silent or could not reach the broker.</p>{figs}
<h2>Gates</h2><table><tr><th>gate</th><th>entries</th><th>exits</th><th>re-entries</th><th>denials</th><th>first event</th><th>last event</th><th>up</th><th>quiet</th><th>link down</th></tr>{gates}</table>
<h2>Over-admissions, re-entries and gaps</h2><p>From the ledger's checks over everything it holds.</p><ul>{found}</ul>
</body></html>
"""
