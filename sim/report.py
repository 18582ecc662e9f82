"""The simulator's verdict: report.json for machines, report.html for people (opens offline:
the plots are PNGs embedded as base64, no scripts, no external files).

report.json (the keys CI and operators rely on):

    {"scenario": name, "visitors": N,
     "decisions": {"expected": n, "matched": n, "mismatched": n},      one per attempt (a visitor who did
                                                                       not pass and retried makes two)
     "events": {"made": n, "in_ledger": n, "gaps": n, "declared_lost": n, "duplicates": n (the ledger received
                again and dropped by id; also as duplicates_dropped), "duplicates_dropped": n, "chain_breaks": n,
                "bad_signatures": n, "conflicts": n},  conflicts: events quarantined as a second event
                                                       with a taken id (a replaced gate's chain must make none)
     "replacements": [...]                     the ledger's replaced gates (a new chain after an old one)
     "admissions_flagged_unsynced": n          admissions by replaced gates before their snapshot
                                                (until_synced = "admit"); over-admissions they explain are
                                                expected there, flagged, and not counted as a failure
     "latency_ms": {"p50": x, "p99": x},        frame capture to relay command, as each gate measured it
     "throughput_per_gate_per_min": x,          decisions per gate per minute of wall time while serving
     "denials": {reason: n},
     "admissions_over_limit": n,
     "movements": {"entries": n, "reentries": n, "exits": n}      as the visitors went through
     "occupancy": {"expected": {zone: n}, "ledger": {zone: n}, "capacity": {zone: n}}
                                                people inside at the end: the ground truth, and what
                                                the ledger counts from entries and exits
     ... plus "ok", "verdict", "held_back_events" (scans that reached the broker late: proof a fault bit), "problems", "mismatches", "faults", "gates", "end_to_end_ms", "speed",
     "answer_s" (p50/p99 seconds from showing a code to its scan event), "queue_wait_s" (p50/p99/max wall
     seconds in line before the reader), "backlog_drain_s" (per broker outage: scans made meanwhile and
     how many wall seconds after the broker came back the last of them reached it)}

`ok` is false on any mismatch, any lost event (made > in ledger, or a gap), any broken chain or bad
signature, and any ticket admitted more often than it allows; the command exits non-zero then.
"""

from __future__ import annotations

import html
import json
from collections import Counter, defaultdict
from pathlib import Path

from gated.atomicfile import write_atomic
from gated.central.plots import figures, page_head
from gated.core.reasons import MEANING
from sim.stats import percentile

GLOSSARY = {reason.value: text for reason, text in MEANING.items()}


def _p(values: list[float], q: float) -> float:
    """The report's figures: sim.stats.percentile, rounded, 0 where nothing was measured."""
    return round(percentile(values, q), 3) if values else 0.0


