"""Ticket codec, PROTOCOL §2 (static `GT1:`) and §3 (dynamic `GT2:`).

    GT1 text = "GT1:" + base45(COSE_Sign1)                   (whole string in the QR alphanumeric set)
    payload  = CBOR map of claims:
        7 cti bstr16 (required)   3 aud tstr (required)   5 nbf uint (required)   4 exp uint (required)
        1 iss tstr   6 iat uint   -1 typ tstr (default "general")   -2 ent uint (default 1, 0 = unlimited)
        -3 zon [* tstr] (absent = every zone)   -4 seat tstr   -5 dev bstr32 (holder device key: dynamic)
        -6 rex bool (an extension, docs/protocol.md part 2: re-entry after a recorded exit; default false)
    GT2 text = "GT2:" + base45(CBOR [ticket: bstr (GT1 COSE bytes), step: uint, devsig: bstr64])
        devsig = Ed25519 by dev over "GT2" || cti || step as u64 big-endian

Order of checks for any scanned text, each failing with a reason and never an exception:
size (<= 1024 characters) and prefix before anything is decoded; then base45; then CBOR
(one item, no trailing bytes); then the COSE structure; then claim types; then the kid in
the keyring under role `issuer`; then the signature; then the key's scope (event, window).
Unknown claims are ignored. `read_ticket()` returns a `Ticket` or a `Rejection`. Any scanned text
goes first to gated/core/scanned.py `read_code()`, which sends a text in the base64 alphabet (no
`GTn:` prefix) to gated/core/pretix_secret.py, the pretix_sig1 codec.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Protocol

import cbor2
import segno
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gated.core import base45, cose, ed25519
from gated.core.errors import GatedError, brief
from gated.core.reasons import Reason


class Keyring(Protocol):
    """What the codecs need of a keyring (gated/core/signed.py Keyring): the trusted key with a kid and
    role, or None, and all its keys (a pretix secret names no kid). A key has `name`, `roles`, `events`,
    `public_key`, `allows_event(aud)` and `valid_at(unix_seconds)`."""

    keys: tuple

    def find(self, kid: bytes, role: str): ...


MAX_TEXT = 1024
STATIC_PREFIX = "GT1:"
DYNAMIC_PREFIX = "GT2:"
DEVSIG_DOMAIN = b"GT2"
STEP_SECONDS = 30
_ANY_TICKET_PREFIX = re.compile(r"GT[0-9]+:")

CTI, AUD, NBF, EXP, ISS, IAT = 7, 3, 5, 4, 1, 6
TYP, ENT, ZON, SEAT, DEV = -1, -2, -3, -4, -5
REX = -6  # extension (docs/protocol.md part 2, "Exits, re-entry and occupancy"): a part-1 gate ignores it


@dataclass(frozen=True)
class Claims:
    cti: bytes
    aud: str
    nbf: int
    exp: int
    iss: str | None = None
    iat: int | None = None
    typ: str = "general"
    ent: int = 1
    zon: tuple[str, ...] | None = None
    seat: str | None = None
    dev: bytes | None = None
    rex: bool = False  # may come in again, no entry spent, after a recorded exit

    def to_cbor_map(self) -> dict:
        claims = {CTI: self.cti, AUD: self.aud, NBF: self.nbf, EXP: self.exp}
        optional = {ISS: self.iss, IAT: self.iat, SEAT: self.seat, DEV: self.dev}
        claims.update({k: v for k, v in optional.items() if v is not None})
        if self.typ != "general":
            claims[TYP] = self.typ
        if self.ent != 1:
            claims[ENT] = self.ent
        if self.zon is not None:
            claims[ZON] = list(self.zon)
        if self.rex:
            claims[REX] = True
        return claims

    @property
    def signed_at(self) -> int:
        """The signing time the ticket states, for the issuer key's validity window."""
        return self.iat if self.iat is not None else self.nbf


@dataclass(frozen=True)
class Ticket:
    """A ticket whose signature verified against a trusted issuer key."""

    claims: Claims
    issuer: str  # keyring name of the signing key
    dynamic: bool = False  # shown as GT2
    step: int | None = None  # GT2 time step (devsig already verified)


