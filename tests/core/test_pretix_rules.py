"""pretix's rule language and check-in order, offline (gated/core/pretix_rules.py, pretix_checkin.py,
checkinlist.py). The proof against pretix itself is tests/pretix/test_pretix_checkin_rules.py; these
rows pin the edges it cannot reach cheaply: refusals at arrival, day boundaries, daylight saving."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated.core import checkinlist, cose
from gated.core.checkinlist import ListRejected, read_list
from gated.core.pretix_checkin import judge, latest_exit_all
from gated.core.pretix_rules import (
    EventTimes,
    Movement,
    RuleError,
    RuleInput,
    check_rules,
    evaluate,
    explain,
    reads_history,
)
from gated.core.pretix_secret import PretixTicket
from gated.core.reasons import Reason
from gated.core.ticket import Claims

BERLIN = ZoneInfo("Europe/Berlin")
EVENT = EventTimes(tz=BERLIN, date_from=datetime(2026, 6, 1, 18, tzinfo=BERLIN).timestamp())


def at(*args) -> float:
    return datetime(*args, tzinfo=BERLIN).timestamp()


def scan(now: float, *entries: float, exits=(), product=1, gate=None) -> RuleInput:
    history = tuple(Movement(e, True) for e in entries) + tuple(Movement(e, False) for e in exits)
    return RuleInput(product=product, variation=None, gate=gate, now=now, history=history)


@pytest.mark.parametrize(
    "rules, problem",
    [
        ({"weekday_is": [1]}, "unknown operator"),
        ({"==": [{"var": "age"}, 18]}, "unknown variable"),
        ({"var": "product"}, "not allowed on the first level"),
        ({"==": [{"and": [True, True]}, True]}, "and/or below a comparison"),
        ({"isAfter": [{"var": "now"}, {"buildTime": ["custom", "2026-06-01T10:00:00"]}]}, "UTC offset"),
        ({"isAfter": [{"var": "now"}, {"buildTime": ["customtime", "ten"]}]}, "HH:MM"),
        ({"isAfter": [{"var": "now"}, {"buildTime": ["tomorrow"]}]}, "unknown time"),
        ({"isAfter": [{"var": "now"}, {"buildTime": ["date_from"]}, "soon"]}, "tolerance"),
        ({"inList": [{"var": "product"}, {"objectList": [{"lookup": ["product", "x", "A"]}]}]}, "not an integer"),
        ({"<": [{"entries_since": [5]}, 1]}, "one buildTime"),
        ({"==": [1, 1], "!=": [1, 2]}, "exactly one operator"),
        ([{"==": [1, 1]}], "must be an object"),
        ({"and": [{"and": [{"==": [1, 1]}]}] * 2}, None),
    ],
)
def test_rules_a_gate_cannot_evaluate_are_refused_on_arrival(rules, problem):
    if problem is None:
        check_rules(rules)
        return
    with pytest.raises(RuleError, match=problem):
        check_rules(rules)


def test_deep_rules_are_refused():
    rules = {"==": [1, 1]}
    for _ in range(40):
        rules = {"and": [rules]}
    with pytest.raises(RuleError, match="too large or too deep"):
        check_rules(rules)


def test_entries_today_starts_at_local_midnight_and_days_are_local_dates():
    rules = {"<": [{"var": "entries_today"}, 1]}
    # 23:30 on the 28th and 00:30 on the 29th (Berlin) are two days, one UTC day apart or not
    assert evaluate(rules, scan(at(2026, 3, 29, 0, 30), at(2026, 3, 28, 23, 30)), EVENT)
    assert not evaluate(rules, scan(at(2026, 3, 29, 3, 30), at(2026, 3, 29, 0, 30)), EVENT)  # across the DST jump
    days = {"<": [{"var": "entries_days"}, 2]}
    assert not evaluate(days, scan(at(2026, 3, 29, 1), at(2026, 3, 28, 23, 59), at(2026, 3, 29, 0, 1)), EVENT)
    assert (
        explain(rules, scan(at(2026, 3, 29, 3, 30), at(2026, 3, 29, 0, 30)), EVENT)
        == "Maximum number of entries today exceeded"
    )


def test_minutes_since_an_entry_are_whole_minutes_and_minus_one_without():
    rules = {
        "or": [{"==": [{"var": "minutes_since_last_entry"}, -1]}, {">=": [{"var": "minutes_since_last_entry"}, 30]}]
    }
    start = at(2026, 10, 25, 1, 40)  # an hour is repeated at 03:00 that night: minutes are real minutes
    assert evaluate(rules, scan(start), EVENT)
    assert not evaluate(rules, scan(start + 29 * 60 + 59, start), EVENT)
    assert evaluate(rules, scan(start + 30 * 60, start), EVENT)
    assert explain(rules, scan(start + 600, start), EVENT) == "Minimum time since last entry exceeded"


def test_times_with_tolerance_and_the_words_pretix_uses():
    after = {"isAfter": [{"var": "now"}, {"buildTime": ["customtime", "10:00"]}, 15]}
    assert evaluate(after, scan(at(2026, 6, 6, 9, 46)), EVENT)
    assert not evaluate(after, scan(at(2026, 6, 6, 9, 44)), EVENT)
    assert explain(after, scan(at(2026, 6, 6, 9, 44)), EVENT) == "Only allowed after 09:45"
    before = {"isBefore": [{"var": "now"}, {"buildTime": ["custom", "2026-06-01T18:00:00+02:00"]}]}
    assert explain(before, scan(at(2026, 6, 3, 12)), EVENT) == "Only allowed before 2026-06-01 18:00"
    weekday = {"==": [{"var": "now_isoweekday"}, 6]}
    assert explain(weekday, scan(at(2026, 6, 5, 12)), EVENT) == "week day is not Saturday"


def test_explain_takes_the_closest_path_and_never_raises():
    rules = {
        "or": [
            {"inList": [{"var": "product"}, {"objectList": [{"lookup": ["product", "7", "VIP"]}]}]},
            {"and": [{"<": [{"var": "entries_number"}, 1]}, {"==": [{"var": "product"}, 1]}]},
        ]
    }
    assert explain(rules, scan(at(2026, 6, 1, 18), at(2026, 6, 1, 17)), EVENT) == "Maximum number of entries exceeded"
    # pretix itself fails to weigh an inList of week days (HTTP 500); the gate says it does not know
    odd = {"inList": [{"var": "now_isoweekday"}, {"objectList": [6, 7]}]}
    assert explain(odd, scan(at(2026, 6, 5, 12)), EVENT) == "Unknown reason"
    assert explain({"==": [1, {"var": "product"}]}, scan(at(2026, 6, 5, 12), product=2), EVENT) == "Unknown reason"


def test_json_logic_comparisons_are_pretix_s():
    assert evaluate({"==": [{"var": "product"}, "1"]}, scan(0.0), EVENT)  # loose equality
    assert not evaluate({"<": [{"var": "product"}, "x"]}, scan(0.0), EVENT)  # a failed conversion is false
    assert evaluate({"==": [{"var": "entry_status"}, "present"]}, scan(at(2026, 6, 1, 19), at(2026, 6, 1, 18)), EVENT)
    assert evaluate(
        {"==": [{"var": "entry_status"}, "absent"]},
        scan(at(2026, 6, 1, 19), at(2026, 6, 1, 18), exits=[at(2026, 6, 1, 18, 30)]),
        EVENT,
    )
    cutoff = {"buildTime": ["custom", "2026-06-01T12:00:00+02:00"]}
    two_before = scan(at(2026, 6, 2, 9), at(2026, 5, 31, 9), at(2026, 6, 1, 9), at(2026, 6, 1, 13))
    assert evaluate({"==": [{"entries_before": [cutoff]}, 2]}, two_before, EVENT)
    assert evaluate({"==": [{"entries_days_before": [cutoff]}, 2]}, two_before, EVENT)
    assert evaluate({"==": [{"entries_since": [cutoff]}, 1]}, two_before, EVENT)


def test_the_daily_check_out_on_days_the_clocks_change():
    exit_all = int(at(2026, 3, 20, 2, 30))
    # 29 March 2026 has no 02:30 in Berlin: pretix moves that day's check-out to 03:30
    assert latest_exit_all(exit_all, BERLIN, at(2026, 3, 29, 12)) == at(2026, 3, 29, 3, 30)
    assert latest_exit_all(exit_all, BERLIN, at(2026, 3, 30, 2, 29)) == at(2026, 3, 29, 3, 30)
    assert latest_exit_all(exit_all, BERLIN, at(2026, 3, 30, 2, 30)) == at(2026, 3, 30, 2, 30)


# --- the check-in order -------------------------------------------------------------------------

CLAIMS = Claims(cti=b"\x01" * 16, aud="final-2026", nbf=0, exp=2**40)
TICKET = PretixTicket(claims=CLAIMS, issuer="pretix", item=1)
LIST = checkinlist.CheckinList(
    site="arena",
    version=1,
    iat=0,
    event="final-2026",
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
    times=EVENT,
    tz_name="Europe/Berlin",
)
NOW = at(2026, 6, 1, 20)
IN = Movement(at(2026, 6, 1, 19), True)
OUT = Movement(at(2026, 6, 1, 19, 30), False)


@pytest.mark.parametrize(
    "ticket, changes, revoked, history, reason",
    [
        (TICKET, {}, False, (), Reason.OK),
        (TICKET, {}, False, (IN,), Reason.ALREADY_USED),
        (TICKET, {}, False, (IN, OUT), Reason.OK),
        (TICKET, {"allow_entry_after_exit": False}, False, (IN, OUT), Reason.ALREADY_USED),
        (TICKET, {"allow_multiple_entries": True}, False, (IN, IN), Reason.OK),
        (TICKET, {"exit_all_at": int(at(2026, 5, 1, 19, 15))}, False, (IN,), Reason.OK),  # checked out at 19:15
        (TICKET, {"exit_all_at": int(at(2026, 5, 1, 18, 15))}, False, (IN,), Reason.ALREADY_USED),  # before the entry
        # pretix's order: cancelled/blocked, unapproved, validity, product, unpaid, rules, questions, already used
        (TICKET, {"unapproved": frozenset({CLAIMS.cti})}, True, (IN,), Reason.REVOKED),
        (
            replace(TICKET, claims=replace(CLAIMS, exp=0)),
            {"unapproved": frozenset({CLAIMS.cti})},
            False,
            (),
            Reason.UNAPPROVED,
        ),
        (replace(TICKET, claims=replace(CLAIMS, exp=0)), {"all_products": False}, False, (), Reason.EXPIRED),
        (TICKET, {"all_products": False, "pending": frozenset({CLAIMS.cti})}, False, (), Reason.WRONG_ZONE),
        (TICKET, {"pending": frozenset({CLAIMS.cti}), "rules": {"==": [1, 2]}}, False, (), Reason.UNPAID),
        (TICKET, {"pending": frozenset({CLAIMS.cti}), "include_pending": True}, False, (), Reason.OK),
        (TICKET, {"rules": {"==": [{"var": "product"}, 2]}, "questions": frozenset({1})}, False, (IN,), Reason.RULES),
        (TICKET, {"questions": frozenset({1})}, False, (IN,), Reason.QUESTIONS),
        (TICKET, {"subevent": 4}, False, (), Reason.WRONG_EVENT),
        (TICKET, {"rules": {"isAfter": [{"var": "now"}, 5]}}, False, (), Reason.RULES),  # evaluation fails: denied
    ],
)
def test_pretix_s_order_of_checks(ticket, changes, revoked, history, reason):
    verdict = judge(ticket, replace(LIST, **changes), revoked=revoked, history=history, now=NOW, gate_pk=None)
    assert verdict.reason is reason
    assert verdict.admit is (reason is Reason.OK)


# --- the signed list --------------------------------------------------------------------------

SETTINGS = {
    "id": 3,
    "name": "Gates",
    "include_pending": False,
    "allow_multiple_entries": False,
    "allow_entry_after_exit": True,
    "all_products": True,
    "limit_products": [],
    "subevent": None,
    "rules": json.dumps({"<": [{"var": "entries_today"}, 1]}),
    "exit_all_at": None,
}
TIMES = {"tz": "Europe/Berlin", "date_from": 1_780_000_000, "date_to": None, "date_admission": None}


def body_of(blob: bytes):
    return cose.loads_exact(cose.parse(blob).payload)


def test_a_list_reads_back_as_signed():
    key = Ed25519PrivateKey.generate()
    blob = checkinlist.encode_list(
        key,
        site="arena",
        version=4,
        iat=9,
        event="final-2026",
        settings=SETTINGS,
        times=TIMES,
        gates={7: "north", 8: "Main Entrance"},
        pending=[b"\x02" * 16],
        questions=[5],
    )
    clist = read_list(body_of(blob), signer="rev", zones=ZoneInfo)
    assert (clist.version, clist.name, clist.gate_pk("NORTH"), clist.gate_pk("south")) == (4, "Gates", 7, None)
    assert clist.gate_pk("main-entrance") == clist.gate_pk("main_entrance") == 8
    assert (
        clist.pending == {b"\x02" * 16}
        and clist.questions == {5}
        and clist.rules == {"<": [{"var": "entries_today"}, 1]}
    )


@pytest.mark.parametrize(
    "change, code",
    [
        (lambda b: b.update({11: 1}), "unsupported"),
        (lambda b: b[5].update(badge=True), "unsupported"),
        (lambda b: b[5].pop("rules"), "malformed"),
        (lambda b: b[5].update(rules='{"weekday": 1}'), "bad_rules"),
        (lambda b: b[5].update(rules="{not json"), "bad_rules"),
        (lambda b: b[6].update(tz="Mars/Olympus"), "malformed"),
        (lambda b: b.update({8: [b"short"]}), "malformed"),
        (lambda b: b.update({2: 0}), "malformed"),
        (lambda b: b[5].update(include_pending=1), "malformed"),
    ],
)
def test_a_list_the_gate_cannot_read_fully_is_refused(change, code):
    body = body_of(
        checkinlist.encode_list(
            Ed25519PrivateKey.generate(),
            site="arena",
            version=1,
            iat=0,
            event="final-2026",
            settings=dict(SETTINGS),
            times=dict(TIMES),
            gates={},
        )
    )
    body = cbor2.loads(cbor2.dumps(body))
    change(body)
    with pytest.raises(ListRejected) as refused:
        read_list(body, signer="rev", zones=ZoneInfo)
    assert refused.value.code == code


def test_a_series_date_s_own_times_for_build_time():
    """pretix evaluates `date_from` of a series' ticket against its date (subevent), not the event."""
    key = Ed25519PrivateKey.generate()
    times = {**TIMES, "subevents": {7: [int(at(2026, 6, 8, 18)), None, None]}}
    rules = {"isAfter": [{"var": "now"}, {"buildTime": ["date_from"]}, 60]}
    blob = checkinlist.encode_list(
        key,
        site="arena",
        version=1,
        iat=0,
        event="final-2026",
        settings={**SETTINGS, "rules": json.dumps(rules)},
        times=times,
        gates={},
    )
    clist = read_list(body_of(blob), signer="rev", zones=ZoneInfo)
    on_the_first = at(2026, 6, 1, 17, 30)  # the event's date_from is 1_780_000_000 (2026-05-28)
    assert judge(TICKET, clist, revoked=False, history=(), now=on_the_first, gate_pk=None).reason is Reason.OK
    dated = replace(TICKET, subevent=7)
    verdict = judge(dated, clist, revoked=False, history=(), now=on_the_first, gate_pk=None)
    assert verdict.reason is Reason.RULES and "Only allowed after 2026-06-08 17:00" in verdict.detail
    assert judge(dated, clist, revoked=False, history=(), now=at(2026, 6, 8, 17, 5), gate_pk=None).admit
    bad = cbor2.loads(cbor2.dumps(body_of(blob)))
    bad[6]["subevents"] = {7: [1, 2]}
    with pytest.raises(ListRejected, match="subevents"):
        read_list(bad, signer="rev", zones=ZoneInfo)


