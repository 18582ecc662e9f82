"""The ledger's report (`gated reconcile`): per gate, what arrived and what is wrong with it.

    report(db)            {"gates": {gate: events, last_seq, admits, passages, denies by reason, gaps,
                           missing, declared_losses, declared_lost (below the floor of their chain),
                           floor (the current chain's),
                           chain_breaks, bad_signatures, bad_hashes, conflicts, malformed, signatures_checked,
                           chain_vouched, chains}, "over_admitted": [...], "tickets_known", "totals", "occupancy",
                           "reentries_without_exit", "clean", "replacements", "unsynced_admissions"}
                           (chains: gated/central/chains.py)
    format_report(report) the same for people

Read-only queries over the ledger's tables (gated/central/ledger.py writes them; the schema is in
gated/central/ledgerdb.py). Gaps are computed here, at report time, so they do not depend on the
order in which events arrived.
"""

from __future__ import annotations

from gated.central import chains
from gated.central import occupancy as occ
from gated.core import events as ev
from gated.core.confirmation import split_gap

UNSTORED = "could not be stored"  # the start of the `why` of an event the database would not take (Ledger._ingest_one)
UNSTORED_LIKE = UNSTORED + "%"  # a parameter: psycopg reads a % in the statement as a placeholder


def report(db) -> dict:
    """Per gate: events, admits, denies by reason, gaps, chain breaks, bad signatures; over-admitted tickets."""
    gates: dict[str, dict] = {}
    for gate, count, last, admits, passages in db.execute(
        "SELECT gate, COUNT(*), MAX(seq), SUM(CASE WHEN kind = 'scan' AND decision = 'admit' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN kind = 'passage' THEN 1 ELSE 0 END) "
        "FROM events GROUP BY gate ORDER BY gate"
    ):
        gates[gate] = {
            **_empty_gate(),
            "events": count,
            "last_seq": last,
            "admits": admits or 0,
            "passages": passages or 0,
            "signatures_checked": True,
        }
    for gate, reason, count in db.execute(
        "SELECT gate, reason, COUNT(*) FROM events WHERE kind = 'scan' AND decision = 'deny' "
        "GROUP BY gate, reason ORDER BY gate, reason"
    ):
        gates[gate]["denies"][reason] = count
    for gate, seq, before in db.execute(  # per chain: a replaced gate's new chain starts at its epoch's base
        f"SELECT gate, seq, prev_seq FROM (SELECT gate, seq, LAG(seq, 1, {chains.CHAIN_OF()} * "
        f"{1 << ev.EPOCH_SHIFT}) OVER (PARTITION BY gate, {chains.CHAIN_OF()} ORDER BY seq)"
        " AS prev_seq FROM events) AS runs WHERE seq - prev_seq > 1"
    ):
        gates[gate]["gaps"].append([before + 1, seq - 1])
        gates[gate]["missing"] += seq - 1 - before
    for gate, floor, current_chain, chain_last in db.execute(  # each chain's floor: its gaps below it are lost
        f"SELECT f.gate, f.floor, f.current_chain, (SELECT MAX(e.seq) FROM events e WHERE e.gate = f.gate AND "
        f"{chains.EPOCH_OF('e.seq')} = {chains.EPOCH_OF('f.floor')}) FROM ({chains.FLOORS}) AS f "
        "ORDER BY f.gate, f.floor"
    ).fetchall():
        entry = gates.setdefault(gate, _empty_gate())
        _declared_losses(entry, floor, chain_last)
        if current_chain:
            entry["floor"] = floor
    for gate, unsigned, vouched in db.execute(
        "SELECT gate, SUM(CASE WHEN signed = 0 THEN 1 ELSE 0 END), SUM(CASE WHEN signed = 2 THEN 1 ELSE 0 END) "
        "FROM events GROUP BY gate"
    ):
        gates[gate]["signatures_checked"] = not unsigned
        gates[gate]["chain_vouched"] = vouched or 0  # --verify chain: content vouched for by a later signature
    names = {
        "chain_break": "chain_breaks",
        "bad_signature": "bad_signatures",
        "bad_hash": "bad_hashes",
        "conflict": "conflicts",
        "malformed": "malformed",
    }
    for kind, gate, count in db.execute("SELECT kind, gate, COUNT(*) FROM problems GROUP BY kind, gate"):
        if kind in names:
            entry = gates.setdefault(gate or "(unknown)", _empty_gate())
            entry[names[kind]] += count
    over = over_admitted(db)
    (tickets_known,) = db.execute("SELECT COUNT(*) FROM tickets").fetchone()
    (quarantined,) = db.execute("SELECT COUNT(*) FROM quarantine").fetchone()
    totals = {
        k: sum(g[k] for g in gates.values())
        for k in (
            "events",
            "admits",
            "missing",
            "declared_lost",
            "chain_breaks",
            "bad_signatures",
            "bad_hashes",
            "conflicts",
            "malformed",
        )
    }
    totals["over_admitted"] = len(over)
    totals["quarantined"] = quarantined
    # quarantined events that are not in `events`, and not counted as missing where nothing of their gate came
    # after them: events for another site (a gate or this ledger set up for the wrong site), events the database
    # would not take, and a replaced gate's events that wait for its new key's approval
    (totals["wrong_site"],) = db.execute("SELECT COUNT(*) FROM problems WHERE kind = 'wrong_site'").fetchone()
    (totals["unstored"],) = db.execute("SELECT COUNT(*) FROM quarantine WHERE why LIKE ?", (UNSTORED_LIKE,)).fetchone()
    totals["unapproved"] = chains.unapproved_count(db)
    reentries = occ.reentries_without_exit(db)
    totals["reentries_without_exit"] = len(reentries)
    clean = not any(
        totals[k]
        for k in (
            "missing",
            "declared_lost",
            "chain_breaks",
            "bad_signatures",
            "bad_hashes",
            "conflicts",
            "malformed",
            "over_admitted",
            "reentries_without_exit",
            "wrong_site",
            "unstored",
            "unapproved",
        )
    )
    replaced = chains.replacements(db)  # a replaced gate's chains (docs/protocol.md, "Replacing a gate")
    totals["replacements"] = len(replaced)
    for gate, found in chains.per_gate(db).items():
        if gate in gates:
            gates[gate]["chains"] = found
    unsynced = chains.unsynced_admissions(db)
    totals["unsynced_admissions"] = len(unsynced)
    return {
        "gates": gates,
        "over_admitted": over,
        "tickets_known": tickets_known,
        "totals": totals,
        "occupancy": occ.occupancy(db),
        "reentries_without_exit": reentries,
        "clean": clean,
        "replacements": replaced,
        "unsynced_admissions": unsynced,
    }


