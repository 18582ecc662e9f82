"""Revocation updates, PROTOCOL §4: signed lists of refunded, exchanged, lost or fraudulent tickets.

    COSE_Sign1 by a `revocation` key, payload CBOR map:
      1 site tstr   2 version uint (> 0, strictly increasing)   3 base uint (0 = snapshot, else delta on
      exactly version == base)   4 add [* bstr16]   5 remove [* bstr16] (empty for snapshots)
      6 iat uint    7 part uint, 8 parts uint (snapshots only; default 0 of 1)
    One message is at most 1 MiB; a larger snapshot is split into parts, each signed.

A gate applies an update all or nothing, a multi-part snapshot once all its parts are here.
It rejects, keeping its list: a bad signature, a key without the revocation role, another
site, a version not above its own (replay, rollback), a malformed payload. A delta whose
base is ahead of the gate's version is a gap: the list is marked stale and the delta is
kept, to be applied as soon as the missing versions (or a newer snapshot) arrive; retained
messages may come in any order after a reconnect, so nothing is dropped for arriving early.
The parts of a snapshot are verified and staged in the store as they come (one part in memory at
a time); the last one swaps the staged list in. A kept delta whose key was rotated out of the
keyring meanwhile is dropped (`Outcome.dropped`), not raised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated.core.errors import Rejected
from gated.core import cose
from gated.keys import Keyring, SignedRejected, open_signed

MAX_MESSAGE = 1024 * 1024
SITE, VERSION, BASE, ADD, REMOVE, IAT, PART, PARTS = 1, 2, 3, 4, 5, 6, 7, 8
_ID_BYTES = 17  # one bstr16 in CBOR


class UpdateRejected(Rejected):
    """An update the gate will not apply. `code` is stable: malformed, unsupported, too_large,
    unknown_key, bad_signature, wrong_site, replay (version not above current), gap."""


@dataclass(frozen=True)
class Update:
    site: str
    version: int
    base: int
    add: tuple[bytes, ...]
    remove: tuple[bytes, ...]
    iat: int
    part: int = 0
    parts: int = 1
    signer: str = ""

    @property
    def is_snapshot(self) -> bool:
        return self.base == 0


@dataclass(frozen=True)
class Outcome:
    """What became of one message: applied (list now at `version`), stored (a part or an early
    delta waiting), or rejected (`code`); the list as it was is kept unless applied."""

    status: str  # applied | stored | rejected
    version: int  # the gate's list version after this message
    code: str = "ok"
    detail: str = ""
    applied: tuple[int, ...] = field(default=())  # versions applied by this message (chained deltas too)
    dropped: tuple[str, ...] = field(default=())  # kept deltas dropped on the way: why, one line each


# --- central side ----------------------------------------------------------------------------

def encode_updates(key: Ed25519PrivateKey, *, site: str, version: int, base: int = 0, add=(), remove=(),
                   iat: int, parts: int | None = None) -> list[bytes]:
    """Sign an update; a snapshot too big for one message (or asked for in `parts`) is split."""
    add, remove = sorted(set(add)), sorted(set(remove))
    if base and parts not in (None, 1):
        raise ValueError("only snapshots (base 0) can be split into parts")
    if base == 0 and remove:
        raise ValueError("a snapshot lists what is revoked; `remove` must be empty")
    per_part = (MAX_MESSAGE - 512) // _ID_BYTES
    if base and len(add) + len(remove) > per_part:
        raise ValueError(f"a delta of {len(add) + len(remove)} ids exceeds {MAX_MESSAGE} bytes; split it into "
                         f"consecutive versions of at most {per_part} ids each (deltas cannot be split into parts)")
    parts = parts or max(1, math.ceil(len(add) / per_part))
    if math.ceil(len(add) / parts) > per_part:
        raise ValueError(f"{parts} parts would exceed {MAX_MESSAGE} bytes each; use at least {math.ceil(len(add) / per_part)}")
    size = math.ceil(len(add) / parts) if add else 0
    messages = []
    for index in range(parts):
        payload = {SITE: site, VERSION: version, BASE: base, ADD: add[index * size:(index + 1) * size] if size else [],
                   REMOVE: remove, IAT: iat}
        if parts > 1:
            payload[PART], payload[PARTS] = index, parts
        messages.append(cose.sign(cbor2.dumps(payload), key))
    return messages


# --- gate side -------------------------------------------------------------------------------

def parse_update(blob: bytes, keyring: Keyring) -> Update:
    """Verify and decode one message; raises UpdateRejected."""
    if len(blob) > MAX_MESSAGE:
        raise UpdateRejected("too_large", f"{len(blob)} bytes, over {MAX_MESSAGE}")
    try:
        key, body = open_signed(blob, keyring, "revocation")
    except SignedRejected as exc:
        raise UpdateRejected(exc.code, exc.detail) from None
    return _payload_to_update(body, key.name)


def _payload_to_update(body, signer: str) -> Update:
    def uint(key, name, default=None):
        value = body.get(key, default)
        if not cose.is_uint(value):
            raise UpdateRejected("malformed", f"{name} ({key}) must be an unsigned integer")
        return value

    def ids(key, name):
        value = body.get(key)  # required, even when empty (PROTOCOL §4 marks only part/parts optional)
        if type(value) is not list or not all(type(i) is bytes and len(i) == 16 for i in value):
            raise UpdateRejected("malformed", f"{name} ({key}) must be an array of 16-byte ids")
        return tuple(value)

    if not isinstance(body, dict):
        raise UpdateRejected("malformed", "payload must be a CBOR map")
    if type(body.get(SITE)) is not str:
        raise UpdateRejected("malformed", "site (1) must be a text string")
    update = Update(site=body[SITE], version=uint(VERSION, "version"), base=uint(BASE, "base"), add=ids(ADD, "add"),
                    remove=ids(REMOVE, "remove"), iat=uint(IAT, "iat"), part=uint(PART, "part", 0),
                    parts=uint(PARTS, "parts", 1), signer=signer)
    if update.version == 0:
        raise UpdateRejected("malformed", "version must be above 0")
    if update.base and (PART in body or PARTS in body):
        raise UpdateRejected("malformed", "part/parts are for snapshots only")
    if update.base >= update.version:
        raise UpdateRejected("malformed", f"delta base {update.base} not below its version {update.version}")
    if update.parts < 1 or update.part >= update.parts:
        raise UpdateRejected("malformed", f"part {update.part} of {update.parts}")
    if update.is_snapshot and update.remove:
        raise UpdateRejected("malformed", "a snapshot cannot remove ids")
    return update


def apply_update(store, blob: bytes, keyring: Keyring, *, site: str, now_ms: int) -> Outcome:
    """Take one message from the wire (or a file) into the store. Never raises for bad input; a
    store failure (a full disk) is a StoreError, and the list stays as it was."""
    current = store.revocation_state().version
    try:
        update = parse_update(blob, keyring)
        if update.site != site:
            raise UpdateRejected("wrong_site", f"update for site {update.site!r}, gate at {site!r}")
        if update.version <= current:
            raise UpdateRejected("replay", f"version {update.version} not above current {current}")
    except UpdateRejected as exc:
        return Outcome("rejected", current, exc.code, exc.detail)
    if update.is_snapshot and update.parts > 1:
        status, staged = store.stage_snapshot_part(version=update.version, part=update.part, parts=update.parts,
                                                   add=update.add, iat=update.iat, site=update.site, applied_ms=now_ms)
        if status == "superseded":
            return Outcome("rejected", current, "replay", f"a snapshot newer than v{update.version} is being assembled")
        if status == "mismatch":
            return Outcome("rejected", current, "malformed",
                           f"part {update.part} says {update.parts} parts; the parts of v{update.version} already here "
                           f"say otherwise")
        if status != "applied":
            return Outcome("stored", current, "ok", f"part {update.part + 1} of {update.parts} of v{update.version} "
                                                     f"({staged} here{', a repeat' if status == 'repeated' else ''})")
    elif update.is_snapshot or update.base == current:
        store.apply_revocations(version=update.version, base=update.base, add=update.add, remove=update.remove,
                                iat=update.iat, site=update.site, applied_ms=now_ms, expected_version=current)
    else:
        store.stash_delta(update.version, update.base, blob)
        store.mark_revocations_stale()
        return Outcome("stored", current, "gap",
                       f"delta v{update.version} needs v{update.base}, list is at v{current}: waiting for the missing versions")
    chained, dropped = _apply_waiting_deltas(store, keyring, now_ms)
    applied = [update.version] + chained
    return Outcome("applied", store.revocation_state().version, "ok", f"now at v{applied[-1]}", tuple(applied),
                   tuple(dropped))


def _apply_waiting_deltas(store, keyring: Keyring, now_ms: int) -> tuple[list[int], list[str]]:
    """Deltas kept for arriving early, applied in order once their base is reached. One that no
    longer verifies (its key was rotated out of the keyring since it was kept) is dropped, and
    said in the outcome for the caller to log."""
    applied, dropped = [], []
    while (waiting := store.waiting_delta(store.revocation_state().version)) is not None:
        version, blob = waiting
        try:
            update = parse_update(blob, keyring)
        except UpdateRejected as exc:
            store.drop_waiting_delta(version)
            dropped.append(f"kept delta v{version} dropped ({exc.code}): {exc.detail}")
            continue
        current = store.revocation_state().version
        store.apply_revocations(version=update.version, base=update.base, add=update.add, remove=update.remove,
                                iat=update.iat, site=update.site, applied_ms=now_ms, expected_version=current)
        applied.append(update.version)
    return applied, dropped
