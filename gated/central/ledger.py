"""The central ledger: every gate's events exactly once, with what is wrong with them.

    gated/v1/<site>/gates/+/events  --(gated/central/ledger_service.py)-->  Ledger.ingest()  -->  ledger.db

The report is gated/central/ledger_report.py and the signature audit gated/central/ledger_audit.py;
this module takes events in and checks them as they land.

Storage: a SQLite file (WAL, synchronous=FULL) or PostgreSQL, behind one small seam
(gated/central/ledgerdb.py: opening, transactions, dialect words, numbered migrations); the logic
here is written once for both. A message is acknowledged to the broker only after the transaction
holding it has committed, so a crash of the ledger loses nothing:

    events(id PK, site, gate, seq, kind, ts, ticket, decision, reason, ref, result, hash, prev, body)
                    one row per event id (`<gate>:<seq>`): a redelivered event is a no-op
    problems        chain_break, bad_signature, bad_hash, no_device_key, conflict (same id, other
                    content), malformed, wrong_site; one row per (kind, gate, seq, detail)
    quarantine      messages not stored as events (malformed, wrong site, bad hash or signature,
                    conflict), each with why: kept for inspection, never counted,
                    so a forgery cannot take the id slot of the real event
    tickets(cti, ent)  optional: admissions allowed per ticket, from `gated issue` CSVs
    gate_progress(gate, contiguous, floor)  the highest n such that events 1..n of the gate are all
                    held; published to the gate after each commit (`committed`, docs/protocol.md), so
                    the gate can drop them from its outbox and send again what is missing; and the
                    floor of its current chain
    chain_floors(gate, epoch, floor)  the highest floor of each of a gate's chains (gated/central/chains.py)

Each message is read by events.read_event (size, JSON depth, types, integer ranges, id =
gate:seq of the topic's gate) and stored alone (a savepoint each): a bad one is quarantined with
its reason and the batch goes on; only a failing database stops the ledger.

Checks, all independent of arrival order (QoS 1 redelivery and reconnects reorder messages):
  - hash and device signature: the key is the keyring entry with role `device` named after the
    gate (`gated keys device --state gate.db > g1.pub; gated keys trust --role device --name g1 g1.pub`);
    with no keyring signatures are not checked (reported as such);
  - chain: when (gate, seq) lands, its `prev` must equal the stored hash of seq-1, and the stored
    seq+1 must point back at it (seq 1 must point at 64 zeros);
  - gaps: sequence numbers missing from 1..max per gate, computed when reporting;
  - over-admission: a scan event does not carry the ticket's `ent`, so the ledger counts, per
    ticket, admissions not rolled back by a `passage` `timeout` of the same gate, and compares the count with the
    ticket's `entries` from an imported tickets CSV, or with 1 (the protocol default) when it has
    no CSV row for the ticket; `ent` 0 (unlimited) is never over-admitted. Reports say which
    limits were assumed.
"""

from __future__ import annotations

import csv
import json
import os
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import structlog
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gated.central import chains, ledger_audit, ledger_report
from gated.central import occupancy as occ
from gated.central.ledgerdb import LedgerError, open_db  # noqa: F401 (LedgerError re-exported)
from gated.core import events as ev
from gated.core.confirmation import MAX_RANGES
from gated.core.errors import GatedError
from gated.core.signed import Keyring
from gated.topics import events_topic_gate

log = structlog.get_logger("gated.ledger")

VERIFY = ("every", "chain")  # Ledger(verify=...), `gated ledger --verify`
COLUMNS = (*ledger_audit.DERIVED, "signed", "received_ms", "body")


@dataclass
class IngestResult:
    new: int = 0
    duplicates: int = 0
    rejected: int = 0
    problems: list[dict] = field(default_factory=list)
    committed: dict[str, int] = field(default_factory=dict)  # per gate in the batch: events 1..n all held
    stored: list[dict] = field(default_factory=list)  # the events this batch stored (new), for `gated ledger -v`


