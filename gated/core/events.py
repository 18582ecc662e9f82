"""Scan events, PROTOCOL §5: JSON records chained by hash and signed by the gate's device key.

    {"v":1, "id":"<gate>:<seq>", "site", "gate", "seq", "ts":"RFC 3339 UTC ms", "kind", ...,
     "prev": hex hash of the previous event (64 zeros first),
     "hash": hex SHA-256(bytes.fromhex(prev) || canonical(event without hash, sig)),
     "sig":  base64 Ed25519(device key, bytes.fromhex(hash))}

canonical(e) = json.dumps(e, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

Every number is an integer. Sealing is pure: the store gives seq, prev and the key inside the
transaction that writes the event, so sequence numbers and the chain never fork.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gated.core import ed25519

VERSION = 1
GENESIS = "0" * 64
KINDS = ("scan", "passage", "alarm", "state")
ALARMS = ("forced_entry", "held_open", "emergency_on", "emergency_off", "tamper")


def canonical(event: dict) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def format_ts(unix_ms: int) -> str:
    moment = datetime.fromtimestamp(unix_ms // 1000, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{unix_ms % 1000:03d}Z"


def event_hash(event: dict) -> str:
    body = {k: v for k, v in event.items() if k not in ("hash", "sig")}
    return hashlib.sha256(bytes.fromhex(event["prev"]) + canonical(body)).hexdigest()


def seal(body: dict, *, site: str, gate: str, seq: int, prev: str, ts_ms: int, key: Ed25519PrivateKey) -> dict:
    """Complete `body` (kind and its fields) into a chained, signed event."""
    event = {"v": VERSION, "id": f"{gate}:{seq}", "site": site, "gate": gate, "seq": seq,
             "ts": format_ts(ts_ms), "prev": prev, **body}
    event["hash"] = event_hash(event)
    event["sig"] = base64.b64encode(key.sign(bytes.fromhex(event["hash"]))).decode()
    return event


def check_seal(event: dict, device_key: Ed25519PublicKey | None) -> list[str]:
    """What is wrong with an event's own hash and signature (an empty list: nothing)."""
    try:
        expected = event_hash(event)
    except (KeyError, ValueError, TypeError) as exc:
        return [f"unhashable event: {exc}"]
    problems = [] if expected == event.get("hash") else ["hash does not match content"]
    if device_key is not None:
        try:
            sig, digest = base64.b64decode(event.get("sig", ""), validate=True), bytes.fromhex(event.get("hash", ""))
        except (ValueError, TypeError):
            sig = digest = b""
        if not ed25519.verifies(device_key, sig, digest):
            problems.append("device signature does not verify")
    return problems
