"""The central ledger: every gate's events exactly once, with what is wrong with them.

    gated/v1/<site>/gates/+/events  --(persistent session, or $share/<group>/...)-->  Ledger.ingest()  -->  ledger.db

Storage (SQLite, WAL, synchronous=FULL; a message is acknowledged to the broker only after the
transaction holding it has committed, so a crash of the ledger loses nothing):

    events(id PK, site, gate, seq, kind, ts, ticket, decision, reason, ref, result, hash, prev, body)
                    one row per event id (`<gate>:<seq>`): a redelivered event is a no-op
    problems        chain_break, bad_signature, bad_hash, no_device_key, conflict (same id, other
                    content), malformed, wrong_site; one row per (kind, gate, seq, detail)
    quarantine      messages not stored as events (malformed, wrong site, bad hash or signature,
                    conflict), each with why: kept for inspection, never counted,
                    so a forgery cannot take the id slot of the real event
    tickets(cti, ent)  optional: admissions allowed per ticket, from `gated issue` CSVs

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
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gated.central import occupancy as occ
from gated.core import events as ev
from gated.core.errors import GatedError
from gated.keys import Keyring
from gated.topics import events_topic, events_topic_gate

log = structlog.get_logger("gated.ledger")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, site TEXT NOT NULL, gate TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
    ts TEXT, ticket TEXT, decision TEXT, reason TEXT, ref TEXT, result TEXT,
    hash TEXT NOT NULL, prev TEXT NOT NULL, signed INTEGER NOT NULL, received_ms INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_gate ON events (gate, seq);
CREATE INDEX IF NOT EXISTS events_by_ticket ON events (ticket) WHERE ticket IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_by_ref ON events (ref) WHERE ref IS NOT NULL;
CREATE TABLE IF NOT EXISTS problems (
    n INTEGER PRIMARY KEY, kind TEXT NOT NULL, gate TEXT, seq INTEGER, event_id TEXT, detail TEXT NOT NULL,
    received_ms INTEGER NOT NULL, UNIQUE (kind, gate, seq, detail)
);
CREATE TABLE IF NOT EXISTS quarantine (n INTEGER PRIMARY KEY, event_id TEXT, body TEXT NOT NULL, why TEXT NOT NULL,
    received_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tickets (cti TEXT PRIMARY KEY, ent INTEGER NOT NULL) WITHOUT ROWID;
"""

FIELDS = ("ts", "ticket", "decision", "reason", "ref", "result")


class LedgerError(GatedError, RuntimeError):
    """The ledger database failed; check the disk and the file's permissions."""


@dataclass
class IngestResult:
    new: int = 0
    duplicates: int = 0
    rejected: int = 0
    problems: list[dict] = field(default_factory=list)


