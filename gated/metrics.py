"""Opt-in Prometheus HTTP endpoints (prometheus-client): the gate's and the ledger's.

    gate     [metrics] listen = "127.0.0.1:9108"      the figures of the last health report
                                                       (gated/health.py PROMETHEUS: gated_*), the
                                                       same names as the textfile
    ledger   gated ledger --metrics 127.0.0.1:9109     per gate, read from the ledger database at
                                                       each scrape (a separate read connection)

Each endpoint has its own registry (no process or platform collectors), serves GET /metrics on a
daemon thread, and is stopped with the process. Names and labels are documented in
docs/metrics.md; docs/metrics/ has a Prometheus scrape example and a Grafana dashboard.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gated import health


class MetricsError(ValueError):
    """A listen address that cannot work, or a port already taken."""


def parse_listen(text: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:9108`) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise MetricsError(f"{text!r}: expected host:port, e.g. 127.0.0.1:9108")
    return host, int(port)


def check_listen(text: str) -> str | None:
    """For the configuration schema: what is expected, or None."""
    try:
        parse_listen(text)
    except MetricsError:
        return "host:port, e.g. 127.0.0.1:9108"
    return None


def serve(listen: str, collector: Collector):
    """Start GET /metrics on `listen` with only `collector`; returns the server (shutdown() stops it)."""
    host, port = parse_listen(listen)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise MetricsError(f"cannot listen on {listen} ({exc.strerror or exc})") from None
    return server


# --- the gate --------------------------------------------------------------------------------------

class GateCollector(Collector):
    """The gate's last health body as gated_* metrics (the daemon calls update() at every report)."""

    def __init__(self, site: str, gate: str):
        self.site, self.gate = site, gate
        self._body: dict | None = None
        self._lock = threading.Lock()

    def update(self, body: dict) -> None:
        with self._lock:
            self._body = dict(body)

    def collect(self):
        with self._lock:
            body = self._body
        if body is None:
            return
        labels, values = ["site", "gate"], [self.site, self.gate]
        for key, kind, help_text in health.PROMETHEUS:
            value = body.get(key)
            if value is None:
                continue
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(f"gated_{key}", help_text,
                                                                                      labels=labels)
            family.add_metric(values, int(value))
            yield family
        mode = GaugeMetricFamily("gated_mode", "the gate's mode (online, locked, emergency)",
                                 labels=labels + ["mode"])
        mode.add_metric(values + [str(body.get("mode"))], 1)
        yield mode


# --- the ledger ------------------------------------------------------------------------------------

LEDGER_PER_GATE = (
    # (name, kind, help, report key)
    ("gated_ledger_events", "counter", "events stored in the ledger (rate(): events per second)", "events"),
    ("gated_ledger_admits", "counter", "admissions stored in the ledger", "admits"),
    ("gated_ledger_missing_events", "gauge", "sequence numbers missing from 1..max (gaps)", "missing"),
    ("gated_ledger_chain_breaks", "gauge", "events whose prev does not match their neighbour's hash", "chain_breaks"),
    ("gated_ledger_bad_signatures", "gauge", "events whose device signature does not verify", "bad_signatures"),
)


class LedgerCollector(Collector):
    """Per gate figures of a ledger database, read at each scrape with its own connection (so the
    HTTP thread never touches the service's connection). `received` is the service's message count."""

    def __init__(self, db_path: str | Path, site: str, received=lambda: 0):
        self.db_path, self.site, self.received = Path(db_path), site, received

    def collect(self):
        from gated.central.ledger import Ledger, LedgerError

        try:
            ledger = Ledger(self.db_path)
        except LedgerError:
            return
        try:
            report = ledger.report()
            lags = _lags(ledger.db)
        except sqlite3.Error:
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
            "SELECT gate, ts, MAX(received_ms) FROM events e WHERE seq = (SELECT MAX(seq) FROM events WHERE gate = e.gate) "
            "GROUP BY gate"):
        lag = None
        if isinstance(ts, str):
            try:
                lag = max(0.0, received_ms / 1000 - datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())
            except ValueError:
                lag = None
        out[gate] = (lag, received_ms)
    return out
