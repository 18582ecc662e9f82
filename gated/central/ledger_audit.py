"""The signature audit (`gated reconcile --audit-signatures`): every stored event's own signature
checked again, after the fact and off the ingest path, and every column the ledger derives from the
event's body (DERIVED: what the reports read, ticket and decision among them) compared with it.

A ledger run with `--verify chain` stores an event on the strength of a later event's signature down
the same gate's hash chain (`signed = 2`); this audit checks each such row's own signature (or every
row's) against a keyring: role `device`, the key named after the gate. Read-only.

A row whose columns say something its signed body does not (an edited `ticket`) is as bad as a
bad signature: the reports would count what no gate said. `gated ledger copy` refuses such a row
(columns_problem).
"""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gated.core import events as ev
from gated.core.signed import Keyring

# the events table's columns read from the body when the ledger stores an event (Ledger._store_events);
# `signed` and `received_ms` are the ledger's own
FIELDS = ("ts", "ticket", "decision", "reason", "ref", "result")
DERIVED = ("id", "site", "gate", "seq", "kind", *FIELDS, "hash", "prev")


def derived(event: dict) -> tuple:
    """The DERIVED columns of an event, as the ledger stores them."""
    return (
        event["id"],
        event["site"],
        event["gate"],
        event["seq"],
        event["kind"],
        *(None if event.get(f) is None else str(event.get(f)) for f in FIELDS),
        event["hash"],
        event["prev"],
    )


def columns_problem(columns: tuple, body: str) -> str | None:
    """Which of a row's DERIVED `columns` do not say what its `body` says; None when all do."""
    try:
        event = json.loads(body)
        expected = derived(event)
    except (ValueError, TypeError, KeyError, RecursionError):
        return "its body is not an event"
    wrong = [name for name, have, want in zip(DERIVED, columns, expected) if have != want]
    return f"{', '.join(wrong)} not as in its body" if wrong else None


def audit_signatures(db, keyring: Keyring, *, only_vouched: bool = False) -> dict:
    """Check every stored event's own signature again against `keyring` (role device, named
    after the gate): an audit after the fact, off the ingest path, for rows `--verify chain`
    stored on a later event's signature (`only_vouched`: those alone). A row whose DERIVED columns
    differ from its body is bad too, key or not (with `columns`: what differs). Read-only.
    {"checked": n, "bad": [{"id", "gate", "seq"[, "columns"]}...], "no_key": [gate...]}"""
    keys_by_gate: dict[str, object] = {}
    for key in keyring.keys:
        if "device" in key.roles:
            keys_by_gate.setdefault(key.name, key.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw))
    checked, bad, no_key = 0, [], set()
    where = "WHERE signed = 2 " if only_vouched else ""
    rows = db.execute(f"SELECT {', '.join(DERIVED)}, body FROM events {where}ORDER BY gate, seq")
    for row in rows:
        event_id, gate, seq, body = row[0], row[2], row[3], row[-1]
        problem = columns_problem(tuple(row[:-1]), body)
        if problem:
            bad.append({"id": event_id, "gate": gate, "seq": seq, "columns": problem})
            continue
        key = keys_by_gate.get(gate)
        if key is None:
            no_key.add(gate)
            continue
        checked += 1
        try:
            event = json.loads(body)
        except ValueError:
            event = {}
        if not isinstance(event, dict) or ev.hash_problem(event) or not ev.signature_verifies(event, key):
            bad.append({"id": event_id, "gate": gate, "seq": seq})
    return {"checked": checked, "bad": bad, "no_key": sorted(no_key)}
