"""A pretix ticket judged by its check-in list, in pretix's order (pretix/base/services/checkin.py,
`perform_checkin`), so that a gate gives the reason pretix would:

    cancelled or blocked   (on the revocation list)                     -> REVOKED      pretix: canceled, blocked
    awaiting approval      (the list's `unapproved`)                    -> UNAPPROVED   unapproved
    validity               now < valid_from - skew / now > until + skew -> NOT_YET_VALID, EXPIRED   invalid_time
    product                not all_products and item not in the list's  -> WRONG_ZONE   product
    date                   the list's subevent is another               -> WRONG_EVENT  product
    unpaid                 the list's `pending` unless include_pending  -> UNPAID       unpaid
    rules                  the list's rules deny (entries only)         -> RULES        rules
    questions              the product asks questions at check-in and
                           the gate's policy is "deny"                  -> QUESTIONS    (pretix: incomplete)
    already used           an entry after an entry, unless the list allows multiple entries, or
                           allows entry after exit and the latest movement is an exit -> ALREADY_USED  already_redeemed

`include_pending` admits a ticket of an unpaid order as pretix does with `ignore_unpaid` (what a
pretixSCAN operator confirms); an order pretix marks `valid_if_pending` counts as paid (the sync
does not list it as pending). An exit scan is not judged here: a gated exit lets every readable
ticket of its event out (gated/core/decide.py).

The history is the ticket's movements on the gate (own and peers' admissions, entries and exits),
plus the list's automatic check-out: with `exit_all_at`, everybody inside is checked out every day
at that time of day (the event's time zone; pretix moves a time that does not exist on a day of a
daylight-saving change one hour on). Pure: `now` and the time zone come in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone, tzinfo

from gated.core.checkinlist import CheckinList
from gated.core.errors import brief
from gated.core.pretix_rules import EvaluationFailed, Movement, RuleInput, evaluate, explain
from gated.core.reasons import Reason


@dataclass(frozen=True)
class Verdict:
    admit: bool
    reason: Reason
    detail: str = ""
    reentry: bool = False  # an entry after an exit (an exit the list's automatic check-out counts too)


def judge(
    ticket,
    clist: CheckinList,
    *,
    revoked: bool,
    history: tuple[Movement, ...],
    now: float,
    gate_pk: int | None,
    skew_s: int = 0,
    questions: str = "deny",
) -> Verdict:
    """An entry scan of `ticket` (a PretixTicket) at a gate holding `clist`."""
    cti, claims = ticket.claims.cti, ticket.claims
    if revoked:
        return Verdict(False, Reason.REVOKED, "cancelled or blocked in pretix")
    if cti in clist.unapproved:
        return Verdict(False, Reason.UNAPPROVED, "the order is not yet approved")
    if now < claims.nbf - skew_s:
        return Verdict(False, Reason.NOT_YET_VALID, f"valid from {_iso(claims.nbf, clist)}")
    if now > claims.exp + skew_s:
        return Verdict(False, Reason.EXPIRED, f"valid until {_iso(claims.exp, clist)}")
    if not clist.all_products and ticket.item not in clist.limit_products:
        return Verdict(False, Reason.WRONG_ZONE, f"product {ticket.item} is not on check-in list {brief(clist.name)}")
    if clist.subevent is not None and ticket.subevent != clist.subevent:
        return Verdict(False, Reason.WRONG_EVENT, f"a date (subevent) other than {clist.subevent}")
    if cti in clist.pending and not clist.include_pending:
        return Verdict(False, Reason.UNPAID, "the order is not marked as paid")
    history = with_auto_exits(history, clist, now)
    if clist.rules:
        scan = RuleInput(
            product=ticket.item, variation=ticket.variation or None, gate=gate_pk, now=now, history=history
        )
        times = clist.times_for(ticket.subevent)
        try:
            admitted = evaluate(clist.rules, scan, times)
        except EvaluationFailed:
            return Verdict(False, Reason.RULES, "Evaluation of custom rules has failed.")
        if not admitted:
            return Verdict(False, Reason.RULES, f"Entry not permitted: {explain(clist.rules, scan, times)}.")
    if ticket.item in clist.questions and questions == "deny":
        return Verdict(False, Reason.QUESTIONS, "questions to answer at check-in: see the box office")
    latest = max(history, key=lambda m: m.at) if history else None
    allowed = (
        clist.allow_multiple_entries
        or latest is None
        or all(not m.entry for m in history)
        or (clist.allow_entry_after_exit and not latest.entry)
    )
    if not allowed:
        entries = sum(1 for m in history if m.entry)
        return Verdict(False, Reason.ALREADY_USED, f"{entries} entr{'y' if entries == 1 else 'ies'} already")
    return Verdict(True, Reason.OK, reentry=latest is not None and not latest.entry)


def with_auto_exits(history: tuple[Movement, ...], clist: CheckinList, now: float) -> tuple[Movement, ...]:
    """The history with the list's automatic check-out: an exit at the latest check-out time before
    `now` if the ticket's latest movement before then was an entry."""
    if clist.exit_all_at is None or not history:
        return history
    at = latest_exit_all(clist.exit_all_at, clist.times.tz, now)
    before = [m for m in history if m.at <= at]
    if before and max(before, key=lambda m: m.at).entry:
        return (*history, Movement(at=at, entry=False))
    return history


def latest_exit_all(exit_all_at: int, tz: tzinfo, now: float) -> float:
    """The latest daily check-out time at or before `now` (unix seconds)."""
    wall = datetime.fromtimestamp(exit_all_at, timezone.utc).astimezone(tz).time().replace(tzinfo=None)
    day = datetime.fromtimestamp(now, timezone.utc).astimezone(tz).date()
    for back in range(0, 3):
        moment = _on_day(day - timedelta(days=back), wall, tz)
        if moment <= now:
            return moment
    return _on_day(day - timedelta(days=3), wall, tz)


def _on_day(day, wall: time, tz: tzinfo) -> float:
    local = datetime.combine(day, wall, tzinfo=tz)
    if _exists(local, tz):
        return local.timestamp()
    return (local + timedelta(hours=1)).timestamp()  # a time skipped by a daylight-saving change


def _exists(local: datetime, tz: tzinfo) -> bool:
    round_trip = local.astimezone(timezone.utc).astimezone(tz)
    return round_trip.replace(tzinfo=None) == local.replace(tzinfo=None)


def _iso(unix: int, clist: CheckinList) -> str:
    try:
        return datetime.fromtimestamp(unix, timezone.utc).astimezone(clist.times.tz).strftime("%Y-%m-%d %H:%M")
    except (OverflowError, OSError, ValueError):
        return f"unix {unix}"
