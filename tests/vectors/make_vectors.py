"""Regenerate tests/vectors/gt1.json: fixed keys, claims and the exact QR texts they must give.

Ed25519 is deterministic, so another implementation of PROTOCOL §2 that encodes the same
claims map with the same key must produce byte-identical texts (for the map order used here:
cbor2's canonical=False order, which is insertion order), and must decide each `expect`.
Run: .venv/bin/python tests/vectors/make_vectors.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gated.core import base45, cose

NOW = 1_790_000_000  # 2026-09-21T14:13:20Z, the `now` each vector is judged at
EVENT = "FINAL-2026"


def key(label: str) -> tuple[Ed25519PrivateKey, str]:
    seed = hashlib.sha256(label.encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(seed), seed.hex()


def raw(k: Ed25519PrivateKey) -> str:
    return k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def text_of(payload_map: dict, k: Ed25519PrivateKey, *, tag18=False, alg=-8, trailing=b"") -> str:
    protected = cbor2.dumps({1: alg, 4: cose.kid_of(k.public_key())})
    payload = cbor2.dumps(payload_map)
    sig = k.sign(cose.sig_structure(protected, payload))
    item = [protected, {}, payload, sig]
    blob = cbor2.dumps(cbor2.CBORTag(18, item) if tag18 else item) + trailing
    return "GT1:" + base45.encode(blob)


def main() -> None:
    issuer, issuer_seed = key("gated test vector issuer")
    stranger, stranger_seed = key("gated test vector untrusted")
    cti = bytes(range(16))
    full = {
        7: cti,
        3: EVENT,
        5: NOW - 3600,
        4: NOW + 3600,
        1: "box office",
        6: NOW - 7200,
        -1: "adult",
        -2: 2,
        -3: ["north", "vip"],
        -4: "A12",
    }
    minimal = {7: bytes(16), 3: EVENT, 5: NOW - 60, 4: NOW + 60}
    vectors = [
        ("all claims", text_of(full, issuer), "admit", "ok"),
        ("required claims only", text_of(minimal, issuer), "admit", "ok"),
        ("tag 18 and an unknown claim", text_of({**minimal, 99: "future", -77: [1, 2]}, issuer), "admit", "ok"),
        ("untrusted key", text_of(minimal, stranger), "deny", "unknown_key"),
        ("another alg (ES256)", text_of(minimal, issuer, alg=-7), "deny", "unsupported"),
        ("trailing byte", text_of(minimal, issuer, trailing=b"\x00"), "deny", "malformed"),
        ("missing exp", text_of({7: cti, 3: EVENT, 5: NOW}, issuer), "deny", "malformed"),
        ("cti of 15 bytes", text_of({**minimal, 7: bytes(15)}, issuer), "deny", "malformed"),
        ("nbf as text", text_of({**minimal, 5: "yesterday"}, issuer), "deny", "malformed"),
        ("expired", text_of({**minimal, 4: NOW - 3600, 5: NOW - 7200}, issuer), "deny", "expired"),
        ("not yet valid", text_of({**minimal, 5: NOW + 3600, 4: NOW + 7200}, issuer), "deny", "not_yet_valid"),
        ("wrong event", text_of({**minimal, 3: "OTHER"}, issuer), "deny", "wrong_event"),
        ("wrong zone", text_of({**minimal, -3: ["south"]}, issuer), "deny", "wrong_zone"),
        ("unknown prefix", "GT9:" + base45.encode(b"x"), "deny", "unsupported"),
        ("not base45", "GT1:abc", "deny", "malformed"),
    ]
    # the tag-18 vector really is tagged
    vectors[2] = (
        "tag 18 and an unknown claim",
        text_of({**minimal, 99: "future", -77: [1, 2]}, issuer, tag18=True),
        "admit",
        "ok",
    )
    genuine = base45.decode(vectors[0][1][4:])
    forged = genuine.replace(b"A12", b"A13")  # the seat label, inside the signed payload
    vectors.append(("seat changed after signing", "GT1:" + base45.encode(forged), "deny", "bad_signature"))
    doc = {
        "about": "gated PROTOCOL §2 test vectors; keys are SHA-256 of their label, used as Ed25519 seeds",
        "issuer": {"seed": issuer_seed, "public": raw(issuer), "kid": cose.kid_of(issuer.public_key()).hex()},
        "untrusted": {"seed": stranger_seed, "public": raw(stranger)},
        "gate": {"events": [EVENT], "zone": "north", "skew_s": 60, "now": NOW},
        "vectors": [{"name": n, "text": t, "decision": d, "reason": r} for n, t, d, r in vectors],
    }
    out = Path(__file__).with_name("gt1.json")
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {len(vectors)} vectors to {out}")


if __name__ == "__main__":
    main()
