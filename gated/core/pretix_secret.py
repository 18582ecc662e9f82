"""pretix signed tickets ("pretix signature scheme 1", `pretix_sig1`), read at the gate.

A venue that sells with pretix sets its event's ticket code generator to `pretix_sig1`; pretix then
signs every ticket secret with the event's Ed25519 key (pretix/base/secrets.py,
Sig1TicketSecretGenerator). The QR text is the *reversed* standard base64 (with padding) of

    0x01 (version) || payload length (u16 big-endian) || signature length (u16 big-endian)
    || payload || Ed25519 signature over the payload

and the payload is the protobuf message (pretix/base/secretgenerators/pretix_sig1.proto)

    Ticket { string seed = 1; int64 item = 2; int64 variation = 3; int64 subevent = 4;
             optional int64 validFromUnixTime = 5; optional int64 validUntilUnixTime = 6; }

where 0 (or absent) means "none" for variation, subevent and the two times. The secret names no
event: the trusted issuer key that verifies it says which one (a pretix key in a keyring names
exactly one event, `gated keys trust --role issuer --event SLUG FILE.pem`).

The payload is read by the small protobuf reader below rather than the protobuf library: six
fields of two wire types, every length and varint bounds-checked, nothing a gate has to install.
It is stricter than protobuf (docs/protocol.md, "pretix tickets"): the text must be the canonical
base64 of the bytes, the lengths must account for every byte, the signature is 64 bytes, a field
appears at most once with its own wire type, integers lie in 0..2^63-1 (a negative int64 is
malformed), and a field number this gate does not know is `unsupported` (a newer pretix may add a
restriction; admitting a ticket whose rule we cannot read would be wrong).

The ticket id (revocations, admissions, events) is the first 16 bytes of SHA-256 over the QR text
(ASCII), so the central side derives it from the secret strings pretix lists, without a key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from gated.core import ed25519
from gated.core.errors import GatedError
from gated.core.reasons import Reason
from gated.core.ticket import Claims, Keyring, Rejection, Ticket

VERSION = 0x01
SIGNATURE_BYTES = 64
INT64_MAX = 2**63 - 1
NO_END = INT64_MAX  # `exp` of a ticket without validUntilUnixTime
_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")

SEED, ITEM, VARIATION, SUBEVENT, VALID_FROM, VALID_UNTIL = 1, 2, 3, 4, 5, 6
_VARINT, _LENGTH_DELIMITED = 0, 2
_WIRE_TYPES = {
    SEED: _LENGTH_DELIMITED,
    ITEM: _VARINT,
    VARIATION: _VARINT,
    SUBEVENT: _VARINT,
    VALID_FROM: _VARINT,
    VALID_UNTIL: _VARINT,
}


class SecretError(GatedError, ValueError):
    def __init__(self, message: str, *, unsupported: bool = False):
        super().__init__(message)
        self.unsupported = unsupported


@dataclass(frozen=True)
class Fields:
    """The payload of a pretix_sig1 secret; 0 means none."""

    seed: str = ""
    item: int = 0
    variation: int = 0
    subevent: int = 0
    valid_from: int = 0
    valid_until: int = 0


@dataclass(frozen=True)
class PretixTicket(Ticket):
    """A pretix_sig1 secret that verified; `claims` carries what every gate rule needs (cti = ticket
    id, aud = the event of the verifying key, nbf/exp = the validity window, typ = the product)."""

    item: int = 0
    variation: int = 0
    subevent: int = 0

    @property
    def products(self) -> tuple[str, ...]:
        """The names a gate's product limit matches: "ITEM" and, for a variation, "ITEM/VARIATION"."""
        if self.variation:
            return (str(self.item), f"{self.item}/{self.variation}")
        return (str(self.item),)


def looks_like(text: str) -> bool:
    """Whether the text is in the base64 alphabet, so that only this codec can read it."""
    return bool(text) and text.isascii() and _ALPHABET.issuperset(text.encode("ascii"))


