"""decide(): one parametrized row per branch, each reason of PROTOCOL §5 reachable and exact."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import timezone

import pytest

from gated.core.checkinlist import CheckinList
from gated.core.decide import Facts, GateContext, GateMode, PretixFacts, decide
from gated.core.pretix_rules import EventTimes
from gated.core.pretix_secret import PretixTicket
from gated.core.reasons import Reason
from gated.core.ticket import STEP_SECONDS, Claims, Rejection, Ticket

NOW = 1_790_000_000
GATE = GateContext(site="arena", events=frozenset({"FINAL"}), zone="north", skew_s=60, step_window=1)
CLAIMS = Claims(cti=bytes(16), aud="FINAL", nbf=NOW - 3600, exp=NOW + 3600)
STEP = NOW // STEP_SECONDS


def static(**changes) -> Ticket:
    return Ticket(claims=replace(CLAIMS, **changes), issuer="box")


def dynamic(step=STEP, **changes) -> Ticket:
    return Ticket(claims=replace(CLAIMS, dev=b"\x01" * 32, **changes), issuer="box", dynamic=True, step=step)


def pretix(**changes) -> PretixTicket:
    return PretixTicket(claims=replace(CLAIMS, **changes), issuer="pretix", item=12)


def held(**changes) -> Facts:
    """Facts of a gate holding a pretix check-in list of event FINAL (single entry, no rules)."""
    clist = CheckinList(
        site="arena",
        version=1,
        iat=0,
        event="FINAL",
        list_id=3,
        name="Gates",
        include_pending=False,
        allow_multiple_entries=False,
        allow_entry_after_exit=True,
        all_products=True,
        limit_products=frozenset(),
        subevent=None,
        rules={},
        exit_all_at=None,
        times=EventTimes(tz=timezone.utc, date_from=NOW),
        tz_name="UTC",
    )
    return Facts(pretix=PretixFacts(checkin_list=replace(clist, **changes)))


ROWS = [
    # (id, code, gate changes, facts, expected reason)
    ("ok", static(), {}, Facts(), Reason.OK),
    ("ok: zone listed", static(zon=("north", "vip")), {}, Facts(), Reason.OK),
    ("ok: unlimited entries used often", static(ent=0), {}, Facts(admissions=50), Reason.OK),
    ("ok: second of two entries", static(ent=2), {}, Facts(admissions=1), Reason.OK),
    ("ok: inside skew before nbf", static(nbf=NOW + 59), {}, Facts(), Reason.OK),
    ("ok: inside skew after exp", static(exp=NOW - 59), {}, Facts(), Reason.OK),
    ("ok: dynamic, current step", dynamic(), {}, Facts(), Reason.OK),
    ("ok: dynamic, previous step", dynamic(step=STEP - 1), {}, Facts(), Reason.OK),
    ("malformed", Rejection(Reason.MALFORMED, "x"), {}, Facts(), Reason.MALFORMED),
    ("unsupported", Rejection(Reason.UNSUPPORTED, "x"), {}, Facts(), Reason.UNSUPPORTED),
    ("unknown_key", Rejection(Reason.UNKNOWN_KEY, "x", bytes(16)), {}, Facts(), Reason.UNKNOWN_KEY),
    ("bad_signature", Rejection(Reason.BAD_SIGNATURE, "x", bytes(16)), {}, Facts(), Reason.BAD_SIGNATURE),
    ("wrong_event", static(aud="OTHER"), {}, Facts(), Reason.WRONG_EVENT),
    ("wrong_zone", static(zon=("south",)), {}, Facts(), Reason.WRONG_ZONE),
    ("wrong_zone: gate without zone", static(zon=("south",)), {"zone": None}, Facts(), Reason.WRONG_ZONE),
    ("not_yet_valid", static(nbf=NOW + 61), {}, Facts(), Reason.NOT_YET_VALID),
    ("expired", static(exp=NOW - 61), {}, Facts(), Reason.EXPIRED),
    ("revoked", static(), {}, Facts(revoked=True, rev_version=4), Reason.REVOKED),
    ("already_used", static(), {}, Facts(admissions=1), Reason.ALREADY_USED),
    ("already_used: both of two", static(ent=2), {}, Facts(admissions=2), Reason.ALREADY_USED),
    ("already_used: same GT2 step", dynamic(ent=0), {}, Facts(step_seen=True), Reason.ALREADY_USED),
    ("static_copy", static(dev=b"\x01" * 32), {}, Facts(), Reason.STATIC_COPY),
    ("stale_code: two steps old", dynamic(step=STEP - 2), {}, Facts(), Reason.STALE_CODE),
    ("stale_code: from the future", dynamic(step=STEP + 2), {}, Facts(), Reason.STALE_CODE),
    ("emergency", static(), {"mode": GateMode.EMERGENCY}, Facts(), Reason.EMERGENCY),
    ("locked", static(), {"mode": GateMode.LOCKED}, Facts(), Reason.LOCKED),
    # exits, re-entry, capacity (docs/protocol.md part 2, "Exits, re-entry and occupancy")
    (
        "exit: a used, revoked ticket leaves",
        static(),
        {"direction": "out"},
        Facts(admissions=1, revoked=True),
        Reason.OK,
    ),
    ("exit: an expired ticket leaves", static(exp=NOW - 9999), {"direction": "out"}, Facts(), Reason.OK),
    ("exit: wrong_event all the same", static(aud="OTHER"), {"direction": "out"}, Facts(), Reason.WRONG_EVENT),
    ("re-entry after a recorded exit", static(), {"reentry": True}, Facts(admissions=1, outside=True), Reason.OK),
    (
        "already_used: re-entry allowed, never left",
        static(),
        {"reentry": True},
        Facts(admissions=1),
        Reason.ALREADY_USED,
    ),
    ("re-entry: the ticket allows it (rex)", static(rex=True), {}, Facts(admissions=1, outside=True), Reason.OK),
    ("already_used: rex, never left", static(rex=True), {}, Facts(admissions=1), Reason.ALREADY_USED),
    ("already_used: left, gate without re-entry", static(), {}, Facts(admissions=1, outside=True), Reason.ALREADY_USED),
    ("capacity", static(), {"capacity": 10}, Facts(zone_inside=10), Reason.CAPACITY),
    (
        "capacity: a re-entry too",
        static(),
        {"capacity": 10, "reentry": True},
        Facts(admissions=1, outside=True, zone_inside=12),
        Reason.CAPACITY,
    ),
    ("ok: one below capacity", static(), {"capacity": 10}, Facts(zone_inside=9), Reason.OK),
    (
        "already_used before capacity",
        static(),
        {"capacity": 10},
        Facts(admissions=1, zone_inside=10),
        Reason.ALREADY_USED,
    ),
    ("revoked before capacity", static(), {"capacity": 1}, Facts(revoked=True, zone_inside=5), Reason.REVOKED),
    # a replaced gate before its admissions snapshot (docs/protocol.md, "Replacing a gate")
    ("unsynced: limited ticket, admissions not recovered", static(), {}, Facts(synced=False), Reason.UNSYNCED),
    ("ok: unsynced, unlimited ticket", static(ent=0), {}, Facts(synced=False), Reason.OK),
    ("ok: unsynced, policy admit (flagged)", static(), {"until_synced": "admit"}, Facts(synced=False), Reason.OK),
    ("already_used before unsynced", static(), {}, Facts(synced=False, admissions=1), Reason.ALREADY_USED),
    ("revoked before unsynced", static(), {}, Facts(synced=False, revoked=True), Reason.REVOKED),
    # a pretix ticket judged by its check-in list (gated/core/pretix_checkin.py has the full order)
    ("pretix list: ok", pretix(), {}, held(), Reason.OK),
    ("unpaid", pretix(), {}, held(pending=frozenset({bytes(16)})), Reason.UNPAID),
    (
        "unpaid: a list that includes pending orders",
        pretix(),
        {},
        held(pending=frozenset({bytes(16)}), include_pending=True),
        Reason.OK,
    ),
    ("unapproved", pretix(), {}, held(unapproved=frozenset({bytes(16)}), include_pending=True), Reason.UNAPPROVED),
    ("rules", pretix(), {}, held(rules={"==": [{"var": "product"}, 13]}), Reason.RULES),
    ("questions", pretix(), {}, held(questions=frozenset({12})), Reason.QUESTIONS),
    (
        "questions: the gate admits them",
        pretix(),
        {"pretix_questions": "admit"},
        held(questions=frozenset({12})),
        Reason.OK,
    ),
    ("pretix list: wrong_zone for a product off the list", pretix(), {}, held(all_products=False), Reason.WRONG_ZONE),
    (
        "pretix list: an exit gate lets it out",
        pretix(),
        {"direction": "out"},
        held(pending=frozenset({bytes(16)})),
        Reason.OK,
    ),
    (
        "pretix list of another event: the plain rules",
        pretix(),
        {},
        held(event="OTHER", questions=frozenset({12})),
        Reason.OK,
    ),
    # precedence: one scan, one reason
    ("locked before malformed", Rejection(Reason.MALFORMED, "x"), {"mode": GateMode.LOCKED}, Facts(), Reason.LOCKED),
    ("wrong_event before expired", static(aud="X", exp=NOW - 9999), {}, Facts(), Reason.WRONG_EVENT),
    ("expired before revoked", static(exp=NOW - 9999), {}, Facts(revoked=True), Reason.EXPIRED),
    ("revoked before already_used", static(), {}, Facts(revoked=True, admissions=1), Reason.REVOKED),
]


@pytest.mark.parametrize("code,gate_changes,facts,reason", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_decision_table(code, gate_changes, facts, reason):
    decision = decide(code, replace(GATE, **gate_changes), facts, NOW)
    assert decision.reason is reason
    assert decision.admit is (reason is Reason.OK)
    assert decision.word == ("admit" if reason is Reason.OK else "deny")


def test_every_reason_has_a_row():
    # internal_error is no decision of decide(): the gate's per-scan error boundary gives it
    # (tests/system/test_hostile_codes.py)
    assert {r[-1] for r in ROWS} == set(Reason) - {Reason.INTERNAL_ERROR}


def test_decision_carries_ticket_id_and_detail():
    cti = os.urandom(16)
    decision = decide(static(cti=cti, exp=NOW - 1000), GATE, Facts(), NOW)
    assert decision.cti == cti and "valid until" in decision.detail
    assert decide(Rejection(Reason.MALFORMED, "base45: bad"), GATE, Facts(), NOW).cti is None


def test_admissions_before_the_snapshot_are_flagged_only_where_unchecked():
    flagged = decide(static(), replace(GATE, until_synced="admit"), Facts(synced=False), NOW)
    assert flagged.admit and flagged.unsynced
    assert not decide(static(), GATE, Facts(), NOW).unsynced
    assert not decide(static(ent=0), replace(GATE, until_synced="admit"), Facts(synced=False), NOW).unsynced


def test_exits_and_reentries_say_so():
    exit_ = decide(static(), replace(GATE, direction="out"), Facts(admissions=1), NOW)
    assert exit_.admit and exit_.direction == "out" and not exit_.reentry
    back = decide(static(), replace(GATE, reentry=True), Facts(admissions=1, outside=True), NOW)
    assert back.admit and back.reentry and back.direction == "in"
    first = decide(static(ent=2), replace(GATE, reentry=True), Facts(admissions=0), NOW)
    assert first.admit and not first.reentry  # no exit recorded: an ordinary entry, one spent
