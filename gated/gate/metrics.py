"""The gate's Prometheus figures: `[metrics] listen = "127.0.0.1:9108"` serves the last health
report (gated/gate/health.py PROMETHEUS: gated_*), the same names as the textfile. The endpoint is
gated/metrics_http.py's (shared with the ledger: 127.0.0.1 by default, two threads, bounded
connections). Names and labels are documented in docs/metrics.md; docs/metrics/ has a Prometheus
scrape example and a Grafana dashboard.
"""

from __future__ import annotations

import threading

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gated.gate import health
from gated.metrics_http import MetricsError, check_listen, parse_listen, serve

__all__ = ["GateCollector", "MetricsError", "check_listen", "parse_listen", "serve"]


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
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                f"gated_{key}", help_text, labels=labels
            )
            family.add_metric(values, int(value))
            yield family
        mode = GaugeMetricFamily("gated_mode", "the gate's mode (online, locked, emergency)", labels=labels + ["mode"])
        mode.add_metric(values + [str(body.get("mode"))], 1)
        yield mode
        if body.get("checkin_list_version"):
            held = GaugeMetricFamily(
                "gated_checkin_list_version", "the pretix check-in list the gate holds", labels=labels + ["list"]
            )
            held.add_metric(values + [str(body.get("checkin_list"))], int(body["checkin_list_version"]))
            yield held
