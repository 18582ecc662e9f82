"""The pretix check-in list a gate holds (gated/core/checkinlist.py): taken from the wire or a file,
kept in the gate's store, read on the scan path.

A list is taken only if it verifies with a trusted `revocation` key, names this gate's site, is
above the version held (no rollback, no replay) and reads completely, rules included; anything
else is refused with a stable code and the list held stays as it was. The store keeps the signed
bytes (a restart verifies them again) under one key; the parsed list is cached per store object
(weakly) and version, so a scan costs one small read of the store's meta table.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gated.core import cose
from gated.core.checkinlist import CheckinList, ListRejected, parse_list
from gated.core.decide import PretixFacts
from gated.core.pretix_rules import Movement
from gated.core.signed import Keyring, check_newer

STORE_KEY = "pretix_checkin_list"
VERSION_KEY = "pretix_checkin_list_version"
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # store -> (version, its CheckinList)
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class Outcome:
    status: str  # applied | rejected
    version: int  # the version held afterwards (0: none)
    code: str = "ok"
    detail: str = ""
    name: str = ""


def zone(name: str):
    """A time zone from the system's database; ValueError if there is none of that name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(str(exc)) from None


def parse(blob: bytes, keyring: Keyring) -> CheckinList:
    """Verify and read one signed list with the system's time zones; raises ListRejected."""
    return parse_list(blob, keyring, zones=zone)


def held_version(store) -> int:
    return int(store.get_value(VERSION_KEY, 0) or 0)


def accept(store, blob: bytes, keyring: Keyring, *, site: str) -> Outcome:
    """Take one list into the store, or refuse it keeping the one held. Never raises for bad input
    (a store fault is the store's StoreError)."""
    current = held_version(store)
    try:
        clist = parse(blob, keyring)
        check_newer(clist.site, clist.version, gate_site=site, held=current, rejected=ListRejected)
    except ListRejected as exc:
        return Outcome("rejected", current, exc.code, exc.detail)
    store.set_value(STORE_KEY, blob.hex())
    store.set_value(VERSION_KEY, clist.version)
    return Outcome("applied", clist.version, "ok", f"check-in list {clist.name!r} v{clist.version}", clist.name)


def held(store, keyring: Keyring) -> CheckinList | None:
    """The list the store holds (verified again once per version and store), or None."""
    version = held_version(store)
    if not version:
        return None
    with _cache_lock:
        cached = _cache.get(store)
    if cached is not None and cached[0] == version:
        return cached[1]
    raw = store.get_value(STORE_KEY)
    try:
        clist = parse(bytes.fromhex(raw), keyring)
    except (ListRejected, ValueError, TypeError):
        return None  # a keyring that no longer trusts its signer: no list, the gate's plain rules apply
    with _cache_lock:
        _cache[store] = (version, clist)
    return clist


def facts_for(store, keyring: Keyring, ticket, *, gate_id: str | None) -> PretixFacts | None:
    """What decide() needs to judge `ticket` (a PretixTicket) by the held list, or None."""
    clist = held(store, keyring)
    if clist is None or clist.event != ticket.claims.aud:
        return None
    history = tuple(
        Movement(at=ts_ms / 1000, entry=direction != "out") for ts_ms, direction in store.movements(ticket.claims.cti)
    )
    return PretixFacts(checkin_list=clist, history=history, gate_pk=clist.gate_pk(gate_id))


def peek_site(blob: bytes) -> str | None:
    """The site a list names (not yet trusted), for a desk that has no state yet."""
    try:
        body = cose.loads_exact(cose.parse(blob).payload)
    except cose.CoseError:
        return None
    return body.get(1) if isinstance(body, dict) and isinstance(body.get(1), str) else None
