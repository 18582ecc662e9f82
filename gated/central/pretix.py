"""The central side against a pretix shop's REST API (docs/pretix.md): keys, revocations, admissions.

    fetch_keys()         the event resource's `valid_keys.pretix_sig1`: base64 of PEM public keys
    sync_revocations()   `revokedsecrets` (changed, re-issued tickets) and `blockedsecrets`
                         (blocked: revoke; unblocked: remove again) into signed revocation updates
    upload_admissions()  every admission in the ledger to the check-in RPC (`checkinrpc/redeem`),
                         with the scan's time and a nonce derived from the event id

pretix speaks HTTPS with JSON; the standard library's urllib is enough, so the central side
needs no HTTP library and nothing of pretix (gated/central/pretix_http.py: https only, the token kept
on the shop's origin, answers bounded in size and time). Every answer is parsed inside its own boundary: an
unreachable server, an HTTP error or a body that is not what the API documents is a PretixError
naming the request, and nothing is written (the sync and upload states change only after a
complete, well-formed fetch).

Restart safety. `sync_revocations` keeps its state in one SQLite file: the cursors (`created` of
revoked secrets, `updated` of blocked ones, re-read with an overlap since pretix filters with >=
and a row may commit after a later one; never past the local time less the overlap, so a time
from the future, a clock jump in the shop or a hostile answer, cannot make the sync skip what comes
later), the ticket ids pretix revoked and blocked, the list the
gates were sent, and an outbox of signed updates. Fetching, computing the delta, signing it and
advancing the cursors is one transaction; publishing comes after, and an update is marked sent
only when the broker acknowledged it. Killed at any point, the next run republishes the same
bytes (never a different update under the same version) and goes on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import structlog

from gated.central.pretix_http import Http, PretixHttpError
from gated.core import cose, revocation
from gated.core.errors import GatedError
from gated.core.pretix_secret import ticket_id
from gated.sqlitedb import write_transaction

log = structlog.get_logger("gated.pretix")

OVERLAP = timedelta(minutes=5)
MAX_PAGES = 10_000


class PretixError(GatedError, RuntimeError):
    """pretix could not be asked, or answered something the API does not document."""


# --- the HTTP client -------------------------------------------------------------------------


class PretixClient:
    """One organizer on one pretix server. `auth` is "Token <team API token>" or "Device <device
    API token>" (pretix's token and device authentication). The connection's rules (https only,
    one origin, bounded answers) are gated/central/pretix_http.py's."""

    def __init__(self, url: str, organizer: str, auth: str, *, insecure_http: bool = False, **limits):
        try:
            self.http = Http(
                url, {"Authorization": auth, "Accept": "application/json"}, insecure_http=insecure_http, **limits
            )
        except PretixHttpError as exc:
            raise PretixError(str(exc)) from None
        self.base = url.rstrip("/") + f"/api/v1/organizers/{urllib.parse.quote(organizer, safe='')}/"

    def _request(self, method: str, path: str, params: dict | None = None, body: dict | None = None):
        url = self.base + path + ("?" + urllib.parse.urlencode(params, doseq=True) if params else "")
        data = json.dumps(body).encode() if body is not None else None
        try:
            status, raw = self.http.request(method, url, data, "application/json" if data is not None else None)
        except PretixHttpError as exc:
            raise PretixError(str(exc)) from None
        try:
            answer = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError, RecursionError):
            answer = None
            if status < 400:
                raise PretixError(f"{method} {url}: HTTP {status} with a body that is not JSON") from None
        return status, answer

    def get(self, path: str, params: dict | None = None) -> dict:
        status, answer = self._request("GET", path, params)
        if status != 200 or not isinstance(answer, dict):
            raise PretixError(f"GET {self.base}{path}: HTTP {status}: {_short(answer)}")
        return answer

    def pages(self, path: str, params: dict | None = None):
        """Every result of a paginated list (pretix's `results`, `next`), page by page."""
        for page in range(1, MAX_PAGES + 1):
            answer = self.get(path, {**(params or {}), "page": page})
            results = answer.get("results")
            if not isinstance(results, list):
                raise PretixError(f"GET {self.base}{path}: no `results` list in the answer")
            yield from results
            if not answer.get("next"):
                return
        raise PretixError(f"GET {self.base}{path}: more than {MAX_PAGES} pages")

    def post(self, path: str, body: dict) -> tuple[int, dict | None]:
        status, answer = self._request("POST", path, None, body)
        return status, answer if isinstance(answer, dict) else None


