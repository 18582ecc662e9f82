"""The central side beyond one machine: the ledger on PostgreSQL (same checks as on SQLite, which
tests/system/test_ledger.py runs on both), schema migrations, the per-gate `committed` progress, and
several `gated ledger` workers on one PostgreSQL, one of them SIGKILLed mid-stream."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from gated.central.ledger import Ledger, gate_partition
from gated.central.ledgerdb import _SQLITE_MIGRATIONS, SCHEMA_VERSION, open_db
from gated.cli import main
from gated.gate.store import GateStore
from gated.topics import committed_topic, events_topic
from tests.conftest import SITE
from tests.support.broker import Broker
from tests.support.uplink import Listener, device_keyring, ledger_count


def make_events(tmp_path, gates: list[str], per_gate: int):
    """Sealed, chained `state` events of real gate stores: {gate: [json text, ...]}, and the stores' keyring."""
    made, stores = {}, []
    for gate in gates:
        store = GateStore(tmp_path / f"{gate}.db", site=SITE, gate=gate)
        for _ in range(per_gate):
            store.record_event({"kind": "state", "state": "online", "rev": 0}, 1_700_000_000_000)
        made[gate] = [event for _, event in store.outbox(0, per_gate + 1)]
        stores.append(store)
    ring = device_keyring(tmp_path / "ring", *stores)
    for store in stores:
        store.close()
    return made, ring


def test_committed_is_the_highest_seq_with_everything_below_it_held(ledger_db, tmp_path):
    made, _ = make_events(tmp_path, ["g1", "g2"], 6)
    g1, g2 = made["g1"], made["g2"]
    with Ledger(ledger_db, site=SITE) as ledger:
        first = ledger.ingest([g1[0], g1[1], g1[3], g2[1]])
        second = ledger.ingest([g1[2], g1[1]])  # fills the gap; a duplicate still reports its gate
        third = ledger.ingest([g2[0]])
        assert (first.committed, second.committed, third.committed) == ({"g1": 2, "g2": 0}, {"g1": 4}, {"g2": 2})
        assert ledger.committed() == {"g1": 4, "g2": 2}


def test_sqlite_ledger_made_before_migrations_is_migrated_with_its_progress(tmp_path):
    path = tmp_path / "old.db"
    made, _ = make_events(tmp_path, ["g1", "g2"], 5)
    with Ledger(path, site=SITE) as ledger:
        ledger.ingest(made["g1"][:3] + made["g1"][4:] + made["g2"][1:])
    with sqlite3.connect(path) as conn:  # back to the schema of before: no progress table, user_version 0
        conn.execute("DROP TABLE gate_progress")
        conn.execute("PRAGMA user_version = 0")
    with Ledger(path, site=SITE) as ledger:
        assert ledger.db.schema_version() == SCHEMA_VERSION == len(_SQLITE_MIGRATIONS)
        assert ledger.committed() == {"g1": 3, "g2": 0}
        assert ledger.report()["gates"]["g1"]["events"] == 4


def test_postgres_workers_starting_together_migrate_once(postgres):
    url = postgres.database()
    errors, opened = [], []

    def open_one():
        try:
            opened.append(open_db(url))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(opened) == 4
    assert {db.schema_version() for db in opened} == {SCHEMA_VERSION}
    assert opened[0].execute("SELECT COUNT(*) FROM gated_schema").fetchone()[0] == 1
    for db in opened:
        db.close()


def test_a_postgres_url_that_cannot_work_is_a_clear_error(capsys):
    assert main(["reconcile", "--db", "postgresql://nobody@127.0.0.1:1/none"]) == 2
    err = capsys.readouterr().err
    assert "postgresql://nobody@127.0.0.1:1/none: cannot open the ledger" in err