def _empty_gate() -> dict:
    """A gate's entry before anything is counted."""
    return {
        "events": 0,
        "last_seq": 0,
        "admits": 0,
        "passages": 0,
        "denies": {},
        "gaps": [],
        "missing": 0,
        "declared_losses": [],
        "declared_lost": 0,
        "chain_breaks": 0,
        "bad_signatures": 0,
        "bad_hashes": 0,
        "conflicts": 0,
        "malformed": 0,
        "signatures_checked": False,
        "chain_vouched": 0,
    }


def _declared_losses(entry: dict, floor: int, chain_last: int | None) -> None:
    """Split a gate's gaps at a floor (docs/protocol.md, "Committed events"): below it, what the
    ledger lacks is a declared loss (the gate no longer holds it); from it on, missing as before (the
    gate still sends it). Per chain ("Replacing a gate"): the floor is of one of the gate's chains, its
    epoch's (`chain_last`: the highest seq held of it), whose seqs start at its epoch's base + 1; the
    gaps of the gate's other chains are left to their own floors (chains.FLOORS)."""
    epoch = ev.epoch_of(floor)
    gaps, lost = [], []
    for gap in entry["gaps"]:
        if ev.epoch_of(gap[0]) != epoch:
            gaps.append(gap)
            continue
        below, above = split_gap(tuple(gap), floor)
        if below:
            lost.append(list(below))
        if above:
            gaps.append(list(above))
    last = max(chain_last or 0, ev.epoch_base(epoch))
    if last < floor - 1:  # nothing held up to the floor: the tail is lost too
        lost.append([last + 1, floor - 1])
    entry["gaps"], entry["declared_losses"] = gaps, entry["declared_losses"] + lost
    entry["missing"] = sum(b - a + 1 for a, b in gaps)
    entry["declared_lost"] = sum(b - a + 1 for a, b in entry["declared_losses"])