def build(
    *,
    scenario,
    attempts,
    visitors: int,
    events_made: int,
    ledger: dict,
    ledger_events: list[dict],
    duplicates_dropped: int,
    tickets: dict,
    faults: list[dict],
    speed: float,
    gate_ids: list[str],
    notes: list[str] = (),
    held_back: int = 0,
    arrivals: dict | None = None,
    expected_inside: dict | None = None,
) -> dict:
    """Compare what happened with the ground truth. `ledger` is Ledger.report(); `ledger_events` the
    stored events; `tickets` cti hex -> entries allowed; `faults` as the runner carried them out."""
    decided = [a for a in attempts if a.observed_reason is not None]
    mismatches = [a for a in attempts if not a.matched]
    totals = ledger.get("totals", {})
    in_ledger = int(totals.get("events", 0))
    gaps = int(totals.get("missing", 0))
    declared_lost = int(totals.get("declared_lost", 0))
    chain_breaks = int(totals.get("chain_breaks", 0))
    bad_signatures = int(totals.get("bad_signatures", 0)) + int(totals.get("bad_hashes", 0))
    flagged = {e["ticket"] for e in ledger_events if e.get("kind") == "scan" and e.get("unsynced") is True}
    all_over = over_admissions(ledger_events, tickets)
    # an over-admission that a flagged (unsynced) admission explains is what until_synced = "admit" means:
    # the ground truth expected those admissions (attempt by attempt) and the ledger reports them
    over = [o for o in all_over if o["ticket"] not in flagged]
    ledger_over = (
        len([t for t in ledger.get("over_admitted", []) if t["ticket"] not in flagged])
        if "over_admitted" in ledger
        else int(totals.get("over_admitted", 0))
    )
    conflicts = int(totals.get("conflicts", 0))
    denials = Counter(a.observed_reason for a in decided if not a.observed_admit)
    latencies = [a.latency_us / 1000 for a in decided if a.latency_us is not None]
    e2e = [(a.decided_at - a.shown_at) * 1000 for a in decided if a.decided_at is not None and a.shown_at is not None]
    queued = [a.shown_at - a.queued_at for a in attempts if a.shown_at is not None and a.queued_at is not None]
    spans = [a for a in decided if a.shown_at is not None and a.decided_at is not None]
    if spans:
        minutes = max((max(a.decided_at for a in spans) - min(a.shown_at for a in spans)) / 60, 1e-6)
        throughput = round(len(spans) / len(gate_ids) / minutes, 2)
    else:
        throughput = 0.0
    problems = []
    if mismatches:
        problems.append(f"{len(mismatches)} of {len(attempts)} decisions differ from the ground truth")
    if in_ledger < events_made:
        problems.append(f"{events_made - in_ledger} of {events_made} events made by the gates are not in the ledger")
    if gaps:
        problems.append(f"{gaps} events missing from the gates' sequences at the ledger")
    if declared_lost:
        problems.append(f"{declared_lost} events declared lost (no gate held them any more)")
    if chain_breaks:
        problems.append(f"{chain_breaks} hash chain breaks")
    if bad_signatures:
        problems.append(f"{bad_signatures} events with a bad hash or device signature")
    if conflicts:
        problems.append(f"{conflicts} events quarantined as conflicts (an id taken by another event)")
    if int(totals.get("unapproved", 0)):
        problems.append(f"{totals['unapproved']} events of a replaced gate still wait for its key's approval")
    if over or ledger_over:
        problems.append(f"{max(len(over), ledger_over)} tickets admitted more often than they allow")
    if not ledger.get("gates") and events_made:
        problems.append("the ledger holds nothing")
    ledger_zones = (ledger.get("occupancy") or {}).get("zones", {})
    ledger_inside = {z: v["inside"] for z, v in ledger_zones.items() if v["inside"]}
    if expected_inside is not None and ledger_inside != {z: n for z, n in expected_inside.items() if n}:
        problems.append(
            f"people inside at the end: the ledger counts {ledger_inside}, the ground truth {expected_inside}"
        )
    if ledger.get("reentries_without_exit"):
        problems.append(f"{len(ledger['reentries_without_exit'])} tickets let back in more often than they left")
    verdict = (
        (
            "PASS: every decision matched the ground truth, every event reached the ledger exactly once, "
            "no ticket was admitted beyond its limit"
        )
        if not problems
        else "FAIL: " + "; ".join(problems)
    )
    per_gate = {}
    for gate in gate_ids:
        mine = [a for a in decided if a.gate == gate]
        per_gate[gate] = {
            "zone": (scenario.zone_of(gate) or "") if hasattr(scenario, "zone_of") else "",
            "decisions": len(mine),
            "admits": sum(1 for a in mine if a.observed_admit),
            "mismatches": sum(1 for a in attempts if a.gate == gate and not a.matched),
            "ledger_events": ledger.get("gates", {}).get(gate, {}).get("events", 0),
        }
    return {
        "scenario": scenario.name,
        "visitors": visitors,
        "decisions": {
            "expected": len(attempts),
            "matched": len(attempts) - len(mismatches),
            "mismatched": len(mismatches),
        },
        "events": {
            "made": events_made,
            "in_ledger": in_ledger,
            "gaps": gaps,
            "declared_lost": declared_lost,
            "duplicates": duplicates_dropped,
            "duplicates_dropped": duplicates_dropped,
            "chain_breaks": chain_breaks,
            "bad_signatures": bad_signatures,
            "conflicts": conflicts,
        },
        "replacements": ledger.get("replacements", []),
        "admissions_flagged_unsynced": len(
            [e for e in ledger_events if e.get("kind") == "scan" and e.get("unsynced") is True]
        ),
        "over_admitted_flagged": [o for o in all_over if o["ticket"] in flagged],
        "latency_ms": {"p50": _p(latencies, 50), "p99": _p(latencies, 99)},
        "throughput_per_gate_per_min": throughput,
        "denials": dict(sorted(denials.items())),
        "admissions_over_limit": max(len(over), ledger_over),
        "movements": _movements(attempts),
        "occupancy": {
            "expected": dict(expected_inside or {}),
            "ledger": ledger_inside,
            "capacity": dict(getattr(scenario, "capacities", {}) or {}),
        },
        "ok": not problems,
        "verdict": verdict,
        "problems": problems,
        "notes": list(notes),
        "held_back_events": held_back,
        "speed": speed,
        "end_to_end_ms": {"p50": _p(e2e, 50), "p99": _p(e2e, 99)},
        "answer_s": {"p50": round(_p(e2e, 50) / 1000, 3), "p99": round(_p(e2e, 99) / 1000, 3)},
        "queue_wait_s": {
            "p50": round(_p(queued, 50), 2),
            "p99": round(_p(queued, 99), 2),
            "max": round(max(queued, default=0.0), 2),
        },
        "backlog_drain_s": backlog_drain(faults, attempts, arrivals or {}, speed),
        "expected_denials": dict(sorted(Counter(a.expect_reason for a in attempts if not a.expect_admit).items())),
        "gates": per_gate,
        "faults": faults,
        "over_admitted": over,
        "mismatches": [
            {
                "attempt": a.id,
                "visitor": a.visitor,
                "gate": a.gate,
                "kind": a.kind,
                "ticket": a.cti,
                "expected": f"{'admit' if a.expect_admit else 'deny'}/{a.expect_reason}",
                "observed": (
                    f"{'admit' if a.observed_admit else 'deny'}/{a.observed_reason}"
                    if a.observed_reason
                    else "no decision"
                ),
                "event": a.event_id,
                "note": a.note,
            }
            for a in mismatches
        ],
    }


