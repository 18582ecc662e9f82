"""Time beacons (PROTOCOL §7): the central side's signed statement of the time, for gates without
a real-time clock.

    beacon = COSE_Sign1 (PROTOCOL §2 structure) by a `command` key, published retained every 10 s
             on gated/v1/<site>/time, payload CBOR map
             {1: site (tstr), 2: unix milliseconds (uint), 3: beacon sequence (uint, strictly increasing)}

`encode_beacon()` makes one; `read_beacon()` verifies and parses one into a `Beacon`, or says why it
is ignored (a `BeaconOutcome`, a value). What a gate makes of the beacons it accepts (the trust
logic) is gated/gate/clock.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import cbor2

from gated.core import cose
from gated.core.events import MAX_TIME_MS
from gated.core.signed import Keyring, SignedRejected, open_signed

BEACON_SITE, BEACON_MS, BEACON_SEQ = 1, 2, 3
BEACON_INTERVAL_S = 10.0


@dataclass(frozen=True)
class Beacon:
    site: str
    unix_ms: int
    seq: int
    signer: str  # keyring name of the command key


@dataclass(frozen=True)
class BeaconOutcome:
    """What happened to one beacon message; an ignored beacon is a value, not an exception."""

    accepted: bool
    reason: str  # accepted | malformed | unsupported | unknown_key | bad_signature | wrong_site | not_newer
    #              | too_far_ahead
    detail: str = ""
    beacon: Beacon | None = None
    offset_s: float | None = None  # accepted: the clock's estimate minus the wall clock at receipt


def encode_beacon(key, *, site: str, unix_ms: int, seq: int) -> bytes:
    return cose.sign(cbor2.dumps({BEACON_SITE: site, BEACON_MS: int(unix_ms), BEACON_SEQ: int(seq)}), key)


def read_beacon(payload: bytes, keyring: Keyring) -> Beacon | BeaconOutcome:
    """Parse and verify one beacon: a Beacon, or the BeaconOutcome saying why it is ignored."""
    try:
        key, body = open_signed(payload, keyring, "command")
    except SignedRejected as exc:
        return BeaconOutcome(False, exc.code, exc.detail)
    if not isinstance(body, dict):
        return BeaconOutcome(False, "malformed", "payload must be a CBOR map")
    site, unix_ms, seq = body.get(BEACON_SITE), body.get(BEACON_MS), body.get(BEACON_SEQ)
    if type(site) is not str or not cose.is_uint(unix_ms) or not cose.is_uint(seq):
        return BeaconOutcome(False, "malformed", "payload needs {1: site tstr, 2: unix ms uint, 3: sequence uint}")
    if unix_ms > MAX_TIME_MS:  # 9000-01-01T00:00:00.000Z: no time a gate takes
        return BeaconOutcome(False, "malformed", f"unix ms {unix_ms} is beyond 9000-01-01")
    return Beacon(site=site, unix_ms=unix_ms, seq=seq, signer=key.name)