def over_admitted(db) -> list[dict]:
    """Tickets admitted more often than allowed (tickets.csv, else once), passage timeouts of the
    admitting gate and exits not counted; each with the gates that admitted it. A join over every
    admission: the ledger's metrics count it apart, and seldom (gated/central/ledger_metrics.py)."""
    return [
        {
            "ticket": cti,
            "admits": admits,
            "allowed": allowed,
            "assumed": bool(assumed),
            "gates": sorted(set(g.split(","))),
        }
        for cti, admits, allowed, assumed, g in db.execute(
            "SELECT e.ticket, COUNT(*), COALESCE(t.ent, 1), CASE WHEN t.ent IS NULL THEN 1 ELSE 0 END, "
            + db.group_concat("e.gate")
            + " "
            "FROM events e LEFT JOIN tickets t ON t.cti = e.ticket "
            "WHERE e.kind = 'scan' AND e.decision = 'admit' AND e.ticket IS NOT NULL "
            f"AND NOT {occ.not_an_entry_sql('e')} AND NOT EXISTS ("
            "  SELECT 1 FROM events p WHERE p.ref = e.id AND p.gate = e.gate AND p.kind = 'passage' "
            "  AND p.result = 'timeout') "
            "GROUP BY e.ticket, t.ent HAVING COALESCE(t.ent, 1) > 0 AND COUNT(*) > COALESCE(t.ent, 1) "
            "ORDER BY e.ticket"
        )
    ]