def backlog_drain(faults: list[dict], attempts, arrivals: dict, speed: float) -> list[dict]:
    """Per broker outage: how long after the broker came back the last scan decided during the
    outage reached it (the gates' outboxes draining). `arrivals`: event id -> seconds since the
    doors opened (wall), as the simulator's own subscriber saw them."""
    out = []
    for f in faults:
        if f.get("kind") != "broker_down" or f.get("end_sim_s") is None:
            continue
        start, back = f["start_sim_s"] / speed, f["end_sim_s"] / speed
        held = [
            arrivals[a.event_id]
            for a in attempts
            if a.event_id in arrivals and a.decided_at is not None and start <= a.decided_at <= back
        ]
        out.append(
            {
                "outage_start_s": round(f["start_sim_s"], 1),
                "back_s": round(f["end_sim_s"], 1),
                "scans_held": len(held),
                "drained_after_s": round(max(0.0, max(held) - back), 2) if held else 0.0,
            }
        )
    return out


def _movements(attempts) -> dict:
    """What the gates did, as the visitors saw it: entries (admitted and walked through, re-entries
    included), re-entries, exits (scanned out or through a free exit). `gated report` counts the same
    from the ledger."""
    through = [a for a in attempts if a.observed_admit and a.passage in ("passed", None) and a.passes]
    exits = [a for a in through if a.kind in ("exit", "free_exit")]
    entries = [a for a in through if a.kind not in ("exit", "free_exit")]
    return {"entries": len(entries), "reentries": sum(1 for a in entries if a.kind == "reentry"), "exits": len(exits)}


