"""GateStore's summary, and the read-only summary of a state file (what `gated doctor` shows)."""

from __future__ import annotations

import os

import pytest

from gated.gate.store import GateStore, StoreCorrupt, StoreError, read_summary


def test_the_summary_counts_what_the_state_holds_and_reads_without_writing(tmp_path):
    path = tmp_path / "gate.db"
    with GateStore(path, site="arena", gate="g1") as store:
        store.record_scan(
            {"kind": "scan", "decision": "admit", "ticket": "ab" * 16}, 1_790_000_000_000, admit_cti=os.urandom(16)
        )
        store.set_value("clock.trusted_ms", 1_790_000_000_000)
        store.apply_revocations(
            version=3,
            base=0,
            add=[os.urandom(16)],
            remove=[],
            iat=1_789_000_000,
            site="arena",
            applied_ms=1_790_000_000_000,
            expected_version=0,
        )
        live = store.summary()
    before = path.read_bytes()
    read = read_summary(path)
    assert read == live
    assert (read.site, read.gate, read.seq, read.outbox, read.pending) == ("arena", "g1", 1, 1, 1)
    assert (read.revocations.version, read.revocations.iat, read.revocations.stale) == (3, 1_789_000_000, False)
    assert read.value("clock.trusted_ms") == 1_790_000_000_000 and read.value("command_nonce") is None
    assert "device_key" not in read.values
    assert path.read_bytes() == before  # (SQLite may make the -shm and -wal of a WAL file to read it)


def test_a_missing_or_damaged_file_is_a_store_error(tmp_path):
    with pytest.raises(StoreError):
        read_summary(tmp_path / "none.db")
    path = tmp_path / "gate.db"
    GateStore(path, site="arena", gate="g1").close()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # the schema page
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError) as caught:
        read_summary(path)
    assert (
        isinstance(caught.value, StoreCorrupt)
        or "malformed" in str(caught.value)
        or "not a database" in str(caught.value)
    )
