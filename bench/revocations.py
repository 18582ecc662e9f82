"""Revocation list at gate scale: 10M revoked ids, lookup <= 20 us, a 100k-id delta <= 1 s,
memory not growing with the list; and a 10M-id snapshot in 170 signed parts, each under 1 MiB,
made by an encoder independent of gated's (cbor2 + cryptography here) and applied through
`gated verify --revocations` (the daemon's code path, `revocations.apply_update`) in a separate
process, whose peak RSS is held against the gate's 150 MiB budget and whose time should grow
linearly with the list (figures at --parts-ids / 10 beside the full one). Prints each figure beside
its target.

Run: .venv/bin/python bench/revocations.py [--ids 10000000] [--parts-ids 10000000] [--parts 170]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cbor2  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat  # noqa: E402

from gated import keys  # noqa: E402
from gated.core.revocation import encode_updates  # noqa: E402
from gated.gate.revocations import apply_update  # noqa: E402
from gated.gate.store import GateStore  # noqa: E402
from sim.stats import percentile  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(store: GateStore, n: int, version: int) -> float:
    rng = random.Random(version)
    start = time.perf_counter()
    store.apply_revocations(
        version=version,
        base=0,
        add=(rng.randbytes(16) for _ in range(n)),
        remove=(),
        iat=0,
        site="bench",
        applied_ms=0,
        expected_version=store.revocation_state().version,
    )
    return time.perf_counter() - start


def lookups(store: GateStore, probes: list[bytes], call=None) -> tuple[float, float]:
    call = call or store.is_revoked
    times = []
    for cti in probes:
        t0 = time.perf_counter_ns()
        call(cti)
        times.append((time.perf_counter_ns() - t0) / 1000)
    return percentile(times, 50), percentile(times, 99)


RSS_BUDGET_MIB = 150
GATED = Path(sys.executable).parent / "gated"
_PROBE = (
    "import resource, subprocess, sys, time\n"
    "t0 = time.perf_counter()\n"
    "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "sys.stderr.write(r.stderr[-2000:])\n"
    "print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)\n"
)


def independent_parts(key, directory: Path, *, site: str, version: int, ids: int, parts: int, seed: int) -> list[Path]:
    """PROTOCOL §2/§4 by hand: COSE_Sign1 [bstr .cbor {1: -8, 4: kid}, {}, payload, sig] over
    Sig_structure ["Signature1", protected, h'', payload]; one part in memory at a time."""
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    protected = cbor2.dumps({1: -8, 4: __import__("hashlib").sha256(raw).digest()[:8]})
    rng, per, paths = random.Random(seed), -(-ids // parts), []
    for index in range(parts):
        chunk = [rng.randbytes(16) for _ in range(min(per, ids - index * per))]
        payload = cbor2.dumps({1: site, 2: version, 3: 0, 4: chunk, 5: [], 6: int(time.time()), 7: index, 8: parts})
        blob = cbor2.dumps([protected, {}, payload, key.sign(cbor2.dumps(["Signature1", protected, b"", payload]))])
        assert len(blob) <= 1024 * 1024, f"part {index} is {len(blob)} bytes"
        paths.append(directory / f"v{version}-{index:03d}.cose")
        paths[-1].write_bytes(blob)
    return paths


def snapshot_in_parts(key, keyring_dir: Path, tmp: Path, *, ids: int, parts: int) -> tuple[float, int, int]:
    """Apply a snapshot in parts with `gated verify --revocations` in a child; (s, peak RSS MiB, ids listed)."""
    work = tmp / f"parts-{ids}"
    work.mkdir()
    files = independent_parts(key, work, site="bench", version=1, ids=ids, parts=parts, seed=ids)
    state = work / "gate.db"
    (work / "probe.py").write_text(_PROBE)
    command = [
        sys.executable,
        str(work / "probe.py"),
        str(GATED),
        "verify",
        "--keyring",
        str(keyring_dir),
        "--event",
        "BENCH",
        "--state",
        str(state),
        *[a for f in files for a in ("--revocations", str(f))],
        "GT1:not-a-ticket",
    ]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds, peak = done.stdout.split()
    if "rejected" in done.stderr or "Traceback" in done.stderr:
        raise SystemExit(f"gated verify failed:\n{done.stderr}")
    with GateStore(state) as store:
        count, version = store.revoked_count(), store.revocation_state().version
    for f in files:
        f.unlink()
    state.unlink()
    assert version == 1, "the snapshot was not applied"
    return float(seconds), int(peak), count


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ids", type=int, default=10_000_000)
    parser.add_argument("--delta", type=int, default=100_000)
    parser.add_argument(
        "--parts-ids", type=int, default=10_000_000, help="ids of the snapshot applied in parts (0: skip)"
    )
    parser.add_argument("--parts", type=int, default=170)
    parser.add_argument("--only-parts", action="store_true", help="only the snapshot in parts")
    args = parser.parse_args()
    key = Ed25519PrivateKey.generate()
    ring = keys.Keyring((keys.trusted("rev", key.public_key(), ["revocation"]),))
    ok = True
    if args.parts_ids:
        ok &= bench_parts(key, args)
    if args.only_parts:
        return 0 if ok else 1
    with tempfile.TemporaryDirectory() as tmp, GateStore(Path(tmp) / "gate.db", site="bench", gate="g1") as store:
        small = max(1, args.ids // 10)
        seconds = build(store, small, 1)
        rng = random.Random(1)
        present = [rng.randbytes(16) for _ in range(1000)]
        probes = present + [os.urandom(16) for _ in range(9000)]
        med_small, p99_small = lookups(store, probes)
        rss_small = rss_mib()
        print(
            f"snapshot of {small:,} ids written in {seconds:.1f} s; lookup median {med_small:.1f} us, p99 {p99_small:.1f} us; RSS {rss_small:.0f} MiB"
        )

        seconds = build(store, args.ids, 2)
        rng = random.Random(2)
        present = [rng.randbytes(16) for _ in range(1000)]
        assert all(store.is_revoked(c) for c in present[:100])
        probes = present + [os.urandom(16) for _ in range(9000)]
        med, p99 = lookups(store, probes)
        f_med, f_p99 = lookups(store, probes, store.facts)
        rss_big = rss_mib()
        print(
            f"snapshot of {args.ids:,} ids written in {seconds:.1f} s (database {(Path(tmp) / 'gate.db').stat().st_size / 2**20:.0f} MiB)"
        )
        verdict = "OK" if med <= 20 else "MISSED"
        ok &= verdict == "OK"
        print(
            f"revocation lookup at {args.ids:,} ids: median {med:.1f} us, p99 {p99:.1f} us  target <= 20 us (median)  {verdict}"
        )
        print(
            f"  (the whole facts query of a scan -- revoked, admissions, GT2 step: median {f_med:.1f} us, p99 {f_p99:.1f} us)"
        )

        delta_ids = [os.urandom(16) for _ in range(args.delta)]
        half = len(delta_ids) // 2  # one message is at most 1 MiB (~61k ids): 100k ids are two chained deltas
        messages = encode_updates(key, site="bench", version=3, base=2, add=delta_ids[:half], iat=0) + encode_updates(
            key, site="bench", version=4, base=3, add=delta_ids[half:], iat=0
        )
        t0 = time.perf_counter()
        outcome = None
        for blob in messages:
            outcome = apply_update(store, blob, ring, site="bench", now_ms=0)
        seconds = time.perf_counter() - t0
        assert outcome.status == "applied" and store.is_revoked(delta_ids[-1])
        verdict = "OK" if seconds <= 1.0 else "MISSED"
        ok &= verdict == "OK"
        print(
            f"signed deltas of {args.delta:,} ids (2 messages) verified and applied in {seconds:.2f} s  target <= 1 s  {verdict}"
        )
        rss_after = rss_mib()
        growth = rss_after - rss_small
        verdict = "OK" if growth < 64 else "MISSED"
        ok &= verdict == "OK"
        print(
            f"RSS {rss_small:.0f} MiB at {small:,} ids, {rss_big:.0f} MiB at {args.ids:,} ids, {rss_after:.0f} MiB after the delta "
            f"(growth {growth:.0f} MiB for {args.ids / small:.0f}x the list)  target: not growing with the list  {verdict}"
        )
    return 0 if ok else 1


def bench_parts(key, args) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        private, public = keys.generate_key_files(tmp / "keys", "rev")
        ring_dir = tmp / "keyring"
        keys.trust_key_file(ring_dir, public, "revocation")
        signer = keys.load_private_key(private)
        small_ids, small_parts = args.parts_ids // 10, max(2, -(-args.parts // 10))
        s_small, rss_small, _ = snapshot_in_parts(signer, ring_dir, tmp, ids=small_ids, parts=small_parts)
        print(
            f"snapshot of {small_ids:,} ids in {small_parts} signed parts via gated verify --revocations: "
            f"{s_small:.1f} s, peak RSS {rss_small} MiB"
        )
        seconds, rss, count = snapshot_in_parts(signer, ring_dir, tmp, ids=args.parts_ids, parts=args.parts)
        assert count == args.parts_ids, f"{count} ids listed, {args.parts_ids} sent"
        verdict = "OK" if rss <= RSS_BUDGET_MIB else "MISSED"
        print(
            f"snapshot of {args.parts_ids:,} ids in {args.parts} signed parts via gated verify --revocations: "
            f"{seconds:.1f} s ({seconds / s_small:.1f}x the time for 10x the ids), peak RSS {rss} MiB  "
            f"target <= {RSS_BUDGET_MIB} MiB, time linear in the list  {verdict}"
        )
        return verdict == "OK"


if __name__ == "__main__":
    sys.exit(main())
