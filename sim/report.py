"""The simulator's verdict: report.json for machines, report.html for people (opens offline:
the plots are PNGs embedded as base64, no scripts, no external files).

report.json (the keys CI and operators rely on):

    {"scenario": name, "visitors": N,
     "decisions": {"expected": n, "matched": n, "mismatched": n},      one per attempt (a visitor who did
                                                                       not pass and retried makes two)
     "events": {"made": n, "in_ledger": n, "gaps": n, "duplicates_dropped": n, "chain_breaks": n,
                "bad_signatures": n},
     "latency_ms": {"p50": x, "p99": x},        frame capture to relay command, as each gate measured it
     "throughput_per_gate_per_min": x,          decisions per gate per minute of wall time while serving
     "denials": {reason: n},
     "admissions_over_limit": n,
     ... plus "ok", "verdict", "held_back_events" (scans that reached the broker late: proof a fault bit), "problems", "mismatches", "faults", "gates", "end_to_end_ms", "speed",
     "answer_s" (p50/p99 seconds from showing a code to its scan event), "queue_wait_s" (p50/p99/max wall
     seconds in line before the reader), "backlog_drain_s" (per broker outage: scans made meanwhile and
     how many wall seconds after the broker came back the last of them reached it)}

`ok` is false on any mismatch, any lost event (made > in ledger, or a gap), any broken chain or bad
signature, and any ticket admitted more often than it allows; the command exits non-zero then.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter, defaultdict
from pathlib import Path

from gated.stats import percentile
from gated.core.reasons import MEANING

GLOSSARY = {reason.value: text for reason, text in MEANING.items()}



def _p(values: list[float], q: float) -> float:
    """The report's figures: gated.stats.percentile, rounded, 0 where nothing was measured."""
    return round(percentile(values, q), 3) if values else 0.0


