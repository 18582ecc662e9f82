"""Revocation updates, PROTOCOL §4: every rejection rule keeps the old list; applies are atomic."""

from __future__ import annotations

import os

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated.core import cose
from gated.revocations import MAX_MESSAGE, apply_update, encode_updates

SITE = "arena"


def ids(n):
    return [os.urandom(16) for _ in range(n)]


def make(authority, *, version, base=0, add=(), remove=(), parts=None, site=SITE, key=None):
    return encode_updates(key or authority.revocation, site=site, version=version, base=base, add=add, remove=remove,
                          iat=1_790_000_000, parts=parts)


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


@pytest.mark.parametrize("case,code", [
    ("issuer key", "unknown_key"), ("untrusted key", "unknown_key"), ("other site", "wrong_site"),
    ("replay", "replay"), ("rollback", "replay"), ("bad signature", "bad_signature"), ("too large", "too_large"),
    ("truncated", "malformed"), ("snapshot removing", "malformed"), ("parts on a delta", "malformed"),
])
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
    messages = make(authority, version=5, add=snap_ids, parts=2) + make(authority, version=6, base=5, add=d1) \
        + make(authority, version=7, base=6, add=d2)
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
