"""The gate's state: one SQLite file per gate (WAL, synchronous=FULL), numbered migrations.

Tables and their numbered migrations: gated/gate/schema.py.

Every write that makes an event is one transaction with the event: an admission and its scan
event are committed together or not at all, and `seq`/`prev` are read and advanced inside it.
The store is the one writer; callers on other threads hand work to the owner thread.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from gated.core import confirmation, events
from gated.core.decide import Facts
from gated.core.errors import GatedError
from gated.gate import schema
from gated.sqlitedb import NewerSchema, table_names, use_wal, write_transaction

CENTRAL_OCCUPANCY_KEY = "occupancy.central"  # the ledger's last retained occupancy message, as received


CACHE_KIB = 16384  # SQLite's page cache, fixed: hot b-tree pages of the revocation list (16 MiB)
SORT_CACHE_KIB = 4096  # while a staged snapshot is sorted into the list: the sorter's memory runs


class StoreError(GatedError, RuntimeError):
    """The state database failed. The gate stays shut; check the disk and the file's permissions."""


# What a damaged state's error says to do (a fresh state would reuse event ids the ledger holds)
DAMAGED_NEXT_STEP = (
    "the gate will not run on it: start a new chain with `gated replace --move-aside` "
    '(docs/install-pi.md, "Replacing a gate")'
)


class StoreCorrupt(StoreError):
    """`PRAGMA quick_check` found damage: the gate refuses to start on it (an index that lies could
    make used tickets read as unused). Start a new chain: `gated replace --move-aside` (docs/install-pi.md, "Replacing a gate")."""


@dataclass(frozen=True)
class RevocationState:
    site: str | None
    version: int
    iat: int
    applied_ms: int
    stale: bool  # a gap was seen: waiting for a snapshot or the missing deltas


@dataclass(frozen=True)
class StoreSummary:
    """What a gate's state holds, in figures (`gated doctor`): read without writing a byte."""

    site: str | None
    gate: str | None
    seq: int  # events made
    outbox: int  # events waiting for the broker (or the ledger)
    pending: int  # admissions waiting for their passage
    revocations: RevocationState
    values: dict  # the small persistent values (get_value/set_value): the clock's trust, the command nonce

    def value(self, key: str, default=None):
        return self.values.get(key, default)


VALUE_PREFIX = "x:"  # meta keys of the small persistent values


