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
import re
from datetime import datetime, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gated.core import ed25519
from gated.core.errors import GatedError
from gated.core.reasons import Reason

VERSION = 1
GENESIS = "0" * 64
KINDS = ("scan", "passage", "alarm", "state")
ALARMS = ("forced_entry", "held_open", "emergency_on", "emergency_off", "tamper")
DIRECTIONS = ("in", "out")  # the optional `dir` of scan and passage events (part 2); absent: in

# Bounds on an event message (docs/protocol.md, "Event messages in"): checked before and while parsing.
MAX_BYTES = 16384  # one event message; a gate's events are well under 2 KiB
MAX_FIELDS = 32  # keys in the object
MAX_TEXT = 1024  # characters in any string value (aud/typ come from a ticket of at most 1024)
MAX_NAME = 128  # characters in site and gate
MAX_INT = 2**63 - 1  # every integer is in 0..MAX_INT (SQLite's INTEGER, and the ledger's columns)
# The latest time a gate takes from any source (a beacon, its persisted clock, the system clock):
# far below the end of year 9999, past which format_ts() cannot go, so that a time taken at the
# bound and running on for centuries still stamps events.
MAX_TIME_MS = 221_845_392_000_000  # 9000-01-01T00:00:00.000Z

# Chain epochs (docs/protocol.md, "Replacing a gate"): a replaced gate's new state starts a new chain
# whose seqs are epoch * 2^40 + 1, +2, ...: ids stay `<gate>:<seq>`, unique across a gate's chains, and
# its events carry `"epoch": e`. Epoch 0 (no field) is a gate's first state: seq 1, 2, ... as in part 1.
EPOCH_SHIFT = 40
MAX_EPOCH = MAX_INT >> EPOCH_SHIFT  # 2^23 - 1


def epoch_of(seq: int) -> int:
    return seq >> EPOCH_SHIFT


def epoch_base(epoch: int) -> int:
    """The seq before an epoch's first event (its first event is base + 1)."""
    return epoch << EPOCH_SHIFT


