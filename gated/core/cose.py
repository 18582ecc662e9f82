"""COSE_Sign1 (RFC 9052) as PROTOCOL §1-2 profile it: Ed25519 only, kid in the protected header.

    COSE_Sign1 = [protected: bstr, unprotected: map, payload: bstr, signature: bstr(64)]
                 (CBOR tag 18 optional)
    protected  = bstr .cbor {1: -8, 4: kid}
    signed     = Sig_structure ["Signature1", protected, h'', payload]

Tickets, revocation updates, remote commands and time beacons all use this one
structure, so parsing rules (no trailing bytes, exact types, alg -8 only) live here once.
Parsing is split from verification: `parse()` needs no keys, `verify()` needs the public key.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gated.core import ed25519
from gated.core.errors import GatedError, brief

ALG_EDDSA = -8
HDR_ALG = 1
HDR_KID = 4
SIGNATURE_LEN = 64
KID_LEN = 8

# Every exception a hostile byte string can make cbor2 raise: its own CBORError family (not a
# ValueError in cbor2 6), and what nested structures, huge integers and odd semantic tags raise.
CBOR_FAULTS = (
    cbor2.CBORError,
    ValueError,
    TypeError,
    OverflowError,
    RecursionError,
    MemoryError,
    IndexError,
    KeyError,
    EOFError,
)


class CoseError(GatedError, ValueError):
    """A COSE_Sign1 structure that breaks the profile. `unsupported` marks a well-formed
    structure using something this profile does not allow (another algorithm)."""

    def __init__(self, message: str, *, unsupported: bool = False):
        super().__init__(message)
        self.unsupported = unsupported


@dataclass(frozen=True)
class Sign1:
    protected: bytes
    payload: bytes
    signature: bytes
    kid: bytes

    def to_be_signed(self) -> bytes:
        return sig_structure(self.protected, self.payload)

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        return ed25519.verifies(public_key, self.signature, self.to_be_signed())


# docs/protocol.md "Integers": every unsigned integer a gate reads (ticket claims, the GT2 step,
# revocation version/base/iat/part, command nonce/iat, beacon time/seq) must fit the signed 64-bit
# INTEGER of the gate's SQLite store, so a value of 2**63 or more is refused where it is parsed.
UINT_MAX = 2**63 - 1


def is_uint(value) -> bool:
    """An unsigned integer a gate accepts: a CBOR major type 0 value of at most UINT_MAX (2**63 - 1,
    what the store can hold; bools and bignums are not)."""
    return type(value) is int and 0 <= value <= UINT_MAX


def kid_of(public_key: Ed25519PublicKey) -> bytes:
    """PROTOCOL §1: kid = SHA-256(raw 32-byte public key)[0:8]."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:KID_LEN]


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


def sign(payload: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """Encode a COSE_Sign1 (untagged) over `payload` with kid derived from the key."""
    protected = cbor2.dumps({HDR_ALG: ALG_EDDSA, HDR_KID: kid_of(private_key.public_key())})
    signature = private_key.sign(sig_structure(protected, payload))
    return cbor2.dumps([protected, {}, payload, signature])


def loads_exact(data: bytes):
    """Decode one CBOR item and insist that nothing follows it."""
    stream = io.BytesIO(data)
    try:
        item = cbor2.CBORDecoder(stream).decode()
    except CBOR_FAULTS as exc:
        raise CoseError(f"invalid CBOR: {exc}") from None
    if stream.tell() != len(data):
        raise CoseError(f"{len(data) - stream.tell()} trailing bytes after the CBOR item")
    return item


def parse(data: bytes) -> Sign1:
    """Parse and check the structure; the signature is not checked here."""
    item = loads_exact(data)
    if isinstance(item, cbor2.CBORTag):
        if item.tag != 18:
            raise CoseError(f"CBOR tag {item.tag} where COSE_Sign1 (18) or none was expected")
        item = item.value  # cbor2 hands a tag's content over immutable: a tuple, frozendicts
    if not isinstance(item, (list, tuple)) or len(item) != 4:
        raise CoseError("COSE_Sign1 must be an array of 4 items")
    protected, unprotected, payload, signature = item
    if not isinstance(protected, bytes) or not isinstance(payload, bytes):
        raise CoseError("protected header and payload must be byte strings")
    if not isinstance(unprotected, Mapping):
        raise CoseError("unprotected header must be a map")
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_LEN:
        raise CoseError(f"signature must be a {SIGNATURE_LEN}-byte string")
    header = loads_exact(protected) if protected else {}
    if not isinstance(header, dict):
        raise CoseError("protected header must encode a map")
    alg = header.get(HDR_ALG)
    if alg != ALG_EDDSA or isinstance(alg, bool):
        raise CoseError(f"algorithm {brief(alg)} is not Ed25519 (-8)", unsupported=alg is not None)
    kid = header.get(HDR_KID)
    if not isinstance(kid, bytes) or not kid:
        raise CoseError("protected header has no kid")
    return Sign1(protected=protected, payload=payload, signature=signature, kid=kid)
