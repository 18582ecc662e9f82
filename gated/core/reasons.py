"""Reason codes of a scan decision: the complete set of PROTOCOL §5, stable on the wire, plus
this implementation's extensions (docs/protocol.md part 2): `internal_error`, a scan the gate could
not judge because of a fault in the gate itself, denied; `capacity`, a valid ticket denied because
the gate's zone is full; `unpaid`, `unapproved`, `rules` and `questions`, a pretix ticket that its
check-in list does not admit (gated/core/pretix_checkin.py); `unsynced`, a ticket with limited entries
at a replaced gate that has not yet recovered the site's admissions (it cannot check whether the
ticket was used)."""

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
    # extensions (docs/protocol.md, "pretix check-in lists"): a pretix ticket judged by its check-in list
    UNPAID = "unpaid"
    UNAPPROVED = "unapproved"
    RULES = "rules"
    QUESTIONS = "questions"
    UNSYNCED = "unsynced"  # extension (docs/protocol.md, "Replacing a gate"): a replaced gate that has not yet
    # recovered the site's admissions cannot tell whether a limited ticket was used (until_synced = "deny_used_check")

    def __str__(self) -> str:  # so f-strings and logs show the wire value
        return self.value


MEANING: dict[Reason, str] = {
    Reason.OK: "admitted",
    Reason.MALFORMED: "not a ticket: the code could not be decoded as GT1/GT2",
    Reason.UNSUPPORTED: "a ticket format or algorithm this gate does not know",
    Reason.UNKNOWN_KEY: "signed by a key the gate does not trust (a forgery, or another organiser's ticket)",
    Reason.BAD_SIGNATURE: "the signature does not match the content (the ticket was altered)",
    Reason.WRONG_EVENT: "a genuine ticket for another event",
    Reason.WRONG_ZONE: "a genuine ticket that does not include this gate's zone",
    Reason.NOT_YET_VALID: "valid later (or the gate cannot tell the time)",
    Reason.EXPIRED: "its validity ended",
    Reason.REVOKED: "refunded or cancelled: on the revocation list",
    Reason.ALREADY_USED: "its admissions are used up (here or at another gate)",
    Reason.STATIC_COPY: "a phone ticket shown in its printed form: it must come from the holder's app",
    Reason.STALE_CODE: "a phone code too old to be live (a screenshot or a replay)",
    Reason.EMERGENCY: "the gate is in emergency mode: open for everyone, nothing is checked",
    Reason.LOCKED: "the gate is locked (by an operator, or until it has a current revocation list)",
    Reason.INTERNAL_ERROR: "the gate could not judge this code (a fault in the gate, logged with an alarm): try again",
    Reason.CAPACITY: "a valid ticket, but the zone is full: entries wait until people leave",
    Reason.UNPAID: "a pretix order that is not paid yet (the check-in list does not admit pending orders)",
    Reason.UNAPPROVED: "a pretix order that awaits the organiser's approval",
    Reason.RULES: "the custom rules of the pretix check-in list do not admit it now (the detail says which)",
    Reason.QUESTIONS: "the pretix check-in list asks questions a turnstile cannot: see the box office",
    Reason.UNSYNCED: "a replaced gate that has not yet recovered which tickets were used: try another gate",
}

# Refusals the code's own bytes decide, with the gate's keyring: no revocation list, clock,
# admission (or its rollback), check-in list or gate mode turns them while a visitor holds the
# phone up. A gate does not judge such a code again while it stays in view
# (gated.gate.scanner.Debouncer.refused): a QR code that is no ticket (a sign in the camera's view),
# a forgery, a printed copy of a phone ticket. Not `already_used` (an admission rolled back after
# a passage timeout, here or at a peer, frees the ticket within seconds), `revoked` (a list update
# can lift it), `expired`/`not_yet_valid`/`stale_code` (the gate's trusted time can move),
# `wrong_event`/`wrong_zone` (a pretix check-in list update can change them), nor the others.
FINAL_REFUSALS = frozenset(
    {
        Reason.MALFORMED,
        Reason.UNSUPPORTED,
        Reason.UNKNOWN_KEY,
        Reason.BAD_SIGNATURE,
        Reason.STATIC_COPY,
    }
)
