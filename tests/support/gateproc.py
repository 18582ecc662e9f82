"""A gate process for tests that must kill one (SIGKILL): a real GateStore and Uplink, making
`state` events, the owner loop polling the uplink. Not the daemon (`gated run`): just enough gate.

    python -m tests.support.gateproc --db D --site S --gate G --broker URL [--make N] [--exit-when-drained]

Prints `ready` once its events are committed, then `drained` when the outbox is empty."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

from gated.keys import Keyring
from gated.mqtturl import parse_broker_url
from gated.store import GateStore
from gated.uplink import Uplink

ROOT = Path(__file__).resolve().parents[2]


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--site", required=True)
    p.add_argument("--gate", required=True)
    p.add_argument("--broker", required=True)
    p.add_argument("--make", type=int, default=0)
    p.add_argument("--exit-when-drained", action="store_true")
    args = p.parse_args(argv)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    store = GateStore(args.db, site=args.site, gate=args.gate)
    for i in range(args.make):
        store.record_event({"kind": "state", "state": "online", "rev": 0}, time.time_ns() // 1_000_000)
    print("ready", store.last_seq, store.outbox_depth(), flush=True)
    uplink = Uplink(store=store, keyring=Keyring(), settings=parse_broker_url(args.broker, reconnect_min_s=0.1,
                                                                           reconnect_max_s=0.5),
                    site=args.site, gate=args.gate)
    uplink.start()
    said = False
    while not stopping:
        uplink.poll(0.05)
        if not said and store.outbox_depth() == 0:
            print("drained", store.last_seq, flush=True)
            said = True
            if args.exit_when_drained:
                break
    uplink.stop()
    store.close()
    return 0


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.support.gateproc", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


if __name__ == "__main__":
    sys.exit(main())
