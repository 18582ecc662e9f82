"""The gate store: transactions, the event chain across restarts, admissions and their rollback."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import stat
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from gated.core import events
from gated.gate.schema import MIGRATIONS
from gated.gate.store import GateStore, StoreCorrupt, StoreError
from tests.conftest import EVENT

SITE = "arena"


def open_store(path, gate="g1"):
    return GateStore(path, site=SITE, gate=gate)


def test_settings_and_migrations(tmp_path):
    with open_store(tmp_path / "g.db"):
        pass
    db = sqlite3.connect(tmp_path / "g.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {
        "meta",
        "admissions",
        "revoked",
        "revocation_parts",
        "outbox",
        "peer_admissions",
        "revocation_staging",
        "revocation_staged",
    } <= tables


def test_migration_2_moves_peer_admissions_out_of_the_gates_own_table(tmp_path):
    path, own, peer = tmp_path / "old.db", os.urandom(16), os.urandom(16)
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(f"BEGIN; {MIGRATIONS[0]}; PRAGMA user_version = 1; COMMIT;")
    db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [("site", "arena"), ("gate", "g1")])
    db.executemany(
        "INSERT INTO admissions (scan_id, cti, step, gate, ts_ms, state) VALUES (?, ?, ?, ?, ?, ?)",
        [("g1:1", own, None, "g1", 5, "pending"), ("g2:7", peer, None, "g2", 6, "passed")],
    )
    db.close()
    with GateStore(path, site="arena", gate="g1") as store:
        assert store.admissions(peer) == [
            {"scan_id": "g2:7", "gate": "g2", "step": None, "ts_ms": 6, "state": "passed"}
        ]
        assert store.facts(peer).admissions == 1 and store.facts(own).admissions == 1
        assert store.pending_admissions() == ["g1:1"]
        (mine,) = store._db.execute("SELECT COUNT(*) FROM admissions").fetchone()
    assert mine == 1


def test_scan_event_and_admission_commit_together(store):
    cti = os.urandom(16)
    event = store.record_scan({"ticket": cti.hex(), "decision": "admit"}, 1_000, admit_cti=cti)
    assert event["id"] == "g1:1" and event["seq"] == 1 and event["prev"] == events.GENESIS
    assert store.facts(cti).admissions == 1
    assert [json.loads(e) for _, e in store.outbox()] == [event]
    assert store.pending_admissions() == ["g1:1"]


def test_failed_transaction_writes_nothing(store):
    cti = os.urandom(16)
    store.record_scan({"x": 1}, 1_000, admit_cti=cti)
    with pytest.raises(StoreError):  # the same scan id again violates the primary key: all rolled back
        store._db.execute("UPDATE meta SET value = 0 WHERE key = 'seq'")
        store.record_scan({"x": 2}, 2_000, admit_cti=cti)
    store._db.execute("UPDATE meta SET value = 1 WHERE key = 'seq'")
    assert store.outbox_depth() == 1 and store.facts(cti).admissions == 1


def test_passage_confirms_or_rolls_back(store):
    cti = os.urandom(16)
    first = store.record_scan({}, 1_000, admit_cti=cti)
    timeout = store.record_passage(first["id"], False, 9_000)
    assert timeout["kind"] == "passage" and timeout["result"] == "timeout" and timeout["ref"] == first["id"]
    assert store.facts(cti).admissions == 0  # the ticket works again
    second = store.record_scan({}, 10_000, admit_cti=cti)
    store.record_passage(second["id"], True, 11_000)
    assert store.facts(cti).admissions == 1 and store.pending_admissions() == []


def test_seq_and_chain_survive_restart(tmp_path):
    path = tmp_path / "g.db"
    with open_store(path) as s:
        made = [s.record_event({"kind": "state", "state": "online", "rev": 0}, 1_000 + i) for i in range(3)]
        public = s.device_public_key
    with open_store(path) as s:
        made.append(s.record_event({"kind": "alarm", "alarm": "tamper"}, 5_000))
        assert s.device_public_key.public_bytes_raw() == public.public_bytes_raw()  # same device key
    assert [e["seq"] for e in made] == [1, 2, 3, 4]
    for prev, event in zip(made, made[1:]):
        assert event["prev"] == prev["hash"]
    for event in made:
        assert events.check_seal(event, public) == []


def test_tampering_is_noticed(store):
    event = store.record_event({"kind": "alarm", "alarm": "tamper"}, 1_000)
    assert events.check_seal({**event, "alarm": "held_open"}, store.device_public_key) == [
        "hash does not match content"
    ]
    forged = {**event, "sig": event["sig"][:-4] + "AAA="}
    assert events.check_seal(forged, store.device_public_key) == ["device signature does not verify"]


def test_canonical_form_is_the_protocol_one():
    event = {"b": "ü", "a": 1, "hash": "x", "sig": "y"}
    assert events.canonical({k: event[k] for k in ("b", "a")}) == '{"a":1,"b":"ü"}'.encode()
    assert events.format_ts(1_790_000_000_123) == "2026-09-21T14:13:20.123Z"


def test_outbox_acknowledge(store):
    for i in range(5):
        store.record_event({"kind": "alarm", "alarm": "tamper"}, i)
    assert [seq for seq, _ in store.outbox(after_seq=2)] == [3, 4, 5]
    store.acknowledge(1, 2, 3)
    assert [seq for seq, _ in store.outbox()] == [4, 5] and store.outbox_depth() == 2


def test_peer_admissions_are_idempotent_and_rolled_back(store, tmp_path):
    cti = os.urandom(16)
    with GateStore(tmp_path / "g2.db", site=store.site, gate="g2") as g2:
        g2.record_event({"kind": "alarm", "alarm": "tamper"}, 1)
        scan = g2.record_scan(
            {
                "ticket": cti.hex(),
                "event": "E",
                "type": "t",
                "zone": None,
                "decision": "admit",
                "reason": "ok",
                "rev": 0,
                "latency_us": 0,
            },
            1_000,
            admit_cti=cti,
        )
        timeout = g2.record_passage(scan["id"], False, 2_000)
    assert store.record_peer_event(scan) is True
    assert store.record_peer_event(scan) is False  # delivered twice, counted once
    assert store.facts(cti).admissions == 1
    assert store.admissions(cti) == [{"scan_id": "g2:2", "gate": "g2", "step": None, "ts_ms": 1_000, "state": "passed"}]
    assert store.record_peer_event(timeout) is True
    assert store.facts(cti).admissions == 0
    own = {**scan, "gate": "g1", "id": "g1:2"}
    assert store.record_peer_event(own) is False


def test_a_peer_can_neither_take_nor_roll_back_the_gates_own_admissions(store):
    cti = os.urandom(16)
    mine = store.record_scan({"ticket": cti.hex(), "decision": "admit"}, 1_000, admit_cti=cti)
    # g2 names g1's scan id (a shape events.read_event refuses; the store must not rely on that alone)
    assert (
        store.record_peer_event(
            {"kind": "passage", "gate": "g2", "id": "g2:9", "seq": 9, "ref": mine["id"], "result": "timeout"}
        )
        is False
    )
    # and an admission whose id is the one g1 gives next: g1's own next admission still goes in
    assert (
        store.record_peer_event(
            {
                "kind": "scan",
                "gate": "g2",
                "id": "g1:2",
                "seq": 2,
                "decision": "admit",
                "ticket": cti.hex(),
                "ts": "2026-09-21T14:13:20.123Z",
            }
        )
        is True
    )
    assert store.facts(cti).admissions == 2
    follow = store.record_scan({"ticket": cti.hex(), "decision": "admit"}, 2_000, admit_cti=cti)  # no collision
    assert follow["id"] == "g1:2" and store.facts(cti).admissions == 3


def test_a_store_belongs_to_one_gate(tmp_path):
    with open_store(tmp_path / "g.db", gate="g1"):
        pass
    with pytest.raises(StoreError, match="belongs to gate 'g1'"):
        open_store(tmp_path / "g.db", gate="g2")


def test_unwritable_location_is_a_clear_fault(tmp_path):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "g.db").mkdir()  # a directory where the database file should be
    with pytest.raises(StoreError, match="cannot open the gate state"):
        open_store(tmp_path / "ro" / "g.db")


def test_nonce_only_increases(store):
    assert store.check_and_set_nonce("cmd", 5)
    assert not store.check_and_set_nonce("cmd", 5)
    assert not store.check_and_set_nonce("cmd", 4)
    assert store.check_and_set_nonce("cmd", 6)


# --- the file: permissions whatever the umask, damage found before use (issue #11 item 9) ----------

GATED = Path(sys.executable).parent / "gated"


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_state_is_private_whatever_the_umask(tmp_path, authority, umask):
    """The file holds the device's private key: `gated verify --state` (a desk tool, a fresh
    directory) and the daemon make it 0600 in a 0700 directory, -wal and -shm too."""
    state = tmp_path / "made" / "here" / "gate.db"
    result = subprocess.run(
        [
            str(GATED),
            "verify",
            "--keyring",
            str(authority.keyring_dir),
            "--event",
            EVENT,
            "--state",
            str(state),
            "--record",
            authority.ticket(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        umask=umask,
        env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"},
    )
    assert result.returncode == 0, result.stderr
    for directory in (tmp_path / "made", tmp_path / "made" / "here"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    files = [p for p in state.parent.iterdir()]
    assert state in files
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


def test_a_state_file_left_readable_by_an_older_version_is_tightened(tmp_path):
    path = tmp_path / "gate.db"
    with open_store(path):
        pass
    path.chmod(0o644)
    with open_store(path) as store:
        store.record_event({"kind": "alarm", "alarm": "tamper"}, 1)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def corrupt_index(path: Path, index: str = "admissions_by_ticket") -> None:
    """Garbage over the root page of one index, as a failing SD card might leave it."""
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (page_size,) = db.execute("PRAGMA page_size").fetchone()
        (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (index,)).fetchone()
    with open(path, "r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(random.Random(7).randbytes(page_size))


def admitted_state(path: Path, count: int = 2000) -> list[bytes]:
    ctis = [os.urandom(16) for _ in range(count)]
    with open_store(path) as store:
        for number, cti in enumerate(ctis):
            store.record_scan({"ticket": cti.hex(), "decision": "admit"}, number, admit_cti=cti, confirmed=True)
    return ctis


def test_a_damaged_index_is_refused_at_open(tmp_path):
    path = tmp_path / "gate.db"
    admitted_state(path)
    corrupt_index(path)
    with pytest.raises(StoreCorrupt, match="damaged"):
        open_store(path)


def test_gated_run_and_doctor_refuse_a_damaged_state(tmp_path, authority):
    from tests.support.gatedaemon import GateProcess, gate_config, write_config

    admitted_state(tmp_path / "state" / "gate.db", 500)
    corrupt_index(tmp_path / "state" / "gate.db")
    cfg = gate_config(
        tmp_path,
        keyring=authority.keyring_dir,
        broker_url="mqtt://127.0.0.1:9",
        camera_source="synthetic:",
        site=SITE,
        gate="g1",
        event=EVENT,
    )
    config = write_config(tmp_path / "gated.toml", cfg)
    gate = GateProcess(config).start()
    try:
        assert gate.process.wait(60) != 0
    finally:
        gate.stop_quietly()
    gate._reader.join(5)
    (failure,) = gate.logged("gate cannot run")
    assert failure["fault"] == "StoreCorrupt" and "damaged" in failure["error"], failure
    assert not gate.logged("gate ready")
    result = subprocess.run(
        [str(GATED), "doctor", "--config", str(config), "--timeout", "2", "--skip", "broker", "--skip", "camera"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"},
    )
    assert result.returncode == 1
    (state_line,) = [line for line in result.stdout.splitlines() if line.split()[1:2] == ["state"]]
    assert state_line.startswith("FAIL") and "damaged" in state_line, result.stdout


def test_doctor_warns_about_a_state_file_others_can_read(tmp_path, authority):
    from tests.support.gatedaemon import gate_config, write_config

    with GateStore(tmp_path / "state" / "gate.db", site=SITE, gate="g1"):
        pass
    (tmp_path / "state" / "gate.db").chmod(0o644)  # as an older gated left it under umask 022
    cfg = gate_config(
        tmp_path,
        keyring=authority.keyring_dir,
        broker_url="mqtt://127.0.0.1:9",
        camera_source="synthetic:",
        site=SITE,
        gate="g1",
        event=EVENT,
    )
    result = subprocess.run(
        [
            str(GATED),
            "doctor",
            "--config",
            str(write_config(tmp_path / "gated.toml", cfg)),
            "--timeout",
            "1",
            "--skip",
            "broker",
            "--skip",
            "camera",
            "--skip",
            "gpio",
            "--skip",
            "decoder",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"},
    )
    (state_line,) = [line for line in result.stdout.splitlines() if line.split()[1:2] == ["state"]]
    assert state_line.startswith("warn") and "readable by other users" in state_line, result.stdout
    assert stat.S_IMODE((tmp_path / "state" / "gate.db").stat().st_mode) == 0o644  # doctor never writes


def test_a_write_that_changes_nothing_does_not_end_a_store_fault(tmp_path):
    """A write fails (a full disk: here a trigger refuses every event) and the store keeps the fault.
    A transaction that changes no row (a prune with nothing to prune) commits without writing to the
    disk: it does not end the fault (it did: the daemon logged `store writes again` on a full disk,
    and raised the alarm a second time at the next failing write). A write that changes rows does."""
    with open_store(tmp_path / "gate.db") as store:
        with sqlite3.connect(store.path) as db:
            db.execute("CREATE TRIGGER full BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        with pytest.raises(StoreError):
            store.record_event({"kind": "alarm", "alarm": "tamper"}, 1_000)
        assert "disk full" in store.fault
        assert store.prune_expired(0) == 0
        assert "disk full" in store.fault
        with sqlite3.connect(store.path) as db:
            db.execute("DROP TRIGGER full")
        store.record_event({"kind": "alarm", "alarm": "tamper"}, 2_000)
        assert store.fault is None


def _peer_wire(event: dict, peer) -> dict:
    """An event as a gate takes a peer's (gated/gate/uplink.py): the strict reader, then the seal."""
    taken = events.read_event(events.canonical(event), site=SITE, gate=event["gate"])
    assert not events.check_seal(taken, peer.device_public_key)
    return taken


