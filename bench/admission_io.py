"""Benchmark: what one admission costs the SD card: fsync/fdatasync calls and bytes written.

    .venv/bin/python bench/admission_io.py [--admissions 300] [--dir DIR]

How it is measured: a child process plays N admissions the way the daemon does them since #22's
end-to-end delivery: the scan and its admission committed (GateStore.record_scan), the broker's
PUBACK for that event marked (GateStore.mark_delivered: the row stays), the passage
(record_passage) and its PUBACK, and the ledger's confirmation deleting the rows it covers
(GateStore.prune_confirmed), after every admission or every 10. The child runs under
`strace -f -c -e trace=fsync,fdatasync` (every such call the process makes: SQLite's WAL and
database, nothing else writes), and reads its own /proc/self/io `write_bytes` (bytes sent to the
block device, page cache write-back included once the child has synced) around the loop. The
state directory must be on a disk (default: a temporary directory under the benchmark's own
folder's file system, not tmpfs). Target: 2 syncs per admission (the scan's commit and the
passage's: each must be on the card before the relay moves or the passage counts): the PUBACK
marks ride on the next write transaction (GateStore.MARKS_ROWS); the confirmations' deletions are
commits of their own, one per confirmation.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import os, sys, time
sys.path.insert(0, {root!r})
from gated.core.confirmation import Confirmation
from gated.gate.store import GateStore
n, path, every = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
store = GateStore(path, site="bench", gate="g1")
for warm in range(5):
    e = store.record_scan({{"kind": "scan", "decision": "deny", "reason": "expired"}}, 1_800_000_000_000)
    store.mark_delivered([e["seq"]], 1_800_000_000_000)
store.prune_confirmed(Confirmation(store.last_seq))
os.sync()
def io():
    return dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
before = io()
for i in range(n):
    cti = os.urandom(16)
    scan = store.record_scan({{"ticket": cti.hex(), "decision": "admit", "reason": "ok"}}, 1_800_000_000_000 + i,
                             admit_cti=cti, exp=1_800_086_400, nbf=1_800_000_000)
    store.mark_delivered([scan["seq"]], 1_800_000_000_000 + i)  # the broker's PUBACK, some 30 ms later
    passage = store.record_passage(scan["id"], True, 1_800_000_000_500 + i)
    store.mark_delivered([passage["seq"]], 1_800_000_000_500 + i)
    if (i + 1) % every == 0:  # the ledger's confirmation: the rows it covers leave the outbox
        store.prune_confirmed(Confirmation(store.last_seq))
store.close()
os.sync()
after = io()
print("IO", int(after["write_bytes"]) - int(before["write_bytes"]), int(after["wchar"]) - int(before["wchar"]))
"""

TARGET = 2.0


def measure(work: Path, n: int, every: str) -> tuple[float, float, float, float]:
    """(fdatasync, fsync, bytes to the disk, bytes handed to write()) per admission."""
    child = work / "child.py"
    child.write_text(CHILD.format(root=str(ROOT)))
    db = work / f"every{every}.db"
    out = subprocess.run(
        ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", sys.executable, str(child), str(n), str(db), every],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    calls = {
        m.group(2): int(m.group(1))
        for m in re.finditer(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", out.stderr, re.M)
    }
    written, handed = map(int, re.search(r"IO (\d+) (\d+)", out.stdout).groups())
    return calls.get("fdatasync", 0) / n, calls.get("fsync", 0) / n, written / n, handed / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--admissions", type=int, default=300)
    ap.add_argument("--dir", help="state directory (on the disk to measure)")
    args = ap.parse_args()
    if shutil.which("strace") is None:
        print("strace is not installed (apt-get install strace): nothing measured")
        return 0
    work = Path(args.dir or tempfile.mkdtemp(prefix="gated-io-", dir=ROOT))
    try:
        rows = {every: measure(work, args.admissions, every) for every in ("1", "10")}
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{args.admissions} admissions (scan + PUBACK + passage + PUBACK each), strace -c and /proc/self/io:")
    print(f"{'':40} {'fdatasync':>9} {'fsync':>6} {'bytes to disk':>14} {'write() bytes':>14}")
    for every, label in (("1", "a confirmation after every admission"), ("10", "a confirmation every 10 admissions")):
        fdatasync, fsync, written, handed = rows[every]
        print(f"{label:40} {fdatasync:>9.2f} {fsync:>6.2f} {written:>14.0f} {handed:>14.0f}")
    syncs = sum(rows["10"][:2])
    print(
        f"syncs per admission now {syncs:.2f}; target {TARGET:.0f} (the scan's commit and the passage's; "
        f"WAL checkpoints add a little) -> {'OK' if syncs <= TARGET + 0.25 else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