@dataclass(frozen=True)
class Rejection:
    """A scanned text that is not a valid ticket: the reason for the event, a detail for logs."""

    reason: Reason
    detail: str
    cti: bytes | None = None  # known when the payload parsed but the signature or key failed


class ClaimsError(GatedError, ValueError):
    pass


# --- issuer side -----------------------------------------------------------------------------


def encode_cose(claims: Claims, issuer_key: Ed25519PrivateKey) -> bytes:
    return cose.sign(cbor2.dumps(claims.to_cbor_map()), issuer_key)


def encode_static(claims: Claims, issuer_key: Ed25519PrivateKey) -> str:
    return STATIC_PREFIX + base45.encode(encode_cose(claims, issuer_key))


def encode_dynamic(ticket_cose: bytes, cti: bytes, step: int, device_key: Ed25519PrivateKey) -> str:
    """What the holder's app shows for time step `step` (PROTOCOL §3)."""
    devsig = device_key.sign(devsig_message(cti, step))
    return DYNAMIC_PREFIX + base45.encode(cbor2.dumps([ticket_cose, step, devsig]))


def devsig_message(cti: bytes, step: int) -> bytes:
    return DEVSIG_DOMAIN + cti + struct.pack(">Q", step)


def devsig_verifies(dev: bytes, devsig: bytes, message: bytes) -> bool:
    """A holder-device signature (PROTOCOL §3), by the one verifier (gated/core/ed25519.py)."""
    return ed25519.verifies(dev, devsig, message)


def qr_symbol(text: str) -> segno.QRCode:
    """The QR symbol for a ticket text: alphanumeric mode (the whole text is in that set), error
    correction M (survives a scuffed screen)."""
    return segno.make_qr(text, error="m", boost_error=False)


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


# --- gate side -------------------------------------------------------------------------------


def has_ticket_prefix(text: str) -> bool:
    """Whether a scanned text claims to be one of our tickets (`GTn:`), known format or not."""
    return _ANY_TICKET_PREFIX.match(text) is not None


def read_ticket(text: str, keyring: Keyring) -> Ticket | Rejection:
    """Decode and verify a text with a `GTn:` prefix (gated/core/scanned.py read_code checked its
    size). Never raises for any input text."""
    if text.startswith(STATIC_PREFIX):
        return _read_static(text[len(STATIC_PREFIX) :], keyring)
    if text.startswith(DYNAMIC_PREFIX):
        return _read_dynamic(text[len(DYNAMIC_PREFIX) :], keyring)
    return Rejection(Reason.UNSUPPORTED, f"ticket format {text.split(':', 1)[0]} is not supported")


def _read_static(body: str, keyring: Keyring) -> Ticket | Rejection:
    try:
        data = base45.decode(body)
    except base45.Base45Error as exc:
        return Rejection(Reason.MALFORMED, f"base45: {exc}")
    return _verify_cose(data, keyring)


def _verify_cose(data: bytes, keyring: Keyring) -> Ticket | Rejection:
    try:
        sign1 = cose.parse(data)
    except cose.CoseError as exc:
        return Rejection(Reason.UNSUPPORTED if exc.unsupported else Reason.MALFORMED, f"COSE: {exc}")
    try:
        claims = parse_claims(sign1.payload)
    except (ClaimsError, cose.CoseError) as exc:
        return Rejection(Reason.MALFORMED, f"claims: {exc}")
    key = keyring.find(sign1.kid, "issuer")
    if key is None:
        return Rejection(Reason.UNKNOWN_KEY, f"kid {sign1.kid.hex()} is not a trusted issuer", claims.cti)
    if not sign1.verify(key.public_key):
        return Rejection(Reason.BAD_SIGNATURE, f"signature does not verify with {key.name}", claims.cti)
    if not key.allows_event(claims.aud):
        return Rejection(Reason.UNKNOWN_KEY, f"{key.name} may not sign for event {brief(claims.aud)}", claims.cti)
    if not key.valid_at(claims.signed_at):
        return Rejection(Reason.UNKNOWN_KEY, f"{key.name} was not valid at signing time {claims.signed_at}", claims.cti)
    return Ticket(claims=claims, issuer=key.name)


