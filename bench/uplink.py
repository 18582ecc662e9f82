"""Uplink and ledger throughput against a local Mosquitto, each figure beside its target.

    .venv/bin/python bench/uplink.py [--events 20000] [--gates 50] [--per-gate 400]

1. Outbox drain after an outage: a gate's outbox fills while the broker is away; the time from
   the uplink's connection to an empty outbox (every row acknowledged by PUBACK and deleted).
   Target: >= 2,000 events/s. Beside it, the price of end-to-end delivery (issue #22): a gate
   admitting 20 events/s with a ledger running, its broker down for --outage-s (60 s; killed, a
   power cut, so what it had acknowledged is gone too): duplicates the ledger received per 1,000
   events made, the outbox's peak size, and how long after the broker came back every event was
   stored and confirmed.
2. Ledger ingest from 50 simulated gates: signed, chained events of 50 gates are queued for the
   ledger's persistent session while it is away; the time from its reconnection until every event
   is stored (checked: signatures, chains, exactly once) and acknowledged. Target: >= 5,000 events/s.
   Also: two ledger processes in one shared-subscription group writing one database (the way to
   scale out past one Python process), and the same batches through Ledger.ingest() alone.

The machine may be shared: figures are pessimistic, and the best of --repeat runs is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from gated import keys  # noqa: E402
from gated.central.ledger import Ledger  # noqa: E402
from gated.central.ledger_service import LedgerService  # noqa: E402
from gated.core import events  # noqa: E402
from gated.gate.store import GateStore  # noqa: E402
from gated.gate.uplink import Uplink  # noqa: E402
from gated.keys import Keyring  # noqa: E402
from gated.mqtturl import parse_broker_url  # noqa: E402
from gated.topics import events_topic  # noqa: E402
from tests.support.broker import Broker  # noqa: E402

SITE = "bench"
WORKERS = min(4, os.cpu_count() or 1)  # as `gated ledger` does by default


def line(name: str, value: float, target: float, unit: str = "events/s") -> None:
    verdict = "ok" if value >= target else "BELOW TARGET"
    print(f"{name:48} {value:10,.0f} {unit}   target >= {target:,.0f}   {verdict}")


def drain_after_outage(work: Path, count: int) -> float:
    broker = Broker(work / "broker-drain")
    with GateStore(work / "gate.db", site=SITE, gate="g1") as store:
        for _ in range(count):
            store.record_event({"kind": "state", "state": "online", "rev": 0}, time.time_ns() // 1_000_000)
        broker.start()
        try:
            uplink = Uplink(
                store=store,
                keyring=Keyring(),
                settings=parse_broker_url(broker.url, reconnect_min_s=0.05),
                site=SITE,
                gate="g1",
            )
            uplink.start()
            while not uplink.connected:
                uplink.poll(0.005)
            started = time.perf_counter()
            while store.outbox_depth():
                uplink.poll(0.005)
            elapsed = time.perf_counter() - started
            uplink.stop()
        finally:
            broker.stop()
    return count / elapsed


def resend_overhead(work: Path, outage_s: float, rate: float = 20.0) -> dict:
    """A gate and a ledger (signed confirmations, default settings); the broker SIGKILLed for
    `outage_s` while the gate keeps admitting. Duplicates per 1,000 events, the outbox's peak."""
    from tests.support.uplink import LEDGER_KEY, LedgerThread, admit, device_keyring, trust_ledger_key

    broker = Broker(work / "broker-resend").start()
    ring_dir = work / "resend-ring"
    trust_ledger_key(ring_dir)
    gate_ring = keys.load_keyring(ring_dir)
    store = GateStore(work / "resend-gate.db", site=SITE, gate="g1")
    ledger_ring = device_keyring(work / "resend-ledger-ring", store)
    uplink = Uplink(
        store=store,
        keyring=gate_ring,
        settings=parse_broker_url(broker.url, reconnect_min_s=0.05, reconnect_max_s=1.0),
        site=SITE,
        gate="g1",
    )
    peak = 0

    def run_for(seconds: float) -> None:
        nonlocal peak
        end, next_at = time.monotonic() + seconds, time.monotonic()
        while time.monotonic() < end:
            if time.monotonic() >= next_at:
                admit(store)
                next_at += 1 / rate
            uplink.poll(0.005)
            peak = max(peak, sum(store.outbox_counts()))

    try:
        with LedgerThread(
            work / "resend-ledger.db",
            broker.url,
            SITE,
            keyring=ledger_ring,
            signing_key=LEDGER_KEY,
            client_id="bench-resend-ledger",
        ) as ledger:
            uplink.start()
            run_for(10.0)
            broker.stop(kill=True)  # a power cut: what it acknowledged since its last save is gone
            run_for(outage_s)
            broker.start()
            back = time.monotonic()
            run_for(10.0)
            while ledger.count() < store.last_seq or store.outbox_counts() != (0, 0):
                uplink.poll(0.01)
                if time.monotonic() - back > 600:
                    raise RuntimeError(f"ledger holds {ledger.count()} of {store.last_seq} after 10 minutes")
            settled = time.monotonic() - back
            uplink.stop()
            ledger.stop()
            duplicates, made = ledger.service.duplicates, store.last_seq
    finally:
        store.close()
        broker.stop()
    return {
        "made": made,
        "duplicates": duplicates,
        "per_1000": 1000 * duplicates / made,
        "peak": peak,
        "settled_s": settled,
    }


