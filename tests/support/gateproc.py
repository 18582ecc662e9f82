"""A gate process for tests that must kill one (SIGKILL): a real GateStore and Uplink, making
`state` events, the owner loop polling the uplink. Not the daemon (`gated run`): just enough gate.

    python -m tests.support.gateproc --db D --site S --gate G --broker URL [--keyring DIR]
                                     [--make N] [--rate PER_S] [--exit-when-drained]

Prints `ready` once its first N events are committed, then `drained` when the outbox is empty.
With --rate it goes on making events until SIGTERM, then stops making them, drains and exits."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

from gated import logging as gated_logging
from gated.gate.store import GateStore
from gated.gate.uplink import Uplink
from gated.keys import Keyring, load_keyring
from gated.mqtturl import parse_broker_url

ROOT = Path(__file__).resolve().parents[2]


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--site", required=True)
    p.add_argument("--gate", required=True)
    p.add_argument("--broker", required=True)
    p.add_argument("--make", type=int, default=0)
    p.add_argument("--rate", type=float, default=0.0, help="events per second until SIGTERM")
    p.add_argument("--keyring", help="trusted keys (revocation updates, commands)")
    p.add_argument("--exit-when-drained", action="store_true")
    args = p.parse_args(argv)
    gated_logging.setup("info")  # logs to stderr: stdout carries only `ready` and `drained`, which tests read
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    store = GateStore(args.db, site=args.site, gate=args.gate)
    for _ in range(args.make):
        store.record_event({"kind": "state", "state": "online", "rev": 0}, time.time_ns() // 1_000_000)
    print("ready", store.last_seq, store.outbox_depth(), flush=True)
    keyring = load_keyring(args.keyring) if args.keyring else Keyring()
    uplink = Uplink(
        store=store,
        keyring=keyring,
        settings=parse_broker_url(args.broker, reconnect_min_s=0.1, reconnect_max_s=0.5),
        site=args.site,
        gate=args.gate,
    )
    uplink.start()
    said, started, made = False, time.monotonic(), 0
    while not stopping:
        uplink.poll(0.01)
        if args.rate:
            due = int((time.monotonic() - started) * args.rate)
            for _ in range(due - made):
                store.record_event(
                    {"kind": "state", "state": "online", "rev": store.revocation_state().version},
                    time.time_ns() // 1_000_000,
                )
            made = max(made, due)
        elif not said and store.outbox_depth() == 0:
            print("drained", store.last_seq, flush=True)
            said = True
            if args.exit_when_drained:
                break
    deadline = time.monotonic() + 20
    while stopping and store.outbox_depth() and time.monotonic() < deadline:
        uplink.poll(0.05)
    if stopping:
        print("drained" if store.outbox_depth() == 0 else "undrained", store.last_seq, flush=True)
    uplink.stop()
    store.close()
    return 0


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.gateproc", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


if __name__ == "__main__":
    sys.exit(main())
