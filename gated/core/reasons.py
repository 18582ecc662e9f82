"""Reason codes of a scan decision: the complete set of PROTOCOL §5, stable on the wire, plus
this implementation's extensions (docs/protocol.md part 2): `internal_error`, a scan the gate could
not judge because of a fault in the gate itself, denied; `capacity`, a valid ticket denied because
the gate's zone is full."""

from __future__ import annotations

import enum


class Reason(str, enum.Enum):
    OK = "ok"
    MALFORMED = "malformed"
    UNSUPPORTED = "unsupported"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    WRONG_EVENT = "wrong_event"
    WRONG_ZONE = "wrong_zone"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    REVOKED = "revoked"
    ALREADY_USED = "already_used"
    STATIC_COPY = "static_copy"
    STALE_CODE = "stale_code"
    EMERGENCY = "emergency"
    LOCKED = "locked"
    INTERNAL_ERROR = "internal_error"  # extension (docs/protocol.md), not in PROTOCOL §5's set
    CAPACITY = "capacity"  # extension (docs/protocol.md, "Exits, re-entry and occupancy"): the zone is full

    def __str__(self) -> str:  # so f-strings and logs show the wire value
        return self.value