def _publisher(port: int):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fake-gates", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(200)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _ledger_worker(broker, url, ring_dir, partition: str, log, verify: str = "every"):
    return subprocess.Popen(
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
            url,
            "--keyring",
            str(ring_dir),
            "--partition",
            partition,
            "--workers",
            "1",
            "--verify",
            verify,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _wait(until, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def test_two_workers_on_one_postgres_one_sigkilled_mid_stream_store_every_event_once(postgres, tmp_path):
    """`gated ledger --db postgresql://... --partition I/2` twice; worker 0 (`--verify chain`) is
    SIGKILLed while the gates publish and started again (as systemd would): every event is in the
    database exactly once, every chain whole, and the `committed` seq each gate is told is its last.
    Worker 0 takes its queued gates' events as a burst when it is back, so runs of each gate are
    vouched for by their last signature; worker 1 (`--verify every`) checks each one's own."""
    gates = [f"g{n}" for n in range(1, 7)]
    per_gate = 200
    made, _ = make_events(tmp_path, gates, per_gate)
    assert {gate_partition(g, 2) for g in gates} == {0, 1}  # both workers have work
    url = postgres.database()
    broker = Broker(tmp_path / "broker").start()
    listener = Listener(broker.port, f"gated/v1/{SITE}/gates/+/committed")
    log = open(tmp_path / "workers.log", "w")
    workers = {}
    client = None
    try:
        modes = {0: "chain", 1: "every"}
        workers = {p: _ledger_worker(broker, url, tmp_path / "ring", f"{p}/2", log, modes[p]) for p in (0, 1)}
        _wait(lambda: broker_has_subscribers(tmp_path, workers), 30, "both workers to start")
        client = _publisher(broker.port)
        order = [(gate, made[gate][i]) for i in range(per_gate) for gate in gates]
        killed = threading.Event()

        def publish_all():
            for n, (gate, event) in enumerate(order):
                client.publish(events_topic(SITE, gate), event, qos=1)
                if n % 100 == 99:
                    time.sleep(0.05)  # about 2000 events/s: the kill lands mid-stream

        sender = threading.Thread(target=publish_all)
        sender.start()
        _wait(lambda: ledger_count(url) > 150, 30, "the first events in the ledger")
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(10)
        killed.set()
        time.sleep(1.0)  # worker 0's gates' events queue at the broker for its session
        workers[0] = _ledger_worker(broker, url, tmp_path / "ring", "0/2", log, modes[0])
        sender.join(60)
        _wait(lambda: ledger_count(url) >= len(order), 60, "every event in the ledger")
        _wait(
            lambda: all(
                listener.on(committed_topic(SITE, g))
                and json.loads(listener.on(committed_topic(SITE, g))[-1]) == {"seq": per_gate, "held": []}
                for g in gates
            ),
            20,
            "committed = last seq for every gate",
        )
    finally:
        for p in workers.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(20)
        if client is not None:
            client.loop_stop()
            client.disconnect()
        listener.close()
        broker.stop()
        log.close()
    with Ledger(url) as ledger:
        report = ledger.report()
        (rows, distinct) = ledger.query("SELECT COUNT(*), COUNT(DISTINCT id) FROM events")[0]
    assert rows == distinct == len(order)
    for gate in gates:
        g = report["gates"][gate]
        assert (g["events"], g["last_seq"], g["missing"], g["chain_breaks"], g["conflicts"]) == (
            per_gate,
            per_gate,
            0,
            0,
            0,
        )
        assert g["signatures_checked"]
        assert (g["chain_vouched"] > 0) == (gate_partition(gate, 2) == 0)
    assert report["clean"] and report["totals"]["quarantined"] == 0
    assert main(["reconcile", "--db", url]) == 0


def broker_has_subscribers(tmp_path, workers) -> bool:
    """Both workers have subscribed (their log line says so) and are still running."""
    text = (tmp_path / "workers.log").read_text()
    return all(p.poll() is None for p in workers.values()) and text.count("ledger: subscribed") >= 2


@pytest.mark.parametrize("partition", ["2/2", "x", "1/0"])
def test_a_bad_partition_is_refused(partition, capsys):
    with pytest.raises(SystemExit):
        main(["ledger", "--broker", "mqtt://127.0.0.1:1", "--site", SITE, "--db", "x.db", "--partition", partition])
    assert "I/N" in capsys.readouterr().err


def test_two_workers_advancing_over_500_gates_at_once_do_not_deadlock(postgres):
    """Worker 1 (played here by hand, on its own connection, as `_advance` runs) has made gate b's
    progress row and is about to lock a000's; worker 2 stores a batch of 600 gates, a000 to a599
    and b. Worker 2 must not lock a000 before it has all its rows: before, it locked its first 500
    gates, then waited on b, and worker 1 waited on a000: PostgreSQL's deadlock detector then
    failed one of them, and a failed batch stops `gated ledger`."""
    import psycopg
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gated.core import events

    key = Ed25519PrivateKey.generate()

    def event(gate: str, seq: int, prev: str) -> dict:
        return events.seal(
            {"kind": "state", "state": "online", "rev": 0},
            site=SITE,
            gate=gate,
            seq=seq,
            prev=prev,
            ts_ms=1_790_000_000_000,
            key=key,
        )

    url = postgres.database()
    firsts = {f"a{n:03d}": event(f"a{n:03d}", 1, events.GENESIS) for n in range(600)}
    with Ledger(url, site=SITE) as ledger:
        ledger.ingest(list(firsts.values()))
    worker1 = psycopg.connect(url, autocommit=True)
    worker1.execute("SET deadlock_timeout = '100ms'")
    worker1.execute("BEGIN")
    worker1.execute("INSERT INTO gate_progress (gate, contiguous) VALUES ('b', 0) ON CONFLICT DO NOTHING")
    outcome = {}

    def worker2() -> None:
        try:
            with Ledger(url, site=SITE) as ledger:
                batch = [event(g, 2, first["hash"]) for g, first in firsts.items()] + [event("b", 1, events.GENESIS)]
                outcome["committed"] = ledger.ingest(batch).committed
        except Exception as exc:  # noqa: BLE001 - the test reports it
            outcome["error"] = repr(exc)

    second = threading.Thread(target=worker2)
    second.start()
    monitor = psycopg.connect(url, autocommit=True)  # outside worker 1's transaction: a fresh view each time
    try:
        _wait(
            lambda: (
                monitor.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'").fetchone()[0]
                > 0
            ),
            20,
            "worker 2 to wait for worker 1's row b",
        )
        worker1.execute("SET lock_timeout = '10s'")
        (contiguous,) = worker1.execute(
            "SELECT contiguous FROM gate_progress WHERE gate = 'a000' FOR UPDATE"
        ).fetchone()
        worker1.execute("COMMIT")
    finally:
        second.join(30)
        worker1.close()
        monitor.close()
    assert contiguous == 1
    assert "error" not in outcome, outcome
    assert outcome["committed"]["b"] == 1 and outcome["committed"]["a599"] == 2
