"""The ledger's Prometheus figures (`gated ledger --metrics LISTEN`, names in docs/metrics.md): per
gate events, admissions, gaps, chain breaks, bad signatures, over-admissions and lag, read from the
ledger database at each scrape. The HTTP endpoint itself is gated/gate/metrics.py's, shared with gates."""

from __future__ import annotations

import time
from pathlib import Path

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gated.core.events import parse_ts

log = structlog.get_logger("gated.ledger.metrics")

# --- the ledger ------------------------------------------------------------------------------------

LEDGER_PER_GATE = (
    # (name, kind, help, report key)
    ("gated_ledger_events", "counter", "events stored in the ledger (rate(): events per second)", "events"),
    ("gated_ledger_admits", "counter", "admissions stored in the ledger", "admits"),
    ("gated_ledger_missing_events", "gauge", "sequence numbers missing from 1..max (gaps)", "missing"),
    ("gated_ledger_declared_lost_events", "gauge", "sequence numbers below a gate's floor the ledger never got: "
     "the gate no longer holds them (a declared loss)", "declared_lost"),
    ("gated_ledger_chain_breaks", "gauge", "events whose prev does not match their neighbour's hash", "chain_breaks"),
    ("gated_ledger_bad_signatures", "gauge", "events whose device signature does not verify", "bad_signatures"),
)


class LedgerCollector(Collector):
    """Per gate figures of a ledger database, read at each scrape with its own connection (so the
    HTTP thread never touches the service's connection). `received` is the service's message count."""

    def __init__(self, db_path: str | Path, site: str, received=lambda: 0):
        # str, not Path: a postgresql:// URL must stay a URL (a Path would make it a SQLite file name)
        self.db_path, self.site, self.received = str(db_path), site, received

    def collect(self):
        from gated.central.ledger import Ledger, LedgerError

        try:
            ledger = Ledger(self.db_path)
        except LedgerError:
            return
        try:
            report = ledger.report()
            lags = _lags(ledger.db)
        except ledger.db.errors as exc:  # sqlite3.Error or psycopg.Error: this scrape is empty, the next may work
            log.warning("ledger metrics not read", error=str(exc))
            return
        finally:
            ledger.close()
        labels = ["site", "gate"]
        gates = sorted(report["gates"])
        for name, kind, help_text, key in LEDGER_PER_GATE:
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, help_text, labels=labels)
            for gate in gates:
                family.add_metric([self.site, gate], report["gates"][gate][key])
            yield family
        over = GaugeMetricFamily("gated_ledger_over_admitted", "tickets admitted more often than allowed, "
                                 "counted at each gate that admitted them", labels=labels)
        counts = {gate: 0 for gate in gates}
        for finding in report["over_admitted"]:
            for gate in finding["gates"]:
                counts[gate] = counts.get(gate, 0) + 1
        for gate, count in sorted(counts.items()):
            over.add_metric([self.site, gate], count)
        yield over
        lag = GaugeMetricFamily("gated_ledger_lag_seconds", "from the newest event's ts to when the ledger "
                                "received it", labels=labels)
        silent = GaugeMetricFamily("gated_ledger_last_received_age_seconds", "since the ledger last received an "
                                   "event of the gate", labels=labels)
        now_ms = time.time_ns() // 1_000_000
        for gate, (lag_s, received_ms) in sorted(lags.items()):
            if lag_s is not None:
                lag.add_metric([self.site, gate], lag_s)
            silent.add_metric([self.site, gate], max(0.0, (now_ms - received_ms) / 1000))
        yield lag
        yield silent
        quarantined = GaugeMetricFamily("gated_ledger_quarantined", "messages kept aside (bad hash or signature)",
                                        labels=["site"])
        quarantined.add_metric([self.site], report["totals"]["quarantined"])
        yield quarantined
        received = CounterMetricFamily("gated_ledger_received_messages", "event messages received from the broker "
                                       "since the ledger started (redeliveries included)", labels=["site"])
        received.add_metric([self.site], self.received())
        yield received


def _lags(db) -> dict[str, tuple[float | None, int]]:
    """Per gate: (lag of its newest event in seconds, or None if its ts is unreadable; when it came)."""
    out = {}
    for gate, ts, received_ms in db.execute(
            "SELECT e.gate, e.ts, e.received_ms FROM events e "
            "WHERE e.seq = (SELECT MAX(seq) FROM events WHERE gate = e.gate)"):
        made_ms = parse_ts(ts)
        out[gate] = (None if made_ms is None else max(0.0, (received_ms - made_ms) / 1000), received_ms)
    return out
