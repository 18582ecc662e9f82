"""Revocation updates, PROTOCOL §4: every rejection rule keeps the old list; applies are atomic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated import keys
from gated.core import cose
from gated.core.revocation import MAX_MESSAGE, encode_updates
from gated.gate.revocations import apply_update
from gated.gate.store import GateStore
from tests.conftest import EVENT

SITE = "arena"


def ids(n):
    return [os.urandom(16) for _ in range(n)]


def make(authority, *, version, base=0, add=(), remove=(), parts=None, site=SITE, key=None):
    return encode_updates(
        key or authority.revocation,
        site=site,
        version=version,
        base=base,
        add=add,
        remove=remove,
        iat=1_790_000_000,
        parts=parts,
    )


def apply(store, authority, blob):
    return apply_update(store, blob, authority.keyring, site=SITE, now_ms=1_000)


def test_snapshot_then_delta(store, authority):
    a, b, c = ids(3)
    (snap,) = make(authority, version=1, add=[a, b])
    assert apply(store, authority, snap).status == "applied"
    assert store.is_revoked(a) and store.is_revoked(b) and not store.is_revoked(c)
    (delta,) = make(authority, version=2, base=1, add=[c], remove=[a])  # a un-revoked (exchange undone)
    outcome = apply(store, authority, delta)
    assert (outcome.status, outcome.version) == ("applied", 2)
    assert not store.is_revoked(a) and store.is_revoked(b) and store.is_revoked(c)
    assert store.facts(b).revoked and store.facts(b).rev_version == 2


def test_snapshot_replaces_whole_list(store, authority):
    a, b = ids(2)
    apply(store, authority, make(authority, version=1, add=[a])[0])
    apply(store, authority, make(authority, version=5, add=[b])[0])
    assert not store.is_revoked(a) and store.is_revoked(b) and store.revoked_count() == 1


@pytest.mark.parametrize(
    "case,code",
    [
        ("issuer key", "unknown_key"),
        ("untrusted key", "unknown_key"),
        ("other site", "wrong_site"),
        ("replay", "replay"),
        ("rollback", "replay"),
        ("bad signature", "bad_signature"),
        ("too large", "too_large"),
        ("truncated", "malformed"),
        ("snapshot removing", "malformed"),
        ("parts on a delta", "malformed"),
    ],
)
def test_rejections_keep_the_list(store, authority, case, code):
    kept = ids(2)
    apply(store, authority, make(authority, version=3, add=kept)[0])
    new = ids(1)
    blob = {
        "issuer key": lambda: make(authority, version=4, add=new, key=authority.issuer)[0],
        "untrusted key": lambda: make(authority, version=4, add=new, key=Ed25519PrivateKey.generate())[0],
        "other site": lambda: make(authority, version=4, add=new, site="elsewhere")[0],
        "replay": lambda: make(authority, version=3, add=new)[0],
        "rollback": lambda: make(authority, version=2, add=new)[0],
        "bad signature": lambda: _flip_last_byte(make(authority, version=4, add=new)[0]),
        "too large": lambda: b"\x00" * (MAX_MESSAGE + 1),
        "truncated": lambda: make(authority, version=4, add=new)[0][:-10],
        "snapshot removing": lambda: _signed(authority, {1: SITE, 2: 4, 3: 0, 4: [], 5: new, 6: 0}),
        "parts on a delta": lambda: _signed(authority, {1: SITE, 2: 4, 3: 3, 4: new, 5: [], 6: 0, 7: 0, 8: 1}),
    }[case]()
    outcome = apply(store, authority, blob)
    assert (outcome.status, outcome.code) == ("rejected", code)
    assert store.revocation_state().version == 3
    assert all(store.is_revoked(c) for c in kept) and not store.is_revoked(new[0])


def _flip_last_byte(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 1])


def _signed(authority, payload: dict) -> bytes:
    return cose.sign(cbor2.dumps(payload), authority.revocation)


def test_gap_marks_stale_and_waits_for_missing_versions(store, authority):
    a, b, c = ids(3)
    apply(store, authority, make(authority, version=1, add=[a])[0])
    v3 = make(authority, version=3, base=2, add=[c])[0]
    outcome = apply(store, authority, v3)
    assert (outcome.status, outcome.code, outcome.version) == ("stored", "gap", 1)
    assert store.revocation_state().stale and not store.is_revoked(c)
    outcome = apply(store, authority, make(authority, version=2, base=1, add=[b])[0])
    assert outcome.status == "applied" and outcome.applied == (2, 3)  # v3 followed as soon as v2 arrived
    assert store.revocation_state().version == 3 and not store.revocation_state().stale
    assert store.is_revoked(b) and store.is_revoked(c)


def test_multi_part_snapshot_applies_only_when_complete(store, authority):
    old = ids(1)
    apply(store, authority, make(authority, version=1, add=old)[0])
    everything = ids(30)
    parts = make(authority, version=2, add=everything, parts=3)
    assert len(parts) == 3
    assert apply(store, authority, parts[2]).status == "stored"
    assert apply(store, authority, parts[0]).status == "stored"
    assert store.revocation_state().version == 1 and store.is_revoked(old[0])  # nothing half-applied
    assert apply(store, authority, parts[0]).status == "stored"  # a repeated part changes nothing
    outcome = apply(store, authority, parts[1])
    assert (outcome.status, outcome.version) == ("applied", 2)
    assert store.revoked_count() == 30 and all(store.is_revoked(c) for c in everything)
    assert not store.is_revoked(old[0])


def test_large_snapshot_is_split_below_one_mebibyte(authority):
    parts = make(authority, version=1, add=ids(70_000))
    assert len(parts) == 2 and all(len(p) <= MAX_MESSAGE for p in parts)


def test_retained_messages_in_any_order_after_reconnect(store, authority):
    """Central keeps the newest snapshot's parts and every delta since; a gate sees them in any order."""
    snap_ids, d1, d2 = ids(10), ids(1), ids(1)
    messages = (
        make(authority, version=5, add=snap_ids, parts=2)
        + make(authority, version=6, base=5, add=d1)
        + make(authority, version=7, base=6, add=d2)
    )
    for blob in reversed(messages):
        apply(store, authority, blob)
    assert store.revocation_state().version == 7
    assert all(store.is_revoked(c) for c in snap_ids + d1 + d2)


