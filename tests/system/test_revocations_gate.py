"""Revocation updates against a running gate (`gated run`, a real Mosquitto): a full disk keeps the
gate up, shut and alarmed (issue #11 item 9); hostile revocation messages each get a logged reason
and leave the list in force (the seeded fuzz of issue #11's "Done when")."""

from __future__ import annotations

import json
import os
import random
import resource
import time
from contextlib import closing
from pathlib import Path

import cbor2
import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated.core import cose, revocation
from gated.gate import revocations
from gated.gate.rehearsal.control import Client
from gated.gate.store import GateStore
from gated.topics import health_topic, revocation_topic
from tests.conftest import EVENT, SITE
from tests.support.gatedaemon import GateProcess, gate_config, write_config

GATE = "g1"


class Central:
    """The central side on the broker: publishes (retained, QoS 1) and watches the gate's health."""

    def __init__(self, port: int):
        self.health: list[dict] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, m: self.health.append(json.loads(m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(health_topic(SITE, GATE), qos=1)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, retain: bool = True) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def provision(state: Path, authority, revoked: list[bytes]) -> None:
    with GateStore(state / "gate.db", site=SITE, gate=GATE) as store:
        (blob,) = revocation.encode_updates(
            authority.revocation, site=SITE, version=1, add=revoked, iat=int(time.time())
        )
        assert revocations.apply_update(store, blob, authority.keyring, site=SITE, now_ms=0).status == "applied"
    with closing(__import__("sqlite3").connect(state / "gate.db")) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def config(tmp_path, authority, broker) -> Path:
    cfg = gate_config(
        tmp_path,
        keyring=authority.keyring_dir,
        broker_url=broker.url,
        camera_source="synthetic:",
        site=SITE,
        gate=GATE,
        event=EVENT,
        sim={"control_socket": str(tmp_path / "sim.sock")},
    )
    return write_config(tmp_path / "gated.toml", cfg)


@pytest.fixture
def central(broker):
    c = Central(broker.port)
    yield c
    c.close()


def full_disk(process, full: bool) -> None:
    """Every write of `process` from now on fails as on a full disk (RLIMIT_FSIZE of 1 byte: a
    write at any offset past it is EFBIG; Python ignores SIGXFSZ), or writes work again."""
    _soft, hard = resource.prlimit(process.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (1 if full else hard, hard))


def test_full_disk_keeps_the_gate_up_shut_and_alarmed(tmp_path, authority, broker, central):
    """The disk fills while the gate runs, then a revocation update comes. Before, the StoreError
    left the uplink and `gated run` exited (and systemd restarted it into the same wall). Now the
    gate stays up, logs the alarm, reports store_ok false, keeps the old list, and admits nobody it
    cannot record; once space is back it works again and takes the update."""
    revoked = [os.urandom(16)]
    provision(tmp_path / "state", authority, revoked)
    gate = GateProcess(config(tmp_path, authority, broker)).start()
    newly = os.urandom(16)
    try:
        gate.wait_ready()
        control = Client(tmp_path / "sim.sock")
        full_disk(gate.process, True)
        (update,) = revocation.encode_updates(
            authority.revocation, site=SITE, version=2, add=[newly], iat=int(time.time())
        )
        central.publish(revocation_topic(SITE, 2, 0), update)
        gate.wait_for(
            lambda: [
                e
                for e in gate.logs
                if "write failed" in str(e.get("error"))
                and (e.get("step") == "uplink" or "/revocations/" in str(e.get("topic")))
            ],
            20,
            "the revocation update's write failing",
        )
        gate.wait_for(lambda: gate.logged("gate.store_fault"), 5, "the alarm")
        assert len(gate.logged("gate.store_fault")) == 1  # the alarm once, however many writes fail
        gate.wait_for(lambda: any(h.get("store_ok") is False for h in central.health), 10, "health store_ok false")
        control.request("show", text=authority.ticket())
        gate.wait_for(
            lambda: [e for e in gate.logged("store fault: gate stays shut") if e.get("step") == "scan"],
            20,
            "the scan refused for want of a record",
        )
        control.request("show", text=None)
        time.sleep(0.5)
        assert control.request("state")["devices"]["relay"]["activations"] == 0 and not gate.scans()
        assert gate.process.poll() is None and not gate.logged("gate cannot run")

        full_disk(gate.process, False)  # space again: the next write works, the alarm clears
        gate.wait_for(lambda: gate.logged("store writes again"), 20, "the store to recover")
        gate.wait_for(lambda: central.health and central.health[-1].get("store_ok") is True, 10, "health store_ok true")
        central.publish(revocation_topic(SITE, 2, 0), update)  # central publishes again (or the gate reconnects)
        gate.wait_for(lambda: [e for e in gate.logged("revocation update") if e.get("version") == 2], 20, "v2")
        control.request("show", text=authority.ticket(cti=newly))
        (scan,) = gate.wait_for(gate.scans, 20, "a scan")
        control.request("show", text=None)
        control.close()
        assert (scan["decision"], scan["reason"]) == ("deny", "revoked")
    finally:
        rc = gate.terminate()
    assert rc == 0


# --- hostile revocation messages, seeded and bounded ------------------------------------------------


def _signed(key, payload) -> bytes:
    return cose.sign(cbor2.dumps(payload), key)


def hostile_messages(rng: random.Random, authority) -> list[tuple[str, str, bytes]]:
    """(case, topic, payload): each must be refused or left waiting, never applied."""
    key, stranger = authority.revocation, Ed25519PrivateKey.generate()
    iat = int(time.time())

    def ids(n):
        return [rng.randbytes(16) for _ in range(n)]

    good = revocation.encode_updates(key, site=SITE, version=5, add=ids(3), iat=iat)[0]
    cases = [
        ("bad CBOR", 5, rng.randbytes(rng.randrange(1, 200))),
        ("truncated", 5, good[: rng.randrange(1, len(good))]),
        ("wrong signature", 5, good[:-1] + bytes([good[-1] ^ 1])),
        ("stranger's key", 5, revocation.encode_updates(stranger, site=SITE, version=5, add=ids(1), iat=iat)[0]),
        ("issuer's key", 5, revocation.encode_updates(authority.issuer, site=SITE, version=5, add=ids(1), iat=iat)[0]),
        ("wrong site", 5, revocation.encode_updates(key, site="elsewhere", version=5, add=ids(1), iat=iat)[0]),
        ("version past CBOR's uint", 5, _signed(key, {1: SITE, 2: 2**64, 3: 0, 4: ids(1), 5: [], 6: iat})),
        ("negative version", 5, _signed(key, {1: SITE, 2: -5, 3: 0, 4: ids(1), 5: [], 6: iat})),
        ("replay", 1, revocation.encode_updates(key, site=SITE, version=1, add=ids(1), iat=iat)[0]),
        ("part beyond parts", 6, _signed(key, {1: SITE, 2: 6, 3: 0, 4: ids(1), 5: [], 6: iat, 7: 3, 8: 3})),
        (
            "delta with missing base",
            9,
            revocation.encode_updates(key, site=SITE, version=9, base=8, add=ids(1), iat=iat)[0],
        ),
        ("not a map", 5, _signed(key, [SITE, 5])),
        ("ids not 16 bytes", 5, _signed(key, {1: SITE, 2: 5, 3: 0, 4: [b"short"], 5: [], 6: iat})),
    ]
    if not cose.is_uint(2**63):  # the codec's bound (issue #11 item 1): a version SQLite can hold
        cases.append(("huge version", 5, _signed(key, {1: SITE, 2: 2**64 - 1, 3: 0, 4: ids(1), 5: [], 6: iat})))
    odd = revocation.encode_updates(key, site=SITE, version=7, add=ids(40), iat=iat, parts=5)[3]
    cases.append(("parts with mismatching counts", 7, odd))
    rng.shuffle(cases)
    never = revocation.encode_updates(key, site=SITE, version=7, add=ids(40), iat=iat, parts=4)
    cases = [("parts that never complete", 7, blob) for blob in never[:3]] + cases  # before the odd one
    return [(case, revocation_topic(SITE, version, 0), payload) for case, version, payload in cases]


@pytest.mark.parametrize("seed", [11, 2026])
def test_hostile_revocation_messages_leave_the_list_in_force(tmp_path, authority, broker, central, seed):
    revoked = [os.urandom(16) for _ in range(3)]
    provision(tmp_path / "state", authority, revoked)
    gate = GateProcess(config(tmp_path, authority, broker)).start()
    rng = random.Random(seed)
    try:
        gate.wait_ready()
        messages = hostile_messages(rng, authority)
        for _case, topic, payload in messages:
            central.publish(topic, payload, retain=False)

        def said():
            return [e for e in gate.logs if e.get("event") in ("revocation update rejected", "revocation update")]

        gate.wait_for(lambda: len(said()) >= len(messages), 30, f"a logged reason for each of {len(messages)} messages")
        entries = said()
        assert all(e["event"] == "revocation update rejected" or e["status"] == "stored" for e in entries), entries
        codes = {e.get("code") for e in entries}
        assert {"malformed", "bad_signature", "unknown_key", "wrong_site", "replay"} <= codes, codes
        assert sum(e.get("status") == "stored" for e in entries) == 4  # the gap delta and the three waiting parts
        assert gate.process.poll() is None
        # the old list is in force: a revoked ticket is still refused
        control = Client(tmp_path / "sim.sock")
        control.request("show", text=authority.ticket(cti=revoked[1]))
        (scan,) = gate.wait_for(gate.scans, 20, "the scan")
        control.request("show", text=None)
        control.close()
        assert (scan["decision"], scan["reason"]) == ("deny", "revoked")
    finally:
        assert gate.terminate() == 0
    with GateStore(tmp_path / "state" / "gate.db") as store:
        assert store.revocation_state().version == 1 and store.revoked_count() == 3
