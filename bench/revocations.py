"""Revocation list at gate scale: 10M revoked ids, lookup <= 20 us, a 100k-id delta <= 1 s,
memory not growing with the list. Prints each figure beside its target.

Run: .venv/bin/python bench/revocations.py [--ids 10000000]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from gated import keys  # noqa: E402
from gated.revocations import apply_update, encode_updates  # noqa: E402
from gated.store import GateStore  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(store: GateStore, n: int, version: int) -> float:
    rng = random.Random(version)
    start = time.perf_counter()
    store.apply_revocations(version=version, base=0, add=(rng.randbytes(16) for _ in range(n)), remove=(), iat=0,
                            site="bench", applied_ms=0, expected_version=store.revocation_state().version)
    return time.perf_counter() - start


def lookups(store: GateStore, probes: list[bytes], call=None) -> tuple[float, float]:
    call = call or store.is_revoked
    times = []
    for cti in probes:
        t0 = time.perf_counter_ns()
        call(cti)
        times.append((time.perf_counter_ns() - t0) / 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ids", type=int, default=10_000_000)
    parser.add_argument("--delta", type=int, default=100_000)
    args = parser.parse_args()
    key = Ed25519PrivateKey.generate()
    ring = keys.Keyring((keys.trusted("rev", key.public_key(), ["revocation"]),))
    ok = True
    with tempfile.TemporaryDirectory() as tmp, GateStore(Path(tmp) / "gate.db", site="bench", gate="g1") as store:
        small = max(1, args.ids // 10)
        seconds = build(store, small, 1)
        rng = random.Random(1)
        present = [rng.randbytes(16) for _ in range(1000)]
        probes = present + [os.urandom(16) for _ in range(9000)]
        med_small, p99_small = lookups(store, probes)
        rss_small = rss_mib()
        print(f"snapshot of {small:,} ids written in {seconds:.1f} s; lookup median {med_small:.1f} us, p99 {p99_small:.1f} us; RSS {rss_small:.0f} MiB")

        seconds = build(store, args.ids, 2)
        rng = random.Random(2)
        present = [rng.randbytes(16) for _ in range(1000)]
        assert all(store.is_revoked(c) for c in present[:100])
        probes = present + [os.urandom(16) for _ in range(9000)]
        med, p99 = lookups(store, probes)
        f_med, f_p99 = lookups(store, probes, store.facts)
        rss_big = rss_mib()
        print(f"snapshot of {args.ids:,} ids written in {seconds:.1f} s (database {(Path(tmp) / 'gate.db').stat().st_size / 2**20:.0f} MiB)")
        verdict = "OK" if med <= 20 else "MISSED"
        ok &= verdict == "OK"
        print(f"revocation lookup at {args.ids:,} ids: median {med:.1f} us, p99 {p99:.1f} us  target <= 20 us (median)  {verdict}")
        print(f"  (the whole facts query of a scan -- revoked, admissions, GT2 step: median {f_med:.1f} us, p99 {f_p99:.1f} us)")

        delta_ids = [os.urandom(16) for _ in range(args.delta)]
        half = len(delta_ids) // 2  # one message is at most 1 MiB (~61k ids): 100k ids are two chained deltas
        messages = encode_updates(key, site="bench", version=3, base=2, add=delta_ids[:half], iat=0) \
            + encode_updates(key, site="bench", version=4, base=3, add=delta_ids[half:], iat=0)
        t0 = time.perf_counter()
        outcome = None
        for blob in messages:
            outcome = apply_update(store, blob, ring, site="bench", now_ms=0)
        seconds = time.perf_counter() - t0
        assert outcome.status == "applied" and store.is_revoked(delta_ids[-1])
        verdict = "OK" if seconds <= 1.0 else "MISSED"
        ok &= verdict == "OK"
        print(f"signed deltas of {args.delta:,} ids (2 messages) verified and applied in {seconds:.2f} s  target <= 1 s  {verdict}")
        rss_after = rss_mib()
        growth = rss_after - rss_small
        verdict = "OK" if growth < 64 else "MISSED"
        ok &= verdict == "OK"
        print(f"RSS {rss_small:.0f} MiB at {small:,} ids, {rss_big:.0f} MiB at {args.ids:,} ids, {rss_after:.0f} MiB after the delta "
              f"(growth {growth:.0f} MiB for {args.ids / small:.0f}x the list)  target: not growing with the list  {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
