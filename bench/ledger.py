"""The ledger on PostgreSQL: events per second with 1 and 2 `gated ledger` workers from 50 simulated
gates, beside the physical limit measured in the same run, and the lag after an outage.

    .venv/bin/python bench/ledger.py [--gates 50] [--per-gate 400]

- The limit: Ed25519 verifications per second on all cores (gated/core/ed25519.py, one process per
  core, each verifying an event-sized message in a loop): a ledger checks one signature per event,
  so it cannot store events faster than this machine verifies them. Target: >= 70 % of it.
- The run: a burst of gates x per-gate (default 20,000) signed, chained events is published while
  the ledger workers are away (an outage: their persistent sessions queue it at the broker); then
  the workers (`gated ledger --db postgresql://... --partition I/N`, real processes) start. Printed:
  the rate from the first to the last stored event, and the lag, from the workers' start until the
  last event of the burst is stored (what an operator sees after an outage). Checked: every event
  once, no gap, no chain break, every signature good.

PostgreSQL (Debian's) is started in a temporary directory as the `postgres` user, as the tests do;
broker, database and workers share this machine's cores, so the figures are pessimistic.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import paho.mqtt.client as mqtt  # noqa: E402

from gated import keys  # noqa: E402
from gated.central.ledger import Ledger  # noqa: E402
from tests.support.broker import Broker  # noqa: E402
from tests.support.postgres import Postgres, available  # noqa: E402
from uplink import SITE, simulated_gates  # noqa: E402  (bench/uplink.py: the same 50 simulated gates)

TARGET_SHARE = 0.70


def _verify_loop(seconds: float, queue) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gated.core.ed25519 import verifies

    key = Ed25519PrivateKey.generate()
    message = os.urandom(600)  # about a scan event's canonical form
    public, signature = key.public_key().public_bytes_raw(), key.sign(message)
    count, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(200):
            verifies(public, signature, message)
        count += 200
    queue.put(count / seconds)


def verify_limit(seconds: float = 3.0) -> float:
    """Ed25519 verifications per second, one process per core, all at once."""
    queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_verify_loop, args=(seconds, queue)) for _ in range(os.cpu_count() or 1)]
    for p in procs:
        p.start()
    rates = [queue.get(timeout=seconds + 30) for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def run_workers(work: Path, pg: Postgres, messages, ring_dir: Path, workers: int) -> dict:
    url = pg.database(f"bench_{workers}w")
    broker = Broker(work / f"broker-{workers}", extra_config="max_queued_messages 0\n").start()
    log = open(work / f"workers-{workers}.log", "w")

    def spawn(i: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "gated.cli", "ledger", "--broker", broker.url, "--site", SITE,
                                 "--db", url, "--keyring", str(ring_dir), "--partition", f"{i}/{workers}",
                                 "--workers", "2", "--client-id", f"bench-{workers}-{i}", "--verify", os.environ.get("VERIFY", "every")],
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})

    def count() -> int:
        with Ledger(url) as ledger:
            return ledger.query("SELECT COUNT(*) FROM events")[0][0]

    try:
        procs = [spawn(i) for i in range(workers)]  # make the sessions, then go away: the outage
        deadline = time.monotonic() + 60
        while (work / f"workers-{workers}.log").read_text().count("ledger: subscribed") < workers:
            if time.monotonic() > deadline:
                raise RuntimeError("the ledger workers did not subscribe")
            time.sleep(0.1)
        for p in procs:
            p.terminate()
            p.wait(30)
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        publisher.max_inflight_messages_set(1000)
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        for info in [publisher.publish(topic, payload, qos=1) for topic, payload in messages]:
            info.wait_for_publish(60)
        publisher.disconnect()
        publisher.loop_stop()
        started = time.time()
        procs = [spawn(i) for i in range(workers)]
        deadline = time.monotonic() + 600
        while count() < len(messages):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"workers stored {count()} of {len(messages)}; see {log.name}")
            time.sleep(0.1)
        lag = time.time() - started
        for p in procs:
            p.terminate()
            p.wait(30)
        with Ledger(url) as ledger:
            (first, last), = ledger.query("SELECT MIN(received_ms), MAX(received_ms) FROM events")
            (rows, distinct), = ledger.query("SELECT COUNT(*), COUNT(DISTINCT id) FROM events")
            totals = ledger.report()["totals"]
        if rows != distinct or totals["missing"] or totals["chain_breaks"] or totals["bad_signatures"]:
            raise RuntimeError(f"{workers} workers: {rows} rows, {distinct} ids, {totals}")
        return {"rate": len(messages) / max((last - first) / 1000, 1e-3), "lag": lag, "rows": rows}
    finally:
        broker.stop()
        log.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gates", type=int, default=50)
    p.add_argument("--per-gate", type=int, default=400)
    args = p.parse_args()
    why = available()
    if why:
        print(f"skipped: {why}")
        return 0
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.1f}" + (" (busy machine: figures are pessimistic)" if load > 1 else ""))
    limit = verify_limit()
    target = TARGET_SHARE * limit
    print(f"{'physical limit: Ed25519 verifications, all cores':52} {limit:10,.0f} /s")
    messages, ring = simulated_gates(args.gates, args.per_gate)
    with tempfile.TemporaryDirectory(prefix="gated-bench-ledger-") as tmp:
        work = Path(tmp)
        ring_dir = work / "ring"
        for key in ring.keys:
            (work / f"{key.name}.pub").write_bytes(keys.public_pem(key.public_key))
            keys.trust_key_file(ring_dir, work / f"{key.name}.pub", "device", name=key.name)
        pg = Postgres().start()
        try:
            for workers in (1, 2):
                r = run_workers(work, pg, messages, ring_dir, workers)
                share = r["rate"] / limit
                verdict = "ok" if r["rate"] >= target else "BELOW TARGET"
                print(f"{f'PostgreSQL ledger, {workers} worker(s), {args.gates} gates':52} {r['rate']:10,.0f} events/s"
                      f"   {share:5.0%} of the limit, target >= {TARGET_SHARE:.0%} ({target:,.0f}/s)   {verdict}")
                print(f"{'':52} lag after an outage: {len(messages):,} queued events stored "
                      f"{r['lag']:.1f} s after the workers started (process start included); "
                      f"{r['rows']:,} rows, each once, no gap")
        finally:
            pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