def read_summary(path: str | os.PathLike) -> StoreSummary:
    """The summary of the state file at `path`, opened read-only (the running gate stays its only
    writer; nothing is created or migrated). StoreError when it cannot be read, StoreCorrupt when
    `PRAGMA quick_check` finds damage (the gate refuses to start on it)."""
    try:
        db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as exc:
        raise StoreError(str(exc)) from exc
    try:
        problems = [row[0].replace("\n", " ") for row in db.execute("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise StoreCorrupt(f"damaged, quick_check: {'; '.join(problems)}; the gate will not run on it")
        return _summary(db)
    except sqlite3.Error as exc:
        raise StoreError(str(exc)) from exc
    finally:
        db.close()


def _summary(db) -> StoreSummary:
    meta = dict(db.execute("SELECT key, value FROM meta WHERE key NOT IN ('device_key')").fetchall())
    (outbox,) = db.execute("SELECT COUNT(*) FROM outbox").fetchone()
    (pending,) = db.execute("SELECT COUNT(*) FROM admissions WHERE state = 'pending'").fetchone()
    return StoreSummary(
        site=meta.get("site"),
        gate=meta.get("gate"),
        seq=int(meta.get("seq", 0)),
        outbox=outbox,
        pending=pending,
        revocations=_revocation_state(meta.get),
        values={k[len(VALUE_PREFIX) :]: v for k, v in meta.items() if k.startswith(VALUE_PREFIX)},
    )


def _revocation_state(meta) -> RevocationState:
    """The list's state from the meta values (`meta(key, default)`)."""
    return RevocationState(
        site=meta("rev_site"),
        version=int(meta("rev_version", 0)),
        iat=int(meta("rev_iat", 0)),
        applied_ms=int(meta("rev_applied_ms", 0)),
        stale=bool(meta("rev_stale", 0)),
    )


# a ticket valid longer than this (exp - nbf) is open-ended: a pretix code without validUntil (exp
# 2^63-1) or without validFrom (nbf 0). It says nothing of how long tickets live (max_validity_s):
# its admissions go by event, or with [state] open_ended_days by age (gated/gate/prune.py)
OPEN_ENDED_S = 5 * 366 * 86400

# The broker's PUBACK marks (mark_delivered) are committed in groups, not one commit (one fsync of the WAL)
# per PUBACK: with the next write transaction (a scan's: no fsync of their own), or on their own once this
# many wait or the oldest has waited this long; the store's reads see them at once (_marked). A power cut
# before that sends those rows again: the ledger drops duplicates by event id (docs/protocol.md, "Events
# out: the outbox").
MARKS_ROWS = 64
MARKS_S = 5.0


class GateStore:
    def __init__(
        self, path: str | os.PathLike, *, site: str | None = None, gate: str | None = None, own_directory: bool = False
    ):
        """Open (or create) a gate's state. With site/gate None the stored identity is adopted
        (a new file becomes site 'local', gate 'desk': the desk tools' scratch state).
        The file holds the device's private key: it is made 0600 (and a directory created for it
        0700, or the directory in any case with `own_directory`, the daemon's state directory)
        whatever the umask, and it is checked (`PRAGMA quick_check`) before use: damage is StoreCorrupt."""
        self.path = Path(path)
        self.site, self.gate = site, gate
        self.fault: str | None = None  # the last write's error, until a write succeeds again
        # unix ms now -> unix ms the venue's day started (gated.daystart.DayStart.before): occupancy
        # counts movements since then; None: every movement stored
        self.day_start: Callable[[int], int] | None = None
        self._lock = threading.RLock()
        self._marks: list[tuple[int, int]] = []  # (broker ms, seq) PUBACK marks waiting for a write transaction
        self._marks_since = 0.0
        _make_private(self.path, own_directory)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            self._quick_check()
            self._refuse_other_files()
            use_wal(self._db)  # eight processes opening one new file at once: all start
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            self._db.execute("PRAGMA journal_size_limit=67108864")  # a big update's WAL shrinks back to 64 MiB
            self._db.execute("PRAGMA foreign_keys=ON")
            schema.migrate(self._db)
            self._check_identity()
            self._device_key = self._load_or_make_device_key()
            self._rev_state = self._read_revocation_state()
            self._synced = not int(self._meta("needs_sync", 0))
            self._max_validity = int(self._meta("max_validity_s", 0))
            self._open_ended = bool(int(self._meta("open_ended", 0)))
            if self._max_validity > OPEN_ENDED_S:  # kept by an older gated: it was an open-ended ticket's
                self._max_validity, self._open_ended = 0, True
            _make_private(self.path, own_directory)  # -wal and -shm, made by SQLite with the file's mode: check them
        except NewerSchema as exc:
            self._db.close()
            raise StoreError(f"{self.path}: the gate state was {exc}") from None
        except sqlite3.Error as exc:
            if "malformed" in str(exc) or "not a database" in str(exc):
                raise StoreCorrupt(f"{self.path}: the gate state is damaged ({exc}); {DAMAGED_NEXT_STEP}") from exc
            raise StoreError(
                f"{self.path}: cannot open the gate state ({exc}); check disk space and permissions"
            ) from exc

    def _refuse_other_files(self) -> None:
        """A SQLite file with tables but not a gate state's (a ledger given as the state by mistake)
        is not made one, nor switched to WAL: it is left as it was."""
        tables = table_names(self._db)
        if not tables or "outbox" in tables:
            return
        self._db.close()
        what = "a ledger" if {"events", "gate_progress"} <= tables else "a SQLite file with other tables"
        raise StoreError(f"{self.path}: not a gate's state but {what}: give the gate its own state file")

    # --- plumbing ---------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            try:
                self.flush_marks()
            except StoreError:
                pass  # those rows are sent again after the restart; the ledger drops the duplicates
            self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextmanager
    def _tx(self):
        """One write transaction. A failure (a full disk...) is a StoreError and is kept in `fault`
        until a later write succeeds: the daemon reports it (health, an alarm) and keeps running."""
        with self._lock:
            marks = list(self._marks)
            changes = self._db.total_changes
            try:
                with write_transaction(self._db):
                    if marks:  # waiting PUBACK marks ride on this commit (MARKS_ROWS)
                        _apply_marks(self._db, marks)
                    yield self._db
                if marks:
                    self._marks = self._marks[len(marks) :]
            except sqlite3.Error as exc:
                self.fault = f"write failed ({exc})"
                raise StoreError(f"{self.path}: write failed ({exc}); the gate stays shut") from exc
            # A transaction that changed no row commits without writing to the disk: it tells
            # nothing of a full one (it would end the fault, and the next write raise it again).
            if self._db.total_changes != changes:
                self.fault = None

    def _quick_check(self) -> None:
        rows = [r[0] for r in self._db.execute("PRAGMA quick_check(5)")]
        if rows != ["ok"]:
            self._db.close()
            raise StoreCorrupt(
                f"{self.path}: the gate state is damaged (quick_check: {'; '.join(rows)}); {DAMAGED_NEXT_STEP}"
            )

    def _meta(self, key: str, default=None):
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def _set_meta(self, db, key: str, value) -> None:
        db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _check_identity(self) -> None:
        site, gate = self._meta("site"), self._meta("gate")
        if self.site is None:
            self.site, self.gate = site or "local", gate or "desk"
        if site is None:
            with self._tx() as db:
                self._set_meta(db, "site", self.site)
                self._set_meta(db, "gate", self.gate)
        elif (site, gate) != (self.site, self.gate):
            raise StoreError(
                f"{self.path} belongs to gate {gate!r} at site {site!r}, not {self.gate!r} at {self.site!r}"
            )

    def _load_or_make_device_key(self) -> Ed25519PrivateKey:
        raw = self._meta("device_key")
        if raw is None:
            key = Ed25519PrivateKey.generate()
            raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
            with self._tx() as db:
                self._set_meta(db, "device_key", raw)
        return Ed25519PrivateKey.from_private_bytes(raw)

    @property
    def device_public_key(self):
        return self._device_key.public_key()

    def floor_signature(self, site: str, floor: int) -> str:
        """`floor_sig` for a status announcing `floor` (gated/core/confirmation.py): by the device key."""
        return confirmation.seal_floor(site, self.gate, floor, self._device_key)

    # --- facts ------------------------------------------------------------------------------

    def facts(
        self,
        cti: bytes | None,
        step: int | None = None,
        *,
        zone: str | None = None,
        count_zone: bool = False,
        now_ms: int | None = None,
    ) -> Facts:
        """What decide() needs about one ticket, in one query (this is on the scan path). Entries
        spent count entries that were not re-entries; `outside`: the ticket has left since its last
        exit: more exits recorded than re-entries (counted, not ordered by time: gates' clocks differ and
        events arrive in any order). With `count_zone` (a gate with a capacity), the people inside `zone` too."""
        rev = self._rev_state.version
        inside, source = self.zone_occupancy(zone, now_ms) if count_zone else (0, "")
        if cti is None:
            return Facts(rev_version=rev, zone_inside=inside, occupancy_source=source, synced=self._synced)
        with self._lock:
            revoked, count, step_seen, last_dir = self._db.execute(
                "SELECT EXISTS (SELECT 1 FROM revoked WHERE cti = ?1),"
                " (SELECT COUNT(*) FROM admissions WHERE cti = ?1 AND dir = 'in' AND reentry = 0)"
                " + (SELECT COUNT(*) FROM peer_admissions WHERE cti = ?1 AND dir = 'in' AND reentry = 0),"
                " EXISTS (SELECT 1 FROM admissions WHERE cti = ?1 AND step = ?2 AND dir = 'in')"
                " OR EXISTS (SELECT 1 FROM peer_admissions WHERE cti = ?1 AND step = ?2 AND dir = 'in'),"
                " (SELECT COALESCE(SUM(CASE WHEN dir = 'out' THEN 1 WHEN reentry = 1 THEN -1 ELSE 0 END), 0) FROM"
                "  (SELECT dir, reentry FROM admissions WHERE cti = ?1 UNION ALL"
                "   SELECT dir, reentry FROM peer_admissions WHERE cti = ?1))",
                (cti, step),
            ).fetchone()
        return Facts(
            revoked=bool(revoked),
            admissions=count,
            step_seen=bool(step_seen),
            rev_version=rev,
            outside=last_dir > 0,
            zone_inside=inside,
            occupancy_source=source,
            synced=self._synced,
        )

    def occupancy_since(self, now_ms: int | None) -> int:
        """Unix ms from which movements count (the venue's day start, `day_start`), or 0: all."""
        return self.day_start(now_ms) if self.day_start is not None and now_ms is not None else 0

    def local_occupancy(self, zone: str | None, since_ms: int = 0) -> int:
        """People inside `zone` as this gate knows it: entries (own and peers', re-entries too, not
        rolled back) less exits (scanned and free), made at or after `since_ms`. Never below 0."""
        with self._lock:
            (inside,) = self._db.execute(
                "SELECT (SELECT COALESCE(SUM(CASE dir WHEN 'in' THEN 1 ELSE -1 END), 0) FROM admissions"
                "  WHERE zone IS ?1 AND ts_ms >= ?2)"
                " + (SELECT COALESCE(SUM(CASE dir WHEN 'in' THEN 1 ELSE -1 END), 0) FROM peer_admissions"
                "  WHERE zone IS ?1 AND ts_ms >= ?2)"
                " - (SELECT COUNT(*) FROM free_exits WHERE zone IS ?1 AND ts_ms >= ?2)",
                (zone, since_ms),
            ).fetchone()
        return max(0, inside)

    def zone_occupancy(self, zone: str | None, now_ms: int | None = None, max_age_ms: int = 30_000) -> tuple[int, str]:
        """(people inside `zone`, which figure): "central" while the ledger's retained occupancy
        message is under `max_age_ms` old and counts from the same day start as this gate (its
        figure plus the movements this gate knows of that came after it: events with a seq above
        the message's `as_of` for their gate), else "local" (this gate's own and its peers' events
        alone). Only movements since the day start count (`day_start`)."""
        since = self.occupancy_since(now_ms)
        central = self._central(zone, now_ms, max_age_ms, since)
        if central is None:
            return self.local_occupancy(zone, since), "local"
        figure, as_of = central
        with self._lock:
            rows = self._db.execute(
                "SELECT gate, CAST(substr(scan_id, length(gate) + 2) AS INTEGER), dir FROM admissions"
                " WHERE zone IS ?1 AND ts_ms >= ?2"
                " UNION ALL SELECT gate, seq, dir FROM peer_admissions WHERE zone IS ?1 AND ts_ms >= ?2"
                " UNION ALL SELECT gate, seq, 'out' FROM free_exits WHERE zone IS ?1 AND ts_ms >= ?2",
                (zone, since),
            ).fetchall()
        later = sum(1 if d == "in" else -1 for gate, seq, d in rows if seq > as_of.get(gate, 0))
        return max(0, figure + later), "central"

    def _central(self, zone: str | None, now_ms: int | None, max_age_ms: int, since_ms: int) -> tuple[int, dict] | None:
        raw = self.get_value(CENTRAL_OCCUPANCY_KEY)
        if raw is None or now_ms is None:
            return None
        try:
            message = json.loads(raw)
            figure = message["zones"].get(zone if zone is not None else "", {"inside": 0})["inside"]
            age, as_of = now_ms - int(message["received_ms"]), message["as_of"]
            counted_from = int(message.get("since_ms", 0))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if type(figure) is not int or not isinstance(as_of, dict) or not 0 <= age <= max_age_ms:
            return None
        if counted_from != since_ms:  # the ledger counts from another day start (or none): not this gate's figure
            return None
        return figure, as_of

    def set_central_occupancy(
        self, zones: dict, received_ms: int, as_of: dict | None = None, since_ms: int = 0
    ) -> None:
        """Keep the ledger's latest figures ({zone: {"inside": n, ...}}, {gate: seq}, the day start
        it counted from; already checked by the caller, gated/core/occupancy.py)."""
        self.set_value(
            CENTRAL_OCCUPANCY_KEY,
            json.dumps({"zones": zones, "received_ms": received_ms, "as_of": as_of or {}, "since_ms": since_ms}),
        )

    def is_revoked(self, cti: bytes) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM revoked WHERE cti = ?", (cti,)).fetchone() is not None

    def admissions(self, cti: bytes) -> list[dict]:
        with self._lock:
            rows = self._db.execute(
                "SELECT scan_id, gate, step, ts_ms, state FROM admissions WHERE cti = ?1 UNION ALL "
                "SELECT gate || ':' || seq, gate, step, ts_ms, 'passed' FROM peer_admissions WHERE cti = ?1 "
                "ORDER BY ts_ms",
                (cti,),
            ).fetchall()
        return [dict(zip(("scan_id", "gate", "step", "ts_ms", "state"), row)) for row in rows]

    def movements(self, cti: bytes) -> list[tuple[int, str]]:
        """(ts_ms, dir) of every entry and exit of a ticket, own and peers', oldest first: the
        history a pretix check-in list's rules count (gated/gate/checkinlists.py)."""
        with self._lock:
            return self._db.execute(
                "SELECT ts_ms, dir FROM admissions WHERE cti = ?1 UNION ALL "
                "SELECT ts_ms, dir FROM peer_admissions WHERE cti = ?1 ORDER BY ts_ms",
                (cti,),
            ).fetchall()

    # --- events -----------------------------------------------------------------------------

    def _append(self, db, body: dict, ts_ms: int) -> dict:
        seq = int(self._meta("seq", 0)) + 1
        if seq > events.epoch_base(1):
            body = {**body, "epoch": events.epoch_of(seq)}  # a replaced gate's chain (start_epoch)
        event = events.seal(
            body,
            site=self.site,
            gate=self.gate,
            seq=seq,
            prev=self._meta("last_hash", events.GENESIS),
            ts_ms=ts_ms,
            key=self._device_key,
        )
        db.execute("INSERT INTO outbox (seq, event) VALUES (?, ?)", (seq, json.dumps(event, ensure_ascii=False)))
        self._set_meta(db, "seq", seq)
        self._set_meta(db, "last_hash", event["hash"])
        self._set_meta(db, "last_ts_ms", max(int(ts_ms), self.last_event_ms()))
        return event

    def last_event_ms(self) -> int:
        """The time of the newest event made (0 before the first): the gate's clock stamps no earlier."""
        return int(self._meta("last_ts_ms", 0))

    def record_scan(
        self,
        body: dict,
        ts_ms: int,
        *,
        admit_cti: bytes | None = None,
        step: int | None = None,
        confirmed: bool = False,
        exp: int | None = None,
        nbf: int | None = None,
    ) -> dict:
        """Write a scan event, and when `admit_cti` is given the admission it grants, in one transaction.
        The admission is 'pending' until `record_passage()`, unless `confirmed` (no passage sensor).
        An exit scan (body `dir` out) and a re-entry (`reentry`) are admissions of their kind."""
        with self._tx() as db:
            event = self._append(db, {"kind": "scan", **body}, ts_ms)
            if admit_cti is not None:
                db.execute(
                    "INSERT INTO admissions (scan_id, cti, step, gate, ts_ms, state, dir, reentry, zone, exp, event) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        event["id"],
                        admit_cti,
                        step,
                        self.gate,
                        ts_ms,
                        "passed" if confirmed else "pending",
                        body.get("dir", "in"),
                        int(bool(body.get("reentry"))),
                        body.get("zone"),
                        exp,
                        body.get("event"),
                    ),
                )
                if exp is not None and nbf is not None and exp - nbf > OPEN_ENDED_S:
                    if not self._open_ended:  # once: the first ticket valid without end (a pretix code)
                        self._set_meta(db, "open_ended", 1)
                        self._open_ended = True
                elif exp is not None and nbf is not None and exp - nbf > self._max_validity:
                    self._set_meta(db, "max_validity_s", exp - nbf)  # rarely: a longer-lived ticket than any before
                    self._max_validity = exp - nbf
        return event

    def record_passage(self, scan_id: str, passed: bool, ts_ms: int) -> dict:
        """Confirm an admission (somebody passed) or roll it back (timeout: the ticket works again).
        The passage of an exit scan says `dir: out`."""
        with self._tx() as db:
            row = db.execute("SELECT dir FROM admissions WHERE scan_id = ?", (scan_id,)).fetchone()
            if passed:
                db.execute("UPDATE admissions SET state = 'passed' WHERE scan_id = ?", (scan_id,))
            else:
                db.execute("DELETE FROM admissions WHERE scan_id = ?", (scan_id,))
            body = {"kind": "passage", "ref": scan_id, "result": "passed" if passed else "timeout"}
            if row is not None and row[0] == "out":
                body["dir"] = "out"
            return self._append(db, body, ts_ms)

    def record_free_exit(self, zone: str | None, ts_ms: int, mode: str) -> dict:
        """Somebody left through a free exit (no ticket): a `passage` event `dir: out, free: true`
        whose `ref` is this gate's previous event (part 1 wants an earlier id of the same gate; a
        gate's very first event is a `state` event for that). Counted in free_exits."""
        with self._tx() as db:
            if int(self._meta("seq", 0)) % (1 << events.EPOCH_SHIFT) == 0:  # the chain's first event
                self._append(db, {"kind": "state", "state": mode, "rev": self._rev_state.version}, ts_ms)
            body = {
                "kind": "passage",
                "ref": f"{self.gate}:{int(self._meta('seq'))}",
                "result": "passed",
                "dir": "out",
                "free": True,
            }
            if zone is not None:
                body["zone"] = zone
            event = self._append(db, body, ts_ms)
            db.execute(
                "INSERT INTO free_exits (gate, seq, zone, ts_ms) VALUES (?, ?, ?, ?)",
                (self.gate, event["seq"], zone, ts_ms),
            )
        return event

    def record_event(self, body: dict, ts_ms: int) -> dict:
        """An alarm or state event (body holds `kind` and its fields)."""
        with self._tx() as db:
            return self._append(db, body, ts_ms)

    def pending_admissions(self) -> list[str]:
        """Scan ids of admissions still waiting for their passage (e.g. after a crash)."""
        with self._lock:
            return [
                r[0]
                for r in self._db.execute(
                    "SELECT scan_id FROM admissions WHERE state = 'pending' AND gate = ? ORDER BY ts_ms", (self.gate,)
                )
            ]

    def record_peer_event(self, event: dict, heard_ms: int = 0) -> bool:
        """Learn another gate's admission, or its rollback; idempotent. True if it changed anything.
        `event` must have passed events.read_event() and check_seal(): its id is `<gate>:<seq>` and
        a passage's `ref` names an earlier scan of the same gate. Only that gate's own admissions
        are touched, in `peer_admissions`; this gate's own events are ignored. `heard_ms`: this
        gate's time now; a rollback's mark is kept from the later of it and the event's own time
        (a peer whose clock says 1970 would have its marks pruned at once)."""
        gate = event["gate"]
        if gate == self.gate:
            return False
        with self._tx() as db:
            if event["kind"] == "scan" and event["decision"] == "admit":
                cur = db.execute(
                    "INSERT OR IGNORE INTO peer_admissions (gate, seq, cti, step, ts_ms, dir, reentry, zone, event) "
                    + _NOT_ROLLED_BACK,
                    (
                        gate,
                        event["seq"],
                        bytes.fromhex(event["ticket"]),
                        event.get("step"),
                        _event_ms(event),
                        event.get("dir", "in"),
                        int(bool(event.get("reentry"))),
                        event.get("zone"),
                        event.get("event") if isinstance(event.get("event"), str) else None,
                    ),
                )
                return cur.rowcount > 0
            if event["kind"] == "passage" and event.get("free") is True and event.get("dir") == "out":
                return (
                    db.execute(
                        "INSERT OR IGNORE INTO free_exits (gate, seq, zone, ts_ms) VALUES (?, ?, ?, ?)",
                        (gate, event["seq"], event.get("zone"), _event_ms(event)),
                    ).rowcount
                    > 0
                )
            if event["kind"] == "passage" and event["result"] == "timeout":
                prefix, _, seq = event["ref"].rpartition(":")
                if prefix != gate or not seq.isdigit():
                    return False
                # the mark first: the admission may come after its rollback, or come again
                marked = db.execute(
                    "INSERT OR IGNORE INTO rolled_back (gate, seq, ts_ms) VALUES (?, ?, ?)",
                    (gate, int(seq), max(_event_ms(event), heard_ms)),
                ).rowcount
                deleted = db.execute(
                    "DELETE FROM peer_admissions WHERE gate = ? AND seq = ?", (gate, int(seq))
                ).rowcount
                return marked + deleted > 0
        return False

    # --- chain epochs and the admissions snapshot (docs/protocol.md, "Replacing a gate") -------

    def start_epoch(self, epoch: int, now_ms: int) -> None:
        """Make this new state the start of a new chain of its gate (a replaced card, or a damaged
        state moved aside): its first event will be `epoch * 2^40 + 1` (prev 64 zeros, `"epoch": e`
        in every event), so its ids never meet the old chain's; and until the site's admissions
        snapshot is applied (`mark_synced`) decide() is told that admissions may be missing.
        Only before the state's first event."""
        if not 1 <= epoch <= events.MAX_EPOCH:
            raise ValueError(f"epoch must be in 1..{events.MAX_EPOCH}")
        with self._tx() as db:
            if int(self._meta("seq", 0)) != 0:
                raise StoreError(f"{self.path} has made events already: a new chain starts only on a new state")
            self._set_meta(db, "seq", events.epoch_base(epoch))
            self._set_meta(db, "epoch_started_ms", now_ms)
            self._set_meta(db, "needs_sync", 1)
        self._synced = False

    @property
    def epoch(self) -> int:
        with self._lock:
            return events.epoch_of(int(self._meta("seq", 0)))

    @property
    def epoch_started_ms(self) -> int:
        with self._lock:
            return int(self._meta("epoch_started_ms", 0))

    @property
    def synced(self) -> bool:
        """False: a replaced gate that has not yet recovered the site's admissions."""
        return self._synced

    def mark_synced(self) -> None:
        with self._tx() as db:
            self._set_meta(db, "needs_sync", 0)
        self._synced = True

    def record_recovered_admissions(self, rows, event: str | None = None) -> int:
        """Admissions of `event` from the ledger's snapshot (gate, seq, cti, step, ts_ms, dir, reentry,
        zone), kept like peers' admissions (this gate's old chain's too: its seqs are not this chain's);
        idempotent, only ever adds. Not taken: a peer's admission whose rollback this gate heard
        (the snapshot was taken before it), and this chain's own admissions (the gate holds them,
        in `admissions`, or rolled them back itself). How many were new."""
        with self._tx() as db:
            chain = events.epoch_of(int(self._meta("seq", 0)))
            rows = [(*r, event) for r in rows if not (r[0] == self.gate and events.epoch_of(r[1]) == chain)]
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO peer_admissions (gate, seq, cti, step, ts_ms, dir, reentry, zone, event) "
                + _NOT_ROLLED_BACK,
                rows,
            )
            return db.total_changes - before

    # --- bounded state (gated/gate/prune.py) --------------------------------------------------

    def prune(
        self,
        *,
        expired_before_s: int,
        peers_before_ms: int,
        limit: int,
        movements: bool = True,
        events_admitted: frozenset[str] | None = None,
        open_before_ms: int | None = None,
        now_s: int = 0,
        event_grace_s: int = 0,
    ) -> dict:
        """One small batch (one short transaction, at most `limit` tickets and `limit` peer rows):
        the admissions, own and peers', of tickets that expired before `expired_before_s` (unix s;
        decide() says `expired` before it asks about admissions, so they decide nothing any more);
        with `events_admitted` (the gate's events), the admissions, own and peers', of every other
        event (decide() says `wrong_event` first) once it has been out of them for `event_grace_s`
        (noted at `now_s` the first time a batch finds it out: an event put back before then keeps
        its used tickets used); with `open_before_ms`, the admissions of tickets
        valid without end (OPEN_ENDED_S) last admitted here before it; peers' admissions made before
        `peers_before_ms` of tickets this gate never admitted (their expiry unknown here); free exits
        and marks of peers' rollbacks as old; waiting revocation deltas that can never apply (their
        base is below the list's version). `movements` False: admissions and exits stay (the gate's
        count of people inside is over every movement stored: a capacity without day_starts).
        Pending admissions (a visitor in the turnstile) are never pruned. How many rows went, per kind."""
        done = {
            "tickets": 0,
            "admissions": 0,
            "peer_admissions": 0,
            "free_exits": 0,
            "rolled_back": 0,
            "revocation_deltas": 0,
        }
        with self._tx() as db:
            done["revocation_deltas"] = db.execute(
                "DELETE FROM revocation_parts WHERE base > 0 AND base < ?", (self._rev_state.version,)
            ).rowcount
            if not movements:
                return done
            # a ticket goes whole (its entries, exits and re-entries), once its last known expiry has long
            # passed and no visitor of it is in the turnstile; admissions older than migration 7 have no
            # exp: they go by time, like peers' admissions of tickets never admitted here
            ctis = [
                r[0]
                for r in db.execute(
                    "SELECT cti FROM admissions GROUP BY cti HAVING MAX(COALESCE(exp, ?)) < ? "
                    "AND SUM(state = 'pending') = 0 LIMIT ?",
                    (events.MAX_INT, expired_before_s, limit),
                )
            ]
            ctis += [
                r[0]
                for r in db.execute(
                    "SELECT cti FROM admissions GROUP BY cti HAVING MAX(exp) IS NULL AND SUM(state = 'pending') = 0 "
                    "AND MAX(ts_ms) < ? LIMIT ?",
                    (peers_before_ms, limit),
                )
            ]
            if open_before_ms is not None:  # valid without end: by the last admission's age, here and at peers
                ctis += [
                    r[0]
                    for r in db.execute(
                        "SELECT a.cti FROM admissions a GROUP BY a.cti HAVING MIN(a.exp - a.ts_ms / 1000) > ? "
                        "AND SUM(a.state = 'pending') = 0 AND MAX(a.ts_ms) < ? AND NOT EXISTS "
                        "(SELECT 1 FROM peer_admissions p WHERE p.cti = a.cti AND p.ts_ms >= ?) LIMIT ?",
                        (OPEN_ENDED_S, open_before_ms, open_before_ms, limit),
                    )
                ]
            if ctis:
                marks = ", ".join("?" * len(ctis))
                done["tickets"] = len(ctis)
                done["admissions"] = db.execute(f"DELETE FROM admissions WHERE cti IN ({marks})", ctis).rowcount
                done["peer_admissions"] = db.execute(
                    f"DELETE FROM peer_admissions WHERE cti IN ({marks})", ctis
                ).rowcount
            # keys first (by the time index), then deleted by key: a row-value IN (subquery) would
            # have SQLite walk the whole table for every batch
            old = db.execute(
                "SELECT p.gate, p.seq FROM peer_admissions p WHERE p.ts_ms < ? AND NOT EXISTS "
                "(SELECT 1 FROM admissions a WHERE a.cti = p.cti) LIMIT ?",
                (peers_before_ms, limit),
            ).fetchall()
            db.executemany("DELETE FROM peer_admissions WHERE gate = ? AND seq = ?", old)
            done["peer_admissions"] += len(old)
            old = db.execute(
                "SELECT gate, seq FROM free_exits WHERE ts_ms < ? LIMIT ?", (peers_before_ms, limit)
            ).fetchall()
            db.executemany("DELETE FROM free_exits WHERE gate = ? AND seq = ?", old)
            done["free_exits"] = len(old)
            old = db.execute(
                "SELECT gate, seq FROM rolled_back WHERE ts_ms < ? LIMIT ?", (peers_before_ms, limit)
            ).fetchall()
            db.executemany("DELETE FROM rolled_back WHERE gate = ? AND seq = ?", old)
            done["rolled_back"] = len(old)
            if events_admitted is not None:
                gone = _events_out(db, events_admitted, now_s, event_grace_s)
                for event in sorted(gone):  # an event only one of the two tables holds deletes nothing in the other
                    done["admissions"] += db.execute(
                        "DELETE FROM admissions WHERE scan_id IN (SELECT scan_id FROM admissions "
                        "WHERE event = ? AND state != 'pending' LIMIT ?)",
                        (event, limit),
                    ).rowcount
                for event in sorted(gone):
                    old = db.execute(
                        "SELECT gate, seq FROM peer_admissions WHERE event = ? LIMIT ?", (event, limit)
                    ).fetchall()
                    db.executemany("DELETE FROM peer_admissions WHERE gate = ? AND seq = ?", old)
                    done["peer_admissions"] += len(old)
        return done

    @property
    def max_validity_s(self) -> int:
        """The longest validity (exp - nbf) of a ticket this gate has admitted, open-ended ones aside:
        how long a peer's admission of a ticket never seen here may still matter (gated/gate/prune.py)."""
        return self._max_validity

    @property
    def open_ended(self) -> bool:
        """This gate has admitted a ticket valid without end (OPEN_ENDED_S): a peer's admission of a
        ticket never seen here may matter for ever, as far as the tickets say."""
        return self._open_ended

    def state_counts(self) -> dict:
        """Rows per table that grows with use (for the season benchmark and health)."""
        with self._lock:
            return {
                t: self._db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("admissions", "peer_admissions", "free_exits", "rolled_back", "revoked", "outbox")
            }

    @property
    def last_seq(self) -> int:
        with self._lock:
            return int(self._meta("seq", 0))

    # --- outbox -----------------------------------------------------------------------------

    def outbox(self, after_seq: int = 0, limit: int = 500) -> list[tuple[int, str]]:
        with self._lock:
            return self._db.execute(
                "SELECT seq, event FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
            ).fetchall()

    def acknowledge(self, *seqs: int) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    def mark_delivered(self, seqs, now_ms: int) -> None:
        """The broker acknowledged these rows; they stay until the ledger has them (prune_confirmed).
        The marks ride on the gate's next write transaction (a scan's commit: no sync of their own),
        or commit on their own once MARKS_ROWS wait or the oldest has waited MARKS_S, and at close;
        this store's reads see them at once. A power cut before that loses only marks: those rows
        are sent again, duplicates the ledger drops by id."""
        with self._lock:
            if not self._marks:
                self._marks_since = time.monotonic()
            self._marks.extend((now_ms, s) for s in seqs)
            if len(self._marks) >= MARKS_ROWS or time.monotonic() - self._marks_since >= MARKS_S:
                self.flush_marks()

    def flush_marks(self) -> None:
        """Commit the waiting PUBACK marks now (a transaction of their own)."""
        with self._lock:
            if self._marks:
                with self._tx():
                    pass

    @contextmanager
    def _marked(self):
        """A read of `broker_ms` that sees the waiting PUBACK marks: with some waiting, inside a
        transaction that applies them and is rolled back (nothing written, nothing synced)."""
        with self._lock:
            if not self._marks or self._db.in_transaction:
                yield self._db
                return
            self._db.execute("BEGIN")
            try:
                _apply_marks(self._db, self._marks)
                yield self._db
            finally:
                self._db.execute("ROLLBACK")

    def prune_committed(self, seq: int) -> int:
        """The ledger holds every event up to `seq`: drop them from the outbox; how many went."""
        with self._tx() as db:
            return db.execute("DELETE FROM outbox WHERE seq <= ?", (seq,)).rowcount

    def prune_confirmed(self, confirmation) -> int:
        """Drop the rows a ledger's confirmation (gated.core.confirmation) covers, among those the
        broker has acknowledged: a row never handed over is sent whatever the ledger says (its
        state may have come back from a backup, and the ledger hold another event of that seq).
        How many went."""
        clauses = ["seq <= ?"] + ["seq BETWEEN ? AND ?"] * len(confirmation.held)
        params = [confirmation.seq] + [v for r in confirmation.held for v in r]
        with self._tx() as db:
            return db.execute(
                f"DELETE FROM outbox WHERE broker_ms IS NOT NULL AND ({' OR '.join(clauses)})", params
            ).rowcount

    def outbox_floor(self) -> int:
        """The lowest seq the gate still holds (its outbox's first row; with an empty outbox, the
        next seq it will make): below it, whatever a ledger lacks no gate can send again."""
        with self._lock:
            (low,) = self._db.execute("SELECT MIN(seq) FROM outbox").fetchone()
            return int(low) if low is not None else int(self._meta("seq", 0)) + 1

    def outbox_counts(self) -> tuple[int, int]:
        """(rows not yet acknowledged by the broker, rows it has acknowledged that no ledger confirmed)."""
        with self._marked():
            waiting, unconfirmed = self._db.execute(
                "SELECT COALESCE(SUM(broker_ms IS NULL), 0), COALESCE(SUM(broker_ms IS NOT NULL), 0) FROM outbox"
            ).fetchone()
            return int(waiting), int(unconfirmed)

    def lowest_unconfirmed(self) -> int | None:
        """The lowest seq the broker has acknowledged that no ledger confirmed (None: none)."""
        with self._marked():
            return self._db.execute("SELECT MIN(seq) FROM outbox WHERE broker_ms IS NOT NULL").fetchone()[0]

    def lowest_undelivered(self) -> int:
        """The lowest seq the broker has not acknowledged (with none, the next seq the gate will make)."""
        with self._marked():
            (low,) = self._db.execute("SELECT MIN(seq) FROM outbox WHERE broker_ms IS NULL").fetchone()
            return int(low) if low is not None else int(self._meta("seq", 0)) + 1

    def delivered_through(self) -> int:
        """The highest seq the broker has acknowledged that is still in the outbox (0: none)."""
        with self._marked():
            (high,) = self._db.execute("SELECT MAX(seq) FROM outbox WHERE broker_ms IS NOT NULL").fetchone()
            return int(high or 0)

    def prune_expired(self, before_ms: int) -> int:
        """Drop rows the broker acknowledged before `before_ms` that no ledger ever confirmed (the
        operator's retention bound); how many went."""
        with self._tx() as db:
            return db.execute("DELETE FROM outbox WHERE broker_ms IS NOT NULL AND broker_ms < ?", (before_ms,)).rowcount

    def outbox_depth(self) -> int:
        """Rows the broker has not acknowledged yet (the rows that wait for a ledger's confirmation
        after that: outbox_counts)."""
        with self._marked():
            return self._db.execute("SELECT COUNT(*) FROM outbox WHERE broker_ms IS NULL").fetchone()[0]

    # --- revocations ------------------------------------------------------------------------

    def revocation_state(self) -> RevocationState:
        return self._rev_state

    def _read_revocation_state(self) -> RevocationState:
        """Kept in memory: this store is the database's only writer, and every change goes through it."""
        return _revocation_state(self._meta)

    def summary(self) -> StoreSummary:
        """What this state holds, in figures (under the lock every write takes: consistent)."""
        with self._lock:
            return _summary(self._db)

    def revoked_count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM revoked").fetchone()[0]

    def mark_revocations_stale(self, stale: bool = True) -> None:
        with self._tx() as db:
            self._set_meta(db, "rev_stale", int(stale))
        self._rev_state = self._read_revocation_state()

    def apply_revocations(
        self, *, version: int, base: int, add, remove, iat: int, site: str, applied_ms: int, expected_version: int
    ) -> None:
        """Apply a whole update atomically. `expected_version` guards against a concurrent change."""
        with self._tx() as db:
            if self._rev_state.version != expected_version:
                raise StoreError("revocation list changed underneath an update; retry")
            if base == 0:
                db.execute("DELETE FROM revoked")
            db.executemany("INSERT OR IGNORE INTO revoked (cti) VALUES (?)", ((c,) for c in add))
            db.executemany("DELETE FROM revoked WHERE cti = ?", ((c,) for c in remove))
            self._now_at(db, version, iat=iat, site=site, applied_ms=applied_ms)
        self._rev_state = self._read_revocation_state()

    def _now_at(self, db, version: int, *, iat: int, site: str, applied_ms: int) -> None:
        """The list is now at `version`: what waited for older versions goes."""
        db.execute("DELETE FROM revocation_parts WHERE version <= ?", (version,))
        if int(self._meta("stage_version", 0)) <= version:
            self._clear_staging(db)
        for key, value in (
            ("rev_version", version),
            ("rev_iat", iat),
            ("rev_site", site),
            ("rev_applied_ms", applied_ms),
            ("rev_stale", 0),
        ):
            self._set_meta(db, key, value)

    def _clear_staging(self, db) -> None:
        db.execute("DELETE FROM revocation_staging")
        db.execute("DELETE FROM revocation_staged")
        db.execute("DELETE FROM meta WHERE key IN ('stage_version', 'stage_parts', 'stage_iat')")

    def stage_snapshot_part(
        self, *, version: int, part: int, parts: int, add, iat: int, site: str, applied_ms: int
    ) -> tuple[str, int]:
        """Write one verified part of a multi-part snapshot into the staging table, in one transaction;
        with the last part, build the new list from the staging table and swap it in for the old one
        in the same transaction. Only one
        snapshot is assembled at a time: a part of a newer version starts over, an older one is refused.
        Returns (what happened, parts staged so far): `applied`, `stored`, `repeated` (this part is
        already staged), `superseded` (a newer snapshot is being assembled), `mismatch` (the parts
        already staged were announced with another count). A part's work is proportional to the
        part; the last one's to the list (a sort and one pass), never to parts x list."""
        with self._tx() as db:
            if version <= self._rev_state.version:
                raise StoreError("revocation list changed underneath an update; retry")
            staging, count = int(self._meta("stage_version", 0)), int(self._meta("stage_parts", 0))
            if version < staging:
                return "superseded", 0
            if version > staging:
                self._clear_staging(db)
                for key, value in (("stage_version", version), ("stage_parts", parts), ("stage_iat", iat)):
                    self._set_meta(db, key, value)
            elif parts != count:
                return "mismatch", db.execute("SELECT COUNT(*) FROM revocation_staged").fetchone()[0]
            if db.execute("INSERT OR IGNORE INTO revocation_staged (part) VALUES (?)", (part,)).rowcount == 0:
                return "repeated", db.execute("SELECT COUNT(*) FROM revocation_staged").fetchone()[0]
            if part == 0:
                self._set_meta(db, "stage_iat", iat)
            db.executemany("INSERT OR IGNORE INTO revocation_staging (cti) VALUES (?)", ((c,) for c in add))
            staged = db.execute("SELECT COUNT(*) FROM revocation_staged").fetchone()[0]
            if staged < parts:
                return "stored", staged
            iat = int(self._meta("stage_iat", iat))
            # sorted first (SQLite's external sort: runs of at most the cache size in memory, merged
            # from temporary files), so the b-tree is written front to back, not a random page per id
            db.execute("CREATE TABLE revoked_next (cti BLOB PRIMARY KEY) WITHOUT ROWID")
            db.execute(f"PRAGMA cache_size=-{SORT_CACHE_KIB}")
            try:
                db.execute("INSERT OR IGNORE INTO revoked_next (cti) SELECT cti FROM revocation_staging ORDER BY cti")
            finally:
                db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            db.execute("DROP TABLE revoked")
            db.execute("ALTER TABLE revoked_next RENAME TO revoked")
            self._now_at(db, version, iat=iat, site=site, applied_ms=applied_ms)
        self._rev_state = self._read_revocation_state()
        return "applied", staged

    def stash_delta(self, version: int, base: int, payload: bytes) -> None:
        """Keep a delta that arrived before its base (it was verified; it is checked again when applied)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO revocation_parts (version, part, parts, base, payload) VALUES (?, 0, 1, ?, ?)",
                (version, base, payload),
            )

    def waiting_delta(self, base: int) -> tuple[int, bytes] | None:
        """A delta kept for arriving before its base, now applicable on top of `base`: (version, payload)."""
        with self._lock:
            row = self._db.execute(
                "SELECT version, payload FROM revocation_parts WHERE base = ? AND base > 0 ORDER BY version LIMIT 1",
                (base,),
            ).fetchone()
        return None if row is None else (row[0], row[1])

    def drop_waiting_delta(self, version: int) -> None:
        """Forget a kept delta that no longer verifies (its key was rotated out of the keyring)."""
        with self._tx() as db:
            db.execute("DELETE FROM revocation_parts WHERE version = ? AND base > 0", (version,))

    # --- small persistent values (command nonce, trusted time) ------------------------------

    def get_value(self, key: str, default=None):
        with self._lock:
            return self._meta(VALUE_PREFIX + key, default)

    def set_value(self, key: str, value) -> None:
        with self._tx() as db:
            self._set_meta(db, VALUE_PREFIX + key, value)

    def check_and_set_nonce(self, key: str, nonce: int) -> bool:
        """Atomically accept `nonce` only if it is above the last one accepted under `key`."""
        with self._tx() as db:
            last = self._meta(VALUE_PREFIX + key)
            if last is not None and nonce <= int(last):
                return False
            self._set_meta(db, VALUE_PREFIX + key, nonce)
            return True


def _make_private(path: Path, own_directory: bool = False) -> None:
    """The state directory 0700 when this creates it, the database and its -wal/-shm files 0600,
    whatever the umask (the file holds the device's private key). An existing directory is left as
    it is unless it is `own_directory` (a desk tool's --state may sit in a shared working directory);
    a file others can read is tightened (older versions made it with the umask)."""
    try:
        missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
        for directory in reversed(missing):
            directory.mkdir(mode=0o700, exist_ok=True)
            os.chmod(directory, 0o700)
        if own_directory and path.parent.stat().st_mode & 0o077:
            os.chmod(path.parent, 0o700)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if file.exists() and file.stat().st_mode & 0o077:
                os.chmod(file, 0o600)
    except OSError as exc:
        raise StoreError(
            f"{path}: cannot create or protect the gate state ({exc}); check the directory's owner"
        ) from exc


# the values of one peer admission (gate, seq, cti, step, ts_ms, dir, reentry, zone, event), unless
# its rollback was heard (a `passage` timeout: table rolled_back)
_NOT_ROLLED_BACK = (
    "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 "
    "WHERE NOT EXISTS (SELECT 1 FROM rolled_back WHERE gate = ?1 AND seq = ?2)"
)


def _events_in(db, table: str, but: frozenset[str]) -> list[str]:
    """The events `table` holds admissions of, other than `but`: one index step per event."""
    found, row = [], db.execute(f"SELECT MIN(event) FROM {table}").fetchone()
    while row[0] is not None:
        if row[0] not in but:
            found.append(row[0])
        row = db.execute(f"SELECT MIN(event) FROM {table} WHERE event > ?", (row[0],)).fetchone()
    return found


EVENT_OUT = "event_out:"  # meta keys: EVENT_OUT + event -> when (unix s) pruning first found it out of [gate] events


def _events_out(db, admitted: frozenset[str], now_s: int, grace_s: int) -> set[str]:
    """The events the state holds admissions of that have been out of `admitted` (the gate's events)
    for `grace_s`, by the meta keys EVENT_OUT: one is made for an event found out the first time,
    and dropped once the event is back in, or nothing of it is left."""
    out = set(_events_in(db, "admissions", admitted)) | set(_events_in(db, "peer_admissions", admitted))
    since = dict(
        db.execute("SELECT key, value FROM meta WHERE key >= ? AND key < ?", (EVENT_OUT, EVENT_OUT[:-1] + ";"))
    )
    for key in since:
        if key[len(EVENT_OUT) :] not in out:
            db.execute("DELETE FROM meta WHERE key = ?", (key,))
    for event in out - {key[len(EVENT_OUT) :] for key in since}:
        db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (EVENT_OUT + event, now_s))
    return {
        key[len(EVENT_OUT) :] for key, at in since.items() if key[len(EVENT_OUT) :] in out and at <= now_s - grace_s
    }


def _event_ms(event: dict) -> int:
    return events.parse_ts(event.get("ts")) or 0


def _apply_marks(db, marks) -> None:
    db.executemany("UPDATE outbox SET broker_ms = ? WHERE seq = ? AND broker_ms IS NULL", marks)