def ticket_id(text: str) -> bytes:
    """The ticket id of a pretix secret (docs/protocol.md): SHA-256 of the text, first 16 bytes.
    (UTF-8 for any text the central side meets; a secret a gate reads is ASCII.) Total: a lone
    surrogate (a JSON answer may carry "\\ud800") is encoded as it stands, an id no gate's code has,
    so one odd secret in pretix's lists cannot stop a sync round."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:16]


# --- reading ---------------------------------------------------------------------------------


def read_secret(text: str, keyring: Keyring) -> Ticket | Rejection:
    """Decode and verify a pretix_sig1 secret (the caller checked the length). Never raises."""
    try:
        payload, signature = split(text)
        fields = parse_payload(payload)
    except SecretError as exc:
        return Rejection(Reason.UNSUPPORTED if exc.unsupported else Reason.MALFORMED, f"pretix_sig1: {exc}")
    cti = ticket_id(text)
    key = _verifying_key(keyring, payload, signature)
    if key is None:
        return Rejection(Reason.BAD_SIGNATURE, "pretix_sig1: no trusted issuer key verifies this secret", cti)
    if len(key.events) != 1:
        return Rejection(
            Reason.UNKNOWN_KEY,
            f"{key.name} verifies this pretix secret but is trusted for "
            f"{len(key.events) or 'every'} event(s); a pretix key must name exactly one (--event SLUG)",
            cti,
        )
    (event,) = key.events
    claims = Claims(
        cti=cti,
        aud=event,
        nbf=fields.valid_from,
        exp=fields.valid_until or NO_END,
        typ=f"item {fields.item}" + (f" variation {fields.variation}" if fields.variation else ""),
    )
    return PretixTicket(
        claims=claims, issuer=key.name, item=fields.item, variation=fields.variation, subevent=fields.subevent
    )


def _verifying_key(keyring: Keyring, payload: bytes, signature: bytes):
    """The first issuer key whose signature check passes (a pretix secret carries no key id)."""
    for key in keyring.keys:
        if "issuer" not in key.roles:
            continue
        if ed25519.verifies(key.public_key, signature, payload):
            return key
    return None


def split(text: str) -> tuple[bytes, bytes]:
    """The text to (payload, signature), with every structural rule of the envelope checked."""
    if not looks_like(text):
        raise SecretError("not a gated ticket (no GT1:/GT2: prefix) nor a pretix_sig1 secret (base64)")
    encoded = text[::-1]
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SecretError(f"not base64 ({exc})") from None
    if base64.b64encode(raw).decode("ascii") != encoded:
        raise SecretError("not the canonical base64 of its bytes")
    if len(raw) < 5 or raw[0] != VERSION:
        raise SecretError("not a pretix_sig1 secret (no version 1 header)")
    payload_len, sig_len = struct.unpack(">HH", raw[1:5])
    if sig_len != SIGNATURE_BYTES:
        raise SecretError(f"signature of {sig_len} bytes, not {SIGNATURE_BYTES}")
    if 5 + payload_len + sig_len != len(raw):
        raise SecretError(f"lengths {payload_len}+{sig_len} do not match the {len(raw) - 5} bytes after the header")
    return raw[5 : 5 + payload_len], raw[5 + payload_len :]


def parse_payload(payload: bytes) -> Fields:
    """The protobuf Ticket message, strictly (see the module docstring)."""
    values: dict[int, object] = {}
    pos = 0
    while pos < len(payload):
        tag, pos = _varint(payload, pos)
        number, wire_type = tag >> 3, tag & 7
        if number not in _WIRE_TYPES:
            raise SecretError(f"field {number} is not known to this gate", unsupported=True)
        if wire_type != _WIRE_TYPES[number]:
            raise SecretError(f"field {number} has wire type {wire_type}, not {_WIRE_TYPES[number]}")
        if number in values:
            raise SecretError(f"field {number} appears twice")
        if wire_type == _VARINT:
            value, pos = _varint(payload, pos)
            if value > INT64_MAX:
                raise SecretError(f"field {number} is negative or above 2^63-1")
            values[number] = value
        else:
            length, pos = _varint(payload, pos)
            if length > len(payload) - pos:
                raise SecretError(f"field {number} runs past the payload")
            try:
                values[number] = payload[pos : pos + length].decode("utf-8")
            except UnicodeDecodeError:
                raise SecretError(f"field {number} is not UTF-8") from None
            pos += length
    return Fields(
        seed=values.get(SEED, ""),
        item=values.get(ITEM, 0),
        variation=values.get(VARIATION, 0),
        subevent=values.get(SUBEVENT, 0),
        valid_from=values.get(VALID_FROM, 0),
        valid_until=values.get(VALID_UNTIL, 0),
    )


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A base-128 varint of at most 10 bytes whose value fits 64 bits; (value, next position)."""
    value = 0
    for i in range(10):
        if pos >= len(data):
            raise SecretError("varint runs past the payload")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if value >= 1 << 64:
                raise SecretError("varint above 64 bits")
            return value, pos
    raise SecretError("varint longer than 10 bytes")


# --- writing (rehearsals and tests: pretix itself issues the real ones) ------------------------


def encode_payload(fields: Fields) -> bytes:
    out = bytearray()
    if fields.seed:
        seed = fields.seed.encode("utf-8")
        out += _encode_varint(SEED << 3 | _LENGTH_DELIMITED) + _encode_varint(len(seed)) + seed
    for number, value in (
        (ITEM, fields.item),
        (VARIATION, fields.variation),
        (SUBEVENT, fields.subevent),
        (VALID_FROM, fields.valid_from),
        (VALID_UNTIL, fields.valid_until),
    ):
        if not 0 <= value <= INT64_MAX:
            raise ValueError(f"field {number} must lie in 0..2^63-1")
        if value or number in (VALID_FROM, VALID_UNTIL):  # as pretix: the optional times always written
            out += _encode_varint(number << 3 | _VARINT) + _encode_varint(value)
    return bytes(out)


def encode_secret(fields: Fields, private_key) -> str:
    """A pretix_sig1 secret as pretix writes it (for rehearsals with pretix-form tickets)."""
    payload = encode_payload(fields)
    signature = private_key.sign(payload)
    raw = bytes([VERSION]) + struct.pack(">HH", len(payload), len(signature)) + payload + signature
    return base64.b64encode(raw).decode("ascii")[::-1]


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
