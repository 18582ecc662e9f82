"""Only the ledger can confirm (docs/protocol.md, "Signed ledger messages"): the ledger's JSON
messages to gates (`committed`, `occupancy`) carry a signature by a key with the keyring role
`ledger`, made with the project's one signed-message format (a COSE_Sign1, gated/core/cose.py,
checked by gated.keys.open_signed like commands, revocations and beacons).

    {...the fields an older gate reads..., "sig": "<base64 of a COSE_Sign1>"}

The COSE payload is one CBOR text string: the JSON text of the message without `sig`. A gate of
this version verifies it and then reads only that signed text (the outer fields are for gates
older than this, which read them unsigned as before); it ignores a message without a signature, or
with one that does not verify with a trusted `ledger` key.
"""

from __future__ import annotations

import base64
import binascii
import json

import cbor2

from gated.core import cose
from gated.core.errors import GatedError
from gated.core.signed import Keyring, SignedRejected, open_signed

ROLE = "ledger"
MAX_BYTES = 65536


class UnverifiedLedgerMessage(GatedError, ValueError):
    """A ledger message a gate must not act on: `code` unsigned, malformed, unknown_key, bad_signature."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


def seal(body: dict, private_key) -> bytes:
    """The message: `body` as JSON plus `sig`, a COSE_Sign1 by the ledger's key over that JSON text."""
    text = json.dumps(body, separators=(",", ":"), sort_keys=True)
    signed = cose.sign(cbor2.dumps(text), private_key)
    return json.dumps({**body, "sig": base64.b64encode(signed).decode()}, separators=(",", ":")).encode()


def unseal(payload: bytes, keyring: Keyring) -> tuple[bytes, str]:
    """(the signed JSON text as bytes, the signing key's name); UnverifiedLedgerMessage otherwise."""
    if len(payload) > MAX_BYTES:
        raise UnverifiedLedgerMessage("malformed", f"{len(payload)} bytes, more than {MAX_BYTES}")
    try:
        outer = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UnverifiedLedgerMessage("malformed", f"not JSON: {exc}"[:200]) from None
    sig = outer.get("sig") if isinstance(outer, dict) else None
    if sig is None:
        raise UnverifiedLedgerMessage(
            "unsigned", "no ledger signature (`sig`): a ledger without --signing-key, or not a ledger"
        )
    try:
        blob = base64.b64decode(sig, validate=True) if isinstance(sig, str) else b""
    except (binascii.Error, ValueError):
        blob = b""
    if not blob:
        raise UnverifiedLedgerMessage("malformed", "sig is not base64")
    try:
        key, text = open_signed(blob, keyring, ROLE)
    except SignedRejected as exc:
        raise UnverifiedLedgerMessage(exc.code, exc.detail) from None
    if not isinstance(text, str):
        raise UnverifiedLedgerMessage("malformed", "the signed payload is not a JSON text")
    return text.encode("utf-8", "surrogatepass"), key.name