class Ledger:
    def __init__(self, path: str | os.PathLike, *, keyring: Keyring | None = None, site: str | None = None,
                 workers: int = 1):
        """`workers` > 1: check hashes and signatures of a batch on that many threads."""
        self.path, self.keyring, self.site, self.workers = Path(path), keyring, site, workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="ledger-verify") if workers > 1 else None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
            occ.create(self.db)  # movements and occupancy (issue #16): gated/central/occupancy.py
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: cannot open the ledger ({exc})") from exc
        self._keys: dict[str, object] = {}

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
        with open(csv_path, newline="") as fh:
            for row in csv.DictReader(fh):
                try:
                    rows.append((row["ticket_id"].strip().lower(), int(row.get("entries") or 1)))
                except (KeyError, ValueError) as exc:
                    raise LedgerError(f"{csv_path}: needs ticket_id and entries columns ({exc})") from None
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("INSERT OR REPLACE INTO tickets (cti, ent) VALUES (?, ?)", rows)
        self.db.execute("COMMIT")
        return len(rows)

    def ingest(self, payloads, received_ms: int | None = None, *, topics=None) -> IngestResult:
        """Store a batch of event messages (bytes, str or dicts) in one transaction. `topics`: the
        topic each came on (same order), whose gate the event must name. Each message is handled
        alone (a savepoint of its own): whatever is wrong with one is quarantined with its reason,
        and the rest of the batch is stored. Only a failing database fails the batch (LedgerError)."""
        received_ms = received_ms if received_ms is not None else time.time_ns() // 1_000_000
        payloads = list(payloads)
        topics = list(topics) if topics is not None else [None] * len(payloads)
        result = IngestResult()
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for examined in self._examine_all(list(zip(payloads, topics))):
                    self._store_alone(examined, received_ms, result)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: write failed ({exc}); the batch was not acknowledged") from exc
        return result

    def _examine_all(self, messages: list) -> list:
        if self._pool is None or len(messages) < 64:
            return [self._examine_alone(*m) for m in messages]
        size = -(-len(messages) // self.workers)  # one slice per thread (ThreadPoolExecutor.map ignores chunksize)
        slices = [messages[i:i + size] for i in range(0, len(messages), size)]
        return [examined for part in self._pool.map(lambda part: [self._examine_alone(*m) for m in part], slices)
                for examined in part]

    def _examine_alone(self, payload, topic) -> tuple:
        """_examine() in an error boundary: a message that makes it fail is quarantined, with why."""
        try:
            return self._examine(payload, topic)
        except Exception as exc:  # noqa: BLE001 - the per-message error boundary
            return _body_text(payload), None, None, "malformed", f"could not be examined: {type(exc).__name__}: {exc}"[:200]

    def _store_alone(self, examined: tuple, received_ms: int, result: IngestResult) -> None:
        """_store() in a savepoint: if one message makes it fail, what it wrote is undone and the
        message is quarantined with why; if even that fails, the database is at fault."""
        counts = (result.new, result.duplicates, result.rejected, len(result.problems))
        self.db.execute("SAVEPOINT message")
        try:
            self._store(examined, received_ms, result)
        except Exception as exc:  # noqa: BLE001 - the per-message error boundary
            self.db.execute("ROLLBACK TO message")
            result.new, result.duplicates, result.rejected = counts[:3]
            del result.problems[counts[3]:]
            why = f"could not be stored: {type(exc).__name__}: {exc}"[:200]
            log.error("ledger message quarantined", why=why)
            self._quarantine(result, None, examined[0], why, received_ms)
        self.db.execute("RELEASE message")

    def _problem(self, result, kind, detail, received_ms, gate=None, seq=None, event_id=None) -> None:
        cur = self.db.execute("INSERT OR IGNORE INTO problems (kind, gate, seq, event_id, detail, received_ms) "
                              "VALUES (?, ?, ?, ?, ?, ?)", (kind, gate or "", seq or 0, event_id, detail, received_ms))
        if cur.rowcount:
            result.problems.append({"kind": kind, "gate": gate, "seq": seq, "detail": detail})

    def _quarantine(self, result, event_id, body, why, received_ms) -> None:
        """Keep a message that is not stored as an event, with why (its first MAX_BYTES characters
        when it is longer: it was refused for its size anyway)."""
        self.db.execute("INSERT INTO quarantine (event_id, body, why, received_ms) VALUES (?, ?, ?, ?)",
                        (event_id, body[:ev.MAX_BYTES], why, received_ms))
        result.rejected += 1

    def _examine(self, payload, topic: str | None = None) -> tuple:
        """Parse and check one message without touching the database (runs on worker threads:
        libsodium releases the GIL). Returns (text, event, key, problem kind, detail)."""
        text = _body_text(payload)
        gate = None
        if topic is not None:
            gate = events_topic_gate(topic)
            if gate is None:
                return text, None, None, "malformed", f"not an events topic: {topic[:100]!r}"
        try:
            event = ev.read_event(text if isinstance(payload, dict) else payload, gate=gate)
        except ev.EventRejected as exc:
            return text, None, None, "malformed", exc.detail
        if self.site is not None and event["site"] != self.site:
            return text, event, None, "wrong_site", f"event for site {event['site']!r}"
        key = self._device_key(event["gate"])
        seal_problems = ev.check_seal(event, key)
        if seal_problems:
            kind = "bad_hash" if "hash does not match content" in seal_problems else "bad_signature"
            return text, event, key, kind, "; ".join(seal_problems)
        return text, event, key, None, ""

    def _store(self, examined: tuple, received_ms: int, result: IngestResult) -> None:
        text, event, key, kind, detail = examined
        if kind is not None:
            if event is None:  # malformed: nothing in it can be trusted, not even its gate
                self._quarantine(result, None, text, detail, received_ms)
                self._problem(result, kind, detail, received_ms)
            else:
                self._quarantine(result, event["id"], text, detail, received_ms)
                self._problem(result, kind, detail, received_ms, event["gate"], event["seq"], event["id"])
            return
        gate, seq, event_id = event["gate"], event["seq"], event["id"]
        if key is None and self.keyring is not None:
            self._problem(result, "no_device_key", f"no device key named {gate!r} in the keyring", received_ms, gate)
        cur = self.db.execute(
            "INSERT OR IGNORE INTO events (id, site, gate, seq, kind, ts, ticket, decision, reason, ref, result, hash, "
            "prev, signed, received_ms, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event_id, event["site"], gate, seq, event["kind"], *(_text(event.get(f)) for f in FIELDS),
             event["hash"], event["prev"], int(key is not None), received_ms, text))
        if cur.rowcount == 0:
            (existing,) = self.db.execute("SELECT hash FROM events WHERE id = ?", (event_id,)).fetchone()
            if existing == event["hash"]:
                result.duplicates += 1
            else:
                self._quarantine(result, event_id, text, "conflict", received_ms)
                self._problem(result, "conflict", f"second event with id {event_id} and another hash "
                              f"({event['hash'][:16]}…): seq reused (state restored from a backup?)",
                              received_ms, gate, seq, event_id)
            return
        result.new += 1
        self._check_links(result, event, received_ms)
        occ.record(self.db, event)

    def _check_links(self, result, event: dict, received_ms: int) -> None:
        gate, seq = event["gate"], event["seq"]
        neighbours = {n: (h, p, i) for n, h, p, i in self.db.execute(
            "SELECT seq, hash, prev, id FROM events WHERE gate = ? AND seq IN (?, ?)", (gate, seq - 1, seq + 1))}
        if seq == 1 and event["prev"] != ev.GENESIS:
            self._problem(result, "chain_break", "first event does not start from 64 zeros", received_ms,
                          gate, seq, event["id"])
        if seq - 1 in neighbours and neighbours[seq - 1][0] != event["prev"]:
            self._problem(result, "chain_break", f"prev does not match the hash of seq {seq - 1}", received_ms,
                          gate, seq, event["id"])
        if seq + 1 in neighbours and neighbours[seq + 1][1] != event["hash"]:
            self._problem(result, "chain_break", f"prev does not match the hash of seq {seq}", received_ms,
                          gate, seq + 1, neighbours[seq + 1][2])

    def _device_key(self, gate: str):
        if self.keyring is None:
            return None
        if gate not in self._keys:
            key = next((k.public_key for k in self.keyring.keys if k.name == gate and "device" in k.roles), None)
            self._keys[gate] = None if key is None else key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return self._keys[gate]

    # --- output -----------------------------------------------------------------------------

    def report(self) -> dict:
        """Per gate: events, admits, denies by reason, gaps, chain breaks, bad signatures; over-admitted tickets."""
        db = self.db
        gates: dict[str, dict] = {}
        for gate, count, last, admits, passages in db.execute(
                "SELECT gate, COUNT(*), MAX(seq), SUM(kind = 'scan' AND decision = 'admit'), SUM(kind = 'passage') "
                "FROM events GROUP BY gate ORDER BY gate"):
            gates[gate] = {"events": count, "last_seq": last, "admits": admits or 0, "passages": passages or 0,
                           "denies": {}, "gaps": [], "missing": 0, "chain_breaks": 0, "bad_signatures": 0,
                           "bad_hashes": 0, "conflicts": 0, "malformed": 0, "signatures_checked": True}
        for gate, reason, count in db.execute(
                "SELECT gate, reason, COUNT(*) FROM events WHERE kind = 'scan' AND decision = 'deny' "
                "GROUP BY gate, reason ORDER BY gate, reason"):
            gates[gate]["denies"][reason] = count
        for gate, seq, before in db.execute(
                "SELECT gate, seq, prev_seq FROM (SELECT gate, seq, LAG(seq, 1, 0) OVER (PARTITION BY gate ORDER BY seq)"
                " AS prev_seq FROM events) WHERE seq - prev_seq > 1"):
            gates[gate]["gaps"].append([before + 1, seq - 1])
            gates[gate]["missing"] += seq - 1 - before
        for gate, (unsigned,) in ((g, db.execute("SELECT COUNT(*) FROM events WHERE gate = ? AND signed = 0",
                                                  (g,)).fetchone()) for g in list(gates)):
            gates[gate]["signatures_checked"] = unsigned == 0
        names = {"chain_break": "chain_breaks", "bad_signature": "bad_signatures", "bad_hash": "bad_hashes",
                 "conflict": "conflicts", "malformed": "malformed"}
        for kind, gate, count in db.execute("SELECT kind, gate, COUNT(*) FROM problems GROUP BY kind, gate"):
            if kind in names:
                entry = gates.setdefault(gate or "(unknown)", {"events": 0, "last_seq": 0, "admits": 0, "passages": 0,
                                                       "denies": {}, "gaps": [], "missing": 0, "chain_breaks": 0,
                                                       "bad_signatures": 0, "bad_hashes": 0, "conflicts": 0,
                                                       "malformed": 0, "signatures_checked": False})
                entry[names[kind]] += count
        over = [{"ticket": cti, "admits": admits, "allowed": allowed, "assumed": assumed == 1, "gates": sorted(set(g.split(",")))}
                for cti, admits, allowed, assumed, g in db.execute(
                    "SELECT e.ticket, COUNT(*), COALESCE(t.ent, 1), t.ent IS NULL, GROUP_CONCAT(e.gate) "
                    "FROM events e LEFT JOIN tickets t ON t.cti = e.ticket "
                    "WHERE e.kind = 'scan' AND e.decision = 'admit' AND e.ticket IS NOT NULL "
                    f"AND NOT {occ.not_an_entry_sql('e')} AND NOT EXISTS ("
                    "  SELECT 1 FROM events p WHERE p.ref = e.id AND p.gate = e.gate AND p.kind = 'passage' "
                    "  AND p.result = 'timeout') "
                    "GROUP BY e.ticket HAVING COALESCE(t.ent, 1) > 0 AND COUNT(*) > COALESCE(t.ent, 1) "
                    "ORDER BY e.ticket")]
        (tickets_known,) = db.execute("SELECT COUNT(*) FROM tickets").fetchone()
        (quarantined,) = db.execute("SELECT COUNT(*) FROM quarantine").fetchone()
        totals = {k: sum(g[k] for g in gates.values()) for k in
                  ("events", "admits", "missing", "chain_breaks", "bad_signatures", "bad_hashes", "conflicts", "malformed")}
        totals["over_admitted"] = len(over)
        totals["quarantined"] = quarantined
        reentries = occ.reentries_without_exit(db)
        totals["reentries_without_exit"] = len(reentries)
        clean = not any(totals[k] for k in ("missing", "chain_breaks", "bad_signatures", "bad_hashes", "conflicts",
                                            "malformed", "over_admitted", "reentries_without_exit"))
        return {"gates": gates, "over_admitted": over, "tickets_known": tickets_known, "totals": totals,
                "occupancy": occ.occupancy(db), "reentries_without_exit": reentries, "clean": clean}

    def set_capacity(self, zone: str, capacity: int) -> None:
        """A zone's capacity, for the occupancy message and the reports."""
        self.db.execute("BEGIN IMMEDIATE")
        occ.set_capacity(self.db, zone, capacity)
        self.db.execute("COMMIT")

    def occupancy(self) -> dict:
        return occ.occupancy(self.db)

    def occupancy_as_of(self) -> tuple[dict, dict[str, int]]:
        """The occupancy and, per gate, the highest seq it was counted from (one read transaction)."""
        self.db.execute("BEGIN")
        try:
            return occ.occupancy(self.db), dict(self.db.execute("SELECT gate, MAX(seq) FROM events GROUP BY gate"))
        finally:
            self.db.execute("COMMIT")