class Ledger:
    def __init__(
        self,
        target: str | os.PathLike,
        *,
        keyring: Keyring | None = None,
        site: str | None = None,
        workers: int = 1,
        partition: tuple[int, int] | None = None,
        verify: str = "every",
    ):
        """`target`: a SQLite file or a postgresql:// URL (gated/central/ledgerdb.py). `workers` > 1:
        check the signatures of a batch on that many threads. `partition` (i, n): store only
        the gates whose `gate_partition(gate, n)` is i, and leave the others to the other workers.
        `verify`: "every" (each event's own signature) or "chain" (each event's content vouched for by a
        verified signature: its own, or that of a later event of the same gate down the hash chain)."""
        if verify not in VERIFY:
            raise ValueError(f"verify must be one of {', '.join(VERIFY)}")
        self.keyring, self.site, self.workers, self.partition = keyring, site, workers, partition
        self.verify = verify
        self.db = open_db(target)
        self.where = self.db.where
        if site is not None:
            self._one_site(site)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="ledger-verify") if workers > 1 else None
        occ.backfill(self.db)  # movements of events stored before the occupancy tables (migration 3)
        self._keys: dict[str, object] = {}

    def _one_site(self, site: str) -> None:
        """Refuse a database that holds another site's events: ids, the (gate, seq) key and the
        committed progress are per gate, and gate ids are unique only within a site."""
        other = self.db.execute("SELECT site FROM events WHERE site <> ? LIMIT 1", (site,)).fetchone()
        if other is not None:
            self.db.close()
            raise LedgerError(
                f"{self.where} holds events of site {other[0]!r}, not {site!r}: one ledger database "
                "per site (docs/central.md)"
            )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- input ------------------------------------------------------------------------------

    def load_tickets(self, csv_path: str | os.PathLike) -> int:
        """Admissions allowed per ticket, from a `gated issue` tickets.csv (ticket_id, ..., entries)."""
        rows = []
        try:
            with open(csv_path, newline="", encoding="utf-8") as fh:
                for line, row in enumerate(csv.DictReader(fh), start=2):
                    try:
                        cti, entries = _storable(row["ticket_id"].strip().lower()), int(row.get("entries") or 1)
                    except (KeyError, ValueError, AttributeError) as exc:
                        raise LedgerError(f"{csv_path}: needs ticket_id and entries columns ({exc})") from None
                    if not 0 <= entries <= ev.MAX_INT:
                        raise LedgerError(f"{csv_path}, line {line}: entries {entries} is not in 0..2^63-1")
                    rows.append((cti, entries))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise LedgerError(f"{csv_path}: cannot read the tickets ({exc})") from None
        try:
            self.db.begin()
            self.db.executemany(
                "INSERT INTO tickets (cti, ent) VALUES (?, ?) ON CONFLICT (cti) DO UPDATE SET ent = excluded.ent", rows
            )
            self.db.commit()
        except self.db.errors as exc:
            self._rollback_quietly()
            raise LedgerError(f"{self.where}: cannot store the tickets ({exc})") from exc
        return len(rows)

    def query(self, sql: str, params=()) -> list[tuple]:
        """Rows of a read-only query (`?` placeholders) on either backend: for reports and tools."""
        try:
            return list(self.db.execute(sql, params).fetchall())
        except self.db.errors as exc:
            raise LedgerError(f"{self.where}: query failed ({exc})") from exc

    def _rollback_quietly(self) -> None:
        try:
            self.db.rollback()
        except self.db.errors as exc:
            log.error("ledger rollback failed", where=self.where, error=str(exc))

    def ingest(self, payloads, received_ms: int | None = None, *, topics=None) -> IngestResult:
        """Store a batch of event messages (bytes, str or dicts) in one transaction. `topics`: the
        topic each came on (same order), whose gate the event must name. Each message is handled
        alone (a savepoint of its own): whatever is wrong with one is quarantined with its reason,
        and the rest of the batch is stored. Only a failing database fails the batch (LedgerError)."""
        received_ms = received_ms if received_ms is not None else time.time_ns() // 1_000_000
        payloads = list(payloads)
        topics = list(topics) if topics is not None else [None] * len(payloads)
        examined = [
            e for e in self._examine_all(list(zip(payloads, topics))) if e is not None
        ]  # None: another worker's gate
        try:
            try:
                return self._store_batch(examined, received_ms, alone=False)
            except _MessageFailed:
                # one message made a statement fail (on PostgreSQL that spoils the transaction):
                # the batch again, each message in a savepoint of its own, to quarantine that one
                return self._store_batch(examined, received_ms, alone=True)
        except self.db.errors as exc:
            raise LedgerError(f"{self.where}: write failed ({exc}); the batch was not acknowledged") from exc

    def _store_batch(self, examined: list, received_ms: int, *, alone: bool) -> IngestResult:
        """One transaction. `alone`: a savepoint per message (two more round trips each, so only
        when a batch without them has failed)."""
        result = IngestResult()
        touched: set[str] = set()
        self._new: list[dict] = []  # events stored by this batch, for the chain checks at its end
        self.db.begin()
        try:
            if alone:
                for message in examined:
                    self._store_alone(message, received_ms, result)
            else:
                try:
                    for message in examined:
                        if message[3] is not None:  # refused: quarantined, one by one
                            self._store(message, received_ms, result)
                    events = [m for m in examined if m[3] is None]
                    self._store_events(events, received_ms, result)
                except Exception as exc:  # noqa: BLE001 - the batch is done again message by message
                    raise _MessageFailed() from exc
            # every gate a message named (held, quarantined or a duplicate): it hears what the ledger holds
            touched.update(m[1]["gate"] for m in examined if m[1] is not None)
            self._check_links(result, self._new, received_ms)
            result.committed = self._advance(sorted(touched), new=self._new)
        except BaseException:
            self._rollback_quietly()
            raise
        self.db.commit()
        return result

    def _advance(self, gates: list[str], floors: dict[str, int] | None = None, new=()) -> dict[str, int]:
        """Move each gate's `contiguous` (every event 1..n stored, or below the gate's signed floor:
        never coming) past what this batch filled in; `floors`: floors the gates announced
        (kept if higher than the one stored, or of another chain); `new`: the events this batch
        stored (a replaced gate's new chain starting among them moves the gate to it, unless the ledger
        followed that chain before: its first event came late). The rows
        locked on PostgreSQL after this batch's own inserts: of two workers storing one gate's
        events at once, the later one sees the earlier one's (committed) rows. No deadlock between
        workers: every worker first makes the rows it lacks, then locks its rows, each step in one
        order of gates (byte order, the same in Python and in the database), whatever the chunking.
        A few statements for all the batch's gates."""
        gates = sorted(gates)
        chunks = [gates[i : i + 500] for i in range(0, len(gates), 500)]
        for part in chunks:
            self.db.execute(
                "INSERT INTO gate_progress (gate, contiguous) VALUES "
                + ", ".join("(?, 0)" for _ in part)
                + " ON CONFLICT DO NOTHING",
                tuple(part),
            )
        starts = chains.chain_starts(new)
        committed: dict[str, int] = {}
        top = ev.MAX_INT
        for part in chunks:
            marks = ", ".join("?" * len(part))
            self.db.execute(
                f"SELECT gate FROM gate_progress WHERE gate IN ({marks}) "
                f"ORDER BY gate{self.db.byte_order}" + self.db.lock_row,
                tuple(part),
            ).fetchall()
            # a replaced gate's new chain started in this batch: its progress and floor follow the new chain from
            # its base (gated/central/chains.py; nothing below the base is the new chain's, so nothing is lost there).
            # Not a chain the ledger already knows (it has a floor of it): the late first event of an earlier chain.
            here = [(base, base + 1, gate, epoch, epoch) for base, gate, epoch in starts if gate in part]
            if here:
                self.db.executemany(
                    "UPDATE gate_progress SET contiguous = ?, floor = ? WHERE gate = ? AND "
                    f"{chains.EPOCH_OF('contiguous')} <> ? AND {chains.UNKNOWN_CHAIN}",
                    here,
                )
            if floors:  # a higher floor of the same chain, or the floor of another chain: the gate's current one
                self.db.executemany(
                    "UPDATE gate_progress SET floor = ? WHERE gate = ? AND "
                    f"(floor < ? OR {chains.EPOCH_OF('floor')} <> ?)",
                    [(floors[g], g, floors[g], ev.epoch_of(floors[g])) for g in part if g in floors],
                )
            if here or floors:  # each chain's floor kept, for when the gate has moved to another chain
                self.db.execute(chains.keep_floors(marks), tuple(part))
            self.db.execute(  # below the floor, in its chain: never coming (a replaced gate's chain: from its base)
                f"UPDATE gate_progress SET contiguous = floor - 1 WHERE gate IN ({marks}) AND floor > 0 AND "
                f"(contiguous < floor - 1 OR {chains.EPOCH_OF('contiguous')} <> {chains.EPOCH_OF('floor - 1')})",
                tuple(part),
            )
            # the end of the run of held events that starts right after `contiguous`, where there is one
            after = self.db.execute(
                "SELECT p.gate, (SELECT MIN(e.seq) FROM events e WHERE e.gate = p.gate AND e.seq > p.contiguous "
                f"{self._held('e')} AND CASE WHEN e.seq >= {top} THEN 1 = 1 "  # seq + 1 would overflow BIGINT
                f"ELSE NOT EXISTS (SELECT 1 FROM events x WHERE x.gate = e.gate AND x.seq = e.seq + 1{self._held('x')}) "
                f"END) FROM gate_progress p WHERE p.gate IN ({marks}) AND p.contiguous < {top} AND EXISTS "
                f"(SELECT 1 FROM events f WHERE f.gate = p.gate AND f.seq = p.contiguous + 1{self._held('f')})",
                tuple(part),
            ).fetchall()
            if after:
                self.db.executemany(
                    "UPDATE gate_progress SET contiguous = ? WHERE gate = ?", [(n, g) for g, n in after]
                )
            committed.update(
                self.db.execute(
                    f"SELECT gate, contiguous FROM gate_progress WHERE gate IN ({marks})", tuple(part)
                ).fetchall()
            )
        return committed

    def _held(self, alias: str) -> str:
        """SQL condition: the stored event `alias` counts as held. With a keyring, only an event
        whose device signature was checked (`signed` 1 or 2): one stored before the ledger knew the
        gate's key could be anybody's (whoever can write the gate's events topic), so the gate keeps
        its own until a checked copy arrives (_store_events then marks the stored one checked).
        Without a keyring nothing is checked and every stored event counts."""
        return f" AND {alias}.signed > 0" if self.keyring is not None else ""

    def declare_floors(self, floors: dict[str, int], heard=()) -> dict[str, int]:
        """Gates' floors, from their status (the lowest seq each still holds): what the ledger lacks
        below one is a declared loss (report), and `contiguous` moves past it. `heard`: more gates
        whose status came (a floor not believed), for their committed seq alone. Per gate, its
        committed seq."""
        gates = sorted(set(floors) | set(heard))
        if not gates:
            return {}
        try:
            self.db.begin()
            try:
                committed = self._advance(gates, floors)
            except BaseException:
                self._rollback_quietly()
                raise
            self.db.commit()
        except self.db.errors as exc:
            raise LedgerError(f"{self.where}: cannot record the gates' floors ({exc})") from exc
        return committed

    def confirmations(self, gates) -> dict[str, tuple[int, list[tuple[int, int]]]]:
        """Per gate, what the ledger tells it it holds (gated/core/confirmation.py): the committed seq
        and up to MAX_RANGES ranges above it held as well (stored; a quarantined copy is not held), in
        the gate's current chain."""
        gates = sorted(gates)
        out: dict[str, tuple[int, list[tuple[int, int]]]] = {}
        # only the chain `contiguous` is in (a replaced gate's old chain is no concern of its new state)
        same_chain = f"{chains.EPOCH_OF('e.seq')} = {chains.EPOCH_OF('p.contiguous')}"
        for i in range(0, len(gates), 500):
            part = tuple(gates[i : i + 500])
            marks = ", ".join("?" * len(part))
            try:
                for gate, n in self.db.execute(
                    f"SELECT gate, contiguous FROM gate_progress WHERE gate IN ({marks})", part
                ).fetchall():
                    out[gate] = (n, [])
                rows = self.db.execute(
                    "SELECT gate, MIN(seq), MAX(seq) FROM (SELECT e.gate, e.seq, "
                    "e.seq - ROW_NUMBER() OVER (PARTITION BY e.gate ORDER BY e.seq) AS run "
                    f"FROM events e JOIN gate_progress p ON p.gate = e.gate "
                    f"WHERE e.gate IN ({marks}) AND e.seq > p.contiguous AND {same_chain}{self._held('e')}) runs "
                    "GROUP BY gate, run ORDER BY gate, MIN(seq)",
                    part,
                ).fetchall()
            except self.db.errors as exc:
                raise LedgerError(f"{self.where}: cannot read what the ledger holds ({exc})") from exc
            for gate, a, b in rows:
                held = out.setdefault(gate, (0, []))[1]
                if len(held) < MAX_RANGES:
                    held.append((a, b))
        return out

    def committed(self) -> dict[str, int]:
        """Per gate, the highest seq n such that the ledger holds every event 1..n."""
        return dict(self.query("SELECT gate, contiguous FROM gate_progress ORDER BY gate"))

    def _examine_all(self, messages: list) -> list:
        """Each message read and its hash checked (one by one, under the GIL), then the signatures
        (on the verify threads). Per message: [text, event, key, problem kind, detail, signed], or
        None for a gate of another worker's partition."""
        examined = [self._examine_alone(*m) for m in messages]
        self._check_signatures(examined)
        return examined

    def _check_signatures(self, examined: list) -> None:
        """Judge the device signatures of the events with a key, in place: `signed` 1 (its own
        signature verifies) or 2 (sealed by a later one: `verify="chain"`), or the problem
        `bad_signature`. With "chain", one gate's events of the batch form runs linked by their
        hashes (events.chain_runs) and only the last of a run must verify: its hash covers its
        `prev`, the hash of the event before, and so on down the run, so its signature vouches
        for the content of all of them. If it does not verify it is refused, and the one before it
        must verify instead: a forged event never rides on another's signature."""
        by_gate: dict[str, list[int]] = {}
        for i, e in enumerate(examined):
            if e is not None and e[3] is None and e[2] is not None:
                by_gate.setdefault(e[1]["gate"], []).append(i)
        runs = []
        for positions in by_gate.values():
            if self.verify == "every":
                runs.extend([i] for i in positions)
            else:
                runs.extend([positions[j] for j in run] for run in ev.chain_runs([examined[i][1] for i in positions]))

        def seal(run: list[int]) -> list[tuple[int, int]]:
            verdicts = []
            while run:
                tip = examined[run[-1]]
                if ev.signature_verifies(tip[1], tip[2]):
                    return verdicts + [(run[-1], 1)] + [(i, 2) for i in run[:-1]]
                verdicts.append((run[-1], 0))
                run = run[:-1]
            return verdicts

        if self._pool is None or len(runs) < 64:
            verdicts = [v for run in runs for v in seal(run)]
        else:  # one slice per thread (ThreadPoolExecutor.map ignores chunksize); libsodium releases the GIL
            size = -(-len(runs) // self.workers)
            verdicts = [
                v
                for part in self._pool.map(
                    lambda part: [v for run in part for v in seal(run)],
                    [runs[i : i + size] for i in range(0, len(runs), size)],
                )
                for v in part
            ]
        for i, signed in verdicts:
            if signed:
                examined[i][5] = signed
            elif examined[i][1].get("epoch"):  # a replaced gate's new chain, its key not approved (yet)
                examined[i][3:5] = [
                    "unapproved_key",
                    chains.UNAPPROVED + f" (epoch {examined[i][1]['epoch']}): "
                    "approve the replaced gate's device key (gated keys enrol --replace)",
                ]
            else:
                examined[i][3:5] = ["bad_signature", "device signature does not verify"]

    def _examine_alone(self, payload, topic) -> list | None:
        """_examine() in an error boundary: a message that makes it fail is quarantined, with why.
        None: the topic names a gate of another worker's partition (that worker stores it)."""
        if self.partition is not None and topic is not None:
            gate = events_topic_gate(topic)
            if gate is not None and gate_partition(gate, self.partition[1]) != self.partition[0]:
                return None
        try:
            return self._examine(payload, topic)
        except Exception as exc:  # noqa: BLE001 - the per-message error boundary
            return [
                _body_text(payload),
                None,
                None,
                "malformed",
                f"could not be examined: {type(exc).__name__}: {exc}"[:200],
                0,
            ]

    def _store_alone(self, examined: list, received_ms: int, result: IngestResult) -> bool:
        """_store() in a savepoint: if one message makes it fail (its values: a data or integrity
        error, or any error of ours), what it wrote is undone and the message is quarantined with
        why; any other database error, or a failing quarantine, is the database's fault and fails
        the batch. True when the event is held (new or a duplicate)."""
        counts = (result.new, result.duplicates, result.rejected, len(result.problems), len(self._new))
        self.db.execute("SAVEPOINT message")
        held = False
        try:
            held = self._store(examined, received_ms, result)
        except Exception as exc:  # noqa: BLE001 - the per-message error boundary
            if isinstance(exc, self.db.errors) and not isinstance(exc, self.db.message_errors):
                raise  # the database (locked, full, gone, a deadlock), not this message: nothing is acknowledged
            self.db.execute("ROLLBACK TO SAVEPOINT message")
            result.new, result.duplicates, result.rejected = counts[:3]
            del result.problems[counts[3] :]
            del self._new[counts[4] :]
            why = f"{ledger_report.UNSTORED}: {type(exc).__name__}: {exc}"[:200]
            log.error("ledger message quarantined", why=why)
            self._quarantine(result, None, examined[0], why, received_ms)
        self.db.execute("RELEASE SAVEPOINT message")
        return held

    def _problem(self, result, kind, detail, received_ms, gate=None, seq=None, event_id=None) -> None:
        detail = _storable(detail)
        cur = self.db.execute(
            "INSERT INTO problems (kind, gate, seq, event_id, detail, received_ms) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (kind, gate or "", seq or 0, event_id, detail, received_ms),
        )
        if cur.rowcount:
            result.problems.append({"kind": kind, "gate": gate, "seq": seq, "detail": detail})

    def _quarantine(self, result, event_id, body, why, received_ms) -> None:
        """Keep a message that is not stored as an event, with why (its first MAX_BYTES characters
        when it is longer: it was refused for its size anyway; see _storable). A message with an id
        that is already kept, for the same reason, is kept once: the gate sends a refused event again
        until its retention (it is not held), and each copy would otherwise be another row."""
        body, why = _storable(body[: ev.MAX_BYTES]), _storable(why)
        if event_id is None:
            self.db.execute(
                "INSERT INTO quarantine (event_id, body, why, received_ms) VALUES (?, ?, ?, ?)",
                (event_id, body, why, received_ms),
            )
        else:
            self.db.execute(
                "INSERT INTO quarantine (event_id, body, why, received_ms) SELECT ?, ?, ?, ? WHERE NOT EXISTS "
                "(SELECT 1 FROM quarantine WHERE event_id = ? AND why = ? AND body = ?)",
                (event_id, body, why, received_ms, event_id, why, body),
            )
        # not held: a quarantined copy (a bad hash or signature, another site) is not the gate's event,
        # whoever sent it, so the gate keeps its own and sends it again; a `conflict`'s id is held by
        # the event stored under it
        result.rejected += 1

    def _examine(self, payload, topic: str | None = None) -> list:
        """Parse one message and check its hash, without the database or the signature (which
        _check_signatures() judges for the whole batch). [text, event, key, problem kind, detail, 0]."""
        text = _body_text(payload)
        gate = None
        if topic is not None:
            gate = events_topic_gate(topic)
            if gate is None:
                return [text, None, None, "malformed", f"not an events topic: {topic[:100]!r}", 0]
            if not ev.is_name(gate):  # before read_event, whose detail would quote the whole name
                return [text, None, None, "malformed", f"the topic names no gate: {topic[:100]!r}", 0]
        try:
            event = ev.read_event(text if isinstance(payload, dict) else payload, gate=gate)
        except ev.EventRejected as exc:
            return [text, None, None, "malformed", exc.detail, 0]
        if self.site is not None and event["site"] != self.site:
            return [text, event, None, "wrong_site", f"event for site {event['site']!r}", 0]
        key = self._device_key(event["gate"])
        problem = ev.hash_problem(event)
        if problem:
            return [text, event, key, "bad_hash", problem, 0]
        return [text, event, key, None, "", 0]

    def _store(self, examined: list, received_ms: int, result: IngestResult) -> bool:
        text, event, key, kind, detail, _ = examined
        if kind is not None:
            if event is None:  # malformed: nothing in it can be trusted, not even its gate
                self._quarantine(result, None, text, detail, received_ms)
                self._problem(result, kind, detail, received_ms)
            else:
                self._quarantine(result, event["id"], text, detail, received_ms)
                self._problem(result, kind, detail, received_ms, event["gate"], event["seq"], event["id"])
            return False
        return self._store_events([examined], received_ms, result)[0]

    def _store_events(self, examined: list[list], received_ms: int, result: IngestResult) -> list[bool]:
        """Insert well-formed, well-sealed events (one round trip for all on PostgreSQL); for each,
        whether it is held: new, or a duplicate (same id, same hash). The same id with another hash
        is a conflict: quarantined."""
        for _, event, key, *_ in examined:
            if key is None and self.keyring is not None:
                self._problem(
                    result,
                    "no_device_key",
                    f"no device key named {event['gate']!r} in the keyring",
                    received_ms,
                    event["gate"],
                )
        new = self.db.insert_events(
            COLUMNS,
            [(*ledger_audit.derived(event), signed, received_ms, text) for text, event, key, _, _, signed in examined],
        )
        taken = [e[1]["id"] for e, fresh in zip(examined, new) if not fresh]
        existing: dict[str, tuple[str, int]] = {}
        for i in range(0, len(taken), 800):
            part = taken[i : i + 800]
            existing.update(
                (event_id, (digest, checked))
                for event_id, digest, checked in self.db.execute(
                    f"SELECT id, hash, signed FROM events WHERE id IN ({', '.join('?' * len(part))})", tuple(part)
                ).fetchall()
            )
        occ.record(self.db, [e[1] for e, fresh in zip(examined, new) if fresh])  # movements (occupancy, #16)
        held = []
        for (text, event, _, _, _, signed), fresh in zip(examined, new):
            gate, seq, event_id = event["gate"], event["seq"], event["id"]
            stored_hash, stored_signed = existing.get(event_id, (None, 0))
            if fresh:
                result.new += 1
                self._new.append(event)
                result.stored.append(event)
            elif stored_hash == event["hash"]:
                result.duplicates += 1
                if signed and not stored_signed:  # stored before the gate's key was known: checked now
                    self.db.execute("UPDATE events SET signed = ? WHERE id = ?", (signed, event_id))
            elif (
                self.db.execute(
                    "SELECT 1 FROM quarantine WHERE event_id = ? AND why = 'conflict' AND body = ?",
                    (event_id, _storable(text[: ev.MAX_BYTES])),
                ).fetchone()
                is not None
            ):
                result.duplicates += 1  # the same conflicting event sent again: quarantined once already
            else:
                self._quarantine(result, event_id, text, "conflict", received_ms)
                self._problem(
                    result,
                    "conflict",
                    f"second event with id {event_id} and another hash "
                    f"({event['hash'][:16]}…): seq reused (state restored from a backup?)",
                    received_ms,
                    gate,
                    seq,
                    event_id,
                )
            held.append(fresh or existing.get(event_id) == event["hash"])
        return held

    def _check_links(self, result, new: list[dict], received_ms: int) -> None:
        """The chain around each event this batch stored, once every event of the batch is in: the
        neighbours of all of them in a few queries, whichever order they came in (per gate the
        range of seqs around its events when they are dense, else the seqs one by one)."""
        by_gate: dict[str, list[dict]] = {}
        for event in new:
            by_gate.setdefault(event["gate"], []).append(event)
        stored: dict[tuple[str, int], tuple] = {}
        clauses: list[tuple[str, tuple]] = []
        for gate, gate_events in by_gate.items():
            wanted = sorted({n for e in gate_events for n in (e["seq"] - 1, e["seq"] + 1) if 0 < n <= ev.MAX_INT})
            if not wanted:
                continue
            if wanted[-1] - wanted[0] < 4 * len(wanted):
                clauses.append(("(gate = ? AND seq BETWEEN ? AND ?)", (gate, wanted[0], wanted[-1])))
            else:
                for i in range(0, len(wanted), 500):
                    part = wanted[i : i + 500]
                    clauses.append((f"(gate = ? AND seq IN ({', '.join('?' * len(part))}))", (gate, *part)))
        while clauses:
            part, size = [], 0
            while clauses and size < 900:
                part.append(clauses.pop())
                size += len(part[-1][1])
            for gate, n, h, p, i_ in self.db.execute(
                "SELECT gate, seq, hash, prev, id FROM events WHERE " + " OR ".join(c for c, _ in part),
                tuple(v for _, values in part for v in values),
            ).fetchall():
                stored[gate, n] = (h, p, i_)
        for gate_events in by_gate.values():
            for event in gate_events:
                self._check_event_links(result, event, stored, received_ms)

    def _check_event_links(self, result, event: dict, stored: dict, received_ms: int) -> None:
        gate, seq = event["gate"], event["seq"]
        first = seq == 1 or (event.get("epoch") and seq == ev.epoch_base(event["epoch"]) + 1)  # "Replacing a gate"
        if first and event["prev"] != ev.GENESIS:
            self._problem(
                result, "chain_break", "first event does not start from 64 zeros", received_ms, gate, seq, event["id"]
            )
        if (gate, seq - 1) in stored and stored[gate, seq - 1][0] != event["prev"]:
            self._problem(
                result,
                "chain_break",
                f"prev does not match the hash of seq {seq - 1}",
                received_ms,
                gate,
                seq,
                event["id"],
            )
        if (gate, seq + 1) in stored and stored[gate, seq + 1][1] != event["hash"]:
            self._problem(
                result,
                "chain_break",
                f"prev does not match the hash of seq {seq}",
                received_ms,
                gate,
                seq + 1,
                stored[gate, seq + 1][2],
            )

    def set_keyring(self, keyring: Keyring | None) -> IngestResult:
        """The keyring changed (an operator approved a replaced gate's key): use it from now on, and
        take in again the messages quarantined for an unapproved key (gated/central/chains.py)."""
        self.keyring, self._keys = keyring, {}
        rows = self.query(chains.UNAPPROVED_ROWS, (chains.UNAPPROVED_LIKE,))
        if not rows:
            return IngestResult()
        result = self.ingest([body for _, body in rows])  # those still unapproved keep their rows
        try:
            self.db.begin()
            self.db.execute(chains.DROP_REPLAYED, (chains.UNAPPROVED_LIKE, rows[-1][0], rows[-1][0]))
            self.db.commit()
        except self.db.errors as exc:
            self._rollback_quietly()
            raise LedgerError(f"{self.where}: cannot drop the replayed messages ({exc})") from exc
        log.info("keyring reloaded", replayed=len(rows), stored=result.new, still_unapproved=result.rejected)
        return result

    def _device_key(self, gate: str):
        if self.keyring is None:
            return None
        if gate not in self._keys:
            key = next((k.public_key for k in self.keyring.keys if k.name == gate and "device" in k.roles), None)
            self._keys[gate] = None if key is None else key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return self._keys[gate]

    # --- output -----------------------------------------------------------------------------

    def report(self) -> dict:
        """Per gate: events, admits, denies by reason, gaps, chain breaks, bad signatures; over-admitted
        tickets (gated/central/ledger_report.py)."""
        return ledger_report.report(self.db)

    def audit_signatures(self, keyring: Keyring, *, only_vouched: bool = False) -> dict:
        """Every stored event's own signature checked again (gated/central/ledger_audit.py)."""
        return ledger_audit.audit_signatures(self.db, keyring, only_vouched=only_vouched)

    def set_capacity(self, zone: str, capacity: int) -> None:
        """A zone's capacity, for the occupancy message and the reports."""
        try:
            self.db.begin()
            occ.set_capacity(self.db, zone, capacity)
            self.db.commit()
        except self.db.errors as exc:
            self._rollback_quietly()
            raise LedgerError(f"{self.where}: cannot store the capacity of zone {zone!r} ({exc})") from exc

    def occupancy(self) -> dict:
        return occ.occupancy(self.db)

    def occupancy_as_of(self, since_ts: str | None = None) -> tuple[dict, dict[str, int]]:
        """The occupancy (counted from `since_ts`, the venue's day start; None: all) and, per gate,
        the highest seq it was counted from (one read transaction)."""
        self.db.begin()
        try:
            return (
                occ.occupancy(self.db, since_ts=since_ts),
                dict(self.db.execute("SELECT gate, MAX(seq) FROM events GROUP BY gate")),
            )
        finally:
            self.db.commit()


class _MessageFailed(GatedError):
    """Inside Ledger._store_batch: a message made storing it fail; the batch is done again with a
    savepoint per message (never leaves the ledger)."""


def _storable(text: str) -> str:
    """Text any database column takes: NUL (which PostgreSQL's text refuses) and lone surrogates
    (which UTF-8 cannot carry) replaced by U+FFFD, as undecodable bytes already are. A stored event
    never needs it: the strict reader refuses a raw control character, and an escaped one stays
    escaped in the body."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def _body_text(payload) -> str:
    """A message as text for the events table or the quarantine (undecodable bytes replaced)."""
    if isinstance(payload, dict):
        return json.dumps(payload, ensure_ascii=False)
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload).decode("utf-8", "replace")
    return str(payload)


def gate_partition(gate: str, parts: int) -> int:
    """Which of `parts` ledger workers stores `gate`'s events (`gated ledger --partition I/N`):
    CRC-32 of the gate id, the same in every process and on every machine."""
    return zlib.crc32(gate.encode()) % parts
