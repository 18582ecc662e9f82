"""The decision core: one scanned code, the gate's context and the facts in; a Decision out.

Pure: no I/O, no clock, no logging. `now` is a parameter, and the facts about a ticket
(revoked? admitted how often? this GT2 step seen?) are looked up by the caller before.
Checks run in a fixed order so that one scan always yields one reason:

    gate mode   emergency -> EMERGENCY, locked -> LOCKED
    the code    rejections from the codec (malformed, unsupported, unknown_key, bad_signature)
    the form    a ticket with a device key shown as GT1 -> STATIC_COPY
    the place   aud not among the gate's events, or a pretix ticket for another date of the series
                than the gate's `pretix_subevents` -> WRONG_EVENT; a gate limited to some products
                (`products`: GT ticket types, pretix "ITEM" or "ITEM/VARIATION") and the ticket's
                product not among them -> WRONG_ZONE; zone not in zon -> WRONG_ZONE
    the time    now < nbf - skew -> NOT_YET_VALID; now > exp + skew -> EXPIRED;
                GT2 step further than `step_window` from now's step -> STALE_CODE;
                with `time_trusted=False` (an uncertain gate clock under the `deny` policy, see
                gated/gate/clock.py) nothing time-dependent can be established: a GT2 code -> STALE_CODE,
                a GT1 ticket -> EXPIRED if `now` (the best guess) is past exp + skew, else NOT_YET_VALID
    the lists   revoked -> REVOKED; entries used up (ent; for a pretix ticket the gate's
                `pretix_entries`) or this GT2 step seen -> ALREADY_USED
                unless re-entry is allowed (the gate's `reentry`, or the ticket's `rex` claim) and the ticket has left since it
                last came in (`facts.outside`: more exits recorded than re-entries): then a
                re-entry, no entry spent
    unsynced    a replaced gate that has not yet recovered the site's admissions (`facts.synced` False)
                and a ticket with limited entries: under `until_synced = "deny_used_check"` -> UNSYNCED;
                under "admit" the admission stands, flagged (`Decision.unsynced`) for reconciliation
    the zone    the gate has a capacity and its zone holds that many (`facts.zone_inside`) -> CAPACITY

A pretix ticket at a gate that holds the event's check-in list (`facts.pretix`) is judged, after the
gate mode, the code, the place and the gate's own product limit, by that list in pretix's order
(gated/core/pretix_checkin.py: revoked, unapproved, validity, the list's products, unpaid, rules,
questions, already used), then unsynced (entries are limited when the list does not allow multiple
entries and the scan is no entry after an exit, or when its rules read the ticket's movements), then
the capacity. With an untrusted clock the time rules above apply.
    otherwise   OK, admit

An exit gate (`direction="out"`, a scan-out exit) lets a readable ticket of its event out: after
the gate mode, the codec, `static_copy` and `wrong_event`, every exit is OK (a revoked, used or
expired ticket still leaves; the exit is recorded against the ticket).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timezone

from gated.core.errors import brief
from gated.core.reasons import Reason
from gated.core.ticket import STEP_SECONDS, Rejection, Ticket


class GateMode(str, enum.Enum):
    NORMAL = "online"
    LOCKED = "locked"
    EMERGENCY = "emergency"


@dataclass(frozen=True)
class GateContext:
    site: str
    events: frozenset[str]
    zone: str | None = None
    skew_s: int = 60
    step_window: int = 1
    mode: GateMode = GateMode.NORMAL
    products: frozenset[str] | None = None  # None: every product; else the ones this gate admits
    pretix_entries: int = 1  # entries a pretix ticket allows (its secret states none); 0 = unlimited
    pretix_subevents: frozenset[int] | None = None  # None: every date of a pretix event series; else these
    direction: str = "in"  # "in": an entry gate (scans admit); "out": a scan-out exit gate
    reentry: bool = False  # a ticket whose latest movement is an exit may come in again, no entry spent
    capacity: int | None = None  # people the gate's zone may hold (None: no limit)
    until_synced: str = "deny_used_check"  # a replaced gate before its admissions snapshot: or "admit" (flagged)
    pretix_questions: str = "deny"  # a pretix list's products with check-in questions: "deny" or "admit"


@dataclass(frozen=True)
class Facts:
    revoked: bool = False
    admissions: int = 0
    step_seen: bool = False
    rev_version: int = 0
    outside: bool = False  # the ticket has more recorded exits than re-entries (own and peers' events)
    zone_inside: int = 0  # people in the gate's zone, as the gate knows it (only read with a capacity)
    occupancy_source: str = ""  # which figure zone_inside is: "central" (the ledger's) or "local"
    synced: bool = True  # False: a replaced gate without the site's admissions yet (admissions may be missing)
    pretix: PretixFacts | None = None  # the gate holds a pretix check-in list: judge pretix tickets by it


@dataclass(frozen=True)
class PretixFacts:
    """A gate holding a pretix check-in list (gated/core/checkinlist.py): the list, the ticket's
    movements (own and peers' entries and exits) and the pretix id of this gate."""

    checkin_list: object  # a CheckinList
    history: tuple = ()  # pretix_rules.Movement, oldest first
    gate_pk: int | None = None


@dataclass(frozen=True)
class Decision:
    admit: bool
    reason: Reason
    ticket: Ticket | None = None
    cti: bytes | None = None
    detail: str = ""
    direction: str = "in"  # "out": an exit scan
    reentry: bool = False  # an entry after a recorded exit: no entry spent
    inside: int | None = None  # at a gate with a capacity: the people inside its zone it judged with
    occupancy_source: str = ""  # and which figure that was ("central" or "local")
    unsynced: bool = False  # admitted by a replaced gate that could not check the ticket's earlier admissions

    @property
    def word(self) -> str:
        return "admit" if self.admit else "deny"


def decide(
    code: Ticket | Rejection, gate: GateContext, facts: Facts, now: float, *, time_trusted: bool = True
) -> Decision:
    cti = code.claims.cti if isinstance(code, Ticket) else code.cti
    ticket = code if isinstance(code, Ticket) else None

    def deny(reason: Reason, detail: str = "") -> Decision:
        return Decision(False, reason, ticket, cti, detail)

    if gate.mode is GateMode.EMERGENCY:
        return deny(Reason.EMERGENCY, "emergency: free passage, nothing recorded against the ticket")
    if gate.mode is GateMode.LOCKED:
        return deny(Reason.LOCKED, "gate locked by command")
    if isinstance(code, Rejection):
        return deny(code.reason, code.detail)
    claims = code.claims
    if claims.dev is not None and not code.dynamic:
        return deny(Reason.STATIC_COPY, "dynamic ticket shown in static form (screenshot?)")
    if claims.aud not in gate.events:
        return deny(Reason.WRONG_EVENT, f"ticket for {brief(claims.aud)}")
    if gate.pretix_subevents is not None and _is_pretix(code) and code.subevent not in gate.pretix_subevents:
        return deny(Reason.WRONG_EVENT, f"ticket for {brief(claims.aud)} date (subevent) {code.subevent or 'none'}")
    if gate.products is not None and not gate.products.intersection(products_of(code)):
        return deny(Reason.WRONG_ZONE, f"product {brief(products_of(code)[-1])} is not admitted at this gate")
    if gate.direction == "out":
        return Decision(True, Reason.OK, ticket, cti, "exit", direction="out")
    if facts.pretix is not None and _is_pretix(code) and time_trusted and facts.pretix.checkin_list.event == claims.aud:
        return _by_checkin_list(code, gate, facts, now)
    if claims.zon is not None and gate.zone not in claims.zon:
        return deny(Reason.WRONG_ZONE, f"ticket for zones {list(claims.zon)}, gate in {gate.zone!r}")
    if not time_trusted:
        if code.dynamic:
            return deny(Reason.STALE_CODE, "gate clock uncertain: the code's time step cannot be judged")
        if now > claims.exp + gate.skew_s:
            return deny(Reason.EXPIRED, f"valid until {claims.exp} (gate clock uncertain)")
        return deny(Reason.NOT_YET_VALID, "gate clock uncertain: the validity window cannot be established")
    if now < claims.nbf - gate.skew_s:
        return deny(Reason.NOT_YET_VALID, f"valid from {_iso(claims.nbf)}")
    if now > claims.exp + gate.skew_s:
        return deny(Reason.EXPIRED, f"valid until {_iso(claims.exp)}")
    if code.dynamic and abs(code.step - int(now // STEP_SECONDS)) > gate.step_window:
        return deny(Reason.STALE_CODE, f"code step {code.step}, now {int(now // STEP_SECONDS)}")
    if facts.revoked:
        return deny(Reason.REVOKED, f"on revocation list v{facts.rev_version}")
    reentry = (gate.reentry or claims.rex) and facts.outside
    if code.dynamic and facts.step_seen and not reentry:
        return deny(Reason.ALREADY_USED, f"code step {code.step} already shown")
    entries = gate.pretix_entries if _is_pretix(code) else claims.ent
    if entries and facts.admissions >= entries and not reentry:
        return deny(Reason.ALREADY_USED, f"{facts.admissions} of {entries} entries used")
    unchecked = not facts.synced and bool(entries) and not reentry
    if unchecked and gate.until_synced != "admit":
        return deny(
            Reason.UNSYNCED, _UNSYNCED + f"so whether this ticket's {entries} entries are used cannot be checked"
        )
    counted = {} if gate.capacity is None else {"inside": facts.zone_inside, "occupancy_source": facts.occupancy_source}
    flagged = {"unsynced": True} if unchecked else {}
    if gate.capacity is not None and facts.zone_inside >= gate.capacity:
        return Decision(
            False,
            Reason.CAPACITY,
            ticket,
            cti,
            f"zone {gate.zone!r} holds {facts.zone_inside} of {gate.capacity}",
            **counted,
        )
    if reentry:
        return Decision(True, Reason.OK, ticket, cti, "re-entry after a recorded exit", reentry=True, **counted)
    return Decision(True, Reason.OK, ticket, cti, **counted, **flagged)


_UNSYNCED = "replaced gate: the site's admissions are not recovered yet, "


def _by_checkin_list(code: Ticket, gate: GateContext, facts: Facts, now: float) -> Decision:
    """A pretix ticket at a gate holding its check-in list: pretix's order and reasons
    (gated/core/pretix_checkin.py), then the gate's own capacity."""
    from gated.core.pretix_checkin import judge
    from gated.core.pretix_rules import reads_history

    held = facts.pretix
    verdict = judge(
        code,
        held.checkin_list,
        revoked=facts.revoked,
        history=held.history,
        now=now,
        gate_pk=held.gate_pk,
        skew_s=gate.skew_s,
        questions=gate.pretix_questions,
    )
    if not verdict.admit:
        return Decision(False, verdict.reason, code, code.claims.cti, verdict.detail)
    clist = held.checkin_list
    # only a replaced gate not yet synced asks (walking the rules on every scan would cost each one)
    unchecked = not facts.synced and (
        (not clist.allow_multiple_entries and not verdict.reentry) or reads_history(clist.rules)
    )
    if unchecked and gate.until_synced != "admit":
        return Decision(
            False,
            Reason.UNSYNCED,
            code,
            code.claims.cti,
            _UNSYNCED + f"so whether check-in list {clist.name!r} lets this ticket in again cannot be checked",
        )
    counted = {} if gate.capacity is None else {"inside": facts.zone_inside, "occupancy_source": facts.occupancy_source}
    if gate.capacity is not None and facts.zone_inside >= gate.capacity:
        return Decision(
            False,
            Reason.CAPACITY,
            code,
            code.claims.cti,
            f"zone {gate.zone!r} holds {facts.zone_inside} of {gate.capacity}",
            **counted,
        )
    return Decision(
        True,
        Reason.OK,
        code,
        code.claims.cti,
        "re-entry after an exit" if verdict.reentry else "",
        reentry=verdict.reentry,
        unsynced=unchecked,
        **counted,
    )


def products_of(ticket: Ticket) -> tuple[str, ...]:
    """The names a gate's product limit matches: a GT ticket's type; a pretix ticket's item and
    item/variation (gated/core/pretix_secret.py)."""
    return ticket.products if _is_pretix(ticket) else (ticket.claims.typ,)


def _is_pretix(ticket: Ticket) -> bool:
    from gated.core.pretix_secret import PretixTicket  # here: gated.core.pretix_secret builds on gated.ticket

    return isinstance(ticket, PretixTicket)


def _iso(unix_seconds: int) -> str:
    try:
        return datetime.fromtimestamp(unix_seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"unix {unix_seconds}"