def queue_burst(port: int, messages) -> None:
    """Publish (topic, payload) pairs, QoS 1, to the broker on `port`, and wait for every PUBACK:
    the burst the ledger's sessions find queued when they come back."""
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.max_inflight_messages_set(1000)
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    for info in [publisher.publish(topic, payload, qos=1) for topic, payload in messages]:
        info.wait_for_publish(60)
    publisher.disconnect()
    publisher.loop_stop()


def simulated_gates(gates: int, per_gate: int) -> tuple[list[tuple[str, bytes]], Keyring]:
    """Signed, chained events of `gates` gates, interleaved as they would arrive."""
    ring, streams = Keyring(), []
    for n in range(gates):
        gate, key = f"g{n:02d}", Ed25519PrivateKey.generate()
        ring = ring.with_key(keys.trusted(gate, key.public_key(), ["device"]))
        prev, stream = events.GENESIS, []
        for seq in range(1, per_gate + 1):
            body = {
                "kind": "scan",
                "ticket": f"{seq:032x}",
                "event": "E",
                "type": "general",
                "zone": "z",
                "decision": "admit" if seq % 5 else "deny",
                "reason": "ok" if seq % 5 else "already_used",
                "rev": 0,
                "latency_us": 0,
            }
            event = events.seal(body, site=SITE, gate=gate, seq=seq, prev=prev, ts_ms=1_700_000_000_000 + seq, key=key)
            prev = event["hash"]
            stream.append((events_topic(SITE, gate), events.canonical(event)))
        streams.append(stream)
    return [m for row in zip(*streams) for m in row], ring


def ledger_ingest(work: Path, messages, ring, run: int) -> tuple[float, dict]:
    broker = Broker(work / f"broker-ledger-{run}", extra_config="max_queued_messages 0\n").start()
    try:
        settings = parse_broker_url(broker.url, client_id="bench-ledger", reconnect_min_s=0.05)
        ledger = Ledger(work / f"ledger-{run}.db", keyring=ring, site=SITE, workers=WORKERS)
        key = Ed25519PrivateKey.generate()  # signed confirmations and occupancy, as deployed
        service = LedgerService(ledger, settings, site=SITE, signing_key=key)
        service.start()  # make the persistent session and its subscription, then go away
        while not service.link.connected:
            time.sleep(0.01)
        time.sleep(0.2)
        service.stop()
        queue_burst(broker.port, messages)
        service = LedgerService(ledger, settings, site=SITE, signing_key=key)
        service.start()
        started, cpu = time.perf_counter(), time.process_time()
        while service.stored < len(messages):
            service.step(0.05)
            if time.perf_counter() - started > 300:
                raise RuntimeError(f"ledger stored only {service.stored} of {len(messages)}")
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        service.stop()
        report = ledger.report()
        report["cpu_s"] = cpu
        ledger.close()
    finally:
        broker.stop()
    return len(messages) / elapsed, report


WORKER = """
import sys, time
sys.path.insert(0, {root!r})
from gated.central.ledger import Ledger
from gated.central.ledger_service import LedgerService
from gated.keys import load_keyring
from gated.mqtturl import parse_broker_url
ledger = Ledger({db!r}, keyring=load_keyring({ring!r}), site={site!r}, workers=1)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
service = LedgerService(ledger, parse_broker_url({url!r}, client_id={cid!r}), site={site!r}, group="bench",
                        signing_key=Ed25519PrivateKey.generate())  # signed confirmations, as deployed
service.start()
if {prepare!r}:
    service.link.wait_subscribed(30)
    service.stop()
    sys.exit(0)
service.link.wait_connected(30)
print(time.time(), flush=True)
while True:
    service.step(0.2)
    if ledger.db.execute("SELECT COUNT(*) FROM events").fetchone()[0] >= {total}:
        break
service.stop()
"""


