"""`gated verify` admits tickets made by any correct implementation of PROTOCOL §2, not only ours.

The ticket here is built byte by byte with a hand-written CBOR encoder (not cbor2): other key
orders, an extra protected header parameter, tag 18, non-preferred integer widths, the
unprotected header carrying a harmless parameter.
"""

from __future__ import annotations

import os
import struct
import time

from gated.core import base45, cose
from gated.core.decide import GateContext
from gated.gate.validate import validate


def head(major: int, n: int, *, wide: bool = False) -> bytes:
    if wide:  # a valid but non-preferred encoding: always 4 bytes
        return bytes([major << 5 | 26]) + struct.pack(">I", n)
    if n < 24:
        return bytes([major << 5 | n])
    if n < 256:
        return bytes([major << 5 | 24, n])
    if n < 65536:
        return bytes([major << 5 | 25]) + struct.pack(">H", n)
    return bytes([major << 5 | 26]) + struct.pack(">I", n)


def uint(n, wide=False):
    return head(0, n, wide=wide)


def nint(n):  # n < 0
    return head(1, -1 - n)


def bstr(b: bytes):
    return head(2, len(b)) + b


def tstr(s: str):
    data = s.encode()
    return head(3, len(data)) + data


def array(items):
    return head(4, len(items)) + b"".join(items)


def cmap(pairs):
    return head(5, len(pairs)) + b"".join(k + v for k, v in pairs)


def test_foreign_encoder_ticket_is_admitted(authority):
    now = int(time.time())
    cti = os.urandom(16)
    kid = cose.kid_of(authority.issuer.public_key())
    protected = cmap([(uint(4), bstr(kid)), (uint(1), nint(-8)), (uint(3), tstr("application/gt"))])
    payload = cmap(
        [
            (nint(-1), tstr("child")),
            (uint(4), uint(now + 3600, wide=True)),
            (uint(3), tstr("FINAL-2026")),
            (uint(5), uint(now - 3600, wide=True)),
            (uint(7), bstr(cti)),
            (nint(-3), array([tstr("north")])),
            (uint(500), tstr("ignored")),
        ]
    )
    to_sign = array([tstr("Signature1"), bstr(protected), bstr(b""), bstr(payload)])
    signature = authority.issuer.sign(to_sign)
    sign1 = bytes([0xD2]) + array([bstr(protected), cmap([(uint(33), bstr(b"x"))]), bstr(payload), bstr(signature)])
    text = "GT1:" + base45.encode(sign1)
    gate = GateContext(site="arena", events=frozenset({"FINAL-2026"}), zone="north")
    decision = validate(text, authority.keyring, gate, None, now)
    assert decision.admit, decision.detail
    assert decision.cti == cti and decision.ticket.claims.typ == "child"