def over_admissions(ledger_events: list[dict], tickets: dict) -> list[dict]:
    """Tickets with more admissions (not rolled back by a passage timeout) than they allow."""
    timed_out = {e.get("ref") for e in ledger_events if e.get("kind") == "passage" and e.get("result") == "timeout"}
    counts = Counter(
        e["ticket"]
        for e in ledger_events
        if e.get("kind") == "scan"
        and e.get("decision") == "admit"
        and e.get("ticket")
        and e.get("id") not in timed_out
        and e.get("dir", "in") == "in"
        and e.get("reentry") is not True
    )  # exits, re-entries spend none
    out = []
    for cti, n in sorted(counts.items()):
        allowed = tickets.get(cti, 1)
        if allowed and n > allowed:
            out.append({"ticket": cti, "admissions": n, "allowed": allowed})
    return out


# --- for people ---------------------------------------------------------------------------------


def _spans(faults: list[dict], minutes: bool = False) -> list[tuple[float, float, str]]:
    """Fault windows as (start, end, label) on the simulated-seconds axis (minutes: for longer plots),
    for plots.shade."""
    div = 60 if minutes else 1
    return [
        (f["start_sim_s"] / div, f["end_sim_s"] / div, f["kind"] + (f" {f['gate']}" if f.get("gate") else ""))
        for f in faults
        if f.get("start_sim_s") is not None
        and f.get("end_sim_s") is not None
        and f["kind"] in ("broker_down", "gate_kill", "camera_stall", "gate_replace")
    ]


