"""The ledger on PostgreSQL: events per second with 1 and 2 `gated ledger` workers from 50 simulated
gates, beside the physical limit measured in the same run, where the CPU goes, and the lag after an
outage.

    .venv/bin/python bench/ledger.py [--gates 50] [--per-gate 400] [--verify every,chain]

- The limit: Ed25519 verifications per second on all cores (gated/core/ed25519.py, one process per
  core, each verifying a signature of a 32-byte event hash in a loop, which is what the ledger
  verifies): with `--verify every` a ledger checks one signature per event, so it cannot store
  events faster than this machine verifies them. Target: >= 70 % of it.
- The run: a burst of gates x per-gate (default 20,000) signed, chained events is published while
  the ledger workers are away (an outage: their persistent sessions queue it at the broker); then
  the workers (`gated ledger --db postgresql://... --partition I/N`, real processes) start. Printed:
  the rate from the first to the last stored event, and the lag, from the workers' start until the
  last event of the burst is stored (what an operator sees after an outage). Checked: every event
  once, no gap, no chain break, every signature good.
- Where the CPU goes, measured in the same run: CPU time per stored event of the ledger workers, the
  broker and PostgreSQL (from /proc, between the workers' start and the last stored event; for
  PostgreSQL its backends and background processes, autovacuum included, less the bench's own
  polling connection), and the MQTT floor: the ledger's own MQTT link (gated/mqtt.py: paho, MQTT
  v5, manual acks, its network thread handing messages over a queue) taking the same burst off
  the broker and doing nothing with it. Their sum is what one event costs this machine, and
  cores / that sum the most these processes could store here. Also: the same events through
  Ledger.ingest() alone (no MQTT), with PostgreSQL's CPU. The last line sets the least an event
  costs this ledger (the MQTT floor and PostgreSQL's part) against what the target allows.
- The arrangements: --verify every and chain, 1 and 2 workers by --partition (each receives every
  event), and 2 workers by --group (the broker deals the events out: for brokers that keep shared
  subscriptions across restarts, docs/central.md).

PostgreSQL (Debian's) is started in a temporary directory as the `postgres` user, as the tests do;
broker, database and workers share this machine's cores, as they would on a one-box central site.
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

from uplink import SITE, queue_burst, simulated_gates  # noqa: E402  (bench/uplink.py: the same 50 simulated gates)

from gated import keys  # noqa: E402
from gated.central.ledger import Ledger  # noqa: E402
from tests.support.broker import Broker  # noqa: E402
from tests.support.postgres import Postgres, available  # noqa: E402

TARGET_SHARE = 0.70
TICK = os.sysconf("SC_CLK_TCK")


def _verify_loop(seconds: float, queue) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gated.core.ed25519 import verifies

    key = Ed25519PrivateKey.generate()
    message = os.urandom(32)  # an event's signature is over its 32-byte hash (docs/protocol.md §5)
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


def cpu_seconds(pid: int, children_of: bool = False) -> float:
    """CPU time (user + system) of a process and its reaped children; with `children_of`, plus every
    live process whose parent it is (PostgreSQL's backends)."""

    def times(p) -> tuple[int, float]:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[1]), sum(int(f) for f in fields[11:15]) / TICK  # ppid; utime stime cutime cstime

    try:
        total = times(pid)[1]
    except OSError:
        return 0.0
    if children_of:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and entry.name != str(pid):
                try:
                    ppid, spent = times(entry.name)
                except (OSError, IndexError, ValueError):
                    continue
                if ppid == pid:
                    total += spent
    return total


def mqtt_floor(work: Path, messages) -> dict:
    """The burst taken off the broker by the ledger's MQTT link (gated/mqtt.py: paho, MQTT v5,
    persistent session, manual acks) doing nothing else: messages per second and CPU per message,
    this process's and the broker's."""
    from paho.mqtt.subscribeoptions import SubscribeOptions

    from gated.mqtt import MqttLink
    from gated.mqtturl import parse_broker_url

    broker = Broker(work / "broker-floor", extra_config="max_queued_messages 0\n").start()
    try:

        def link() -> MqttLink:
            made = MqttLink(parse_broker_url(broker.url), "bench-floor")
            made.add_subscription(f"gated/v1/{SITE}/gates/+/events", SubscribeOptions(qos=1))
            return made

        session = link()
        session.start()
        session.wait_subscribed(10)
        session.stop()
        queue_burst(broker.port, messages)
        consumer = link()
        started, cpu, broker_cpu = time.perf_counter(), time.process_time(), cpu_seconds(broker.process.pid)
        consumer.start()
        taken = 0
        while taken < len(messages):
            item = consumer.inbox.get(timeout=60)
            if item[0] == "message":
                consumer.ack(item[1])
                taken += 1
        elapsed = time.perf_counter() - started
        result = {
            "rate": taken / elapsed,
            "client_us": (time.process_time() - cpu) / taken * 1e6,
            "broker_us": (cpu_seconds(broker.process.pid) - broker_cpu) / taken * 1e6,
        }
        consumer.stop()
        return result
    finally:
        broker.stop()


