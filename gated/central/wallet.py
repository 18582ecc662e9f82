"""The holder's side of a dynamic ticket (PROTOCOL §3), as a phone wallet app would do it.

A dynamic ticket is the issuer's signed ticket (TICKET.ticket: the COSE_Sign1 bytes, with the
holder-device public key in claim -5 `dev`) plus that device's private key (TICKET.devkey: PEM).
Every 30 s the wallet shows a fresh code:

    GT2:base45([ticket COSE bytes, step = floor(unix_seconds / 30), devsig])
    devsig = Ed25519 by the device key over "GT2" || cti || step as u64 big-endian

Pure helpers (`current_code`, `code_at`, `static_code`) take the time as an argument, so the
simulator can make the code a phone showed at any moment (a screenshot replayed later) and the
GT1 form of a dynamic ticket (a copy that gates refuse as `static_copy`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated import keys
from gated.core import base45, cose, ticket
from gated.core.errors import GatedError


class WalletError(GatedError, ValueError):
    """The ticket or device key file cannot make codes; the message names the file to fix."""


@dataclass(frozen=True)
class WalletTicket:
    cose: bytes
    claims: ticket.Claims
    device_key: Ed25519PrivateKey

    def code(self, now: float) -> str:
        return code_at(self.cose, self.device_key, step_of(now), self.claims.cti)


def step_of(now: float) -> int:
    return int(now // ticket.STEP_SECONDS)


def seconds_left(now: float) -> float:
    """Seconds until the code changes."""
    return ticket.STEP_SECONDS - (now % ticket.STEP_SECONDS)


def code_at(ticket_cose: bytes, device_key: Ed25519PrivateKey, step: int, cti: bytes | None = None) -> str:
    """The GT2 text for time step `step`."""
    if cti is None:
        cti = claims_of(ticket_cose).cti
    return ticket.encode_dynamic(ticket_cose, cti, step, device_key)


def current_code(ticket_cose: bytes, device_key: Ed25519PrivateKey, now: float) -> str:
    """The GT2 text a wallet shows at unix time `now`."""
    return code_at(ticket_cose, device_key, step_of(now))


def static_code(ticket_cose: bytes) -> str:
    """The GT1 rendering of the same ticket (what a copied or printed ticket file would show)."""
    return ticket.STATIC_PREFIX + base45.encode(ticket_cose)


def claims_of(ticket_cose: bytes) -> ticket.Claims:
    """The claims of a ticket as signed (the signature is the gate's business, not the wallet's)."""
    try:
        return ticket.parse_claims(cose.parse(ticket_cose).payload)
    except (cose.CoseError, ticket.ClaimsError) as exc:
        raise WalletError(f"not a signed gated ticket: {exc}") from None


def load(ticket_path: str | os.PathLike, device_key_path: str | os.PathLike) -> WalletTicket:
    """Read TICKET.ticket and TICKET.devkey (as `gated issue --dynamic --out DIR` writes them) and
    check that the key is the one the ticket is bound to."""
    data = Path(ticket_path).read_bytes()
    try:
        claims = claims_of(data)
    except WalletError as exc:
        raise WalletError(f"{ticket_path}: {exc}") from None
    if claims.dev is None:
        raise WalletError(f"{ticket_path}: a static ticket (no device key); show its GT1 code instead")
    try:
        device_key = keys.load_private_key(device_key_path)
    except ValueError as exc:
        raise WalletError(f"{device_key_path}: {exc}") from None
    if ticket.raw_public(device_key.public_key()) != claims.dev:
        raise WalletError(f"{device_key_path} is not the device key of ticket {claims.cti.hex()}")
    return WalletTicket(data, claims, device_key)


def watch(
    wallet: WalletTicket,
    show: Callable[[str, float], None],
    *,
    now: Callable[[], float],
    sleep: Callable[[float], None],
    renders: int | None = None,
) -> int:
    """Show the current code, then a new one at each 30 s step, `renders` times (None: for ever).
    Returns how many codes were shown."""
    shown = 0
    while renders is None or shown < renders:
        moment = now()
        show(wallet.code(moment), seconds_left(moment))
        shown += 1
        if renders is not None and shown >= renders:
            break
        sleep(seconds_left(now()) + 0.05)
    return shown