def _short(answer) -> str:
    return json.dumps(answer)[:200] if answer is not None else "no JSON body"


def _event_path(event: str) -> str:
    return f"events/{urllib.parse.quote(event, safe='')}/"


def _text(row: dict, key: str, where: str) -> str:
    value = row.get(key) if isinstance(row, dict) else None
    if not isinstance(value, str) or not value:
        raise PretixError(f"{where}: an entry without a text `{key}`: {_short(row)}")
    return value


_REQUIRED = object()


def _field(row: dict, key: str, where: str, *, want: str, valid, default=_REQUIRED):
    """`row[key]` if `valid(value)`; missing or null gives `default` where one is given; anything
    else is a PretixError naming the field (a hostile or broken answer, never a TypeError later)."""
    value = row.get(key) if isinstance(row, dict) else None
    if value is None and default is not _REQUIRED:
        return default
    if not valid(value):
        raise PretixError(f"{where}: `{key}` is not {want}: {_short(value)}")
    return value


def _id(row: dict, key: str, where: str, *, default=_REQUIRED) -> int:
    """A pretix id, as a gate reads it (cose.is_uint: no bool, at most 2**63 - 1)."""
    return _field(row, key, where, want="an id (an unsigned integer)", valid=cose.is_uint, default=default)


def _ids(row: dict, key: str, where: str) -> list[int]:
    """A list of pretix ids; missing or null is none."""
    return _field(
        row,
        key,
        where,
        want="a list of ids (unsigned integers)",
        valid=lambda v: isinstance(v, list) and all(cose.is_uint(i) for i in v),
        default=[],
    )


def _time(row: dict, key: str, where: str) -> datetime:
    """The row's time in UTC. Any ISO 8601 time is used, the calendar's edges included (a time that
    falls off it in UTC is taken as its first or last moment); the cursors clamp it (_cursor)."""
    try:
        moment = datetime.fromisoformat(_text(row, key, where).replace("Z", "+00:00"))
    except ValueError:
        raise PretixError(f"{where}: `{key}` is not an ISO 8601 time: {_short(row)}") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:  # 9999-12-31T23:00-05:00 or 0001-01-01T00:00+01:00
        return (datetime.max if moment.year > 1 else datetime.min).replace(tzinfo=timezone.utc)


# --- device initialization -------------------------------------------------------------------


def initialize_device(url: str, token: str, *, software_version: str, insecure_http: bool = False) -> dict:
    """pretix's device handshake (POST /api/v1/device/initialize with the one-time token): the
    device's organizer, id, name and API token. A used or revoked token is pretix's answer, said."""
    client = PretixClient(url, "-", "", insecure_http=insecure_http)
    client.base = url.rstrip("/") + "/api/v1/"  # the handshake is not below an organizer
    status, answer = client._request(
        "POST",
        "device/initialize",
        None,
        {
            "token": token,
            "hardware_brand": "gated",
            "hardware_model": "gate central",
            "os_name": "Linux",
            "software_brand": "gated",
            "software_version": software_version,
        },
    )
    if status != 200 or not isinstance(answer, dict):
        detail = answer.get("token") if isinstance(answer, dict) and answer.get("token") else _short(answer)
        raise PretixError(
            f"pretix device initialization at {url}: HTTP {status}: "
            f"{' '.join(detail) if isinstance(detail, list) else detail}"
        )
    for key in ("api_token", "organizer", "device_id", "name"):
        if not answer.get(key) and answer.get(key) != 0:
            raise PretixError(f"pretix device initialization at {url}: no `{key}` in the answer")
    if not isinstance(answer["api_token"], str) or any(c.isspace() for c in answer["api_token"]):
        raise PretixError(f"pretix device initialization at {url}: the API token is not one word")
    where = f"pretix device initialization at {url}"
    _field(answer, "organizer", where, want="a text", valid=lambda v: isinstance(v, str))
    _field(answer, "name", where, want="a text", valid=lambda v: isinstance(v, str))
    _id(answer, "device_id", where)
    return answer