def _text(value):
    return None if value is None else str(value)


def _body_text(payload) -> str:
    """A message as text for the events table or the quarantine (undecodable bytes replaced)."""
    if isinstance(payload, dict):
        return json.dumps(payload, ensure_ascii=False)
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload).decode("utf-8", "replace")
    return str(payload)


def format_report(report: dict) -> str:
    """The reconcile report for people."""
    lines = [f"{'gate':12} {'events':>7} {'last':>7} {'admits':>7} {'missing':>7} {'chain':>6} {'badsig':>6}  denies"]
    for gate, g in report["gates"].items():
        denies = ", ".join(f"{r} {n}" for r, n in g["denies"].items()) or "-"
        badsig = g["bad_signatures"] + g["bad_hashes"]
        lines.append(f"{gate:12} {g['events']:>7} {g['last_seq'] or 0:>7} {g['admits']:>7} {g['missing']:>7} "
                     f"{g['chain_breaks']:>6} {badsig:>6}  {denies}")
        if g["gaps"]:
            lines.append("             gaps: " + ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in g["gaps"][:20])
                         + (" …" if len(g["gaps"]) > 20 else ""))
        if not g["signatures_checked"]:
            lines.append("             signatures not checked (no device key for this gate)")
        if g["conflicts"]:
            lines.append(f"             {g['conflicts']} conflicting events (same id, other content)")
    if report["over_admitted"]:
        lines.append("tickets admitted more often than allowed:")
        for t in report["over_admitted"]:
            how = "assumed 1, no tickets CSV row" if t["assumed"] else "from tickets CSV"
            lines.append(f"  {t['ticket']}  {t['admits']} admissions, {t['allowed']} allowed ({how}) at {', '.join(t['gates'])}")
    if report.get("reentries_without_exit"):
        lines.append("tickets let back in more often than they were recorded leaving (gates that could not hear each other):")
        for t in report["reentries_without_exit"]:
            lines.append(f"  {t['ticket']}  {t['reentries']} re-entries, {t['exits']} exits at {', '.join(t['gates'])}")
    occupancy = report.get("occupancy") or {"zones": {}}
    for zone, z in occupancy["zones"].items():
        limit = f" of {z['capacity']}" if z["capacity"] is not None else ""
        lines.append(f"inside {zone or '(no zone)'}: {z['inside']}{limit} ({z['entries']} in, {z['exits']} out)")
    totals = report["totals"]
    lines.append(f"total: {totals['events']} events, {totals['admits']} admits, {totals['missing']} missing, "
                 f"{totals['chain_breaks']} chain breaks, {totals['bad_signatures'] + totals['bad_hashes']} bad signatures, "
                 f"{totals['over_admitted']} over-admitted tickets, {totals['malformed']} malformed and "
                 f"{totals['quarantined']} quarantined messages"
                 + (" — clean" if report["clean"] else ""))
    return "\n".join(lines)


