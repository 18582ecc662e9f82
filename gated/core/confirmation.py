"""The ledger's confirmation to a gate (docs/protocol.md, "Committed events"): what it holds of the
gate's events, and the gate's floor, the lowest seq the gate still holds. Pure: no I/O, no clock.

    gated/v1/<site>/gates/<gate>/committed   {"seq": n, "held": [[a, b], ...]}

`seq` n: the ledger holds every event 1..n of the gate, or knows it never will (seqs below the
gate's floor it never got: a declared loss); `held`: ranges above n+1 it holds as well (stored),
ascending, at most MAX_RANGES. A ledger older than this sends `seq` alone (then `held` is empty);
a gate older than this reads `seq` alone.

A gate deletes an outbox row only when a confirmation covers it, so what it holds is exactly what
no ledger has confirmed, and its floor tells the ledger from where on it can still send: below the
floor, whatever the ledger lacks is lost, and the ledger moves past it instead of waiting. The floor
is signed by the gate's device key (`floor_sig`): only the gate can say it holds nothing below it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

import cbor2

from gated.core import cose
from gated.core.cose import is_uint
from gated.core.errors import GatedError
from gated.core.events import epoch_base, epoch_of
from gated.core.signed import Keyring

MAX_RANGES = 64  # ranges above the prefix a confirmation lists (the rest comes with a later one)
MAX_BYTES = 8192


class ConfirmationRejected(GatedError, ValueError):
    """A confirmation that is not one; the message says why."""


@dataclass(frozen=True)
class Confirmation:
    seq: int  # every event 1..seq held (or declared lost)
    held: tuple[tuple[int, int], ...] = ()  # ranges above seq + 1, ascending
    fresh_format: bool = False  # it carried `held` (a ledger of this protocol, not an older one)

    def covers(self, seq: int) -> bool:
        return seq <= self.seq or any(a <= seq <= b for a, b in self.held)

    def of_chain(self, epoch: int) -> "Confirmation":
        """Only what is about the gate's chain `epoch` (docs/protocol.md, "Replacing a gate": a replaced
        gate's seqs start at epoch * 2^40 + 1): a `seq` of another chain confirms none of this one (the
        chain's base), and ranges of another chain are dropped. A ledger that follows another chain of
        the gate (an old one, or none yet: seq 0) answers, but holds nothing of this one for it."""
        seq = self.seq if epoch_of(self.seq) == epoch else epoch_base(epoch)
        held = tuple((a, b) for a, b in self.held if epoch_of(a) == epoch == epoch_of(b))
        return Confirmation(seq, held, self.fresh_format)

    def clipped(self, last_seq: int) -> "Confirmation":
        """Only what can be about events the gate has made (its state may have come back from a backup)."""
        held = tuple((a, min(b, last_seq)) for a, b in self.held if a <= last_seq)
        return Confirmation(min(self.seq, last_seq), held, self.fresh_format)


def encode(seq: int, held) -> bytes:
    return json.dumps({"seq": seq, "held": [list(r) for r in held]}, separators=(",", ":")).encode()


def read(payload: bytes, *, site: str | None = None, gate: str | None = None) -> Confirmation:
    """A confirmation from its message (the signed text, gated/core/ledgersig.py); with `site`/`gate`, it
    must name them (a signed confirmation for another gate or site is not this gate's);
    ConfirmationRejected saying what is wrong."""
    if len(payload) > MAX_BYTES:
        raise ConfirmationRejected(f"{len(payload)} bytes, more than {MAX_BYTES}")
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ConfirmationRejected(f"not JSON: {exc}"[:200]) from None
    for name, want in (("site", site), ("gate", gate)):
        if want is not None and (not isinstance(body, dict) or body.get(name) != want):
            raise ConfirmationRejected(f"it is not about {name} {want!r}")
    seq = body.get("seq") if isinstance(body, dict) else None
    if not is_uint(seq):
        raise ConfirmationRejected('needs {"seq": n}, n an integer in 0..2^63-1')
    if "held" not in body:
        return Confirmation(seq)
    held = body["held"]
    if not isinstance(held, list) or len(held) > MAX_RANGES:
        raise ConfirmationRejected(f"held must be a list of at most {MAX_RANGES} [from, to] ranges")
    ranges, low = [], seq + 1
    for item in held:
        if not (isinstance(item, list) and len(item) == 2 and all(is_uint(v) for v in item)):
            raise ConfirmationRejected("held must hold [from, to] pairs of integers in 0..2^63-1")
        a, b = item
        if not low < a <= b:
            raise ConfirmationRejected("held ranges must lie above seq + 1, ascending and apart")
        ranges.append((a, b))
        low = b + 1
    return Confirmation(seq, tuple(ranges), True)


def split_gap(gap: tuple[int, int], floor: int) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """A run of seqs the ledger lacks, as (declared lost: below the gate's floor, missing: from it on)."""
    a, b = gap
    lost = (a, min(b, floor - 1)) if a < floor else None
    missing = (max(a, floor), b) if b >= floor else None
    return lost, missing


FLOOR_CONTEXT = "gated floor v1"  # what a floor signature signs: [context, site, gate, floor]
DEVICE_ROLE = "device"


class FloorRejected(GatedError, ValueError):
    """A status whose floor the ledger must not act on: `code` unsigned, malformed, unknown_key,
    other_gate, bad_signature."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


def floor_statement(site: str, gate: str, floor: int) -> bytes:
    """The bytes a gate signs to say it holds nothing below `floor` (the COSE payload of `floor_sig`)."""
    return cbor2.dumps([FLOOR_CONTEXT, site, gate, floor])


def seal_floor(site: str, gate: str, floor: int, private_key) -> str:
    """`floor_sig` of a status: base64 of a COSE_Sign1 by the gate's device key over floor_statement()."""
    return base64.b64encode(cose.sign(floor_statement(site, gate, floor), private_key)).decode()


MAX_STATUS = 65536  # bytes: a gate's status read for its floor (or by the ledger's snapshot answer), at most


def read_floor(status: bytes, *, site: str, gate: str, keyring: Keyring | None) -> int | None:
    """The `floor` of a gate's status message (the lowest seq it still holds), once its `floor_sig`
    verifies with the device key named `gate` in `keyring` over this site, gate and floor; None when
    the status carries no floor (an older gate, or not a status the ledger can read). FloorRejected
    for a floor the ledger must not believe: a floor makes the ledger declare lost what it lacks below
    it and confirm that prefix, so whoever can write a gate's status topic (a site's bridge identity)
    must not be able to make the gate delete events no ledger holds."""
    if len(status) > MAX_STATUS:
        return None
    try:
        body = json.loads(status)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    floor = body.get("floor") if isinstance(body, dict) else None
    if not (is_uint(floor) and floor >= 1):
        return None
    sig = body.get("floor_sig")
    if sig is None:
        raise FloorRejected("unsigned", "no floor_sig: a gate older than signed floors, or not the gate")
    if keyring is None:
        raise FloorRejected("unknown_key", "the ledger has no keyring (--keyring) to check the gate's device key")
    try:
        blob = base64.b64decode(sig, validate=True) if isinstance(sig, str) and len(sig) < 1024 else b""
        sign1 = cose.parse(blob) if blob else None
    except (binascii.Error, ValueError, cose.CoseError):
        sign1 = None
    if sign1 is None:
        raise FloorRejected("malformed", "floor_sig is not a base64 COSE_Sign1")
    key = keyring.find(sign1.kid, DEVICE_ROLE)
    if key is None:
        raise FloorRejected("unknown_key", f"kid {sign1.kid.hex()} is not a trusted device key")
    if key.name != gate:
        raise FloorRejected("other_gate", f"signed by {key.name!r}'s device key, not {gate!r}'s")
    if sign1.payload != floor_statement(site, gate, floor) or not sign1.verify(key.public_key):
        raise FloorRejected("bad_signature", f"floor_sig does not sign floor {floor} of {site}/{gate}")
    return floor
