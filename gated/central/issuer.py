"""Issuing tickets (the central side of PROTOCOL §2-3): claims in, QR texts and images out."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated.atomicfile import write_atomic
from gated.core import ticket
from gated.keys import private_pem

# the `gated issue` option each claim comes from, for the message when one is out of range
CLAIM_OPTIONS = {
    "aud": "--event",
    "nbf": "--valid-from",
    "exp": "--valid-until",
    "iss": "--issuer-name",
    "iat": "the issue time (the clock)",
    "typ": "--type",
    "ent": "--entries",
    "seat": "--seat",
    "zon": "--zone",
}


@dataclass(frozen=True)
class IssuedTicket:
    claims: ticket.Claims
    text: str  # GT1 text (for a dynamic ticket: its static form, which gates refuse as static_copy)
    cose: bytes
    device_key: Ed25519PrivateKey | None = None


def new_claims(
    *,
    event: str,
    nbf: int,
    exp: int,
    typ: str = "general",
    ent: int = 1,
    zones=None,
    seat=None,
    iss=None,
    iat=None,
    dev: bytes | None = None,
    rex: bool = False,
) -> ticket.Claims:
    """The claims of a new ticket; ValueError naming the option (of `gated issue`) whose value no
    gate would read (ticket.CLAIM_CHECKS: a time before 1970, entries of 2^63 or more, a NUL)."""
    given = {"aud": event, "nbf": nbf, "exp": exp, "iss": iss, "iat": iat, "typ": typ, "ent": ent, "seat": seat}
    given["zon"] = list(zones) if zones else None
    for name, ok, expected in ticket.CLAIM_CHECKS.values():
        if given.get(name) is not None and not ok(given[name]):
            raise ValueError(
                f"{CLAIM_OPTIONS[name]}: claim {name} would be {given[name]!r}, but a gate reads only {expected}"
            )
    return ticket.Claims(
        cti=os.urandom(16),
        aud=event,
        nbf=nbf,
        exp=exp,
        iss=iss,
        iat=iat,
        typ=typ,
        ent=ent,
        zon=tuple(zones) if zones else None,
        seat=seat,
        dev=dev,
        rex=rex,
    )


def issue(
    claims: ticket.Claims,
    issuer_key: Ed25519PrivateKey,
    *,
    dynamic: bool = False,
    device_key: Ed25519PrivateKey | None = None,
) -> IssuedTicket:
    """Sign one ticket; a dynamic one is bound to a holder-device key (PROTOCOL §3): `device_key`,
    or a freshly made one (a benchmark passes its own, to issue the same codes for the same seed)."""
    if device_key is not None and not dynamic:
        raise ValueError("a device key binds a dynamic ticket: issue(..., dynamic=True, device_key=...)")
    if dynamic and device_key is None:
        device_key = Ed25519PrivateKey.generate()
    if device_key is not None:
        claims = ticket.Claims(**{**claims.__dict__, "dev": ticket.raw_public(device_key.public_key())})
    cose_bytes = ticket.encode_cose(claims, issuer_key)
    if device_key is not None:
        longest = len(ticket.encode_dynamic(cose_bytes, claims.cti, 2**32 - 1, device_key))  # steps until 6053
        if longest > ticket.MAX_TEXT:
            raise ValueError(
                f"the ticket's GT2 code would be {longest} characters, over the {ticket.MAX_TEXT} a gate "
                f"reads: fewer zones or shorter labels"
            )
    return IssuedTicket(claims, ticket.STATIC_PREFIX + ticket.base45.encode(cose_bytes), cose_bytes, device_key)


def write_batch(tickets: list[IssuedTicket], out_dir: str | os.PathLike, *, scale: int = 8) -> Path:
    """PNG per ticket plus tickets.csv (ticket id, file, type, entries, seat). Returns the CSV path.
    Dynamic tickets also get TICKET.ticket (the signed ticket) and TICKET.devkey (mode 0600) for the wallet."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "tickets.csv"
    with io.StringIO(newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["ticket_id", "file", "type", "entries", "seat", "event", "valid_from", "valid_until"])
        for item in tickets:
            cti = item.claims.cti.hex()
            png = io.BytesIO()
            ticket.qr_symbol(item.text).save(png, kind="png", scale=scale, border=4)
            write_atomic(out / f"{cti}.png", png.getvalue())
            if item.device_key is not None:
                write_atomic(out / f"{cti}.ticket", item.cose)
                write_atomic(out / f"{cti}.devkey", private_pem(item.device_key), mode=0o600)
            c = item.claims
            writer.writerow([cti, f"{cti}.png", c.typ, c.ent, c.seat or "", c.aud, c.nbf, c.exp])
        write_atomic(csv_path, fh.getvalue())  # last: a tickets.csv names only files that are there
    return csv_path
