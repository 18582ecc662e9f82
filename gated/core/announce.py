"""Device announcements (docs/protocol.md "Device keys"): how a gate makes its event-signing key
known, in every status message it publishes.

    status fields  device_kid = hex of PROTOCOL §1's kid of the key
                   device_key = base64 of the raw 32-byte Ed25519 public key

`device_announcement()` makes the fields (the gate's uplink); `parse_device_announcement()` reads
them back and checks that the kid is the key's (`gated fleet enrol`, gated/central/fleet.py).
"""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gated.core import cose


def device_announcement(public_key) -> dict:
    """The status fields announcing the gate's event-signing key: `device_kid` (hex of PROTOCOL §1's
    kid) and `device_key` (base64 of the raw 32 bytes)."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"device_kid": cose.kid_of(public_key).hex(), "device_key": base64.b64encode(raw).decode()}


def parse_device_announcement(status: dict):
    """(kid hex, Ed25519PublicKey) from a status message; ValueError saying what is wrong."""
    kid, text = status.get("device_kid"), status.get("device_key")
    if not isinstance(kid, str) or not isinstance(text, str):
        raise ValueError("no device key announced (a gate older than this feature?)")
    try:
        raw = base64.b64decode(text, validate=True)
        public_key = Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise ValueError("device_key is not base64 of a 32-byte Ed25519 public key") from None
    if cose.kid_of(public_key).hex() != kid:
        raise ValueError(f"device_kid {kid} does not match the announced key")
    return kid, public_key
