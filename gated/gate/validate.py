"""One scan, start to decision: codec, facts from the store, decide(). Shared by the gate,
`gated verify` and `gated scan`, so a desk check and a turnstile judge a ticket alike."""

from __future__ import annotations

from dataclasses import replace

from gated.core.decide import Decision, Facts, GateContext, decide
from gated.core.pretix_secret import PretixTicket
from gated.core.scanned import read_code
from gated.core.signed import Keyring
from gated.core.ticket import Ticket
from gated.gate import checkinlists


def validate(
    text: str, keyring: Keyring, gate: GateContext, store, now: float, *, time_trusted: bool = True
) -> Decision:
    """`now` and `time_trusted` come from the gate's clock (gated.gate.clock.TrustedClock.reading())."""
    code = read_code(text, keyring)
    counting = {
        "zone": gate.zone,
        "count_zone": gate.capacity is not None and gate.direction == "in",
        "now_ms": int(now * 1000),
    }
    if isinstance(code, Ticket):
        facts = store.facts(code.claims.cti, code.step, **counting) if store is not None else Facts()
        if store is not None and isinstance(code, PretixTicket) and gate.direction == "in":
            held = checkinlists.facts_for(store, keyring, code, gate_id=store.gate)
            if held is not None:
                facts = replace(facts, pretix=held)
    else:
        facts = store.facts(None, **counting) if store is not None else Facts()
    return decide(code, gate, facts, now, time_trusted=time_trusted)


def record(store, decision: Decision, body: dict, ts_ms: int, *, confirmed: bool = True) -> dict:
    """The scan's event and, when it admits, the admission it grants, in one transaction: with the
    ticket's GT2 step and its validity (what gated/gate/prune.py later prunes by). The one way every
    caller (the gate, `gated scan`/`verify --record`, the desk demo, the benchmarks) records a scan."""
    if not decision.admit:
        return store.record_scan(body, ts_ms)
    claims = decision.ticket.claims
    return store.record_scan(
        body,
        ts_ms,
        admit_cti=decision.cti,
        step=decision.ticket.step,
        confirmed=confirmed,
        exp=claims.exp,
        nbf=claims.nbf,
    )


def scan_fields(decision: Decision, gate: GateContext, rev: int, latency_us: int = 0) -> dict:
    """The `scan` event fields of PROTOCOL §5 (the store adds the common ones)."""
    claims = decision.ticket.claims if decision.ticket is not None else None
    fields = {
        "ticket": decision.cti.hex() if decision.cti is not None else None,
        "event": claims.aud if claims else None,
        "type": claims.typ if claims else None,
        "zone": gate.zone,
        "decision": decision.word,
        "reason": decision.reason.value,
        "rev": rev,
        "latency_us": int(latency_us),
    }
    # part 2 extensions, only where they say something (an entry gate's events stay as in part 1)
    if gate.direction == "out":
        fields["dir"] = "out"
    if decision.reentry:
        fields["reentry"] = True
    if decision.unsynced:
        fields["unsynced"] = True  # admitted before the admissions snapshot: for reconciliation
    if decision.inside is not None:
        fields["inside"] = decision.inside
        fields["occupancy_source"] = decision.occupancy_source
    return fields


def describe(decision: Decision) -> str:
    """One line for people: what the gate did and why."""
    claims = decision.ticket.claims if decision.ticket is not None else None
    who = f"ticket {decision.cti.hex()}" if decision.cti else "unreadable code"
    if decision.admit:
        extra = f" {claims.typ}" + (f", seat {claims.seat}" if claims.seat else "") + f" ({claims.aud})"
        return f"ADMIT  {who}{extra}"
    return f"DENY   {decision.reason.value}: {decision.detail} [{who}]"
