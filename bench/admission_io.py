"""Benchmark: what one admission costs the SD card: fsync/fdatasync calls and bytes written.

    .venv/bin/python bench/admission_io.py [--admissions 300] [--dir DIR]

How it is measured: a child process plays N admissions the way the daemon does them: the scan
and its admission committed (GateStore.record_scan), the broker's PUBACK for that event
(GateStore.acknowledge), the passage (record_passage) and its PUBACK. The child runs under
`strace -f -c -e trace=fsync,fdatasync` (every such call the process makes: SQLite's WAL and
database, nothing else writes), and reads its own /proc/self/io `write_bytes` (bytes sent to the
block device, page cache write-back included once the child has synced) around the loop. The
state directory must be on a disk (default: a temporary directory under the benchmark's own
folder's file system, not tmpfs). Two runs, printed per admission: each PUBACK's deletion in a
commit of its own (as before issue #25: 4 commits, each an fdatasync of the WAL), and grouped
(GateStore.ACK_GROUP_ROWS: the deletions ride on the next scan's commit), beside the target: 2
syncs (the scan's commit and the passage's: each must be on the card before the relay moves or
the passage counts).
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
from gated.gate.store import GateStore
n, path, ungrouped = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "ungrouped"
store = GateStore(path, site="bench", gate="g1")
for warm in range(5):
    e = store.record_scan({{"kind": "scan", "decision": "deny", "reason": "expired"}}, 1_800_000_000_000)
    store.acknowledge(e["seq"])
store.flush_acknowledged()
os.sync()
def io():
    return dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
before = io()
for i in range(n):
    cti = os.urandom(16)
    scan = store.record_scan({{"ticket": cti.hex(), "decision": "admit", "reason": "ok"}}, 1_800_000_000_000 + i,
                             admit_cti=cti, exp=1_800_086_400, nbf=1_800_000_000)
    store.acknowledge(scan["seq"])          # the broker's PUBACK, some 30 ms later
    if ungrouped:
        store.flush_acknowledged()          # as before the grouping: one commit per PUBACK
    passage = store.record_passage(scan["id"], True, 1_800_000_000_500 + i)
    store.acknowledge(passage["seq"])
    if ungrouped:
        store.flush_acknowledged()
store.close()
os.sync()
after = io()
print("IO", int(after["write_bytes"]) - int(before["write_bytes"]), int(after["wchar"]) - int(before["wchar"]))
"""

TARGET = 2.0


def measure(work: Path, n: int, mode: str) -> tuple[float, float, float, float]:
    """(fdatasync, fsync, bytes to the disk, bytes handed to write()) per admission."""
    child = work / "child.py"
    child.write_text(CHILD.format(root=str(ROOT)))
    db = work / f"{mode}.db"
    out = subprocess.run(
        ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", sys.executable, str(child), str(n), str(db), mode],
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
        rows = {mode: measure(work, args.admissions, mode) for mode in ("ungrouped", "grouped")}
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{args.admissions} admissions (scan + PUBACK + passage + PUBACK each), strace -c and /proc/self/io:")
    print(f"{'':34} {'fdatasync':>9} {'fsync':>6} {'bytes to disk':>14} {'write() bytes':>14}")
    for mode, label in (("ungrouped", "one commit per PUBACK (before)"), ("grouped", "PUBACK deletions grouped (now)")):
        fdatasync, fsync, written, handed = rows[mode]
        print(f"{label:34} {fdatasync:>9.2f} {fsync:>6.2f} {written:>14.0f} {handed:>14.0f}")
    syncs = sum(rows["grouped"][:2])
    print(
        f"syncs per admission now {syncs:.2f}; target {TARGET:.0f} (the scan's commit and the passage's; "
        f"WAL checkpoints add a little) -> {'OK' if syncs <= TARGET + 0.25 else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