def run_workers(
    work: Path, pg: Postgres, messages, ring_dir: Path, workers: int, verify: str, split: str = "partition"
) -> dict:
    """`split`: "partition" (`--partition I/N`, each worker receives every event) or "group"
    (`--group`, a shared subscription: the broker deals the events out)."""
    import psycopg

    name = f"bench_{workers}w_{verify}_{split}"
    url = pg.database(name)
    broker = Broker(work / f"broker-{name}", extra_config="max_queued_messages 0\n").start()
    log_path = work / f"workers-{name}.log"
    log = open(log_path, "w")
    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])

    def spawn(i: int) -> subprocess.Popen:
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
                *(["--partition", f"{i}/{workers}"] if split == "partition" else ["--group", "bench"]),
                "--workers",
                "2",
                "--verify",
                verify,
                "--client-id",
                f"bench-{workers}-{i}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def wait_log(text: str, count: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while log_path.read_text().count(text) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the ledger workers did not print {text!r}; see {log_path}")
            time.sleep(0.005)

    counter = psycopg.connect(url, autocommit=True)  # one connection for polling: its CPU is taken out below
    poller = counter.info.backend_pid

    def count() -> int:
        return counter.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    def postgres_cpu() -> float:
        return cpu_seconds(postmaster, children_of=True) - cpu_seconds(poller)

    try:
        procs = [spawn(i) for i in range(workers)]  # make the sessions, then go away: the outage
        wait_log("ledger: subscribed", workers, 60)
        for p in procs:
            p.terminate()
            p.wait(30)
        queue_burst(broker.port, messages)
        started = time.time()
        procs = [spawn(i) for i in range(workers)]
        wait_log(f"site {SITE}", 2 * workers, 60)  # started up (imports, database open): the work begins
        cpu = {
            "ledger": sum(cpu_seconds(p.pid) for p in procs),
            "broker": cpu_seconds(broker.process.pid),
            "postgres": postgres_cpu(),
        }
        deadline = time.monotonic() + 600
        while count() < len(messages):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"workers stored {count()} of {len(messages)}; see {log_path}")
            time.sleep(0.02)
        done = time.time()  # the last batch committed (within a poll): received_ms is stamped as a batch begins
        lag = done - started
        spent = {
            "ledger": sum(cpu_seconds(p.pid) for p in procs) - cpu["ledger"],
            "broker": cpu_seconds(broker.process.pid) - cpu["broker"],
            "postgres": postgres_cpu() - cpu["postgres"],
        }
        for p in procs:
            p.terminate()
            p.wait(30)
        with Ledger(url) as ledger:
            ((first,),) = ledger.query("SELECT MIN(received_ms) FROM events")
            ((rows, distinct),) = ledger.query("SELECT COUNT(*), COUNT(DISTINCT id) FROM events")
            totals = ledger.report()["totals"]
        if rows != distinct or totals["missing"] or totals["chain_breaks"] or totals["bad_signatures"]:
            raise RuntimeError(f"{workers} workers: {rows} rows, {distinct} ids, {totals}")
        return {
            "rate": len(messages) / max(done - first / 1000, 1e-3),
            "lag": lag,
            "rows": rows,
            "cpu_us": {k: v / rows * 1e6 for k, v in spent.items()},
        }
    finally:
        counter.close()
        broker.stop()
        log.close()