def canonical(event: dict) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def format_ts(unix_ms: int) -> str:
    moment = datetime.fromtimestamp(unix_ms // 1000, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{unix_ms % 1000:03d}Z"


def parse_ts(ts) -> int | None:
    """Unix ms of a `ts` in format_ts()'s form (RFC 3339 UTC with milliseconds), None when it is not one."""
    if type(ts) is not str or not _TS.fullmatch(ts):
        return None
    try:
        moment = datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:  # 2026-13-45T99:...
        return None
    return int(moment.timestamp()) * 1000 + int(ts[20:23])


def event_hash(event: dict) -> str:
    body = {k: v for k, v in event.items() if k not in ("hash", "sig")}
    return hashlib.sha256(bytes.fromhex(event["prev"]) + canonical(body)).hexdigest()


def seal(body: dict, *, site: str, gate: str, seq: int, prev: str, ts_ms: int, key: Ed25519PrivateKey) -> dict:
    """Complete `body` (kind and its fields) into a chained, signed event."""
    event = {
        "v": VERSION,
        "id": f"{gate}:{seq}",
        "site": site,
        "gate": gate,
        "seq": seq,
        "ts": format_ts(ts_ms),
        "prev": prev,
        **body,
    }
    event["hash"] = event_hash(event)
    event["sig"] = base64.b64encode(key.sign(bytes.fromhex(event["hash"]))).decode()
    return event


# --- reading an event message from outside (a peer gate, the ledger) ------------------------------


class EventRejected(GatedError, ValueError):
    """An event message that is not a well-formed PROTOCOL §5 event; `detail` says why."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


_HEX64 = re.compile(r"[0-9a-f]{64}")
_CTI = re.compile(r"[0-9a-f]{32}")
_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", re.ASCII)
_SIG = re.compile(r"[A-Za-z0-9+/]{86}==")
# "\\ud800" escapes parse to lone surrogates, which cannot be hashed or stored; "\\u0000" to NUL, which
# PostgreSQL's text cannot hold (a ledger on SQLite would store what one on PostgreSQL refuses)
_UNSTORABLE = re.compile("[\ud800-\udfff\x00]")
_REASONS = frozenset(r.value for r in Reason)


def _no_float(text: str):
    raise EventRejected(f"a number that is not an integer ({text[:20]})")


def _unique_keys(pairs: list) -> dict:
    if len(pairs) > MAX_FIELDS:
        raise EventRejected(f"an object with more than {MAX_FIELDS} keys")
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise EventRejected("a key repeated in one object")
    return obj


def read_event(payload: bytes | str, *, site: str | None = None, gate: str | None = None) -> dict:
    """Parse and check one event message (bytes off the wire, or text). `site`, `gate`: what the
    topic it came on says; the event must name the same. Raises EventRejected with the reason.
    The seal (hash, signature) is checked separately: check_seal()."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    if len(payload) > MAX_BYTES:
        raise EventRejected(f"message of {len(payload)} bytes, over {MAX_BYTES}")
    try:
        text = payload.decode("utf-8")
        event = json.loads(text, parse_float=_no_float, parse_constant=_no_float, object_pairs_hook=_unique_keys)
    except UnicodeDecodeError as exc:
        raise EventRejected(f"not UTF-8: {exc}") from None
    except RecursionError:
        raise EventRejected("JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and int() refusing a number of over 4300 digits
        if isinstance(exc, EventRejected):
            raise
        raise EventRejected(f"not JSON: {exc}"[:200]) from None
    # a lone surrogate or NUL can only come from a \u escape: without one the per-string search is skipped
    problem = shape_problem(event, site=site, gate=gate, escapes="\\u" in text)
    if problem:
        raise EventRejected(problem)
    return event


def is_name(value) -> bool:
    """Can `value` be a site or gate name: a topic level of 1..MAX_NAME characters (no `/`, no
    wildcard `+` or `#`, no NUL)?"""
    return type(value) is str and 0 < len(value) <= MAX_NAME and not any(c in value for c in "/+#\0")


def _uint(value) -> bool:
    return type(value) is int and 0 <= value <= MAX_INT


def shape_problem(event, *, site: str | None = None, gate: str | None = None, escapes: bool = True) -> str:
    """What keeps a parsed event from being a PROTOCOL §5 event of `site` and `gate` (when given),
    or '': the common fields, the fields of its kind, integer ranges, sizes. Unknown keys may carry
    only a string, an integer, a boolean or null (room for additions, none for structures).
    `escapes` False: the JSON text had no \\u escape, so no string can hold a lone surrogate or NUL."""
    if not isinstance(event, dict):
        return "an event must be a JSON object"
    if len(event) > MAX_FIELDS:
        return f"more than {MAX_FIELDS} fields"
    for name, value in event.items():
        if type(name) is not str or len(name) > 64 or (escapes and _UNSTORABLE.search(name)):
            return "a key of over 64 characters, or with a lone surrogate or NUL"
        kind = type(value)
        if kind is str:
            if len(value) <= MAX_TEXT and not (escapes and _UNSTORABLE.search(value)):
                continue
        elif kind is int:
            if 0 <= value <= MAX_INT:
                continue
        elif value is None or kind is bool:
            continue
        return (
            f"{str(name)[:40]!r}: not a string (at most {MAX_TEXT} characters, no lone surrogate or NUL), "
            "integer in 0..2^63-1, boolean or null"
        )
    if event.get("v") != VERSION or type(event.get("v")) is not int:
        return f"v must be {VERSION}"
    for name in ("site", "gate"):
        if not is_name(event.get(name)):
            return f"{name} missing, empty, over {MAX_NAME} characters or not a topic level"
    if site is not None and event["site"] != site:
        return f"site {event['site']!r} is not {site!r}"
    if gate is not None and event["gate"] != gate:
        return f"gate {event['gate']!r} is not the topic's gate {gate!r}"
    seq = event.get("seq")
    if not _uint(seq) or seq < 1:
        return "seq missing or not an integer in 1..2^63-1"
    if event.get("id") != f"{event['gate']}:{seq}":
        return f"id {str(event.get('id'))[:80]!r} is not <gate>:<seq>"
    if "epoch" in event and (type(event["epoch"]) is not int or event["epoch"] != epoch_of(seq) or not event["epoch"]):
        return 'epoch, where given, must be seq >> 40 and at least 1 (docs/protocol.md, "Replacing a gate")'
    if parse_ts(event.get("ts")) is None:
        return "ts missing or not a real time in RFC 3339 UTC with milliseconds"
    for name in ("prev", "hash"):
        if type(event.get(name)) is not str or not _HEX64.fullmatch(event[name]):
            return f"{name} missing or not 64 lowercase hex digits"
    if type(event.get("sig")) is not str or not _SIG.fullmatch(event["sig"]):
        return "sig missing or not a base64 Ed25519 signature"
    kind = event.get("kind")
    if kind == "scan":
        return _scan_problem(event)
    if kind == "passage":
        ref = event.get("ref")
        prefix = f"{event['gate']}:"
        number = ref[len(prefix) :] if type(ref) is str and ref.startswith(prefix) else ""
        if not (number.isascii() and number.isdigit() and number[0] != "0" and int(number) < seq):
            return "ref must be the id of an earlier scan of the same gate"
        if event.get("result") not in ("passed", "timeout"):
            return "result must be passed or timeout"
        return _movement_problem(event)
    if kind == "alarm":
        return "" if event.get("alarm") in ALARMS else f"alarm must be one of {', '.join(ALARMS)}"
    if kind == "state":
        if type(event.get("state")) is not str or not _uint(event.get("rev")):
            return "a state event needs state (a string) and rev (an integer)"
        return ""
    return f"kind must be one of {', '.join(KINDS)}"


def _scan_problem(event: dict) -> str:
    ticket = event.get("ticket")
    if ticket is not None and not (type(ticket) is str and _CTI.fullmatch(ticket)):
        return "ticket must be 32 lowercase hex digits or null"
    for name in ("event", "type", "zone"):
        if event.get(name) is not None and type(event.get(name)) is not str:
            return f"{name} must be a string or null"
    decision = event.get("decision")
    if decision not in ("admit", "deny"):
        return "decision must be admit or deny"
    if event.get("reason") not in _REASONS:
        return "reason is not one of PROTOCOL §5's reasons"
    if decision == "admit" and ticket is None:
        return "an admission without a ticket id"
    for name in ("rev", "latency_us"):
        if not _uint(event.get(name)):
            return f"{name} missing or not an integer in 0..2^63-1"
    if "step" in event and event["step"] is not None and not _uint(event["step"]):
        return "step must be an integer in 0..2^63-1"
    return _movement_problem(event)


def _movement_problem(event: dict) -> str:
    """The optional fields of exits and re-entries (docs/protocol.md part 2, "Exits, re-entry and
    occupancy"): absent they mean an entry, as in part 1."""
    if event.get("dir", "in") not in DIRECTIONS:
        return "dir must be in or out"
    for name in ("reentry", "free"):
        if name in event and type(event[name]) is not bool:
            return f"{name} must be a boolean"
    if event.get("free") and (event["kind"] != "passage" or event.get("dir") != "out"):
        return "free is for exit passages (dir out) only"
    if event.get("reentry") and (event["kind"] != "scan" or event.get("dir", "in") != "in"):
        return "reentry is for entry scans only"
    return ""


def check_seal(event: dict, device_key: Ed25519PublicKey | bytes | None) -> list[str]:
    """What is wrong with an event's own hash and signature (an empty list: nothing). The one seal
    check, for the gate's peer events and the ledger. `device_key`: the gate's public key (or its
    32 raw bytes); None checks the hash only. The signature: the one verifier, gated/core/ed25519.py."""
    problem = hash_problem(event)
    if problem:
        return [problem]
    if device_key is not None and not signature_verifies(event, device_key):
        return ["device signature does not verify"]
    return []


def hash_problem(event: dict) -> str:
    """'' when the event's `hash` is the hash of its content (and its `prev`), else what is wrong."""
    try:
        expected = event_hash(event)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        return f"unhashable event: {exc}"[:200]
    return "" if expected == event.get("hash") else "hash does not match content"


def signature_verifies(event: dict, device_key: Ed25519PublicKey | bytes) -> bool:
    """The event's `sig` is the device key's signature of its `hash` (which hash_problem() has
    found to be the hash of the content)."""
    try:
        sig = base64.b64decode(event.get("sig", ""), validate=True)
        hashed = bytes.fromhex(event["hash"])
    except (KeyError, ValueError, TypeError):
        return False
    return ed25519.verifies(device_key, sig, hashed)


def chain_runs(events: list[dict]) -> list[list[int]]:
    """The positions of one gate's `events` (each with a good hash) as runs in seq order, each
    event linked to the one before it (seq n+1 whose `prev` is the hash of seq n). Every position
    is in exactly one run. Why it matters: the hash of an event covers its `prev`, so a good
    signature on the last event of a run vouches for the content of every event in it (the
    ledger's `--verify chain`, docs/protocol.md)."""
    runs: list[list[int]] = []
    last = None
    for i in sorted(range(len(events)), key=lambda i: events[i]["seq"]):
        event = events[i]
        if last is not None and event["seq"] == last["seq"] + 1 and event["prev"] == last["hash"]:
            runs[-1].append(i)
        else:
            runs.append([i])
        last = event
    return runs
