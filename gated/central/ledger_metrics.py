"""The ledger's Prometheus figures (`gated ledger --metrics LISTEN`, names in docs/metrics.md): per
gate events, admissions, gaps, chain breaks, bad signatures, over-admissions and lag.

A scrape costs the same at a thousand stored events and at a million: it renders a snapshot and
never touches the database. The snapshot is kept by one thread of its own, with its own connection:

    SQLite       incremental: each round adds up only the rows stored since the last one (events by
                 rowid, in one aggregate query; problems and quarantine by their number; a SQLite
                 rowid table only grows), every EVERY seconds. The first round reads the whole
                 ledger once, at start.
    PostgreSQL   the per gate aggregates again each round (no cheap "stored since" there)
    both         over-admissions (a join over every admission) in a round of their own

and a round that took d seconds is followed by a pause of at least d * (1 / SHARE - 1): the figures
never take more than SHARE of a core from the ingest, whatever the ledger's size; over-admissions
are recounted at most every SLOW_EVERY seconds. Until the first round is done, a scrape serves only
`gated_ledger_received_messages_total`. The HTTP endpoint is gated/metrics_http.py's.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gated.central import chains
from gated.core.events import EPOCH_SHIFT, epoch_base, epoch_of, parse_ts

log = structlog.get_logger("gated.ledger.metrics")

EVERY = 2.0  # seconds between rounds at least
SLOW_EVERY = 60.0  # seconds between over-admission counts at least
SHARE = 0.1  # of one core, at most, for the figures

LEDGER_PER_GATE = (
    # (name, kind, help, Gate attribute)
    ("gated_ledger_events", "counter", "events stored in the ledger (rate(): events per second)", "events"),
    ("gated_ledger_admits", "counter", "admissions stored in the ledger", "admits"),
    ("gated_ledger_missing_events", "gauge", "sequence numbers missing from 1..max (gaps)", "missing"),
    (
        "gated_ledger_declared_lost_events",
        "gauge",
        "sequence numbers below a gate's floor the ledger never got: the gate no longer holds them (a declared loss)",
        "declared_lost",
    ),
    ("gated_ledger_chain_breaks", "gauge", "events whose prev does not match their neighbour's hash", "chain_breaks"),
    ("gated_ledger_bad_signatures", "gauge", "events whose device signature does not verify", "bad_signatures"),
)
PROBLEM_KINDS = {"chain_break": "chain_breaks", "bad_signature": "bad_signatures"}


@dataclass
class Gate:
    events: int = 0
    admits: int = 0
    last_seq: int = 0
    newest: tuple[str | None, int] | None = None  # (ts, received_ms) of the event with the highest seq
    chain_breaks: int = 0
    bad_signatures: int = 0
    # per chain (docs/protocol.md, "Replacing a gate": a replaced gate's seqs start at epoch * 2^40 + 1):
    # epoch -> (events, highest seq); replaced whole, never changed in place (a scrape reads it unlocked)
    chains: dict[int, tuple[int, int]] = field(default_factory=dict)
    # per chain with a floor (the gate's, from its status: chains.FLOORS): epoch -> (floor, events stored
    # with a seq below it in its chain); below a floor, lacking is a declared loss. Replaced whole, as chains
    floors: dict[int, tuple[int, int]] = field(default_factory=dict)

    def add_chain(self, epoch: int, count: int, top: int) -> None:
        held, last = self.chains.get(epoch, (0, 0))
        self.chains = {**self.chains, epoch: (held + count, max(last, top))}

    def add_floor(self, floor: int, held_below: int) -> None:
        self.floors = {**self.floors, epoch_of(floor): (floor, held_below)}

    @property
    def declared_lost(self) -> int:
        return sum(
            max(0, floor - 1 - epoch_base(epoch) - held_below) for epoch, (floor, held_below) in self.floors.items()
        )

    @property
    def missing(self) -> int:
        """Per chain, seqs from its base + 1 to its highest not held ((gate, seq) is unique: events =
        seqs held), less the declared losses among them (docs/protocol.md, "Committed events")."""
        gaps = sum(max(0, last - epoch_base(epoch) - held) for epoch, (held, last) in self.chains.items())
        below = 0
        for epoch, (floor, held_below) in self.floors.items():
            last = self.chains.get(epoch, (0, 0))[1]
            below += max(0, min(floor - 1, last) - epoch_base(epoch) - held_below)
        return max(0, gaps - below)


@dataclass
class Figures:
    """What a scrape shows: per gate figures, over-admissions per gate, quarantined messages."""

    gates: dict[str, Gate] = field(default_factory=dict)
    over: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    read_at: float = 0.0  # time.time() at the end of the round that made it


def _db_errors() -> tuple:
    errors: tuple = (sqlite3.Error,)
    try:
        import psycopg
    except ImportError:  # the central extra is not installed: no PostgreSQL ledger either
        return errors
    return errors + (psycopg.Error,)


class LedgerCollector(Collector):
    """The ledger's figures from a snapshot (see the module's docstring). `received` is the
    service's message count, read at each scrape. start() runs the rounds on a thread of their own;
    refresh() is one round, for a caller that keeps its own time (one thread only: the connection
    is that thread's)."""

    def __init__(
        self,
        db_path: str | Path,
        site: str,
        received=lambda: 0,
        *,
        every: float = EVERY,
        slow_every: float = SLOW_EVERY,
        share: float = SHARE,
    ):
        # str, not Path: a postgresql:// URL must stay a URL (a Path would make it a SQLite file name)
        self.db_path, self.site, self.received = str(db_path), site, received
        self.every, self.slow_every, self.share = every, slow_every, share
        self._shown: Figures | None = None  # replaced whole, never changed: a scrape reads it without a lock
        self._ledger = None
        self._work = Figures()
        self._cursors = {"events": 0, "problems": 0, "quarantine": 0}
        self._slow_due = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the rounds ----------------------------------------------------------------------------

    def start(self) -> "LedgerCollector":
        self._thread = threading.Thread(target=self._run, name="ledger-metrics", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                self.refresh()
                took = time.monotonic() - started
                self._stop.wait(max(self.every, took * (1 / self.share - 1)))
        except Exception:  # noqa: BLE001 - said, and visible in gated_ledger_figures_age_seconds
            log.exception("ledger metrics stopped: the figures are no longer renewed")
            raise
        finally:
            if self._ledger is not None:
                self._ledger.close()

    def refresh(self) -> bool:
        """One round; False if the database could not be read (the last snapshot stays)."""
        from gated.central import ledger_report
        from gated.central.ledger import Ledger, LedgerError
        from gated.central.ledgerdb import SqliteDb

        try:
            if self._ledger is None:
                self._ledger = Ledger(self.db_path)
            db = self._ledger.db
            if isinstance(db, SqliteDb):
                self._catch_up(db)
            else:
                self._recount(db)
            now = time.monotonic()
            if now >= self._slow_due:
                started = time.monotonic()
                over: dict[str, int] = {}
                for finding in ledger_report.over_admitted(db):
                    for gate in finding["gates"]:
                        over[gate] = over.get(gate, 0) + 1
                self._work.over = over
                took = time.monotonic() - started
                self._slow_due = time.monotonic() + max(self.slow_every, took * (1 / self.share - 1))
        except LedgerError as exc:
            log.warning("ledger metrics not read", error=str(exc))
            return False
        except _db_errors() as exc:  # the next round may work
            log.warning("ledger metrics not read", error=str(exc))
            if self._ledger is not None:
                self._ledger.close()
            self._ledger = None
            # read again from the start; the over-admissions stay until their next count (a round
            # after the error would otherwise show none for up to SLOW_EVERY)
            self._work, self._cursors = Figures(over=self._work.over), dict.fromkeys(self._cursors, 0)
            return False
        self._shown = Figures(
            {g: replace(v) for g, v in self._work.gates.items()},
            dict(self._work.over),
            self._work.quarantined,
            time.time(),
        )
        return True

    def _catch_up(self, db) -> None:
        """SQLite: add what was stored since the last round (rowids only grow: no event is deleted)."""
        gates = self._work.gates
        (last,) = db.execute("SELECT COALESCE(MAX(rowid), 0) FROM events").fetchone()
        lowest_new: dict[tuple[str, int], int] = {}  # (gate, epoch): the lowest seq stored since
        if last > self._cursors["events"]:
            # one aggregate over the new rowids (SQLite runs it without Python, whatever their number)
            for gate, epoch, count, admits, top, low in db.execute(
                f"SELECT gate, seq / {1 << EPOCH_SHIFT}, COUNT(*), "
                "SUM(CASE WHEN kind = 'scan' AND decision = 'admit' THEN 1 ELSE 0 END), "
                "MAX(seq), MIN(seq) FROM events WHERE rowid > ? AND rowid <= ? "
                f"GROUP BY gate, seq / {1 << EPOCH_SHIFT}",
                (self._cursors["events"], last),
            ).fetchall():
                lowest_new[gate, epoch] = low
                figures = gates.get(gate) or gates.setdefault(gate, Gate())
                figures.add_chain(epoch, count, top)
                figures.events += count
                figures.admits += admits or 0
                if top >= figures.last_seq:
                    figures.last_seq = top
                    figures.newest = db.execute(
                        "SELECT ts, received_ms FROM events WHERE gate = ? AND seq = ?", (gate, top)
                    ).fetchone()
            self._cursors["events"] = last
        # floors change when a gate reconnects; the events held below one are counted again only then,
        # or when an event below it in its chain arrived late (rare: the gate no longer held it)
        for gate, floor, _ in db.execute(chains.FLOORS).fetchall():
            figures = gates.get(gate) or gates.setdefault(gate, Gate())
            epoch = epoch_of(floor)
            if floor != figures.floors.get(epoch, (0, 0))[0] or lowest_new.get((gate, epoch), floor) < floor:
                (held_below,) = db.execute(
                    "SELECT COUNT(*) FROM events WHERE gate = ? AND seq < ? AND seq >= ?",
                    (gate, floor, epoch_base(epoch)),
                ).fetchone()
                figures.add_floor(floor, held_below)
        for n, kind, gate in db.execute(
            "SELECT n, kind, gate FROM problems WHERE n > ? ORDER BY n", (self._cursors["problems"],)
        ).fetchall():
            self._cursors["problems"] = n
            if kind in PROBLEM_KINDS:
                figures = gates.get(gate or "(unknown)") or gates.setdefault(gate or "(unknown)", Gate())
                setattr(figures, PROBLEM_KINDS[kind], getattr(figures, PROBLEM_KINDS[kind]) + 1)
        count, last = db.execute(
            "SELECT COUNT(*), MAX(n) FROM quarantine WHERE n > ?", (self._cursors["quarantine"],)
        ).fetchone()
        if last is not None:
            self._work.quarantined += count
            self._cursors["quarantine"] = last

    def _recount(self, db) -> None:
        """PostgreSQL: the per gate aggregates again, every statement of the round in one snapshot
        (a gate whose first event is stored between two of them is in all of them or in none)."""
        with db.conn.transaction():
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            self._recount_in_snapshot(db)

    def _recount_in_snapshot(self, db) -> None:
        gates: dict[str, Gate] = {}
        for gate, epoch, count, last, admits in db.execute(
            f"SELECT gate, seq / {1 << EPOCH_SHIFT}, COUNT(*), MAX(seq), "
            "SUM(CASE WHEN kind = 'scan' AND decision = 'admit' THEN 1 ELSE 0 END) "
            f"FROM events GROUP BY gate, seq / {1 << EPOCH_SHIFT}"
        ).fetchall():
            figures = gates.setdefault(gate, Gate())
            figures.events += count
            figures.admits += admits or 0
            figures.last_seq = max(figures.last_seq, last)
            figures.add_chain(int(epoch), count, last)
        for gate, ts, received_ms in db.execute(
            "SELECT e.gate, e.ts, e.received_ms FROM events e "
            "WHERE e.seq = (SELECT MAX(seq) FROM events WHERE gate = e.gate)"
        ).fetchall():
            gates[gate].newest = (ts, received_ms)
        for kind, gate, count in db.execute("SELECT kind, gate, COUNT(*) FROM problems GROUP BY kind, gate").fetchall():
            if kind in PROBLEM_KINDS:
                figures = gates.setdefault(gate or "(unknown)", Gate())
                setattr(figures, PROBLEM_KINDS[kind], count)
        for gate, floor, held in db.execute(
            "SELECT f.gate, f.floor, (SELECT COUNT(*) FROM events e WHERE e.gate = f.gate AND e.seq < f.floor "
            f"AND e.seq >= f.floor / {1 << EPOCH_SHIFT} * {1 << EPOCH_SHIFT}) "  # the floor's chain: a range on the index
            f"FROM ({chains.FLOORS}) AS f"
        ).fetchall():
            gates.setdefault(gate, Gate()).add_floor(floor, held)
        (quarantined,) = db.execute("SELECT COUNT(*) FROM quarantine").fetchone()
        self._work = Figures(gates, self._work.over, quarantined)

    def snapshot(self) -> Figures | None:
        """The figures a scrape shows now (None before the first round)."""
        return self._shown

    # --- a scrape: the snapshot as metric families ---------------------------------------------

    def collect(self):
        received = CounterMetricFamily(
            "gated_ledger_received_messages",
            "event messages received from the broker since the ledger started (redeliveries included)",
            labels=["site"],
        )
        received.add_metric([self.site], self.received())
        shown = self._shown
        if shown is None:
            yield received
            return
        labels = ["site", "gate"]
        gates = sorted(shown.gates)
        for name, kind, help_text, attribute in LEDGER_PER_GATE:
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, help_text, labels=labels)
            for gate in gates:
                family.add_metric([self.site, gate], getattr(shown.gates[gate], attribute))
            yield family
        over = GaugeMetricFamily(
            "gated_ledger_over_admitted",
            "tickets admitted more often than allowed, counted at each gate that admitted them",
            labels=labels,
        )
        for gate in sorted(set(gates) | set(shown.over)):
            over.add_metric([self.site, gate], shown.over.get(gate, 0))
        yield over
        lag = GaugeMetricFamily(
            "gated_ledger_lag_seconds", "from the newest event's ts to when the ledger received it", labels=labels
        )
        silent = GaugeMetricFamily(
            "gated_ledger_last_received_age_seconds",
            "since the ledger last received an event of the gate",
            labels=labels,
        )
        now_ms = time.time_ns() // 1_000_000
        for gate in gates:
            if shown.gates[gate].newest is None:
                continue
            ts, received_ms = shown.gates[gate].newest
            made_ms = parse_ts(ts)
            if made_ms is not None:
                lag.add_metric([self.site, gate], max(0.0, (received_ms - made_ms) / 1000))
            silent.add_metric([self.site, gate], max(0.0, (now_ms - received_ms) / 1000))
        yield lag
        yield silent
        quarantined = GaugeMetricFamily(
            "gated_ledger_quarantined", "messages kept aside (bad hash or signature)", labels=["site"]
        )
        quarantined.add_metric([self.site], shown.quarantined)
        yield quarantined
        age = GaugeMetricFamily(
            "gated_ledger_figures_age_seconds",
            "since the figures above were read from the ledger database",
            labels=["site"],
        )
        age.add_metric([self.site], max(0.0, time.time() - shown.read_at))
        yield age
        yield received