def test_an_explanation_that_would_multiply_out_is_not_attempted():
    """An AND of many ORs has exponentially many paths (pretix's convert_to_dnf would build them all):
    the gate decides as pretix, and says "Unknown reason" instead of waiting at the turnstile."""
    wide = {"or": [{"==": [{"var": "product"}, n]} for n in range(2, 10)]}  # 8 paths, all false for product 1
    rules = {"and": [wide] * 6}  # 8**6 = 262,144 paths
    check_rules(rules)
    now = at(2026, 6, 1, 12)
    assert not evaluate(rules, scan(now), EVENT)
    assert explain(rules, scan(now), EVENT) == "Unknown reason"
    assert explain({"and": [wide] * 2}, scan(now), EVENT) == "Ticket type not allowed, Ticket type not allowed"


@pytest.mark.parametrize(
    "rules, reads",
    [
        ({}, False),
        ({"==": [{"var": "product"}, 1]}, False),
        ({"isAfter": [{"var": "now"}, {"buildTime": ["date_admission"]}, 10]}, False),
        ({"<": [{"var": "entries_today"}, 1]}, True),
        ({"or": [{"==": [{"var": "product"}, 1]}, {"==": [{"var": ["entry_status"]}, "absent"]}]}, True),
        ({"<": [{"entries_since": [{"buildTime": ["custom", "2026-06-06T10:00:00+02:00"]}]}, 1]}, True),
    ],
)
def test_rules_that_read_the_tickets_movements_are_told_apart(rules, reads):
    check_rules(rules)
    assert reads_history(rules) is reads