def plots(report: dict, attempts, queue_samples: list[tuple[float, dict]], speed: float) -> dict[str, str]:
    """PNG (base64) per plot. Times on the x axis are simulated seconds (wall seconds x speed), as in
    the fault list."""
    from gated.central import plots

    plt = plots.pyplot()
    faults = report["faults"]
    gates = list(report["gates"])
    many = len(gates) > 8
    out = {}

    # admissions per minute per gate, in bins fine enough for a one-minute demo (the plot is
    # gated/central/plots.py's, as in `gated report`)
    span = max([a.decided_at * speed for a in attempts if a.decided_at is not None] + [1.0])
    bin_s = max(5.0, round(span / 30 / 5) * 5)
    per_gate = {gate: Counter() for gate in gates}
    for a in attempts:
        if a.observed_admit and a.decided_at is not None and a.kind not in ("exit", "free_exit"):
            per_gate.setdefault(a.gate, Counter())[int(a.decided_at * speed // bin_s)] += 1
    per_gate = {g: c for g, c in per_gate.items() if c or not any(per_gate.values())}
    bins = list(range(int(span // bin_s) + 1))
    out["admissions"] = plots.counts_per_bin(
        per_gate,
        bins,
        xs=[(b + 0.5) * bin_s for b in bins],
        scale=60 / bin_s,
        spans=_spans(faults, minutes=False),
        title="Admissions per minute per gate",
        ylabel=f"admissions per minute ({bin_s:g} s bins)",
        xlabel="simulated seconds from the doors opening",
    )

    # queue length over time
    fig, ax = plt.subplots(figsize=(9, 3.4))
    if queue_samples:
        xs = [t * speed for t, _ in queue_samples]
        if many:
            ax.plot(xs, [sum(q.values()) for _, q in queue_samples], label="all gates")
            ax.plot(xs, [max(q.values(), default=0) for _, q in queue_samples], linestyle="--", label="longest queue")
        else:
            for gate in gates:
                ax.plot(xs, [q.get(gate, 0) for _, q in queue_samples], label=gate)
    plots.shade(ax, _spans(faults, minutes=False))
    ax.set_xlabel("simulated seconds from the doors opening")
    ax.set_ylabel("people waiting")
    ax.set_title("Queue length over time")
    ax.legend(fontsize=8, ncol=4)
    out["queues"] = plots.png(fig)

    # latency histogram
    fig, ax = plt.subplots(figsize=(9, 3.0))
    latencies = [a.latency_us / 1000 for a in attempts if a.latency_us is not None]
    if latencies:
        ax.hist(latencies, bins=40, color="#1f77b4")
        for q, style in (("p50", "-"), ("p99", "--")):
            ax.axvline(
                report["latency_ms"][q], color="black", linestyle=style, label=f"{q} {report['latency_ms'][q]:.0f} ms"
            )
        ax.legend(fontsize=8)
    ax.set_xlabel("ms from frame capture to relay command")
    ax.set_ylabel("scans")
    ax.set_title("Decision latency")
    out["latency"] = plots.png(fig)

    # denials by reason: observed beside expected (the same bars as `gated report`)
    out["denials"] = plots.bars(
        report["denials"],
        expected=report["expected_denials"],
        label="gates said",
        title="Denials by reason",
        ylabel="denials",
    )

    # people inside over time, when visitors leave: the same plot as `gated report`
    occupancy = report.get("occupancy") or {}
    if any(a.kind in ("exit", "free_exit") for a in attempts):
        inside, points = Counter(), defaultdict(lambda: [(0.0, 0)])
        zone_of = {g: v.get("zone", "") for g, v in report["gates"].items()}
        for a in sorted(
            (a for a in attempts if a.observed_admit and a.passes and a.decided_at is not None),
            key=lambda a: a.decided_at,
        ):
            zone = zone_of.get(a.gate, "")
            inside[zone] += -1 if a.kind in ("exit", "free_exit") else 1
            points[zone].append((a.decided_at * speed, inside[zone]))
        out["occupancy"] = plots.occupancy(
            dict(points),
            occupancy.get("capacity", {}),
            spans=_spans(faults, minutes=False),
            title="People inside per zone (as the gates decided)",
            xlabel="simulated seconds from the doors opening",
        )
    return out


def write(out_dir: Path, report: dict, attempts, queue_samples, speed: float) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    write_atomic(json_path, json.dumps(report, indent=2) + "\n")
    html_path = out_dir / "report.html"
    write_atomic(html_path, render_html(report, plots(report, attempts, queue_samples, speed)))
    return json_path, html_path


def _zones(counts: dict) -> str:
    return ", ".join(f"{z or '(no zone)'} {n}" for z, n in counts.items()) or "nobody"


def render_html(report: dict, images: dict[str, str]) -> str:
    e = html.escape
    ok = report["ok"]
    colour = "#1a7f37" if ok else "#cf222e"
    rows = [
        ("visitors", report["visitors"]),
        ("decisions", f"{report['decisions']['matched']} of {report['decisions']['expected']} match the ground truth"),
        (
            "events",
            f"{report['events']['in_ledger']} in the ledger of {report['events']['made']} made; "
            f"{report['events']['gaps']} gaps, {report['events'].get('declared_lost', 0)} declared lost, "
            f"{report['events']['duplicates_dropped']} duplicates dropped, "
            f"{report['events']['chain_breaks']} chain breaks, {report['events']['bad_signatures']} bad signatures",
        ),
        (
            "gate's decision",
            f"p50 {report['latency_ms']['p50'] / 1000:.3f} s, p99 {report['latency_ms']['p99'] / 1000:.3f} s "
            "from the camera frame to the relay command, as each gate measured it",
        ),
        (
            "answer at the gate",
            f"p50 {report['answer_s']['p50']:.2f} s, p99 {report['answer_s']['p99']:.2f} s from "
            "showing the code to the gate's signed scan event (decode, decision, event)",
        ),
        (
            "queueing",
            f"p50 {report['queue_wait_s']['p50']:.1f} s, p99 {report['queue_wait_s']['p99']:.1f} s, "
            f"longest {report['queue_wait_s']['max']:.1f} s in line before reaching the reader (wall seconds)",
        ),
        ("throughput", f"{report['throughput_per_gate_per_min']} decisions per gate per minute"),
        ("over-admissions", report["admissions_over_limit"]),
        (
            "people inside at the end",
            f"ledger {_zones(report.get('occupancy', {}).get('ledger', {}))}; ground truth "
            f"{_zones(report.get('occupancy', {}).get('expected', {}))}",
        ),
        (
            "held back",
            f"{report.get('held_back_events', 0)} scan events reached the broker more than 2 s after the "
            f"decision (kept in the gate's outbox through a fault) and still arrived",
        ),
        *[
            (
                "backlog after outage",
                f"broker down {d['outage_start_s']:.1f}-{d['back_s']:.1f} s: "
                + (
                    f"{d['scans_held']} scans made meanwhile all reached it "
                    f"{d['drained_after_s']:.1f} s (wall) after it came back"
                    if d["scans_held"]
                    else "no scan was made meanwhile"
                ),
            )
            for d in report.get("backlog_drain_s", [])
        ],
        ("speed", f"x{report['speed']}: the crowd arrives that much faster; gates work in real time"),
    ]
    table = "".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
    faults = (
        "".join(
            f"<li>{e(f['kind'])}{' at ' + e(f['gate']) if f.get('gate') else ''}: {e(f.get('what', ''))}</li>"
            for f in report["faults"]
        )
        or "<li>none</li>"
    )
    notes = "".join(f"<li>{e(n)}</li>" for n in report.get("notes", []))
    glossary = "".join(
        f"<tr><td><code>{e(r)}</code></td><td>{e(GLOSSARY.get(r, ''))}</td><td>{report['denials'].get(r, 0)}</td></tr>"
        for r in sorted(set(report["denials"]) | set(report["expected_denials"]))
    )
    mism = "".join(
        f"<tr><td>{m['attempt']}</td><td>{e(m['gate'])}</td><td>{e(m['kind'])}</td><td>{e(m['expected'])}</td>"
        f"<td>{e(m['observed'])}</td><td>{e(str(m['event']))}</td><td>{e(m['note'])}</td></tr>"
        for m in report["mismatches"][:200]
    )
    gates = "".join(
        f"<tr><td>{e(g)}</td><td>{v['decisions']}</td><td>{v['admits']}</td><td>{v['mismatches']}</td>"
        f"<td>{v['ledger_events']}</td></tr>"
        for g, v in report["gates"].items()
    )
    figs = figures(images, e)
    return (
        page_head(f"gated sim: {e(report['scenario'])}", colour, 60)
        + f"""<h1>Simulation report: {e(report["scenario"])}</h1>
<p class="verdict"><strong style="color:{colour}">{"PASS" if ok else "FAIL"}</strong> {e(report["verdict"].split(": ", 1)[-1])}</p>
<table>{table}</table>
<h2>Faults</h2><ul>{faults}</ul>
{"<h2>Notes</h2><ul>" + notes + "</ul>" if notes else ""}
<h2>Plots</h2><p>Shaded: fault windows. Time is in simulated seconds from the doors opening (wall time x speed), as in the fault list.</p>{figs}
<h2>Denial reasons</h2><table><tr><th>reason</th><th>what it means</th><th>denials</th></tr>{glossary}</table>
<h2>Gates</h2><table><tr><th>gate</th><th>decisions</th><th>admits</th><th>mismatches</th><th>events in ledger</th></tr>{gates}</table>
<p>Each gate's device public key is in <code>devices/&lt;gate&gt;.pub</code>: anyone can check the events' signatures.</p>
<h2>Mismatches</h2>
{"<p>none</p>" if not mism else "<table><tr><th>attempt</th><th>gate</th><th>kind</th><th>expected</th><th>observed</th><th>event</th><th>note</th></tr>" + mism + "</table>"}
</body></html>
"""
    )