# --- keys --------------------------------------------------------------------------------------


def fetch_keys(client: PretixClient, event: str) -> list[bytes]:
    """The event's pretix_sig1 public keys as PEM (the event must have issued a ticket already:
    pretix makes its key with the first secret)."""
    valid = client.get(_event_path(event)).get("valid_keys")
    keys = valid.get("pretix_sig1") if isinstance(valid, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise PretixError(f"event {event}: no valid_keys.pretix_sig1 list in the event resource")
    pems = []
    for text in keys:
        try:
            pems.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise PretixError(f"event {event}: a pretix_sig1 key that is not base64") from None
    return pems


# --- revocations -------------------------------------------------------------------------------

STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revoked (ticket BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocked (ticket BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sent (ticket BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (version INTEGER NOT NULL, part INTEGER NOT NULL, blob BLOB NOT NULL,
    acked INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (version, part));
CREATE TABLE IF NOT EXISTS uploaded (event_id TEXT PRIMARY KEY, outcome TEXT NOT NULL, at_ms INTEGER NOT NULL);
"""


class SyncState:
    """The sync's memory (one SQLite file per pretix event and site)."""

    def __init__(self, path: str | Path, *, event: str, site: str):
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self.db.executescript(STATE_SCHEMA)
        except sqlite3.Error as exc:
            raise PretixError(f"{self.path}: {exc}") from None
        for key, value in (("event", event), ("site", site)):
            stored = self.get(key)
            if stored is None:
                self.db.execute("INSERT INTO meta VALUES (?, ?)", (key, value))
            elif stored != value:
                raise PretixError(f"{self.path} is the state of {key} {stored!r}, not {value!r}")

    def get(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))

    def pending(self) -> list[tuple[int, int, bytes]]:
        return self.db.execute(
            "SELECT version, part, blob FROM outbox WHERE acked = 0 ORDER BY version, part"
        ).fetchall()

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass
class SyncResult:
    revoked_seen: int = 0
    blocked_seen: int = 0
    added: int = 0
    removed: int = 0
    version: int = 0
    published: list[int] = field(default_factory=list)


def sync_revocations(
    client: PretixClient,
    state: SyncState,
    *,
    event: str,
    site: str,
    key,
    publish,
    first_version: int = 1,
    now=time.time,
    cancelled=(),
) -> SyncResult:
    """One round: publish what a killed run left, fetch what changed in pretix, sign the delta
    (a snapshot the first time), publish it. `publish(blobs)` raises when the broker did not take
    them; the outbox keeps them for the next run. `cancelled`: the ticket ids of cancelled orders and
    positions (gated/central/pretix_orders.py), revoked as well."""
    result = SyncResult(version=int(state.get("version", 0)))
    _publish_pending(state, publish, result)
    where = f"pretix event {event}"
    revoked_since, blocked_since = state.get("revoked_since"), state.get("blocked_since")
    revoked = list(
        client.pages(
            _event_path(event) + "revokedsecrets/", {"created_since": revoked_since} if revoked_since else None
        )
    )
    blocked = list(
        client.pages(
            _event_path(event) + "blockedsecrets/", {"updated_since": blocked_since} if blocked_since else None
        )
    )
    revoked_rows = [(ticket_id(_text(r, "secret", where)), _time(r, "created", where)) for r in revoked]
    blocked_rows = [
        (ticket_id(_text(b, "secret", where)), _time(b, "updated", where), b.get("blocked")) for b in blocked
    ]
    if any(flag not in (True, False) for _, _, flag in blocked_rows):
        raise PretixError(f"{where}: a blocked secret without a true/false `blocked`")
    moment = datetime.fromtimestamp(now(), timezone.utc)
    for rows, parsed, time_key in ((revoked, revoked_rows, "created"), (blocked, blocked_rows, "updated")):
        _warn_future(rows, [entry[1] for entry in parsed], time_key, where, moment)
    result.revoked_seen, result.blocked_seen = len(revoked_rows), len(blocked_rows)
    db = state.db
    with write_transaction(db):
        db.executemany("INSERT OR IGNORE INTO revoked VALUES (?)", [(cti,) for cti, _ in revoked_rows])
        # pretix lists newest first; apply oldest first so the latest state of a secret wins
        for cti, _, flag in sorted(blocked_rows, key=lambda row: row[1]):
            db.execute(
                "INSERT OR IGNORE INTO blocked VALUES (?)" if flag else "DELETE FROM blocked WHERE ticket = ?", (cti,)
            )
        if revoked_rows:
            state.set("revoked_since", _cursor(max(t for _, t in revoked_rows), revoked_since, moment))
        if blocked_rows:
            state.set("blocked_since", _cursor(max(t for _, t, _ in blocked_rows), blocked_since, moment))
        wanted = {row[0] for row in db.execute("SELECT ticket FROM revoked UNION SELECT ticket FROM blocked")}
        wanted |= set(cancelled)
        sent = {row[0] for row in db.execute("SELECT ticket FROM sent")}
        add, remove = sorted(wanted - sent), sorted(sent - wanted)
        version = int(state.get("version", 0))
        blobs = None
        if version == 0:  # the first update: a snapshot of everything revoked or blocked
            version = first_version
            blobs = revocation.encode_updates(key, site=site, version=version, add=wanted, iat=int(now()))
            result.added = len(wanted)
        elif add or remove:
            blobs = revocation.encode_updates(
                key, site=site, version=version + 1, base=version, add=add, remove=remove, iat=int(now())
            )
            version += 1
            result.added, result.removed = len(add), len(remove)
        if blobs is not None:
            db.executemany(
                "INSERT INTO outbox (version, part, blob) VALUES (?, ?, ?)",
                [(version, part, blob) for part, blob in enumerate(blobs)],
            )
            db.execute("DELETE FROM sent")
            db.executemany("INSERT INTO sent VALUES (?)", [(cti,) for cti in wanted])
            state.set("version", version)
    result.version = version
    _publish_pending(state, publish, result)
    return result


CURSOR_FLOOR = datetime(2000, 1, 1, tzinfo=timezone.utc)  # before pretix: a cursor never needs to start earlier
FUTURE_SLACK = timedelta(minutes=2)  # the shop's clock may be this far ahead before a time is called "future"


def _cursor(newest: datetime, previous: str | None, now: datetime) -> str:
    """Where the next fetch starts: the newest time seen, less the overlap, never going back, and
    never past the local time less the overlap (so what pretix records later is still fetched)."""
    latest = now - OVERLAP
    start = min(max(newest, CURSOR_FLOOR + OVERLAP) - OVERLAP, latest)
    if previous is not None:
        start = min(max(start, _stored_time(previous)), latest)
    return start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stored_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _warn_future(rows: list[dict], moments: list[datetime], key: str, where: str, now: datetime) -> None:
    for row, moment in zip(rows, moments):
        if moment > now + FUTURE_SLACK:
            log.warning(
                "pretix record from the future: the sync cursor stays at the local time",
                where=where,
                field=key,
                value=row.get(key),
                record=_short(row),
            )


def _publish_pending(state: SyncState, publish, result: SyncResult) -> None:
    rows = state.pending()
    if not rows:
        return
    publish([blob for _, _, blob in rows])
    state.db.executemany("UPDATE outbox SET acked = 1 WHERE version = ? AND part = ?", [(v, p) for v, p, _ in rows])
    result.published.extend(sorted({v for v, _, _ in rows}))


# --- admissions ----------------------------------------------------------------------------


@dataclass
class UploadResult:
    uploaded: int = 0
    already: int = 0  # uploaded by an earlier run
    unknown: int = 0  # admitted tickets pretix does not know (not pretix tickets, another event)
    refused: list[str] = field(default_factory=list)


def nonce_for(site: str, event_id: str) -> str:
    """The check-in's nonce: the same gate event always gives the same nonce, so a retried upload
    is one check-in in pretix. Readable, within pretix's 190 characters."""
    return (
        f"gated:{site}:{event_id}"
        if len(site) + len(event_id) < 160
        else "gated:" + hashlib.sha256(f"{site}:{event_id}".encode()).hexdigest()
    )


def admissions(ledger_path: str | Path, event: str) -> list[tuple[str, str, str]]:
    """(event id, ticket id hex, ts) of every entry for `event` in the ledger (a SQLite file or a
    postgresql:// URL) that a passage timeout of the admitting gate did not roll back (a gate rolls
    back only its own admissions, as the ledger's over-admission check has it), oldest first. An
    exit scan (`dir` out) is not an entry: pretix's check-in list counts entries. Read-only."""
    from gated.central.ledger import Ledger
    from gated.central.ledgerdb import LedgerError, ledger_exists

    if not ledger_exists(ledger_path):
        raise PretixError(f"ledger {ledger_path}: no ledger database here")
    try:
        with Ledger(str(ledger_path)) as ledger:
            rows = ledger.query(
                "SELECT e.id, e.ticket, e.ts, e.body FROM events e WHERE e.kind = 'scan' AND e.decision = 'admit' "
                "AND e.ticket IS NOT NULL AND NOT EXISTS ("
                "  SELECT 1 FROM events p WHERE p.ref = e.id AND p.gate = e.gate AND p.kind = 'passage' "
                "  AND p.result = 'timeout') ORDER BY e.ts, e.id"
            )
    except LedgerError as exc:
        raise PretixError(f"ledger {ledger_path}: {exc}") from None
    out = []
    for event_id, ticket, ts, body in rows:
        scan = json.loads(body)  # stored by the ledger after its strict reader: an object
        if scan.get("event") == event and scan.get("dir", "in") != "out":
            out.append((event_id, ticket, ts))
    return out


def upload_admissions(
    client: PretixClient, state: SyncState, *, ledger_path, event: str, site: str, checkin_list: int, now=time.time
) -> UploadResult:
    """Each admission not yet uploaded goes to pretix's check-in RPC, forced (it happened), with
    its time and nonce. Ticket ids are matched to secrets through the check-in list's positions
    (whatever their order's state) and the event's revoked secrets (a ticket admitted before it was
    revoked is still that position's entry); both are open to a pretixSCAN device."""
    result = UploadResult()
    todo = []
    for event_id, cti, ts in admissions(ledger_path, event):
        if state.db.execute("SELECT 1 FROM uploaded WHERE event_id = ?", (event_id,)).fetchone():
            result.already += 1
        else:
            todo.append((event_id, cti, ts))
    if not todo:
        return result
    where = f"pretix event {event}"
    secrets = {}
    for row in client.pages(_event_path(event) + f"checkinlists/{checkin_list}/positions/", {"ignore_status": "true"}):
        secret = _text(row, "secret", where)
        secrets[ticket_id(secret).hex()] = secret
    for row in client.pages(_event_path(event) + "revokedsecrets/"):
        secret = _text(row, "secret", where)
        secrets.setdefault(ticket_id(secret).hex(), secret)
    for event_id, cti, ts in todo:
        secret = secrets.get(cti)
        if secret is None:
            result.unknown += 1
            continue
        status, answer = client.post(
            "checkinrpc/redeem/",
            {
                "secret": secret,
                "source_type": "barcode",
                "lists": [checkin_list],
                "type": "entry",
                "datetime": ts,
                "force": True,
                "ignore_unpaid": True,
                "questions_supported": False,
                "nonce": nonce_for(site, event_id),
            },
        )
        outcome = answer.get("status") if answer else None
        if status in (200, 201) and outcome == "ok":
            result.uploaded += 1
            state.db.execute("INSERT OR REPLACE INTO uploaded VALUES (?, 'ok', ?)", (event_id, int(now() * 1000)))
        elif status < 500 and outcome == "error":
            # pretix answered for this ticket (e.g. `invalid`): retrying would get the same answer
            reason = answer.get("reason")
            result.refused.append(f"{event_id}: {reason}")
            state.db.execute(
                "INSERT OR REPLACE INTO uploaded VALUES (?, ?, ?)", (event_id, f"refused: {reason}", int(now() * 1000))
            )
        else:
            raise PretixError(f"POST checkinrpc/redeem/ for {event_id}: HTTP {status}: {_short(answer)}")
    return result
