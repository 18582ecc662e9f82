"""GT1 codec: round trips, the committed vectors, and every parsing rule of PROTOCOL §2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gated import keys
from gated.core import base45, cose, ticket
from gated.core.decide import GateContext
from gated.core.reasons import Reason
from gated.core.scanned import read_code
from gated.core.ticket import Rejection, Ticket
from gated.gate.validate import validate

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "gt1.json").read_text())


def test_base45_rfc9285_examples():
    assert base45.encode(b"AB") == "BB8"
    assert base45.encode(b"Hello!!") == "%69 VD92EX0"
    assert base45.encode(b"base-45") == "UJCLQE7W581"
    assert base45.decode("QED8WEX0") == b"ietf!"
    for bad in ("GGW", "A", "abc", "ZZZ"):
        with pytest.raises(base45.Base45Error):
            base45.decode(bad)


def test_round_trip_keeps_every_claim(authority):
    claims = authority.claims(
        iss="box office", iat=1_700_000_000, typ="vip", ent=3, zon=("north", "vip"), seat="A12", rex=True
    )
    text = ticket.encode_static(claims, authority.issuer)
    assert text.startswith("GT1:") and len(text) <= ticket.MAX_TEXT
    assert set(text[4:]) <= set(base45.ALPHABET)
    decoded = read_code(text, authority.keyring)
    assert isinstance(decoded, Ticket)
    assert decoded.claims == claims
    assert decoded.issuer == "issuer"


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_committed_vectors(vector):
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(VECTORS["issuer"]["public"]))
    ring = keys.Keyring((keys.trusted("vector-issuer", public, ["issuer"]),))
    gate = VECTORS["gate"]
    ctx = GateContext(site="s", events=frozenset(gate["events"]), zone=gate["zone"], skew_s=gate["skew_s"])
    decision = validate(vector["text"], ring, ctx, None, gate["now"])
    assert (decision.word, decision.reason.value) == (vector["decision"], vector["reason"])


def test_vectors_are_reproducible_from_their_seed():
    """Ed25519 is deterministic: our encoder gives the committed text for the committed claims."""
    seed = bytes.fromhex(VECTORS["issuer"]["seed"])
    key = Ed25519PrivateKey.from_private_bytes(seed)
    first = VECTORS["vectors"][1]  # required claims only
    claims = ticket.parse_claims(cose.parse(base45.decode(first["text"][4:])).payload)
    assert ticket.encode_static(claims, key) == first["text"]


def _sign1(authority, payload: bytes, *, protected=None, signature=None, tag=False, extra=b"") -> str:
    protected = (
        protected if protected is not None else cbor2.dumps({1: -8, 4: cose.kid_of(authority.issuer.public_key())})
    )
    signature = signature if signature is not None else authority.issuer.sign(cose.sig_structure(protected, payload))
    item = [protected, {}, payload, signature]
    return "GT1:" + base45.encode(cbor2.dumps(cbor2.CBORTag(18, item) if tag else item) + extra)


def _payload(authority, **changes) -> bytes:
    claims = authority.claims().to_cbor_map()
    for key, value in changes.items():
        number = {
            "cti": 7,
            "aud": 3,
            "nbf": 5,
            "exp": 4,
            "iss": 1,
            "iat": 6,
            "typ": -1,
            "ent": -2,
            "zon": -3,
            "seat": -4,
            "dev": -5,
            "rex": -6,
        }[key]
        if value is _DROP:
            claims.pop(number)
        else:
            claims[number] = value
    return cbor2.dumps(claims)


_DROP = object()


@pytest.mark.parametrize(
    "claim,value",
    [
        ("cti", b"short"),
        ("cti", "0123456789abcdef"),
        ("aud", 7),
        ("nbf", -1),
        ("nbf", 1.5),
        ("exp", "soon"),
        ("exp", True),
        ("iss", b"bytes"),
        ("iat", "x"),
        ("typ", 1),
        ("ent", -2),
        ("zon", "north"),
        ("zon", [1]),
        ("seat", 12),
        ("dev", b"x" * 31),
        ("rex", 1),
        ("rex", "yes"),
        ("aud", "FINAL\x00-2026"),
        ("typ", "vip\x00"),
        ("seat", "\x00"),
        ("zon", ["north\x00"]),
        ("iss", "a\x00b"),
    ],
)
def test_wrong_type_of_a_known_claim_is_malformed(authority, claim, value):
    result = read_code(_sign1(authority, _payload(authority, **{claim: value})), authority.keyring)
    assert isinstance(result, Rejection) and result.reason is Reason.MALFORMED
    assert claim in result.detail


@pytest.mark.parametrize("claim", ["cti", "aud", "nbf", "exp"])
def test_missing_required_claim_is_malformed(authority, claim):
    result = read_code(_sign1(authority, _payload(authority, **{claim: _DROP})), authority.keyring)
    assert result.reason is Reason.MALFORMED and "missing" in result.detail


def test_unknown_claims_are_ignored_and_tag_18_accepted(authority):
    claims = authority.claims().to_cbor_map()
    claims[1000] = {"future": True}
    assert isinstance(read_code(_sign1(authority, cbor2.dumps(claims), tag=True), authority.keyring), Ticket)


@pytest.mark.parametrize(
    "text,reason",
    [
        ("GT1:" + "A" * 1021, Reason.MALFORMED),  # 1025 characters: refused before decoding
        ("https://example.org/ticket/1", Reason.MALFORMED),
        ("GT3:ABC", Reason.UNSUPPORTED),
        ("GT1:abc", Reason.MALFORMED),  # lower case is not base45
        ("GT1:", Reason.MALFORMED),
        ("", Reason.MALFORMED),
    ],
)
def test_texts_refused_before_cbor(authority, text, reason):
    assert read_code(text, authority.keyring).reason is reason


def test_structure_rules(authority):
    payload = _payload(authority)
    ring = authority.keyring
    assert read_code(_sign1(authority, payload, extra=b"\x00"), ring).reason is Reason.MALFORMED
    assert read_code(_sign1(authority, payload, signature=b"\x01" * 63), ring).reason is Reason.MALFORMED
    es256 = cbor2.dumps({1: -7, 4: cose.kid_of(authority.issuer.public_key())})
    assert read_code(_sign1(authority, payload, protected=es256), ring).reason is Reason.UNSUPPORTED
    no_kid = cbor2.dumps({1: -8})
    assert read_code(_sign1(authority, payload, protected=no_kid), ring).reason is Reason.MALFORMED
    kid_unprotected = "GT1:" + base45.encode(
        cbor2.dumps([cbor2.dumps({1: -8}), {4: cose.kid_of(authority.issuer.public_key())}, payload, b"\x00" * 64])
    )
    assert read_code(kid_unprotected, ring).reason is Reason.MALFORMED  # the kid counts only when protected


def test_signatures_and_key_roles(authority):
    claims = authority.claims()
    good = ticket.encode_static(claims, authority.issuer)
    assert isinstance(read_code(good, authority.keyring), Ticket)
    by_revocation_key = ticket.encode_static(claims, authority.revocation)  # trusted, but not as issuer
    assert read_code(by_revocation_key, authority.keyring).reason is Reason.UNKNOWN_KEY
    forged = ticket.encode_static(claims, Ed25519PrivateKey.generate())
    assert read_code(forged, authority.keyring).reason is Reason.UNKNOWN_KEY
    blob = bytearray(base45.decode(good[4:]))
    blob[-1] ^= 1  # last signature byte
    assert read_code("GT1:" + base45.encode(bytes(blob)), authority.keyring).reason is Reason.BAD_SIGNATURE


def test_issuer_scope_event_and_window(authority):
    public = authority.issuer.public_key()
    scoped = keys.Keyring(
        (keys.trusted("scoped", public, ["issuer"], events=["FINAL-2026"], not_before=1_000, not_after=2_000),)
    )
    in_scope = ticket.encode_static(authority.claims(iat=1_500), authority.issuer)
    assert isinstance(read_code(in_scope, scoped), Ticket)
    other_event = ticket.encode_static(authority.claims(aud="OTHER", iat=1_500), authority.issuer)
    assert read_code(other_event, scoped).reason is Reason.UNKNOWN_KEY
    signed_late = ticket.encode_static(authority.claims(iat=2_001), authority.issuer)
    assert read_code(signed_late, scoped).reason is Reason.UNKNOWN_KEY


def test_rejection_carries_ticket_id_when_payload_parsed(authority):
    cti = os.urandom(16)
    forged = ticket.encode_static(authority.claims(cti=cti), Ed25519PrivateKey.generate())
    assert read_code(forged, authority.keyring).cti == cti


def test_claim_keys_must_be_integers_and_uints_fit_64_bits(authority):
    """Found in review: Python dicts let `true` stand for key 1 and `7.0` for key 7."""
    claims = authority.claims().to_cbor_map()
    with_bool_key = cbor2.dumps({**claims, True: b"not iss"})
    assert isinstance(read_code(_sign1(authority, with_bool_key), authority.keyring), Ticket)  # unknown: ignored
    float_cti = {k: v for k, v in claims.items() if k != 7}
    float_cti[7.0] = claims[7]
    assert read_code(_sign1(authority, cbor2.dumps(float_cti)), authority.keyring).reason is Reason.MALFORMED
    huge = _payload(authority, exp=2**64)  # cbor2 encodes it as a bignum (tag 2)
    assert read_code(_sign1(authority, huge), authority.keyring).reason is Reason.MALFORMED
