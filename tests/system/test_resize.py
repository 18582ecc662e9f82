"""Resizing the ledger loses nothing (issue #22, item 4): `gated ledger --partition I/N` workers on one
database go from 2 to 3 and back to 2 while gates publish, the way docs/central.md ("Changing the
number of workers") tells an operator to. End-to-end delivery makes it hold: a gate whose events went
to a worker that was stopping, or to a new worker's session before it existed, has no confirmation
for them and sends them again. Every event is in the ledger once; nothing declared lost. Real
`gated ledger` processes, real Mosquitto, SQLite and PostgreSQL, the gates' default settings."""

from __future__ import annotations

import signal
import subprocess
import sys

from gated import keys
from gated.central.ledger import Ledger, gate_partition
from gated.gate.store import GateStore
from gated.gate.uplink import Uplink
from tests.conftest import SITE
from tests.support.uplink import LEDGER_KEY, admit_for, device_keyring, fast_settings, ledger_count, pump

GATES = [f"g{n}" for n in range(1, 7)]


def _workers(broker, db, ring, key, parts: int, log) -> list[subprocess.Popen]:
    procs = [
        subprocess.Popen(
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
                str(db),
                "--keyring",
                str(ring),
                "--signing-key",
                str(key),
                "--workers",
                "1",
                "--partition",
                f"{i}/{parts}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for i in range(parts)
    ]
    return procs


def _subscribed(log_path, count: int, procs) -> bool:
    assert all(p.poll() is None for p in procs), log_path.read_text()[-3000:]
    return log_path.read_text().count("ledger: subscribed") >= count


def _stop(procs) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(30)


def test_partitions_two_to_three_to_two_mid_stream_store_every_event_once(ledger_db, broker, tmp_path, authority):
    assert {gate_partition(g, 2) for g in GATES} == {0, 1} and {gate_partition(g, 3) for g in GATES} == {0, 1, 2}
    stores = [GateStore(tmp_path / f"{g}.db", site=SITE, gate=g) for g in GATES]
    ring = tmp_path / "ring"
    device_keyring(ring, *stores)
    key = tmp_path / "ledger.key"
    key.write_bytes(keys.private_pem(LEDGER_KEY))
    uplinks = [
        Uplink(store=s, keyring=authority.keyring, site=SITE, gate=s.gate, settings=fast_settings(broker.url))
        for s in stores
    ]
    log_path = tmp_path / "workers.log"
    log = open(log_path, "w")
    procs: list[subprocess.Popen] = []
    started = 0
    try:
        for u in uplinks:
            u.start()
        for parts in (2, 3, 2):
            procs = _workers(broker, ledger_db, ring, key, parts, log)
            started += parts
            pump(uplinks, lambda n=started, ps=procs: _subscribed(log_path, n, ps), timeout=60, what=f"{parts} workers")
            admit_for(stores, uplinks, 2.0, 0.02)  # the gates publish while this arrangement runs
            made = sum(s.last_seq for s in stores)
            # before the next change, this arrangement holds everything so far, and has confirmed it: after
            # 2 -> 3 that takes the gates sending again what went to the old workers' sessions meanwhile
            pump(
                uplinks,
                lambda n=made: ledger_count(ledger_db) >= n and all(s.outbox_counts() == (0, 0) for s in stores),
                timeout=240,
                what=f"every event so far stored and confirmed by {parts} workers",
            )
            _stop(procs)  # the operator stops the workers, then starts the new number of them
            admit_for(stores, uplinks, 0.5, 0.02)  # and the gates go on meanwhile
        procs = _workers(broker, ledger_db, ring, key, 2, log)
        started += 2
        made = sum(s.last_seq for s in stores)
        pump(
            uplinks,
            lambda: ledger_count(ledger_db) >= made and all(s.outbox_counts() == (0, 0) for s in stores),
            timeout=240,
            what="every event in the ledger and confirmed",
        )
    finally:
        for u in uplinks:
            u.stop()
        if procs:
            _stop([p for p in procs if p.poll() is None])
        log.close()
    with Ledger(ledger_db) as ledger:
        report = ledger.report()
        (rows, distinct) = ledger.query("SELECT COUNT(*), COUNT(DISTINCT id) FROM events")[0]
    assert rows == distinct == made
    for s in stores:
        g = report["gates"][s.gate]
        assert (g["events"], g["last_seq"], g["missing"], g["declared_lost"], g["chain_breaks"]) == (
            s.last_seq,
            s.last_seq,
            0,
            0,
            0,
        ), (s.gate, g)
        s.close()
    assert report["clean"]