def ingest_alone(pg: Postgres, messages, ring, verify: str) -> tuple[float, float]:
    """The burst through Ledger.ingest() in batches of 2,000, no MQTT: (events/s, PostgreSQL's CPU
    per event in us)."""
    url = pg.database(f"bench_alone_{verify}")
    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
    with Ledger(url, keyring=ring, site=SITE, workers=2, verify=verify) as ledger:
        started, cpu = time.perf_counter(), cpu_seconds(postmaster, children_of=True)
        for i in range(0, len(messages), 2000):
            part = messages[i : i + 2000]
            ledger.ingest([payload for _, payload in part], topics=[topic for topic, _ in part])
        elapsed, spent = time.perf_counter() - started, cpu_seconds(postmaster, children_of=True) - cpu
    return len(messages) / elapsed, spent / len(messages) * 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gates", type=int, default=50)
    p.add_argument("--per-gate", type=int, default=400)
    p.add_argument("--verify", default="every,chain", help="the ledger's --verify modes to run, comma-separated")
    args = p.parse_args()
    why = available()
    if why:
        print(f"skipped: {why}")
        return 0
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    print(f"{cores} CPUs, load average {load:.1f}" + (" (busy machine: figures are pessimistic)" if load > 1 else ""))
    limit = verify_limit()
    target = TARGET_SHARE * limit
    verify_us = cores / limit * 1e6
    print(
        f"{'physical limit: Ed25519 verifications, all cores':52} {limit:10,.0f} /s   ({verify_us:.0f} us of CPU each)"
    )
    messages, ring = simulated_gates(args.gates, args.per_gate)
    with tempfile.TemporaryDirectory(prefix="gated-bench-ledger-") as tmp:
        work = Path(tmp)
        floor = mqtt_floor(work, messages)
        floor_us = floor["client_us"] + floor["broker_us"]
        budget_us = cores / target * 1e6
        print(
            f"{'MQTT floor: the burst taken and acked, no work':52} {floor['rate']:10,.0f} msgs/s "
            f"  client {floor['client_us']:.0f} us + broker {floor['broker_us']:.0f} us of CPU a message"
        )
        print(
            f"{'':52} the target leaves {budget_us:.0f} us of CPU an event on {cores} cores for everything; "
            f"taking it off the broker alone costs {floor_us:.0f} us"
        )
        ring_dir = work / "ring"
        for key in ring.keys:
            (work / f"{key.name}.pub").write_bytes(keys.public_pem(key.public_key))
            keys.trust_key_file(ring_dir, work / f"{key.name}.pub", "device", name=key.name)
        pg = Postgres().start()
        try:
            runs = [(verify, workers, "partition") for verify in args.verify.split(",") for workers in (1, 2)]
            runs.append(("every", 2, "group"))  # a broker that keeps shared subscriptions (docs/central.md)
            for verify in args.verify.split(","):
                rate, store_us = ingest_alone(pg, messages, ring, verify)
                print(
                    f"{f'Ledger.ingest() alone, no MQTT, --verify {verify}':52} {rate:10,.0f} events/s"
                    f"   PostgreSQL {store_us:.0f} us of CPU an event"
                )
            cheapest_store = None  # the least PostgreSQL CPU an event took in any run
            for verify, workers, split in runs:
                r = run_workers(work, pg, messages, ring_dir, workers, verify, split)
                cheapest_store = min(cheapest_store or r["cpu_us"]["postgres"], r["cpu_us"]["postgres"])
                share = r["rate"] / limit
                verdict = "ok" if r["rate"] >= target else "BELOW TARGET"
                how = f"--verify {verify}, {workers} worker{'s' if workers > 1 else ''}" + (
                    ", --group" if split == "group" else ""
                )
                print(
                    f"{f'PostgreSQL ledger, {how}':52} {r['rate']:10,.0f} events/s"
                    f"   {share:5.0%} of the limit, target >= {TARGET_SHARE:.0%} ({target:,.0f}/s)   {verdict}"
                )
                cpu = r["cpu_us"]
                total = sum(cpu.values())
                print(
                    f"{'':52} CPU a stored event: ledger {cpu['ledger']:.0f} us + broker {cpu['broker']:.0f} us"
                    f" + PostgreSQL {cpu['postgres']:.0f} us = {total:.0f} us: at most "
                    f"{cores / total * 1e6:,.0f}/s on {cores} cores ({cores / total * 1e6 / limit:.0%} of the limit)"
                )
                print(
                    f"{'':52} lag after an outage: {len(messages):,} queued events stored "
                    f"{r['lag']:.1f} s after the workers started (process start included); "
                    f"{r['rows']:,} rows, each once, no gap"
                )
        finally:
            pg.stop()
    bound = floor_us + cheapest_store
    print(
        f"{'the least an event can cost here':52} MQTT floor {floor_us:.0f} us + PostgreSQL {cheapest_store:.0f} us "
        f"= {bound:.0f} us of CPU before any parsing or checking, against the {budget_us:.0f} us the target allows: "
        + (
            "the target is out of reach of this ledger (its MQTT link and schema) on this machine"
            if bound >= budget_us
            else "the target is not ruled out by these costs alone"
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
