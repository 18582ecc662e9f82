"""Opt-in Prometheus HTTP endpoints (prometheus-client): the gate's and the ledger's.

    gate     [metrics] listen = "127.0.0.1:9108"      the figures of the last health report
                                                       (gated/gate/health.py PROMETHEUS: gated_*), the
                                                       same names as the textfile
    ledger   gated ledger --metrics 127.0.0.1:9109     per gate, read from the ledger database at
                                                       each scrape (a separate read connection)

Each endpoint has its own registry (no process or platform collectors), serves GET /metrics on a
daemon thread, and is stopped with the process. Names and labels are documented in
docs/metrics.md; docs/metrics/ has a Prometheus scrape example and a Grafana dashboard.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gated.core.errors import GatedError
from gated.gate import health


class MetricsError(GatedError, ValueError):
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
        if body.get("checkin_list_version"):
            held = GaugeMetricFamily("gated_checkin_list_version", "the pretix check-in list the gate holds",
                                     labels=labels + ["list"])
            held.add_metric(values + [str(body.get("checkin_list"))], int(body["checkin_list_version"]))
            yield held