def test_oversized_delta_is_refused_with_advice(authority):
    with pytest.raises(ValueError, match="consecutive versions"):
        make(authority, version=2, base=1, add=ids(70_000))


@pytest.mark.parametrize("missing", [4, 5])
def test_add_and_remove_are_required_even_when_empty(store, authority, missing):
    payload = {1: SITE, 2: 1, 3: 0, 4: ids(1), 5: [], 6: 0}
    del payload[missing]
    outcome = apply(store, authority, _signed(authority, payload))
    assert (outcome.status, outcome.code) == ("rejected", "malformed")


# --- through the CLI (`gated verify --revocations`, the path the daemon's uplink takes too) ----------

GATED = Path(sys.executable).parent / "gated"


def verify(authority, state: Path, files, *, keyring=None, umask=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
    args = [
        str(GATED),
        "verify",
        "--keyring",
        str(keyring or authority.keyring_dir),
        "--event",
        EVENT,
        "--state",
        str(state),
        *[a for f in files for a in ("--revocations", str(f))],
        authority.ticket(),
    ]
    return subprocess.run(
        args, capture_output=True, text=True, env=env, timeout=120, umask=-1 if umask is None else umask
    )


def write(directory: Path, name: str, blobs) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, blob in enumerate(blobs):
        paths.append(directory / f"{name}-{index}.cose")
        paths[-1].write_bytes(blob)
    return paths


def test_kept_delta_signed_by_a_rotated_out_key_is_dropped_and_said(tmp_path, authority):
    """Issue #11 item 8: a delta kept (gap) under the old revocation key, then the key is rotated and
    the missing version arrives signed by the new key: the stale delta is dropped with a reason, the
    new version applies, nothing raises."""
    state = tmp_path / "state" / "gate.db"
    (v1,) = make(authority, version=1, add=ids(1))
    (v3,) = make(authority, version=3, base=2, add=ids(1))
    result = verify(authority, state, write(tmp_path / "in", "old", [v1, v3]))
    assert result.returncode == 0 and "kept for later" in result.stderr, result.stderr
    new_ring = tmp_path / "rotated"
    private, public = keys.generate_key_files(tmp_path / "newkeys", "revocation-2")
    keys.trust_key_file(new_ring, public, "revocation")
    keys.trust_key_file(new_ring, authority.keyring_dir / "issuer.pub", "issuer")
    revoked_now = ids(1)
    (v2,) = make(authority, version=2, base=1, add=revoked_now, key=keys.load_private_key(private))
    result = verify(authority, state, write(tmp_path / "in", "new", [v2]), keyring=new_ring)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    assert "kept delta v3 dropped (unknown_key)" in result.stderr
    with GateStore(state) as store:
        assert store.revocation_state().version == 2 and store.is_revoked(revoked_now[0])
        assert store.waiting_delta(2) is None


def test_parts_are_staged_as_they_come_and_memory_stays_flat(tmp_path, authority):
    """Issue #11 item 13, small: 400k ids in 8 signed parts through `gated verify --revocations`. The
    old design read every stashed part back and parsed them all at once when the last came; the
    peak memory of the process grew with the whole list. Now it grows with one part at most."""
    probe = tmp_path / "rss.py"
    probe.write_text(
        "import resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stderr.write(r.stderr)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)\n"
        "sys.exit(r.returncode)\n"
    )

    def peak_mib(state, files):
        args = [
            sys.executable,
            str(probe),
            str(GATED),
            "verify",
            "--keyring",
            str(authority.keyring_dir),
            "--event",
            EVENT,
            "--state",
            str(state),
            *[a for f in files for a in ("--revocations", str(f))],
            authority.ticket(),
        ]
        result = subprocess.run(
            args, capture_output=True, text=True, timeout=300, env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
        )
        assert result.returncode == 0, result.stderr
        return int(result.stdout.split()[-1])

    everything = sorted(ids(400_000))
    base = peak_mib(
        tmp_path / "small.db", write(tmp_path / "small", "s", make(authority, version=1, add=everything[:8], parts=8))
    )
    files = write(tmp_path / "big", "b", make(authority, version=1, add=everything, parts=8))
    big = peak_mib(tmp_path / "big.db", files[::-1])  # in any order
    with GateStore(tmp_path / "big.db") as store:
        assert store.revocation_state().version == 1 and store.revoked_count() == len(everything)
        assert store.is_revoked(everything[0]) and store.is_revoked(everything[-1])
    # one part is ~0.85 MiB of CBOR, 50k ids; SQLite's page cache is capped at 16 MiB. The old design
    # held all 400k ids as Python objects at once (~50 MiB more).
    assert big - base < 32, f"peak RSS {big} MiB vs {base} MiB for a tiny list"


def test_part_count_mismatch_newer_snapshot_and_repeats(store, authority):
    everything = ids(40)
    v2 = make(authority, version=2, add=everything, parts=4)
    assert apply(store, authority, v2[0]).status == "stored"
    assert apply(store, authority, v2[0]).detail.endswith("a repeat)")
    odd = make(authority, version=2, add=everything, parts=5)[1]
    assert (apply(store, authority, odd).status, apply(store, authority, odd).code) == ("rejected", "malformed")
    v3 = make(authority, version=3, add=everything[:20], parts=2)
    assert apply(store, authority, v3[1]).status == "stored"  # a newer snapshot: v2's parts are given up
    outcome = apply(store, authority, v2[1])
    assert (outcome.status, outcome.code) == ("rejected", "replay")
    outcome = apply(store, authority, v3[0])
    assert (outcome.status, outcome.version) == ("applied", 3) and store.revoked_count() == 20
    assert all(apply(store, authority, p).code == "replay" for p in v2)
