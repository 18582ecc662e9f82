"""Revocation updates, PROTOCOL §4: signed lists of refunded, exchanged, lost or fraudulent tickets.

    COSE_Sign1 by a `revocation` key, payload CBOR map:
      1 site tstr   2 version uint (> 0, strictly increasing)   3 base uint (0 = snapshot, else delta on
      exactly version == base)   4 add [* bstr16]   5 remove [* bstr16] (empty for snapshots)
      6 iat uint    7 part uint, 8 parts uint (snapshots only; default 0 of 1)
    One message is at most 1 MiB; a larger snapshot is split into parts, each signed.

`encode_updates()` signs one update (in parts when it must); `parse_update()` verifies and reads one
message into an `Update` or raises `UpdateRejected` with a stable code. What a gate does with an
update (apply it all or nothing, keep an early delta, assemble a snapshot's parts) is
gated/gate/revocations.py; publishing them is gated/central/publisher.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated.core import cose
from gated.core.errors import Rejected
from gated.core.signed import Keyring, open_message

MAX_MESSAGE = 1024 * 1024
SITE, VERSION, BASE, ADD, REMOVE, IAT, PART, PARTS = 1, 2, 3, 4, 5, 6, 7, 8
_ID_BYTES = 17  # one bstr16 in CBOR


class UpdateRejected(Rejected):
    """An update the gate will not apply. `code` is stable: malformed, unsupported, too_large,
    unknown_key, bad_signature, wrong_site, replay (version not above current), gap."""


@dataclass(frozen=True)
class Update:
    site: str
    version: int
    base: int
    add: tuple[bytes, ...]
    remove: tuple[bytes, ...]
    iat: int
    part: int = 0
    parts: int = 1
    signer: str = ""

    @property
    def is_snapshot(self) -> bool:
        return self.base == 0


def encode_updates(
    key: Ed25519PrivateKey,
    *,
    site: str,
    version: int,
    base: int = 0,
    add=(),
    remove=(),
    iat: int,
    parts: int | None = None,
) -> list[bytes]:
    """Sign an update; a snapshot too big for one message (or asked for in `parts`) is split."""
    add, remove = sorted(set(add)), sorted(set(remove))
    if parts is not None and parts < 1:
        raise ValueError(f"a snapshot is at least 1 part, not {parts}")
    if base and parts not in (None, 1):
        raise ValueError("only snapshots (base 0) can be split into parts")
    if base == 0 and remove:
        raise ValueError("a snapshot lists what is revoked; `remove` must be empty")
    per_part = (MAX_MESSAGE - 512) // _ID_BYTES
    if base and len(add) + len(remove) > per_part:
        raise ValueError(
            f"a delta of {len(add) + len(remove)} ids exceeds {MAX_MESSAGE} bytes; split it into "
            f"consecutive versions of at most {per_part} ids each (deltas cannot be split into parts)"
        )
    parts = parts or max(1, math.ceil(len(add) / per_part))
    if math.ceil(len(add) / parts) > per_part:
        raise ValueError(
            f"{parts} parts would exceed {MAX_MESSAGE} bytes each; use at least {math.ceil(len(add) / per_part)}"
        )
    size = math.ceil(len(add) / parts) if add else 0
    messages = []
    for index in range(parts):
        payload = {
            SITE: site,
            VERSION: version,
            BASE: base,
            ADD: add[index * size : (index + 1) * size] if size else [],
            REMOVE: remove,
            IAT: iat,
        }
        if parts > 1:
            payload[PART], payload[PARTS] = index, parts
        messages.append(cose.sign(cbor2.dumps(payload), key))
    return messages


def parse_update(blob: bytes, keyring: Keyring) -> Update:
    """Verify and decode one message; raises UpdateRejected."""
    key, body = open_message(blob, keyring, "revocation", limit=MAX_MESSAGE, rejected=UpdateRejected)
    return update_from_payload(body, key.name)


def update_from_payload(body, signer: str) -> Update:
    """The update a decoded payload states, by PROTOCOL §4's rules; raises UpdateRejected("malformed").
    `parse_update` calls it once the signature is checked; a publisher checking only the shape of a
    file (no keyring at hand) calls it on the payload alone, with the signer unknown ("")."""

    def uint(key, name, default=None):
        value = body.get(key, default)
        if not cose.is_uint(value):
            raise UpdateRejected("malformed", f"{name} ({key}) must be an unsigned integer")
        return value

    def ids(key, name):
        value = body.get(key)  # required, even when empty (PROTOCOL §4 marks only part/parts optional)
        if type(value) is not list or not all(type(i) is bytes and len(i) == 16 for i in value):
            raise UpdateRejected("malformed", f"{name} ({key}) must be an array of 16-byte ids")
        return tuple(value)

    if not isinstance(body, dict):
        raise UpdateRejected("malformed", "payload must be a CBOR map")
    if type(body.get(SITE)) is not str:
        raise UpdateRejected("malformed", "site (1) must be a text string")
    update = Update(
        site=body[SITE],
        version=uint(VERSION, "version"),
        base=uint(BASE, "base"),
        add=ids(ADD, "add"),
        remove=ids(REMOVE, "remove"),
        iat=uint(IAT, "iat"),
        part=uint(PART, "part", 0),
        parts=uint(PARTS, "parts", 1),
        signer=signer,
    )
    if update.version == 0:
        raise UpdateRejected("malformed", "version must be above 0")
    if update.base and (PART in body or PARTS in body):
        raise UpdateRejected("malformed", "part/parts are for snapshots only")
    if update.base >= update.version:
        raise UpdateRejected("malformed", f"delta base {update.base} not below its version {update.version}")
    if update.parts < 1 or update.part >= update.parts:
        raise UpdateRejected("malformed", f"part {update.part} of {update.parts}")
    if update.is_snapshot and update.remove:
        raise UpdateRejected("malformed", "a snapshot cannot remove ids")
    return update
