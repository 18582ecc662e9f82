"""A pretix check-in list as signed configuration for the gates (docs/protocol.md, "pretix check-in lists").

    COSE_Sign1 by a `revocation` key (the authority that already says which tickets no longer
    admit), payload a CBOR map:
      1 site tstr            2 version uint (> 0; a gate takes only a version above its own)
      3 iat uint             4 event tstr (pretix's event short form = the gates' event id)
      5 list map             id uint, name tstr, include_pending bool, allow_multiple_entries bool,
                             allow_entry_after_exit bool, all_products bool, limit_products [* uint],
                             subevent uint / null, rules tstr (pretix's JSON-logic as JSON text, "" = none),
                             exit_all_at uint / null (unix seconds)
      6 times map            tz tstr (IANA name), date_from uint, date_to uint / null,
                             date_admission uint / null (unix seconds); optional subevents
                             { uint (date id) => [date_from, date_to / null, date_admission / null] }
      7 gates map            { uint (pretix gate id) => tstr (its name; the gate whose id is that
                             name, compared case aside and spaces, _ and - alike, is that pretix gate) }
      8 pending [* bstr16]   tickets of unpaid orders (not `valid_if_pending`)
      9 unapproved [* bstr16] tickets of orders awaiting approval
      10 questions [* uint]  products with questions to ask at check-in
    Every key is required; a map key this version does not know is `unsupported` (a newer sync
    may add a restriction; admitting by a list the gate cannot fully read would be wrong). One
    message is at most 1 MiB.

A list is a snapshot: no deltas, no parts. Tickets cancelled or blocked in pretix travel as
revocation updates; payment and approval, which pretix checks at another point of its order,
travel here. `read_list()` checks the payload after the signature (gated/gate/checkinlists.py
verifies it), including the rules (gated/core/pretix_rules.py): a list whose rules this gate could
not evaluate is refused when it arrives, never at a scan.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import cbor2

from gated.core import cose
from gated.core.errors import Rejected, brief, briefs
from gated.core.pretix_rules import EventTimes, check_rules
from gated.core.signed import Keyring, open_message

MAX_MESSAGE = 1024 * 1024
SITE, VERSION, IAT, EVENT, LIST, TIMES, GATES, PENDING, UNAPPROVED, QUESTIONS = range(1, 11)
LIST_KEYS = {
    "id",
    "name",
    "include_pending",
    "allow_multiple_entries",
    "allow_entry_after_exit",
    "all_products",
    "limit_products",
    "subevent",
    "rules",
    "exit_all_at",
}
TIMES_KEYS = {"tz", "date_from", "date_to", "date_admission"}
TIMES_OPTIONAL = {"subevents"}  # an event series: each date's own times (pretix's buildTime takes the ticket's)


class ListRejected(Rejected):
    """A check-in list the gate will not take; `code`: malformed, unsupported, too_large, unknown_key,
    bad_signature, wrong_site, replay, bad_rules."""


@dataclass(frozen=True)
class CheckinList:
    site: str
    version: int
    iat: int
    event: str
    list_id: int
    name: str
    include_pending: bool
    allow_multiple_entries: bool
    allow_entry_after_exit: bool
    all_products: bool
    limit_products: frozenset[int]
    subevent: int | None
    rules: object  # parsed JSON-logic, {} for none
    exit_all_at: int | None
    times: EventTimes
    tz_name: str
    gates: dict = field(default_factory=dict)  # pretix gate id -> gated gate id
    pending: frozenset[bytes] = frozenset()
    unapproved: frozenset[bytes] = frozenset()
    questions: frozenset[int] = frozenset()
    signer: str = ""
    subevent_times: dict = field(default_factory=dict)  # date (subevent) id -> EventTimes

    def times_for(self, subevent: int) -> EventTimes:
        """The times `buildTime` reads for a ticket of this date (pretix: the subevent's, else the event's)."""
        return self.subevent_times.get(subevent, self.times)

    def gate_pk(self, gate_id: str | None) -> int | None:
        """pretix's id of the gate named `gate_id` (the `gate` of pretix's rules), None if none. Names
        match case aside, and with spaces, `_` and `-` alike ("Main Entrance" is gate main-entrance)."""
        wanted = _gate_name(gate_id or "")
        matches = [pk for pk, name in self.gates.items() if _gate_name(name) == wanted]
        return matches[0] if matches else None


def _gate_name(name: str) -> str:
    return re.sub(r"[\s_-]+", "-", name.strip().casefold())


# --- central side ------------------------------------------------------------------------------


def encode_list(
    key,
    *,
    site: str,
    version: int,
    iat: int,
    event: str,
    settings: dict,
    times: dict,
    gates: dict,
    pending=(),
    unapproved=(),
    questions=(),
) -> bytes:
    """Sign one list. `settings` holds LIST_KEYS (rules as JSON text), `times` TIMES_KEYS."""
    if set(settings) != LIST_KEYS or set(times) - TIMES_OPTIONAL != TIMES_KEYS:
        raise ValueError(f"list settings need exactly {sorted(LIST_KEYS)} and times {sorted(TIMES_KEYS)}")
    payload = {
        SITE: site,
        VERSION: version,
        IAT: iat,
        EVENT: event,
        LIST: settings,
        TIMES: times,
        GATES: {int(k): v for k, v in gates.items()},
        PENDING: sorted(set(pending)),
        UNAPPROVED: sorted(set(unapproved)),
        QUESTIONS: sorted(set(questions)),
    }
    blob = cose.sign(cbor2.dumps(payload), key)
    if len(blob) > MAX_MESSAGE:
        raise ValueError(f"the check-in list is {len(blob)} bytes, over {MAX_MESSAGE} (too many unpaid orders?)")
    return blob


# --- gate side ---------------------------------------------------------------------------------


def parse_list(blob: bytes, keyring: Keyring, *, zones) -> CheckinList:
    """Verify (a `revocation` key, at most 1 MiB) and read one signed list; raises ListRejected."""
    key, body = open_message(blob, keyring, "revocation", limit=MAX_MESSAGE, rejected=ListRejected)
    return read_list(body, signer=key.name, zones=zones)


def read_list(body, *, signer: str, zones) -> CheckinList:
    """The verified payload as a CheckinList; `zones(name)` gives a tzinfo or raises ValueError
    (the shell's time zone database). Raises ListRejected."""
    if not isinstance(body, dict):
        raise ListRejected("malformed", "payload must be a CBOR map")
    unknown = set(body) - set(range(1, 11))
    if unknown:
        raise ListRejected("unsupported", f"unknown payload keys {briefs(unknown)}")
    settings, times = _map(body, LIST, "list", LIST_KEYS), _map(body, TIMES, "times", TIMES_KEYS, TIMES_OPTIONAL)
    rules_text = settings["rules"]
    if not isinstance(rules_text, str):
        raise ListRejected("malformed", "list.rules must be JSON text")
    try:
        rules = json.loads(rules_text) if rules_text else {}
        check_rules(rules)
    except (ValueError, RecursionError) as exc:  # json's JSONDecodeError and RuleError are ValueErrors
        raise ListRejected("bad_rules", f"the list's rules cannot be evaluated here: {exc}") from None
    tz_name = times["tz"]
    try:
        if not isinstance(tz_name, str):
            raise ValueError("not text")
        tz = zones(tz_name)
    except (ValueError, KeyError, OSError) as exc:
        raise ListRejected(
            "malformed", f"times.tz {brief(tz_name)} is not a known time zone ({str(exc)[:80]})"
        ) from None
    series = times.get("subevents", {})
    if type(series) is not dict or not all(
        cose.is_uint(k) and type(v) is list and len(v) == 3 for k, v in series.items()
    ):
        raise ListRejected("malformed", "times.subevents must map date ids to [from, to, admission]")
    subevent_times = {
        k: EventTimes(
            tz=tz,
            date_from=_uint(v[0], "times.subevents"),
            date_to=_optional_uint(v[1], "times.subevents"),
            date_admission=_optional_uint(v[2], "times.subevents"),
        )
        for k, v in series.items()
    }
    gates = body.get(GATES)
    if type(gates) is not dict or not all(cose.is_uint(k) and isinstance(v, str) for k, v in gates.items()):
        raise ListRejected("malformed", "gates (7) must map pretix gate ids to gate names")
    return CheckinList(
        site=_text(body, SITE, "site"),
        version=_positive(body.get(VERSION), "version"),
        iat=_uint(body.get(IAT), "iat"),
        event=_text(body, EVENT, "event"),
        list_id=_uint(settings["id"], "list.id"),
        name=_str(settings["name"], "list.name"),
        include_pending=_bool(settings["include_pending"], "list.include_pending"),
        allow_multiple_entries=_bool(settings["allow_multiple_entries"], "list.allow_multiple_entries"),
        allow_entry_after_exit=_bool(settings["allow_entry_after_exit"], "list.allow_entry_after_exit"),
        all_products=_bool(settings["all_products"], "list.all_products"),
        limit_products=frozenset(_uints(settings["limit_products"], "list.limit_products")),
        subevent=_optional_uint(settings["subevent"], "list.subevent"),
        rules=rules,
        exit_all_at=_optional_uint(settings["exit_all_at"], "list.exit_all_at"),
        times=EventTimes(
            tz=tz,
            date_from=_uint(times["date_from"], "times.date_from"),
            date_to=_optional_uint(times["date_to"], "times.date_to"),
            date_admission=_optional_uint(times["date_admission"], "times.date_admission"),
        ),
        tz_name=tz_name,
        gates=dict(gates),
        pending=frozenset(_ids(body.get(PENDING), "pending")),
        unapproved=frozenset(_ids(body.get(UNAPPROVED), "unapproved")),
        questions=frozenset(_uints(body.get(QUESTIONS), "questions")),
        signer=signer,
        subevent_times=subevent_times,
    )


def describe(clist: CheckinList) -> dict:
    """The list as `gated status` and the metrics show it."""
    return {
        "name": clist.name,
        "id": clist.list_id,
        "version": clist.version,
        "event": clist.event,
        "rules": bool(clist.rules),
    }


def _map(body, key, name, keys, optional=frozenset()) -> dict:
    value = body.get(key)
    if type(value) is not dict or not all(isinstance(k, str) for k in value):
        raise ListRejected("malformed", f"{name} ({key}) must be a map with text keys")
    if set(value) - keys - optional:
        raise ListRejected(
            "unsupported", f"{name} has keys this gate does not know: {briefs(set(value) - keys - optional)}"
        )
    if keys - set(value):
        raise ListRejected("malformed", f"{name} lacks {sorted(keys - set(value))}")
    return value


def _text(body, key, name) -> str:
    return _str(body.get(key), f"{name} ({key})")


def _str(value, name) -> str:
    if not isinstance(value, str):
        raise ListRejected("malformed", f"{name} must be text")
    return value


def _bool(value, name) -> bool:
    if value is not True and value is not False:
        raise ListRejected("malformed", f"{name} must be true or false")
    return value


def _uint(value, name) -> int:
    if not cose.is_uint(value):
        raise ListRejected("malformed", f"{name} must be an unsigned integer")
    return value


def _positive(value, name) -> int:
    if _uint(value, name) == 0:
        raise ListRejected("malformed", f"{name} must be above 0")
    return value


def _optional_uint(value, name) -> int | None:
    return None if value is None else _uint(value, name)


def _uints(value, name) -> list[int]:
    if type(value) is not list:
        raise ListRejected("malformed", f"{name} must be an array of unsigned integers")
    return [_uint(v, name) for v in value]


def _ids(value, name) -> list[bytes]:
    if type(value) is not list or not all(type(i) is bytes and len(i) == 16 for i in value):
        raise ListRejected("malformed", f"{name} must be an array of 16-byte ticket ids")
    return value
