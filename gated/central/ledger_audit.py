"""The signature audit (`gated reconcile --audit-signatures`): every stored event's own signature
checked again, after the fact and off the ingest path.

A ledger run with `--verify chain` stores an event on the strength of a later event's signature down
the same gate's hash chain (`signed = 2`); this audit checks each such row's own signature (or every
row's) against a keyring: role `device`, the key named after the gate. Read-only.
"""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gated.core import events as ev
from gated.core.signed import Keyring


def audit_signatures(db, keyring: Keyring, *, only_vouched: bool = False) -> dict:
    """Check every stored event's own signature again against `keyring` (role device, named
    after the gate): an audit after the fact, off the ingest path, for rows `--verify chain`
    stored on a later event's signature (`only_vouched`: those alone). Read-only.
    {"checked": n, "bad": [{"id", "gate", "seq"}...], "no_key": [gate...]}"""
    keys_by_gate: dict[str, object] = {}
    for key in keyring.keys:
        if "device" in key.roles:
            keys_by_gate.setdefault(key.name, key.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw))
    checked, bad, no_key = 0, [], set()
    where = "WHERE signed = 2 " if only_vouched else ""
    rows = db.execute(f"SELECT id, gate, seq, body FROM events {where}ORDER BY gate, seq")
    for event_id, gate, seq, body in rows:
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