# --- the service: a shared subscription feeding the ledger --------------------------------------

def ledger_topic(site: str, group: str | None = None) -> str:
    """The ledger's subscription. With a group, an MQTT v5 shared subscription (`$share/<group>/...`):
    the ledgers of one group split the events between them. Without, a plain one: every ledger keeps
    a full copy. The plain one is the default because Mosquitto 2.0.11 does not restore shared
    subscriptions from its persistence file: after a broker restart, events published before the
    ledger has subscribed again reach no ledger of the group (they show as gaps in `gated reconcile`;
    tests/test_uplink.py measures both)."""
    plain = events_topic(site, "+")
    return f"$share/{group}/{plain}" if group else plain


class LedgerService:
    """Subscribe, ingest in batches, acknowledge each message only after its batch has committed.
    Runs on the caller's thread (`run()`); paho's thread only queues messages."""

    def __init__(self, ledger: Ledger, settings, *, site: str, group: str | None = None, batch: int = 2000,
                 occupancy_every_s: float = 1.0):
        from paho.mqtt.subscribeoptions import SubscribeOptions

        from gated.mqtt import MqttLink

        self.ledger, self.site, self.batch = ledger, site, batch
        self.link = MqttLink(settings, settings.client_id or f"gated-ledger-{site}-{os.uname().nodename}")
        self.link.add_subscription(ledger_topic(site, group), SubscribeOptions(qos=1))
        self.received = 0
        self.stored = 0
        self.occupancy_every_s = occupancy_every_s
        self._occupancy_due = 0.0  # monotonic time the next occupancy message may go out
        self._occupancy_dirty = True  # publish once on start, then after new events

    def start(self) -> "LedgerService":
        self.link.start()
        return self

    def stop(self) -> None:
        self.link.stop()

    def step(self, timeout: float = 0.2) -> IngestResult | None:
        """Take what has arrived (waiting up to `timeout` for the first message), store it, ack it."""
        import queue

        messages = []
        try:
            item = self.link.inbox.get(timeout=timeout)
            while True:
                if item[0] == "message":
                    messages.append(item[1])
                elif item[0] in ("connected", "disconnected", "refused"):
                    log.info("ledger link", state=item[0], detail=item[1:] if len(item) > 1 else None)
                if len(messages) >= self.batch:
                    break
                item = self.link.inbox.get_nowait()
        except queue.Empty:
            pass
        if not messages:
            self.publish_occupancy()
            return None
        result = self.ledger.ingest([m.payload for m in messages], topics=[m.topic for m in messages])
        for message in messages:
            self.link.ack(message)
        self.received += len(messages)
        self.stored += result.new
        for problem in result.problems:
            log.warning("ledger problem", **problem)
        self._occupancy_dirty = self._occupancy_dirty or result.new > 0
        self.publish_occupancy()
        return result

    def publish_occupancy(self) -> None:
        """People inside per zone, retained on gated/v1/<site>/occupancy (gated/core/occupancy.py),
        at most every `occupancy_every_s`, after new events (gates with a capacity and `gated status`
        read it)."""
        now = time.monotonic()
        if not self._occupancy_dirty or now < self._occupancy_due or not self.link.connected:
            return
        from gated.core.occupancy import encode_occupancy
        from gated.topics import occupancy_topic

        figures, as_of = self.ledger.occupancy_as_of()
        self.link.publish(occupancy_topic(self.site), encode_occupancy(self.site, figures["zones"],
                                                                       time.time_ns() // 1_000_000, as_of), 1, True)
        self._occupancy_dirty, self._occupancy_due = False, now + self.occupancy_every_s

    def run(self, stop=None) -> None:
        """Until `stop` (a threading.Event) is set, or forever."""
        while stop is None or not stop.is_set():
            self.step()
