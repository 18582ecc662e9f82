"""Orders and the check-in list, from pretix to the gates (docs/pretix.md, "Cancellations, payment
and approval"; docs/protocol.md, "pretix check-in lists").

pretix's `revokedsecrets` lists only secrets that were replaced; a cancellation changes the order,
not the secret. So the sync also reads the orders changed since its last run (`modified_since`,
canceled positions included) and keeps one row per ticket with the state pretix would judge it by:

    cancelled    the order is cancelled or expired, or the position is cancelled -> revoked at the gates
    unapproved   the order is pending and requires approval                       -> the list's `unapproved`
    pending      the order is pending (not paid) and not `valid_if_pending`       -> the list's `pending`
    ok           paid, or pending but valid_if_pending

A ticket that leaves `cancelled` (an order reactivated) leaves the revocation list again, the way an
unblocked secret does; one that is paid or approved leaves `pending`/`unapproved` with the next list.

The check-in list (its settings and rules, the event's time zone and dates, the organizer's gates,
the products with check-in questions, and the pending and unapproved tickets) is signed as one
snapshot with the revocation key. Its version goes up only when its content changed; the signed
bytes wait in the sync's state until the broker took them, so a killed run republishes the same
bytes. Fetching and recording is one transaction per step, as in gated/central/pretix.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gated.central.pretix import (
    PretixClient,
    PretixError,
    SyncState,
    _cursor,
    _event_path,
    _id,
    _ids,
    _short,
    _time,
)
from gated.core import checkinlist
from gated.core.pretix_rules import RuleError, check_rules
from gated.core.pretix_secret import ticket_id
from gated.core.signed import Keyring, trusted
from gated.sqlitedb import write_transaction
from gated.topics import checkin_list_topic

ORDERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS order_tickets (ticket BLOB PRIMARY KEY, order_code TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('ok', 'cancelled', 'pending', 'unapproved'))) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkin_lists (version INTEGER PRIMARY KEY, digest TEXT NOT NULL, blob BLOB NOT NULL,
    acked INTEGER NOT NULL DEFAULT 0);
"""


def prepare(state: SyncState) -> None:
    state.db.executescript(ORDERS_SCHEMA)


# --- orders ------------------------------------------------------------------------------------


@dataclass
class OrdersResult:
    orders_seen: int = 0
    cancelled: int = 0
    pending: int = 0
    unapproved: int = 0


def ticket_state(order: dict, position: dict) -> str:
    """How pretix judges a position before its list's rules: cancelled, unapproved, pending or ok."""
    status = order.get("status")
    if status in ("c", "e") or position.get("canceled") is True:
        return "cancelled"
    if status == "n" and order.get("require_approval") is True:
        return "unapproved"
    if status == "n" and order.get("valid_if_pending") is not True:
        return "pending"
    return "ok"


def sync_orders(client: PretixClient, state: SyncState, *, event: str, now=time.time) -> OrdersResult:
    """Read the orders changed since the last run and record each ticket's state. The cursor is
    pretix.py's (overlap, never back, never past `now` less the overlap)."""
    prepare(state)
    where = f"pretix event {event}: orders"
    since = state.get("orders_since")
    params = {"include_canceled_positions": "true", "ordering": "last_modified"}
    if since:
        params["modified_since"] = since
    orders = list(client.pages(_event_path(event) + "orders/", params))
    rows, newest = [], None
    for order in orders:
        if (
            not isinstance(order, dict)
            or order.get("status") not in ("n", "p", "e", "c")
            or not isinstance(order.get("positions"), list)
            or not isinstance(order.get("code"), str)
        ):
            raise PretixError(f"{where}: an order without code, status or positions: {_short(order)}")
        modified = _time(order, "last_modified", where)
        newest = modified if newest is None or modified > newest else newest
        for position in order["positions"]:
            if not isinstance(position, dict) or not isinstance(position.get("secret"), str) or not position["secret"]:
                raise PretixError(f"{where}: order {order['code']}: a position without a secret")
            rows.append((ticket_id(position["secret"]), order["code"], ticket_state(order, position), modified))
    with write_transaction(state.db):
        for cti, code, standing, _ in sorted(rows, key=lambda r: r[3]):  # the latest state of a ticket wins
            state.db.execute("INSERT OR REPLACE INTO order_tickets VALUES (?, ?, ?)", (cti, code, standing))
        if newest is not None:
            state.set("orders_since", _cursor(newest, since, datetime.fromtimestamp(now(), timezone.utc)))
    counts = dict(state.db.execute("SELECT state, COUNT(*) FROM order_tickets GROUP BY state").fetchall())
    return OrdersResult(
        orders_seen=len(orders),
        cancelled=counts.get("cancelled", 0),
        pending=counts.get("pending", 0),
        unapproved=counts.get("unapproved", 0),
    )