def format_report(report: dict) -> str:
    """The reconcile report for people."""
    lines = [f"{'gate':12} {'events':>7} {'last':>7} {'admits':>7} {'missing':>7} {'chain':>6} {'badsig':>6}  denies"]
    for gate, g in report["gates"].items():
        denies = ", ".join(f"{r} {n}" for r, n in g["denies"].items()) or "-"
        badsig = g["bad_signatures"] + g["bad_hashes"]
        lines.append(
            f"{gate:12} {g['events']:>7} {g['last_seq'] or 0:>7} {g['admits']:>7} {g['missing']:>7} "
            f"{g['chain_breaks']:>6} {badsig:>6}  {denies}"
        )
        if g["gaps"]:
            lines.append(
                "             gaps: "
                + ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in g["gaps"][:20])
                + (" …" if len(g["gaps"]) > 20 else "")
            )
        if g.get("declared_lost"):
            floor = g.get("floor", 0)
            below = (
                f"below the gate's floor {floor}, no longer held by it"
                if all(ev.epoch_of(a) == ev.epoch_of(floor) for a, _ in g["declared_losses"])
                else "below the floor of their chain, no longer held by the gate"
            )
            lines.append(
                f"             declared lost ({below}): "
                + ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in g["declared_losses"][:20])
                + (" …" if len(g["declared_losses"]) > 20 else "")
            )
        if not g["signatures_checked"]:
            lines.append("             signatures not checked (no device key for this gate)")
        if g.get("chain_vouched"):
            lines.append(
                f"             {g['chain_vouched']} events vouched for by the signature of a later one "
                "(--verify chain: their own signatures not checked)"
            )
        if g["conflicts"]:
            lines.append(f"             {g['conflicts']} conflicting events (same id, other content)")
    for r in report.get("replacements", []):
        lines.append(
            f"gate {r['gate']} replaced: chain epoch {r['epoch']} from {r['first_ts']} (seq {r['first_seq']}..."
            f"{r['last_seq']}), after epoch {r['after_epoch']} ended at seq {r['after_last_seq']}"
        )
    if report.get("totals", {}).get("unapproved"):
        lines.append(
            f"{report['totals']['unapproved']} events of a replaced gate wait for its device key's approval "
            "(gated keys enrol --replace)"
        )
    if report.get("totals", {}).get("wrong_site"):
        lines.append(
            f"{report['totals']['wrong_site']} events for another site, not taken in (a gate, or this ledger, "
            "set up for the wrong site?): see the quarantine"
        )
    if report.get("totals", {}).get("unstored"):
        lines.append(f"{report['totals']['unstored']} events the database would not take (in the quarantine, with why)")
    if report.get("unsynced_admissions"):
        lines.append(
            f"{len(report['unsynced_admissions'])} admissions by replaced gates before their admissions "
            "snapshot (flagged unsynced): check them"
        )
    if report["over_admitted"]:
        lines.append("tickets admitted more often than allowed:")
        for t in report["over_admitted"]:
            how = "assumed 1, no tickets CSV row" if t["assumed"] else "from tickets CSV"
            lines.append(
                f"  {t['ticket']}  {t['admits']} admissions, {t['allowed']} allowed ({how}) at {', '.join(t['gates'])}"
            )
    if report.get("reentries_without_exit"):
        lines.append(
            "tickets let back in more often than they were recorded leaving (gates that could not hear each other):"
        )
        for t in report["reentries_without_exit"]:
            lines.append(f"  {t['ticket']}  {t['reentries']} re-entries, {t['exits']} exits at {', '.join(t['gates'])}")
    occupancy = report.get("occupancy") or {"zones": {}}
    for zone, z in occupancy["zones"].items():
        limit = f" of {z['capacity']}" if z["capacity"] is not None else ""
        lines.append(f"inside {zone or '(no zone)'}: {z['inside']}{limit} ({z['entries']} in, {z['exits']} out)")
    if occupancy.get("not_counted"):
        lines.append(
            f"not counted: {occupancy['not_counted']['movements']} movements in {occupancy['not_counted']['zones']} "
            "zones that are not zone names (over 128 characters, or a control character)"
        )
    audit = report.get("signature_audit")
    if audit is not None:
        unsigned = [b for b in audit["bad"] if "columns" not in b]
        edited = [b for b in audit["bad"] if "columns" in b]
        lines.append(
            f"signatures checked again: {audit['checked']} events, {len(unsigned)} whose own signature "
            "does not verify"
            + (": " + ", ".join(b["id"] for b in unsigned[:20]) if unsigned else "")
            + (" …" if len(unsigned) > 20 else "")
            + (f"; no device key for {', '.join(audit['no_key'])}" if audit["no_key"] else "")
        )
        if edited:
            lines.append(
                f"{len(edited)} events whose columns are not as in their signed body (an edited row?): "
                + ", ".join(f"{b['id']} ({b['columns']})" for b in edited[:20])
                + (" …" if len(edited) > 20 else "")
            )
    totals = report["totals"]
    lines.append(
        f"total: {totals['events']} events, {totals['admits']} admits, {totals['missing']} missing, "
        + (f"{totals['declared_lost']} declared lost, " if totals.get("declared_lost") else "")
        + f"{totals['chain_breaks']} chain breaks, {totals['bad_signatures'] + totals['bad_hashes']} bad signatures, "
        f"{totals['over_admitted']} over-admitted tickets, {totals['malformed']} malformed and "
        f"{totals['quarantined']} quarantined messages" + (" — clean" if report["clean"] else "")
    )
    return "\n".join(lines)
