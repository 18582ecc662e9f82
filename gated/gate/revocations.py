"""A gate's revocation list, kept up to date from revocation updates (PROTOCOL §4; the message format
is gated/core/revocation.py).

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

from dataclasses import dataclass, field

from gated.core.revocation import UpdateRejected, parse_update
from gated.core.signed import Keyring, check_newer


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


def apply_update(store, blob: bytes, keyring: Keyring, *, site: str, now_ms: int) -> Outcome:
    """Take one message from the wire (or a file) into the store. Never raises for bad input; a
    store failure (a full disk) is a StoreError, and the list stays as it was."""
    current = store.revocation_state().version
    try:
        update = parse_update(blob, keyring)
        check_newer(update.site, update.version, gate_site=site, held=current, rejected=UpdateRejected)
    except UpdateRejected as exc:
        return Outcome("rejected", current, exc.code, exc.detail)
    if update.is_snapshot and update.parts > 1:
        status, staged = store.stage_snapshot_part(
            version=update.version,
            part=update.part,
            parts=update.parts,
            add=update.add,
            iat=update.iat,
            site=update.site,
            applied_ms=now_ms,
        )
        if status == "superseded":
            return Outcome("rejected", current, "replay", f"a snapshot newer than v{update.version} is being assembled")
        if status == "mismatch":
            return Outcome(
                "rejected",
                current,
                "malformed",
                f"part {update.part} says {update.parts} parts; the parts of v{update.version} already here "
                f"say otherwise",
            )
        if status != "applied":
            return Outcome(
                "stored",
                current,
                "ok",
                f"part {update.part + 1} of {update.parts} of v{update.version} "
                f"({staged} here{', a repeat' if status == 'repeated' else ''})",
            )
    elif update.is_snapshot or update.base == current:
        store.apply_revocations(
            version=update.version,
            base=update.base,
            add=update.add,
            remove=update.remove,
            iat=update.iat,
            site=update.site,
            applied_ms=now_ms,
            expected_version=current,
        )
    else:
        store.stash_delta(update.version, update.base, blob)
        store.mark_revocations_stale()
        return Outcome(
            "stored",
            current,
            "gap",
            f"delta v{update.version} needs v{update.base}, list is at v{current}: waiting for the missing versions",
        )
    chained, dropped = _apply_waiting_deltas(store, keyring, now_ms)
    applied = [update.version] + chained
    return Outcome(
        "applied", store.revocation_state().version, "ok", f"now at v{applied[-1]}", tuple(applied), tuple(dropped)
    )


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
        store.apply_revocations(
            version=update.version,
            base=update.base,
            add=update.add,
            remove=update.remove,
            iat=update.iat,
            site=update.site,
            applied_ms=now_ms,
            expected_version=current,
        )
        applied.append(update.version)
    return applied, dropped