def tickets_in(state: SyncState, standing: str) -> list[bytes]:
    """The ticket ids the orders sync last saw in `standing` (cancelled, unapproved, pending, ok)."""
    return [row[0] for row in state.db.execute("SELECT ticket FROM order_tickets WHERE state = ?", (standing,))]


# --- the check-in list -------------------------------------------------------------------------


def choose_list(client: PretixClient, event: str, wanted: int | None) -> dict | None:
    """The check-in list resource: `wanted`, or the event's only list; None if it has none. (From the
    list of lists: pretixSCAN's device profile may read that, not a list's own resource.)"""
    where = f"pretix event {event}: check-in lists"
    lists = [row for row in client.pages(_event_path(event) + "checkinlists/") if isinstance(row, dict)]
    ids = [_id(row, "id", where) for row in lists]
    if wanted is not None:
        chosen = [row for row, list_id in zip(lists, ids) if list_id == wanted]
        if not chosen:
            raise PretixError(f"{where}: no list {wanted} (the event has {sorted(ids)})")
        return chosen[0]
    if not lists:
        return None
    if len(lists) > 1:
        names = ", ".join(f"{list_id} ({_name(row.get('name'))})" for row, list_id in zip(lists, ids))
        raise PretixError(f"{where}: the event has several ({names}); name the gates' list with --list ID")
    return lists[0]


def list_content(client: PretixClient, event: str, resource: dict) -> dict:
    """Everything the signed list carries but its version and iat, from pretix's answers."""
    where = f"pretix event {event}: check-in list {resource.get('id')}"
    rules = resource.get("rules") or {}
    try:
        check_rules(rules)
    except RuleError as exc:
        raise PretixError(f"{where}: its rules cannot be evaluated at a gate ({exc}); nothing was sent") from None
    limit = _ids(resource, "limit_products", where)
    ev = client.get(_event_path(event))
    tz = ev.get("timezone")
    if not isinstance(tz, str) or not tz:
        raise PretixError(f"pretix event {event}: no timezone in the event resource")
    settings = {
        "id": _id(resource, "id", where),
        "name": _name(resource.get("name")),
        "include_pending": resource.get("include_pending") is True,
        "allow_multiple_entries": resource.get("allow_multiple_entries") is True,
        "allow_entry_after_exit": resource.get("allow_entry_after_exit") is not False,
        "all_products": resource.get("all_products") is not False,
        "limit_products": sorted(limit),
        "subevent": _id(resource, "subevent", where, default=None),
        "rules": json.dumps(rules, sort_keys=True) if rules else "",
        "exit_all_at": _unix(resource, "exit_all_at", where),
    }
    times = {
        "tz": tz,
        "date_from": _unix(ev, "date_from", where) or 0,
        "date_to": _unix(ev, "date_to", where),
        "date_admission": _unix(ev, "date_admission", where),
    }
    if ev.get("has_subevents") is True:  # an event series: each date's times, for the rules' buildTime
        times["subevents"] = {
            _id(date, "id", f"{where}: event dates"): [
                _unix(date, "date_from", where) or 0,
                _unix(date, "date_to", where),
                _unix(date, "date_admission", where),
            ]
            for date in client.pages(_event_path(event) + "subevents/")
            if isinstance(date, dict)
        }
    gates = gates_in(rules)
    questions = set()
    for question in client.pages(_event_path(event) + "questions/"):
        if isinstance(question, dict) and question.get("ask_during_checkin") is True:
            questions.update(_ids(question, "items", f"pretix event {event}: question {_short(question.get('id'))}"))
    return {"settings": settings, "times": times, "gates": gates, "questions": sorted(questions)}