def ledger_group(work: Path, messages, ring, processes: int) -> float:
    """`processes` ledger processes in one shared-subscription group, writing one database."""
    import sqlite3
    import subprocess

    ring_dir = work / "group-ring"
    ring_dir.mkdir(exist_ok=True)
    for key in ring.keys:
        (ring_dir / f"{key.name}.pub").write_bytes(keys.public_pem(key.public_key))
        keys.trust_key_file(ring_dir, ring_dir / f"{key.name}.pub", "device", name=key.name)
    broker = Broker(work / "broker-group", extra_config="max_queued_messages 0\n").start()
    db = work / "group.db"
    Ledger(db).close()

    def spawn(n, prepare):
        code = WORKER.format(
            root=str(ROOT),
            db=str(db),
            ring=str(ring_dir),
            site=SITE,
            url=broker.url,
            cid=f"bench-group-{n}",
            prepare=prepare,
            total=len(messages),
        )
        return subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )

    try:
        for p in [spawn(n, True) for n in range(processes)]:
            p.wait(60)
        queue_burst(broker.port, messages)
        procs = [spawn(n, False) for n in range(processes)]
        started = min(float(p.stdout.readline()) for p in procs)
        for p in procs:
            p.wait(300)
        with sqlite3.connect(db) as conn:
            last = conn.execute("SELECT MAX(received_ms) FROM events").fetchone()[0] / 1000
            stored = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        if stored != len(messages):
            raise RuntimeError(f"group stored {stored} of {len(messages)}")
        with Ledger(db) as ledger:
            totals = ledger.report()["totals"]
        if totals["missing"] or totals["chain_breaks"] or totals["bad_signatures"]:
            raise RuntimeError(f"group ledger found problems: {totals}")
        return len(messages) / (last - started)
    finally:
        broker.stop()


def ingest_only(work: Path, messages, ring, run: int, batch: int = 2000) -> float:
    with Ledger(work / f"ingest-only-{run}.db", keyring=ring, site=SITE, workers=WORKERS) as ledger:
        payloads = [p for _, p in messages]
        started = time.perf_counter()
        for i in range(0, len(payloads), batch):
            ledger.ingest(payloads[i : i + batch])
        return len(payloads) / (time.perf_counter() - started)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=20000, help="outbox rows for the drain benchmark")
    p.add_argument("--gates", type=int, default=50)
    p.add_argument("--per-gate", type=int, default=400)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--outage-s", type=float, default=60.0, help="broker outage for the re-send overhead (s)")
    args = p.parse_args()
    load = os.getloadavg()[0]
    print(
        f"{os.cpu_count()} CPUs, load average {load:.1f}"
        + (" (busy machine: figures are pessimistic)" if load > 1 else "")
    )
    with tempfile.TemporaryDirectory(prefix="gated-bench-") as tmp:
        work = Path(tmp)
        drain = max(drain_after_outage(work / f"d{i}", args.events) for i in range(args.repeat))
        line(f"outbox drain after an outage ({args.events:,} events)", drain, 2000)
        r = resend_overhead(work, args.outage_s)
        print(
            f"{'':48} end to end, broker killed for {args.outage_s:g} s (20 events/s): "
            f"{r['per_1000']:,.1f} duplicates per 1,000 events ({r['duplicates']} of {r['made']}), "
            f"outbox peak {r['peak']:,} rows, all stored and confirmed {r['settled_s']:.0f} s after it came back"
        )
        messages, ring = simulated_gates(args.gates, args.per_gate)
        results = [ledger_ingest(work, messages, ring, i) for i in range(args.repeat)]
        rate, report = max(results, key=lambda r: r[0])
        line(f"ledger ingest, {args.gates} gates ({len(messages):,} events, via MQTT)", rate, 5000)
        totals = report["totals"]
        print(
            f"{'':48} ledger process CPU: {report['cpu_s'] / len(messages) * 1e6:,.0f} us per event "
            f"({len(messages) / report['cpu_s']:,.0f} events per CPU-second, all threads)"
        )
        print(
            f"{'':48} checked: {totals['events']:,} stored, {totals['missing']} missing, "
            f"{totals['chain_breaks']} chain breaks, {totals['bad_signatures']} bad signatures"
        )
        group = ledger_group(work, messages, ring, 2)
        line("ledger ingest, 2 ledger processes, --group, one DB", group, 5000)
        line(
            f"ledger ingest, Ledger.ingest() alone ({WORKERS} verify threads)",
            max(ingest_only(work, messages, ring, i) for i in range(args.repeat)),
            5000,
        )
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