@pytest.mark.parametrize("order", ["resent after its rollback", "rollback first"])
def test_a_peers_rollback_stays_when_its_admission_comes_again(tmp_path, authority, order):
    """g2 let a ticket in, then nobody passed (timeout). A copy of the admission arriving after the
    rollback (the peer's uplink resending it alone; or the two out of order) must not make the
    ticket `already_used` at g1: its holder never got in."""
    from gated.core.decide import GateContext
    from gated.core.reasons import Reason
    from gated.gate.validate import record, scan_fields, validate

    context = GateContext(site=SITE, events=frozenset({EVENT}))
    text = authority.ticket()
    with open_store(tmp_path / "g1.db") as g1, open_store(tmp_path / "g2.db", gate="g2") as g2:
        now = time.time()
        decision = validate(text, authority.keyring, context, g2, now)
        assert decision.admit
        scan = record(g2, decision, scan_fields(decision, context, 0), int(now * 1000), confirmed=False)
        timeout = g2.record_passage(scan["id"], False, int(now * 1000) + 8_000)
        arrivals = [scan, timeout, scan] if order == "resent after its rollback" else [timeout, scan]
        for event in arrivals:
            g1.record_peer_event(_peer_wire(event, g2))
        assert g1.facts(decision.cti).admissions == 0
        assert validate(text, authority.keyring, context, g1, now + 10).reason is Reason.OK
    with open_store(tmp_path / "g1.db") as again:  # the mark is kept across a restart
        again.record_peer_event(_peer_wire(scan, g2))
        assert again.facts(decision.cti).admissions == 0