def gates_in(rules) -> dict[int, str]:
    """pretix gate id -> name, from the rules' own lookups (`{"lookup": ["gate", "7", "North"]}`: pretix's
    editor writes each gate's name beside its id; pretix's REST API has no list of gates). A gate
    whose id (`[gate] id`) is that name (CheckinList.gate_pk compares them) is that pretix gate."""
    found = {}

    def walk(node):
        if isinstance(node, dict):
            for operator, args in node.items():
                if operator == "lookup" and isinstance(args, list) and len(args) == 3 and args[0] == "gate":
                    found[int(args[1])] = str(args[2])
                else:
                    walk(args)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(rules)
    return found


def sync_checkin_list(
    client: PretixClient,
    state: SyncState,
    *,
    event: str,
    site: str,
    key,
    list_id: int | None,
    first_version: int = 1,
    now=time.time,
) -> tuple[int, str]:
    """Sign a new version of the list if what it says changed; (version, name). Version 0: no list."""
    prepare(state)
    resource = choose_list(client, event, list_id)
    if resource is None:
        return 0, ""
    content = list_content(client, event, resource)
    content["pending"] = sorted(tickets_in(state, "pending"))
    content["unapproved"] = sorted(tickets_in(state, "unapproved"))
    digest = hashlib.sha256(
        json.dumps(
            {
                **content,
                "pending": [t.hex() for t in content["pending"]],
                "unapproved": [t.hex() for t in content["unapproved"]],
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    with write_transaction(state.db):
        row = state.db.execute("SELECT version, digest FROM checkin_lists ORDER BY version DESC LIMIT 1").fetchone()
        if row is not None and row[1] == digest:
            return row[0], content["settings"]["name"]
        version = row[0] + 1 if row is not None else first_version
        try:
            blob = checkinlist.encode_list(
                key,
                site=site,
                version=version,
                iat=int(now()),
                event=event,
                settings=content["settings"],
                times=content["times"],
                gates=content["gates"],
                pending=content["pending"],
                unapproved=content["unapproved"],
                questions=content["questions"],
            )
        except ValueError as exc:
            raise PretixError(f"pretix event {event}: {exc}") from None
        _gates_take(blob, key, event)
        state.db.execute("INSERT INTO checkin_lists (version, digest, blob) VALUES (?, ?, ?)", (version, digest, blob))
    return version, content["settings"]["name"]


def _gates_take(blob: bytes, key, event: str) -> None:
    """Read the signed list as every gate will (gated/core/checkinlist.py's parse_list, with this
    machine's time zones): a list the gates would refuse is never stored, so never published."""
    keyring = Keyring((trusted("pretix-sync", key.public_key(), ["revocation"]),))
    try:
        checkinlist.parse_list(blob, keyring, zones=_zone)
    except checkinlist.ListRejected as exc:
        raise PretixError(
            f"pretix event {event}: the gates would refuse this check-in list ({exc}); nothing was sent"
        ) from None


def _zone(name: str):
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(str(exc)) from None


def pending_lists(state: SyncState) -> list[tuple[int, bytes]]:
    prepare(state)
    return state.db.execute("SELECT version, blob FROM checkin_lists WHERE acked = 0 ORDER BY version").fetchall()


def latest_list(state: SyncState) -> tuple[int, bytes] | None:
    prepare(state)
    return state.db.execute("SELECT version, blob FROM checkin_lists ORDER BY version DESC LIMIT 1").fetchone()


def mark_published(state: SyncState, version: int) -> None:
    state.db.execute("UPDATE checkin_lists SET acked = 1 WHERE version <= ?", (version,))


def publish_checkin_list(settings, site: str, blob: bytes, *, timeout: float = 15.0) -> None:
    """Retain the list on its topic; returns when the broker acknowledged it (PublishError if not)."""
    from gated.central.publisher import publish_retained

    publish_retained(
        settings, checkin_list_topic(site), blob, client_id=f"gated-checkinlist-{site}-{os.getpid()}", timeout=timeout
    )


def _name(value) -> str:
    if isinstance(value, dict):  # pretix's multi-language strings
        return str(value.get("en") or next(iter(value.values()), ""))
    return str(value or "")


def _unix(row: dict, key: str, where: str) -> int | None:
    if row.get(key) in (None, ""):
        return None
    moment: datetime = _time(row, key, where)
    return max(0, int(moment.timestamp()))
