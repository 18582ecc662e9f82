"""Bounded state: what no longer decides anything leaves the gate's state, a little at a time.

A gate runs for seasons. Left alone its state grows with every admission it makes and hears of,
and its lookups with it. `Pruner.step()` runs on the owner thread between scans (SQLite has one
writer): every `[state] prune_every_s` it starts a round, and each call does one small batch (one
short transaction, `BATCH` tickets) until the round finds nothing more, so a scan never waits
behind more than one batch. What goes (GateStore.prune):

  - the admissions, own and peers', of tickets that expired more than `expired_margin_h` ago
    (decide() denies `expired` before it asks about admissions: they decide nothing any more);
  - the admissions, own and peers', of events the gate no longer admits for (`[gate] events`:
    decide() denies `wrong_event` first) once they have been out of the list for `[state]
    dropped_event_days` (7 by default; counted from the first pruning round that found the event
    out): an event taken out for a day and put back keeps its used tickets used. A season's
    finished events leave the state this way;
  - peers' admissions, of tickets this gate never admitted, older than the retention: their
    expiry is unknown here (the scan event does not carry it), but a ticket's admission is made
    while it is valid, so it can matter for at most the ticket's validity. The retention is the
    longest validity of any ticket this gate has admitted (a gate sees thousands: a fair sample),
    plus `expired_margin_h`, and never less than `peer_retention_days`;
  - tickets valid without end (exp - nbf over five years: a pretix code without validUntil, exp
    2^63-1, or without validFrom): they never expire, so an admission of one would re-open it
    once gone. Such a ticket does not count in the longest validity; a gate that has admitted one
    keeps peers' admissions until their event has left `[gate] events` (above), and its own of such tickets
    too. With `[state] open_ended_days` (the operator's word: no such ticket is shown again that
    long after its admission) they go, own and peers', that long plus `expired_margin_h` after;
  - free exits as old, and the marks of peers' rollbacks (GateStore.record_peer_event) whose
    timeout is as old: a copy of such an admission arriving later than the retention is taken in
    again (and pruned by time with the peers' rows, unless this gate admitted the ticket too);
  - revocation deltas kept for a base the list has passed.

The time is the gate's trusted clock (gated/gate/clock.py); while it is uncertain nothing is
pruned (a clock wrongly ahead would drop admissions that still decide). Not while the gate counts
people inside over every movement it holds (a capacity without
`day_starts`): there, pruning would change the count, so the movements stay. Confirmed outbox rows
leave when the broker or the ledger confirms them (gated/gate/uplink.py); superseded revocation
snapshots are replaced whole when the next one applies (gated/gate/store.py).
"""

from __future__ import annotations

import structlog

log = structlog.get_logger("gated.gate.prune")

BATCH = 100  # tickets (and peer rows) per transaction: about 20 ms at full size on the benchmark machine


class Pruner:
    def __init__(
        self,
        store,
        *,
        expired_margin_s: float,
        peer_retention_s: float,
        every_s: float,
        movements: bool = True,
        batch: int = BATCH,
        events: frozenset[str] | None = None,
        open_ended_s: float | None = None,
        event_grace_s: float = 7 * 86400,
    ):
        self.store, self.expired_margin_s, self.peer_retention_s = store, expired_margin_s, peer_retention_s
        self.every_s, self.movements, self.batch = every_s, movements, batch
        self.events, self.open_ended_s, self.event_grace_s = events, open_ended_s, event_grace_s
        self._next_round = 0.0  # monotonic time the next round starts
        self._running = False
        self._round: dict[str, int] = {}

    @classmethod
    def from_config(cls, store, cfg) -> "Pruner":
        return cls(
            store,
            expired_margin_s=cfg.state.expired_margin_h * 3600,
            peer_retention_s=cfg.state.peer_retention_days * 86400,
            every_s=cfg.state.prune_every_s,
            movements=not (cfg.gate.capacity is not None and cfg.gate.day_starts is None),
            events=frozenset(cfg.gate.events),
            open_ended_s=None if cfg.state.open_ended_days is None else cfg.state.open_ended_days * 86400,
            event_grace_s=cfg.state.dropped_event_days * 86400,
        )

    def step(self, monotonic_now: float, unix_now: float) -> dict | None:
        """At most one batch; what it removed, or None when no batch was due."""
        if not self._running:
            if monotonic_now < self._next_round:
                return None
            self._running, self._round = True, {}
        retention = max(self.peer_retention_s, self.store.max_validity_s + self.expired_margin_s)
        open_before_ms = None
        if self.open_ended_s is not None:
            open_before_ms = max(int((unix_now - self.open_ended_s - self.expired_margin_s) * 1000), 0)
            if self.store.open_ended:
                retention = max(retention, self.open_ended_s + self.expired_margin_s)
        elif self.store.open_ended:
            retention = None  # a peer's admission of a ticket valid without end may matter for ever
        done = self.store.prune(
            expired_before_s=int(unix_now - self.expired_margin_s),
            # nothing is older than 0 (a time before 1970 is no SQLite integer)
            peers_before_ms=0 if retention is None else max(int((unix_now - retention) * 1000), 0),
            limit=self.batch,
            movements=self.movements,
            events_admitted=self.events,
            open_before_ms=open_before_ms,
            now_s=int(unix_now),
            event_grace_s=int(self.event_grace_s),
        )
        for kind, n in done.items():
            self._round[kind] = self._round.get(kind, 0) + n
        batches = ("tickets", "admissions", "peer_admissions", "free_exits", "rolled_back")
        if not any(done[kind] >= self.batch for kind in batches):
            # a batch below its limit everywhere: the round is over
            self._running, self._next_round = False, monotonic_now + self.every_s
            if any(self._round.values()):
                log.info("state pruned", **self._round)
        return done

    def start_round(self) -> None:
        """The next step() starts a round whatever the schedule says."""
        self._next_round = 0.0

    @property
    def running(self) -> bool:
        """A round is under way: step() goes on with it."""
        return self._running

    def failed(self, monotonic_now: float) -> None:
        """A batch failed (not the store's fault, which the caller reports): this round ends, the
        next starts after `every_s`."""
        self._running, self._next_round = False, monotonic_now + self.every_s

    def run_to_end(self, unix_now: float) -> dict:
        """A whole round at once (tools and tests)."""
        total: dict[str, int] = {}
        self._next_round = 0.0
        while True:
            done = self.step(0.0, unix_now)
            for kind, n in (done or {}).items():
                total[kind] = total.get(kind, 0) + n
            if not self._running:
                return total
