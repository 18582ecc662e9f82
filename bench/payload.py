"""Payload size is robustness: how many QR modules GT1 and GT2 codes need, and what each claim costs.

    .venv/bin/python bench/payload.py

A code of a given printed or on-screen width has modules of width / modules; the smaller they are,
the sooner blur, noise and distance make a code unreadable (bench/scan.py's hard set). Every figure
here is exact (no randomness but the cti and keys, whose sizes are fixed): ticket texts are encoded
as the issuer encodes them (gated.core.ticket.qr_symbol: alphanumeric mode, error correction M).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from gated.core import ticket  # noqa: E402

ISSUER = Ed25519PrivateKey.from_private_bytes(bytes(32))
DEVICE = Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32)
BASE = dict(cti=bytes(16), aud="FINAL-2026", nbf=1_790_000_000, exp=1_790_086_400)
CLAIMS = [  # (label, overrides): each added alone to the minimal ticket
    ("iss 'Box Office'", dict(iss="Box Office")),
    ("iat", dict(iat=1_789_000_000)),
    ("typ 'vip'", dict(typ="vip")),
    ("typ 'child'", dict(typ="child")),
    ("ent 4", dict(ent=4)),
    ("ent 0 (unlimited)", dict(ent=0)),
    ("zon ['north']", dict(zon=("north",))),
    ("zon ['north', 'east']", dict(zon=("north", "east"))),
    ("seat 'B-7'", dict(seat="B-7")),
    ("seat 'Block C Row 12 Seat 31'", dict(seat="Block C Row 12 Seat 31")),
    ("aud 'F26' instead of 'FINAL-2026'", dict(aud="F26")),
]
TYPICAL = dict(typ="vip", seat="B-7", zon=("north", "east"))


def codes(**overrides) -> tuple[bytes, str, str]:
    """(COSE bytes, GT1 text, GT2 text) of the ticket with BASE's claims and `overrides`."""
    claims = ticket.Claims(**{**BASE, **overrides})
    dynamic = ticket.Claims(**{**BASE, **overrides, "dev": ticket.raw_public(DEVICE.public_key())})
    cose = ticket.encode_cose(claims, ISSUER)
    gt2 = ticket.encode_dynamic(ticket.encode_cose(dynamic, ISSUER), dynamic.cti, 59_666_666, DEVICE)
    return cose, ticket.STATIC_PREFIX + ticket.base45.encode(cose), gt2


def modules(text: str) -> str:
    symbol = ticket.qr_symbol(text)
    return f"v{symbol.version} {symbol.symbol_size(border=0)[0]}"


def capacity(version: int) -> int:
    """Alphanumeric characters a version-`version` symbol holds at error correction M."""
    import segno

    n = 0
    step = 64
    while step:
        try:
            segno.make_qr("A" * (n + step), error="m", boost_error=False, version=version)
            n += step
        except segno.DataOverflowError:
            step //= 2
    return n


def main() -> int:
    cose0, gt1_0, gt2_0 = codes()
    print("== Where the bytes go (minimal ticket: the four required claims, aud 'FINAL-2026') ==")
    print(
        f"COSE_Sign1 {len(cose0)} bytes: signature 64+2, protected header {{alg, kid}} 13+1, claims map "
        f"{len(cose0) - 66 - 14 - 2} (its bstr header 2, map header 1, cti 16+2, aud, nbf, exp), array and empty "
        "unprotected map 2"
    )
    print(
        f"GT1 text {len(gt1_0)} characters = 'GT1:' + base45 (3 characters per 2 bytes); "
        f"GT2 text {len(gt2_0)} = 'GT2:' + base45(ticket (+dev 32+3) + step + devsig 64+2)"
    )
    print("\n== What each claim costs, added alone to the minimal ticket ==")
    print(
        f"{'claim':<36} {'bytes':>6} {'GT1 chars':>10} {'GT1 v, modules':>15} {'GT2 chars':>10} {'GT2 v, modules':>15}"
    )
    print(
        f"{'(minimal)':<36} {len(cose0):>6} {len(gt1_0):>10} {modules(gt1_0):>15} {len(gt2_0):>10} {modules(gt2_0):>15}"
    )
    for label, overrides in CLAIMS + [("typical: vip, seat B-7, 2 zones", TYPICAL)]:
        cose, gt1, gt2 = codes(**overrides)
        print(
            f"{label:<36} {len(cose) - len(cose0):>+6} {len(gt1) - len(gt1_0):>+10} {modules(gt1):>15} "
            f"{len(gt2) - len(gt2_0):>+10} {modules(gt2):>15}"
        )
    print("\n== QR versions (error correction M, alphanumeric): modules a side, characters held ==")
    print(" ".join(f"v{v}: {17 + 4 * v} mod {capacity(v)} ch;" for v in range(7, 15)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