def _read_dynamic(body: str, keyring: Keyring) -> Ticket | Rejection:
    try:
        outer = cose.loads_exact(base45.decode(body))
    except (base45.Base45Error, cose.CoseError) as exc:
        return Rejection(Reason.MALFORMED, f"GT2 envelope: {exc}")
    if not (isinstance(outer, list) and len(outer) == 3):
        return Rejection(Reason.MALFORMED, "GT2 envelope must be [ticket, step, devsig]")
    ticket_bytes, step, devsig = outer
    if (
        not isinstance(ticket_bytes, bytes)
        or not cose.is_uint(step)
        or not isinstance(devsig, bytes)
        or len(devsig) != 64
    ):
        return Rejection(Reason.MALFORMED, "GT2 envelope has wrong types")
    inner = _verify_cose(ticket_bytes, keyring)
    if isinstance(inner, Rejection):
        return inner
    dev = inner.claims.dev
    if dev is None:
        return Rejection(Reason.MALFORMED, "GT2 code around a ticket without a device key", inner.claims.cti)
    if not devsig_verifies(dev, devsig, devsig_message(inner.claims.cti, step)):
        return Rejection(Reason.BAD_SIGNATURE, "holder-device signature does not verify", inner.claims.cti)
    return Ticket(claims=inner.claims, issuer=inner.issuer, dynamic=True, step=step)


def _is_text(value) -> bool:
    """A text claim: a string without NUL (which no event, store or ledger column could carry on)."""
    return type(value) is str and "\x00" not in value


# what a gate reads of each claim (an issuer refuses to sign anything else: gated.central.issuer)
CLAIM_CHECKS = {
    CTI: ("cti", lambda v: type(v) is bytes and len(v) == 16, "a 16-byte string"),
    AUD: ("aud", _is_text, "a text string without NUL"),
    NBF: ("nbf", cose.is_uint, "an unsigned integer below 2^63"),
    EXP: ("exp", cose.is_uint, "an unsigned integer below 2^63"),
    ISS: ("iss", _is_text, "a text string without NUL"),
    IAT: ("iat", cose.is_uint, "an unsigned integer below 2^63"),
    TYP: ("typ", _is_text, "a text string without NUL"),
    ENT: ("ent", cose.is_uint, "an unsigned integer below 2^63"),
    ZON: ("zon", lambda v: type(v) is list and all(_is_text(z) for z in v), "an array of text strings without NUL"),
    SEAT: ("seat", _is_text, "a text string without NUL"),
    DEV: ("dev", lambda v: type(v) is bytes and len(v) == 32, "a 32-byte string"),
    REX: ("rex", lambda v: type(v) is bool, "a boolean"),
}


def parse_claims(payload: bytes) -> Claims:
    claims = cose.loads_exact(payload)
    if not isinstance(claims, dict):
        raise ClaimsError("payload must be a CBOR map")
    # Only integer keys are claims: in a Python dict `true` and `7.0` would pass for 1 and 7,
    # and unknown claims (whatever their key) are ignored.
    claims = {k: v for k, v in claims.items() if type(k) is int}
    for key, name in ((CTI, "cti"), (AUD, "aud"), (NBF, "nbf"), (EXP, "exp")):
        if key not in claims:
            raise ClaimsError(f"required claim {name} ({key}) is missing")
    for key, (name, ok, expected) in CLAIM_CHECKS.items():
        if key in claims and not ok(claims[key]):
            raise ClaimsError(f"claim {name} ({key}) must be {expected}")
    return Claims(
        cti=claims[CTI],
        aud=claims[AUD],
        nbf=claims[NBF],
        exp=claims[EXP],
        iss=claims.get(ISS),
        iat=claims.get(IAT),
        typ=claims.get(TYP, "general"),
        ent=claims.get(ENT, 1),
        zon=tuple(claims[ZON]) if ZON in claims else None,
        seat=claims.get(SEAT),
        dev=claims.get(DEV),
        rex=claims.get(REX, False),
    )
