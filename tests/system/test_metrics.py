"""The opt-in Prometheus endpoints, scraped over HTTP: a `gated run` gate with `[metrics] listen`,
and `gated ledger --metrics`; every metric name docs/metrics.md documents is served."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import EVENT, SITE
from tests.support import gateproc
from tests.support.broker import free_port
from tests.support.gatedaemon import GateProcess, gate_config, write_config

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "metrics.md"
# absent until there is something to report: a beacon, a first scan, a first list
CONDITIONAL = {"gated_clock_offset_ms", "gated_last_scan_age_s", "gated_rev_age_s"}


def documented() -> set[str]:
    return set(re.findall(r"`(gated_[a-z_]+)`", DOC.read_text()))


def scrape(url: str, timeout: float = 20.0, until=lambda samples: True) -> dict[str, list]:
    """name -> [(labels, value)] of the exposition at `url`, retried until `until(samples)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                assert response.status == 200
                text = response.read().decode()
            samples: dict[str, list] = {}
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    samples.setdefault(sample.name, []).append((sample.labels, sample.value))
            if until(samples):
                return samples
        except (urllib.error.URLError, ConnectionError):
            pass
        assert time.monotonic() < deadline, f"{url}: no acceptable scrape within {timeout} s"
        time.sleep(0.2)


def test_the_gate_serves_its_health_figures_over_http_and_keeps_the_textfile(tmp_path, authority, broker):
    port = free_port()
    textfile = tmp_path / "gated.prom"
    cfg = gate_config(
        tmp_path,
        keyring=authority.keyring_dir,
        broker_url=broker.url,
        camera_source="synthetic:",
        site=SITE,
        gate="g1",
        event=EVENT,
        metrics={"listen": f"127.0.0.1:{port}"},
        health={"interval_s": 0.5, "textfile": str(textfile)},
    )
    gate = GateProcess(write_config(tmp_path / "gated.toml", cfg)).start()
    try:
        gate.wait_ready()
        samples = scrape(f"http://127.0.0.1:{port}/metrics", until=lambda s: s.get("gated_frames_total"))
    finally:
        assert gate.terminate() == 0
    assert samples["gated_mode"] == [({"site": SITE, "gate": "g1", "mode": "online"}, 1.0)]
    assert samples["gated_frames_total"][0][1] > 0
    assert samples["gated_outbox"][0][0] == {"site": SITE, "gate": "g1"}
    gate_names = {n for n in documented() if not n.startswith("gated_ledger_")}
    assert gate_names - CONDITIONAL <= set(samples), sorted(gate_names - set(samples))
    assert set(samples) <= gate_names, sorted(set(samples) - gate_names)
    # the textfile option stays, with the same names
    file_names = {s.name for f in text_string_to_metric_families(textfile.read_text()) for s in f.samples}
    assert file_names == set(samples)


def test_a_taken_metrics_port_stops_the_gate_with_a_clear_error(tmp_path, authority, broker):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = gate_config(
            tmp_path,
            keyring=authority.keyring_dir,
            broker_url=broker.url,
            camera_source="synthetic:",
            site=SITE,
            gate="g1",
            event=EVENT,
            metrics={"listen": f"127.0.0.1:{port}"},
        )
        gate = GateProcess(write_config(tmp_path / "gated.toml", cfg)).start()
        assert gate.process.wait(60) == 2
        gate._reader.join(5)
    assert any("[metrics] listen" in line and "cannot listen" in line for line in gate.raw), gate.raw[-5:]


def test_the_ledger_serves_per_gate_figures_over_http(tmp_path, broker, ledger_db):
    """On either backend: a SQLite file, and a postgresql:// URL (which must stay a URL)."""
    port = free_port()
    ledger = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gated.cli",
            "ledger",
            "--broker",
            broker.url,
            "--site",
            SITE,
            "--db",
            ledger_db,
            "--metrics",
            f"127.0.0.1:{port}",
            "--keyring",
            str(tmp_path / "ledger-keyring"),
        ],  # none approved yet: starts anyway
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        scrape(url)  # up (and subscribed soon after)
        time.sleep(1.0)
        gate = gateproc.spawn(
            "--db",
            str(tmp_path / "g1.db"),
            "--site",
            SITE,
            "--gate",
            "g1",
            "--broker",
            broker.url,
            "--make",
            "5",
            "--exit-when-drained",
        )
        assert gate.wait(30) == 0
        samples = scrape(url, until=lambda s: any(v == 5 for _, v in s.get("gated_ledger_events_total", [])))
    finally:
        ledger.terminate()
        assert ledger.wait(20) == 0, ledger.stderr.read()
    assert "trusts no device key yet" in ledger.stderr.read()
    g1 = {"site": SITE, "gate": "g1"}
    assert (g1, 5.0) in samples["gated_ledger_events_total"]
    assert (g1, 0.0) in samples["gated_ledger_missing_events"]
    assert (g1, 0.0) in samples["gated_ledger_chain_breaks"]
    assert (g1, 0.0) in samples["gated_ledger_over_admitted"]
    [(labels, lag)] = samples["gated_ledger_lag_seconds"]
    assert labels == g1 and 0 <= lag < 30
    assert samples["gated_ledger_received_messages_total"][0][1] >= 5
    assert 0 <= samples["gated_ledger_figures_age_seconds"][0][1] < 30  # a snapshot, renewed every few seconds
    ledger_names = {n for n in documented() if n.startswith("gated_ledger_")}
    assert ledger_names == set(samples), sorted(ledger_names ^ set(samples))


def test_the_shipped_dashboard_and_scrape_example_use_only_documented_names():
    import json

    dashboard = json.loads((ROOT / "docs" / "metrics" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"\b(gated_[a-z_]+)", e)}
    assert used and used <= documented(), sorted(used - documented())
    assert "gated_ledger_events_total" in used and "gated_scans_per_min" in used
    assert (ROOT / "docs" / "metrics" / "prometheus.yml").read_text().count("job_name") == 2


# --- what a scrape costs, and what strangers on the network can do to the endpoints -------------


def test_a_ledger_scrape_at_a_million_events_takes_a_fixed_small_time(tmp_path):
    """The figures are a snapshot kept up to date off the scrape: at 1,000,000 stored events (a busy
    venue's day) a scrape answers as fast as at a thousand. (A ledger report per scrape took 10-20 s
    here.) The ledger is made by direct SQL: publishing a million signed events would take an hour."""
    from gated.central.ledger_metrics import LedgerCollector
    from gated.metrics_http import serve
    from tests.support.metricsload import big_ledger, timed_scrape

    path = big_ledger(tmp_path / "ledger.db", 1_000_000)
    figures = LedgerCollector(path, SITE).start()
    port = free_port()
    server = serve(f"127.0.0.1:{port}", figures)
    try:
        samples = scrape(
            f"http://127.0.0.1:{port}/metrics",
            timeout=180,
            until=lambda s: sum(v for _, v in s.get("gated_ledger_events_total", [])) == 1_000_000,
        )
        assert ({"site": SITE, "gate": "g7"}, 0.0) in samples["gated_ledger_missing_events"]
        took = [timed_scrape(port)[0] for _ in range(5)]
        assert max(took) < 1.0, took  # fixed, whatever the ledger holds
    finally:
        server.shutdown()
        figures.stop()


def held_connections_leave_the_endpoint_answering(pid: int, port: int, count: int = 500) -> None:
    """`count` idle connections (they send nothing): the process keeps a bounded number of threads and
    still answers a scrape (an idle connection is closed to make room for a new one)."""
    from tests.support.metricsload import hold_idle, release, threads_and_memory, timed_scrape

    before, _ = threads_and_memory(pid)
    held = hold_idle(port, count)
    try:
        time.sleep(1.0)  # every connection accepted by now
        during, _ = threads_and_memory(pid)
        took, body = timed_scrape(port, timeout=10)
        assert b"gated_" in body
        assert during <= before + 4, (before, during)  # was one thread per connection: 500 and more
    finally:
        release(held)


def test_idle_connections_to_the_gate_endpoint_cannot_exhaust_it(tmp_path, authority, broker):
    port = free_port()
    cfg = gate_config(
        tmp_path,
        keyring=authority.keyring_dir,
        broker_url=broker.url,
        camera_source="synthetic:",
        site=SITE,
        gate="g1",
        event=EVENT,
        metrics={"listen": str(port)},  # a port alone: 127.0.0.1
        health={"interval_s": 0.5},
    )
    gate = GateProcess(write_config(tmp_path / "gated.toml", cfg)).start()
    try:
        gate.wait_ready()
        scrape(f"http://127.0.0.1:{port}/metrics", until=lambda s: s.get("gated_frames_total"))
        held_connections_leave_the_endpoint_answering(gate.process.pid, port)
    finally:
        assert gate.terminate() == 0


def test_idle_connections_to_the_ledger_endpoint_cannot_exhaust_it(tmp_path, broker):
    port = free_port()
    ledger = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gated.cli",
            "ledger",
            "--broker",
            broker.url,
            "--site",
            SITE,
            "--db",
            str(tmp_path / "ledger.db"),
            "--metrics",
            str(port),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        scrape(f"http://127.0.0.1:{port}/metrics")
        held_connections_leave_the_endpoint_answering(ledger.pid, port)
    finally:
        ledger.terminate()
        assert ledger.wait(20) == 0, ledger.stderr.read()
    assert f"metrics on http://127.0.0.1:{port}/metrics" in ledger.stderr.read()


def test_a_slow_or_stray_request_gets_a_bounded_answer():
    """A request head that drips in is cut off at the head timeout; anything but GET /metrics is
    refused; the endpoint listens on 127.0.0.1 when given only a port."""
    import socket

    from prometheus_client.registry import Collector

    from gated.metrics_http import MetricsServer, parse_listen

    assert parse_listen("9108") == ("127.0.0.1", 9108) and parse_listen("[::1]:9108") == ("::1", 9108)

    class Nothing(Collector):
        def collect(self):
            return iter(())

    server = MetricsServer("127.0.0.1", 0, Nothing(), head_timeout=1.0)
    try:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as slow:
            started = time.monotonic()
            cut = False
            while time.monotonic() - started < 5:
                try:
                    slow.sendall(b"G")
                    if slow.recv(1, socket.MSG_DONTWAIT) == b"":
                        cut = True
                        break
                except BlockingIOError:
                    pass
                except OSError:
                    cut = True
                    break
                time.sleep(0.1)
            assert cut and time.monotonic() - started < 3
        for request, status in (
            (b"GET /other HTTP/1.1\r\n\r\n", b"404"),
            (b"POST /metrics HTTP/1.1\r\n\r\n", b"405"),
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", b"200"),
        ):
            with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as conn:
                conn.sendall(request)
                assert conn.recv(64).split(b" ")[1] == status
    finally:
        server.shutdown()


def test_the_units_bound_tasks_and_memory():
    """What the endpoints do not bound, the service manager does: every unit sets TasksMax and MemoryMax."""
    for unit in ("gated.service", "gated-ledger.service", "gated-ledger-worker@.service"):
        service = (ROOT / "systemd" / unit).read_text().split("[Service]", 1)[1].split("\n[", 1)[0]
        settings = dict(line.split("=", 1) for line in service.splitlines() if "=" in line and line[0] != "#")
        assert int(settings["TasksMax"]) <= 128, unit
        assert re.fullmatch(r"\d+[MG]", settings["MemoryMax"]), unit


def test_stopping_with_connections_open_leaves_no_traceback_in_the_log(caplog):
    """systemctl stop while a scraper or an idle client is connected: the connections are closed,
    and the log says nothing (asyncio of Python 3.11 logged each cancelled connection as an
    'Unhandled exception in client_connected_cb' with a CancelledError traceback)."""
    import logging
    import socket

    from prometheus_client.registry import Collector

    from gated.metrics_http import MetricsServer

    class Nothing(Collector):
        def collect(self):
            return iter(())

    server = MetricsServer("127.0.0.1", 0, Nothing())
    idle = [socket.create_connection(("127.0.0.1", server.server_port), timeout=10) for _ in range(3)]
    try:
        idle[0].sendall(b"GET /met")  # a head half sent
        deadline = time.monotonic() + 10
        while server._open < 3:  # every connection accepted and waiting for its head
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with caplog.at_level(logging.DEBUG, logger="asyncio"):
            server.shutdown()
        assert [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING] == []
        for conn in idle:
            assert conn.recv(1) == b""  # closed by the server
    finally:
        for conn in idle:
            conn.close()