def build(*, scenario, attempts, visitors: int, events_made: int, ledger: dict, ledger_events: list[dict],
          duplicates_dropped: int, tickets: dict, faults: list[dict], speed: float, gate_ids: list[str],
          notes: list[str] = (), held_back: int = 0, arrivals: dict | None = None) -> dict:
    """Compare what happened with the ground truth. `ledger` is Ledger.report(); `ledger_events` the
    stored events; `tickets` cti hex -> entries allowed; `faults` as the runner carried them out."""
    decided = [a for a in attempts if a.observed_reason is not None]
    mismatches = [a for a in attempts if not a.matched]
    totals = ledger.get("totals", {})
    in_ledger = int(totals.get("events", 0))
    gaps = int(totals.get("missing", 0))
    chain_breaks = int(totals.get("chain_breaks", 0))
    bad_signatures = int(totals.get("bad_signatures", 0)) + int(totals.get("bad_hashes", 0))
    over = over_admissions(ledger_events, tickets)
    ledger_over = int(totals.get("over_admitted", 0))  # the ledger's own count, from the same tickets CSV
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
    if chain_breaks:
        problems.append(f"{chain_breaks} hash chain breaks")
    if bad_signatures:
        problems.append(f"{bad_signatures} events with a bad hash or device signature")
    if over or ledger_over:
        problems.append(f"{max(len(over), ledger_over)} tickets admitted more often than they allow")
    if not ledger.get("gates") and events_made:
        problems.append("the ledger holds nothing")
    verdict = ("PASS: every decision matched the ground truth, every event reached the ledger exactly once, "
               "no ticket was admitted beyond its limit") if not problems else "FAIL: " + "; ".join(problems)
    per_gate = {}
    for gate in gate_ids:
        mine = [a for a in decided if a.gate == gate]
        per_gate[gate] = {"decisions": len(mine), "admits": sum(1 for a in mine if a.observed_admit),
                          "mismatches": sum(1 for a in attempts if a.gate == gate and not a.matched),
                          "ledger_events": ledger.get("gates", {}).get(gate, {}).get("events", 0)}
    return {
        "scenario": scenario.name,
        "visitors": visitors,
        "decisions": {"expected": len(attempts), "matched": len(attempts) - len(mismatches),
                      "mismatched": len(mismatches)},
        "events": {"made": events_made, "in_ledger": in_ledger, "gaps": gaps, "duplicates_dropped": duplicates_dropped,
                   "chain_breaks": chain_breaks, "bad_signatures": bad_signatures},
        "latency_ms": {"p50": _p(latencies, 50), "p99": _p(latencies, 99)},
        "throughput_per_gate_per_min": throughput,
        "denials": dict(sorted(denials.items())),
        "admissions_over_limit": max(len(over), ledger_over),
        "ok": not problems,
        "verdict": verdict,
        "problems": problems,
        "notes": list(notes),
        "held_back_events": held_back,
        "speed": speed,
        "end_to_end_ms": {"p50": _p(e2e, 50), "p99": _p(e2e, 99)},
        "answer_s": {"p50": round(_p(e2e, 50) / 1000, 3), "p99": round(_p(e2e, 99) / 1000, 3)},
        "queue_wait_s": {"p50": round(_p(queued, 50), 2), "p99": round(_p(queued, 99), 2),
                         "max": round(max(queued, default=0.0), 2)},
        "backlog_drain_s": backlog_drain(faults, attempts, arrivals or {}, speed),
        "expected_denials": dict(sorted(Counter(a.expect_reason for a in attempts if not a.expect_admit).items())),
        "gates": per_gate,
        "faults": faults,
        "over_admitted": over,
        "mismatches": [{"attempt": a.id, "visitor": a.visitor, "gate": a.gate, "kind": a.kind, "ticket": a.cti,
                        "expected": f"{'admit' if a.expect_admit else 'deny'}/{a.expect_reason}",
                        "observed": (f"{'admit' if a.observed_admit else 'deny'}/{a.observed_reason}"
                                     if a.observed_reason else "no decision"),
                        "event": a.event_id, "note": a.note} for a in mismatches],
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
        held = [arrivals[a.event_id] for a in attempts
                if a.event_id in arrivals and a.decided_at is not None and start <= a.decided_at <= back]
        out.append({"outage_start_s": round(f["start_sim_s"], 1), "back_s": round(f["end_sim_s"], 1),
                    "scans_held": len(held),
                    "drained_after_s": round(max(0.0, max(held) - back), 2) if held else 0.0})
    return out


def over_admissions(ledger_events: list[dict], tickets: dict) -> list[dict]:
    """Tickets with more admissions (not rolled back by a passage timeout) than they allow."""
    timed_out = {e.get("ref") for e in ledger_events if e.get("kind") == "passage" and e.get("result") == "timeout"}
    counts = Counter(e["ticket"] for e in ledger_events
                     if e.get("kind") == "scan" and e.get("decision") == "admit" and e.get("ticket")
                     and e.get("id") not in timed_out)
    out = []
    for cti, n in sorted(counts.items()):
        allowed = tickets.get(cti, 1)
        if allowed and n > allowed:
            out.append({"ticket": cti, "admissions": n, "allowed": allowed})
    return out


# --- for people ---------------------------------------------------------------------------------

def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _shade(ax, faults: list[dict], minutes: bool = True) -> None:
    colours = {"broker_down": "#d62728", "gate_kill": "#9467bd", "camera_stall": "#ff7f0e"}
    seen = set()
    for f in faults:
        if f.get("start_sim_s") is None or f.get("end_sim_s") is None or f["kind"] not in colours:
            continue
        div = 60 if minutes else 1
        label = f"{f['kind']}" + (f" {f['gate']}" if f.get("gate") else "")
        ax.axvspan(f["start_sim_s"] / div, f["end_sim_s"] / div, color=colours[f["kind"]], alpha=0.15,
                   label=None if label in seen else label)
        seen.add(label)


def plots(report: dict, attempts, queue_samples: list[tuple[float, dict]], speed: float) -> dict[str, str]:
    """PNG (base64) per plot. Times on the x axis are simulated seconds (wall seconds x speed), as in
    the fault list."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    faults = report["faults"]
    gates = list(report["gates"])
    out = {}

    # admissions per minute per gate, in bins fine enough for a one-minute demo
    fig, ax = plt.subplots(figsize=(9, 3.4))
    span = max([a.decided_at * speed for a in attempts if a.decided_at is not None] + [1.0])
    bin_s = max(5.0, round(span / 30 / 5) * 5)
    per_gate = defaultdict(Counter)
    for a in attempts:
        if a.observed_admit and a.decided_at is not None:
            per_gate[a.gate][int(a.decided_at * speed // bin_s)] += 1
    bins = range(int(span // bin_s) + 1)
    xs = [(b + 0.5) * bin_s for b in bins]
    rate = 60 / bin_s
    many = len(gates) > 8
    if many:
        total = Counter()
        for c in per_gate.values():
            total.update(c)
        ax.plot(xs, [total[b] * rate / len(gates) for b in bins], label="mean per gate")
        ax.plot(xs, [max((per_gate[g][b] for g in gates), default=0) * rate for b in bins], linestyle="--",
                label="busiest gate")
    else:
        for gate in gates:
            ax.plot(xs, [per_gate[gate][b] * rate for b in bins], marker=".", label=gate)
    _shade(ax, faults, minutes=False)
    ax.set_xlabel("simulated seconds from the doors opening")
    ax.set_ylabel(f"admissions per minute ({bin_s:g} s bins)")
    ax.set_title("Admissions per minute per gate")
    ax.legend(fontsize=8, ncol=4)
    out["admissions"] = _png(fig)

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
    _shade(ax, faults, minutes=False)
    ax.set_xlabel("simulated seconds from the doors opening")
    ax.set_ylabel("people waiting")
    ax.set_title("Queue length over time")
    ax.legend(fontsize=8, ncol=4)
    out["queues"] = _png(fig)

    # latency histogram
    fig, ax = plt.subplots(figsize=(9, 3.0))
    latencies = [a.latency_us / 1000 for a in attempts if a.latency_us is not None]
    if latencies:
        ax.hist(latencies, bins=40, color="#1f77b4")
        for q, style in (("p50", "-"), ("p99", "--")):
            ax.axvline(report["latency_ms"][q], color="black", linestyle=style, label=f"{q} {report['latency_ms'][q]:.0f} ms")
        ax.legend(fontsize=8)
    ax.set_xlabel("ms from frame capture to relay command")
    ax.set_ylabel("scans")
    ax.set_title("Decision latency")
    out["latency"] = _png(fig)

    # denials by reason: observed beside expected
    fig, ax = plt.subplots(figsize=(9, 3.0))
    reasons = sorted(set(report["denials"]) | set(report["expected_denials"]))
    xs = range(len(reasons))
    ax.bar([x - 0.2 for x in xs], [report["expected_denials"].get(r, 0) for r in reasons], width=0.4, label="expected",
           color="#bbbbbb")
    ax.bar([x + 0.2 for x in xs], [report["denials"].get(r, 0) for r in reasons], width=0.4, label="gates said",
           color="#d62728")
    ax.set_xticks(list(xs), reasons, rotation=20, fontsize=8)
    ax.set_ylabel("denials")
    ax.set_title("Denials by reason")
    ax.legend(fontsize=8)
    out["denials"] = _png(fig)
    return out


def write(out_dir: Path, report: dict, attempts, queue_samples, speed: float) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    html_path = out_dir / "report.html"
    html_path.write_text(render_html(report, plots(report, attempts, queue_samples, speed)))
    return json_path, html_path


def render_html(report: dict, images: dict[str, str]) -> str:
    e = html.escape
    ok = report["ok"]
    colour = "#1a7f37" if ok else "#cf222e"
    rows = [
        ("visitors", report["visitors"]),
        ("decisions", f"{report['decisions']['matched']} of {report['decisions']['expected']} match the ground truth"),
        ("events", f"{report['events']['in_ledger']} in the ledger of {report['events']['made']} made; "
                   f"{report['events']['gaps']} gaps, {report['events']['duplicates_dropped']} duplicates dropped, "
                   f"{report['events']['chain_breaks']} chain breaks, {report['events']['bad_signatures']} bad signatures"),
        ("gate's decision", f"p50 {report['latency_ms']['p50'] / 1000:.3f} s, p99 {report['latency_ms']['p99'] / 1000:.3f} s "
                            "from the camera frame to the relay command, as each gate measured it"),
        ("answer at the gate", f"p50 {report['answer_s']['p50']:.2f} s, p99 {report['answer_s']['p99']:.2f} s from "
                               "showing the code to the gate's signed scan event (decode, decision, event)"),
        ("queueing", f"p50 {report['queue_wait_s']['p50']:.1f} s, p99 {report['queue_wait_s']['p99']:.1f} s, "
                     f"longest {report['queue_wait_s']['max']:.1f} s in line before reaching the reader (wall seconds)"),
        ("throughput", f"{report['throughput_per_gate_per_min']} decisions per gate per minute"),
        ("over-admissions", report["admissions_over_limit"]),
        ("held back", f"{report.get('held_back_events', 0)} scan events reached the broker more than 2 s after the "
                      f"decision (kept in the gate's outbox through a fault) and still arrived"),
        *[("backlog after outage", f"broker down {d['outage_start_s']:.1f}-{d['back_s']:.1f} s: "
                                    + (f"{d['scans_held']} scans made meanwhile all reached it "
                                       f"{d['drained_after_s']:.1f} s (wall) after it came back" if d['scans_held']
                                       else "no scan was made meanwhile"))
          for d in report.get("backlog_drain_s", [])],
        ("speed", f"x{report['speed']}: the crowd arrives that much faster; gates work in real time"),
    ]
    table = "".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
    faults = "".join(
        f"<li>{e(f['kind'])}{' at ' + e(f['gate']) if f.get('gate') else ''}: {e(f.get('what', ''))}</li>"
        for f in report["faults"]) or "<li>none</li>"
    notes = "".join(f"<li>{e(n)}</li>" for n in report.get("notes", []))
    glossary = "".join(f"<tr><td><code>{e(r)}</code></td><td>{e(GLOSSARY.get(r, ''))}</td>"
                       f"<td>{report['denials'].get(r, 0)}</td></tr>"
                       for r in sorted(set(report["denials"]) | set(report["expected_denials"])))
    mism = "".join(
        f"<tr><td>{m['attempt']}</td><td>{e(m['gate'])}</td><td>{e(m['kind'])}</td><td>{e(m['expected'])}</td>"
        f"<td>{e(m['observed'])}</td><td>{e(str(m['event']))}</td><td>{e(m['note'])}</td></tr>"
        for m in report["mismatches"][:200])
    gates = "".join(f"<tr><td>{e(g)}</td><td>{v['decisions']}</td><td>{v['admits']}</td><td>{v['mismatches']}</td>"
                    f"<td>{v['ledger_events']}</td></tr>" for g, v in report["gates"].items())
    figs = "".join(f'<figure><img alt="{e(k)}" src="data:image/png;base64,{v}"></figure>' for k, v in images.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gated sim: {e(report['scenario'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #1f2328; }}
.verdict {{ border-left: 0.5em solid {colour}; padding: 0.6em 1em; background: #f6f8fa; font-size: 1.15em; }}
table {{ border-collapse: collapse; margin: 1em 0; }} th, td {{ text-align: left; padding: 0.2em 0.8em;
border-bottom: 1px solid #d0d7de; font-size: 0.92em; }} figure {{ margin: 1em 0; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>Simulation report: {e(report['scenario'])}</h1>
<p class="verdict"><strong style="color:{colour}">{'PASS' if ok else 'FAIL'}</strong> {e(report['verdict'].split(': ', 1)[-1])}</p>
<table>{table}</table>
<h2>Faults</h2><ul>{faults}</ul>
{'<h2>Notes</h2><ul>' + notes + '</ul>' if notes else ''}
<h2>Plots</h2><p>Shaded: fault windows. Time is in simulated seconds from the doors opening (wall time x speed), as in the fault list.</p>{figs}
<h2>Denial reasons</h2><table><tr><th>reason</th><th>what it means</th><th>denials</th></tr>{glossary}</table>
<h2>Gates</h2><table><tr><th>gate</th><th>decisions</th><th>admits</th><th>mismatches</th><th>events in ledger</th></tr>{gates}</table>
<p>Each gate's device public key is in <code>devices/&lt;gate&gt;.pub</code>: anyone can check the events' signatures.</p>
<h2>Mismatches</h2>
{'<p>none</p>' if not mism else '<table><tr><th>attempt</th><th>gate</th><th>kind</th><th>expected</th><th>observed</th><th>event</th><th>note</th></tr>' + mism + '</table>'}
</body></html>
"""
