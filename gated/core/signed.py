"""Signed messages (PROTOCOL §1, §2): the keyring's data types and the one signature check.

    signed message = COSE_Sign1 (gated/core/cose.py) whose kid names a key the keyring trusts for
                     the message's role; payload one CBOR item, nothing after it

A keyring is a set of trusted public keys, each for its roles only (issuer | revocation | command |
device), optionally scoped to events and a signing window (unix seconds). A key outside its scope
is as good as unknown (`unknown_key`). For tickets the window is checked against the signing time
the ticket states (`iat`, else `nbf`), so a ticket sold before a key was retired stays valid.

Revocation updates, remote commands and time beacons all arrive through `open_signed()`; tickets
are checked by their codec (gated/core/ticket.py) with `Keyring.find()`. Loading a keyring from its
directory and PEM files is the shell's business (gated/keys.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gated.core import cose
from gated.core.cose import kid_of
from gated.core.errors import Rejected, brief

ROLES = ("issuer", "revocation", "command", "device", "ledger")


@dataclass(frozen=True)
class TrustedKey:
    name: str
    public_key: Ed25519PublicKey
    roles: frozenset[str]
    events: frozenset[str] = frozenset()
    not_before: int | None = None
    not_after: int | None = None
    kid: bytes = field(default=b"")

    def allows_event(self, event: str) -> bool:
        return not self.events or event in self.events

    def valid_at(self, unix_seconds: int) -> bool:
        if self.not_before is not None and unix_seconds < self.not_before:
            return False
        return self.not_after is None or unix_seconds <= self.not_after


@dataclass(frozen=True)
class Keyring:
    keys: tuple[TrustedKey, ...] = ()

    def find(self, kid: bytes, role: str) -> TrustedKey | None:
        """The key with this kid, if it is trusted for `role`; a key of another role is no key."""
        for key in self.keys:
            if key.kid == kid and role in key.roles:
                return key
        return None

    def with_key(self, key: TrustedKey) -> "Keyring":
        return Keyring(self.keys + (key,))


def trusted(name: str, public_key: Ed25519PublicKey, roles, events=(), not_before=None, not_after=None) -> TrustedKey:
    return TrustedKey(
        name=name,
        public_key=public_key,
        roles=frozenset(roles),
        events=frozenset(events),
        not_before=not_before,
        not_after=not_after,
        kid=kid_of(public_key),
    )


class SignedRejected(Rejected):
    """A signed message that is not accepted; `code` is stable: malformed, unsupported (another
    algorithm), unknown_key (no such kid with the role), bad_signature."""


def open_signed(blob: bytes, keyring: Keyring, role: str) -> tuple[TrustedKey, object]:
    """Verify a COSE_Sign1 by a key trusted for `role` and decode its payload (one CBOR item, nothing
    after it). Revocation updates, remote commands and time beacons all arrive this way."""
    try:
        sign1 = cose.parse(blob)
    except cose.CoseError as exc:
        raise SignedRejected("unsupported" if exc.unsupported else "malformed", f"COSE: {exc}") from None
    key = keyring.find(sign1.kid, role)
    if key is None:
        raise SignedRejected("unknown_key", f"kid {sign1.kid.hex()} is not a trusted {role} key")
    if not sign1.verify(key.public_key):
        raise SignedRejected("bad_signature", f"signature does not verify with {key.name}")
    try:
        return key, cose.loads_exact(sign1.payload)
    except cose.CoseError as exc:
        raise SignedRejected("malformed", f"payload: {exc}") from None


def check_newer(site: str, version: int, *, gate_site: str, held: int, rejected: type[Rejected]) -> None:
    """A site's versioned message (revocation update, check-in list) for this gate: its site
    (`wrong_site`) and a version above the one held (`replay`: a replay or a rollback)."""
    if site != gate_site:
        raise rejected("wrong_site", f"for site {brief(site)}, gate at {gate_site!r}")
    if version <= held:
        raise rejected("replay", f"version {version} not above the held {held}")


def open_message(blob: bytes, keyring: Keyring, role: str, *, limit: int, rejected: type[Rejected]):
    """open_signed() for a message of at most `limit` bytes, every refusal as the message's own
    `rejected` class (code too_large, or open_signed's code)."""
    if len(blob) > limit:
        raise rejected("too_large", f"{len(blob)} bytes, over {limit}")
    try:
        return open_signed(blob, keyring, role)
    except SignedRejected as exc:
        raise rejected(exc.code, exc.detail) from None
