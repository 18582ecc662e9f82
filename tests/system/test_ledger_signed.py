"""Only the ledger can confirm (issue #22, item 2): `committed` and occupancy are signed by a key with
the keyring role `ledger` (gated/core/ledgersig.py). Forged ones (unsigned, signed by another key, signed
by the ledger for another gate or site, an occupancy figure older than the gate's or stamped in the
future) change nothing at a gate: a log line and the `unverified_ledger_messages` counter."""

from __future__ import annotations

import json
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated.core.confirmation import encode
from gated.core.ledgersig import UnverifiedLedgerMessage, seal, unseal
from gated.core.occupancy import encode_occupancy
from gated.topics import committed_topic, events_topic, occupancy_topic
from tests.conftest import SITE
from tests.support.uplink import LEDGER_KEY, Listener, gate_with_delivered_events, pump
from tests.system.test_hostile_peers import scanned_event, start_gate


def _confirmation(seq: int, *, site=SITE, gate="g1", key=LEDGER_KEY) -> bytes:
    return seal({**json.loads(encode(seq, [])), "site": site, "gate": gate}, key)


def test_forged_committed_messages_prune_nothing(broker, tmp_path, authority):
    store, uplink = gate_with_delivered_events(broker, tmp_path, authority.keyring, 5)
    central = Listener(broker.port, "unused/#")
    topic = committed_topic(SITE, "g1")
    try:
        forged = [
            json.dumps({"seq": 5, "held": []}).encode(),  # unsigned (as a ledger of before #22 sends it)
            _confirmation(5, key=authority.command),  # signed, by a key that is no ledger key
            _confirmation(5, key=Ed25519PrivateKey.generate()),  # another site's ledger key, unknown here
            _confirmation(5, gate="g2"),  # the ledger's, about another gate
            _confirmation(5, site="other"),  # the ledger's, about another site
            json.dumps({"seq": 5, "sig": "not base64!"}).encode(),
        ]
        for message in forged:
            central.client.publish(topic, message, qos=1, retain=True).wait_for_publish(5)
        pump([uplink], lambda: uplink.unverified_ledger_messages >= 4, what="the forgeries judged")
        time.sleep(0.3)
        uplink.poll(0.1)
        assert store.outbox_counts() == (0, 5) and uplink.committed == 0
        central.client.publish(topic, _confirmation(3), qos=1, retain=True)  # the ledger's own
        pump([uplink], lambda: store.outbox_counts() == (0, 2), what="rows 1-3 pruned")
    finally:
        uplink.stop()
        central.close()
        store.close()


def test_unseal_says_why(authority):
    body = {"seq": 1, "held": [], "site": SITE, "gate": "g1"}
    text, signer = unseal(seal(body, LEDGER_KEY), authority.keyring)
    assert json.loads(text) == body and signer == "ledger"
    for payload, code in (
        (json.dumps(body).encode(), "unsigned"),
        (b"[]", "unsigned"),
        (b"\xff", "malformed"),
        (seal(body, authority.command), "unknown_key"),
    ):
        try:
            unseal(payload, authority.keyring)
        except UnverifiedLedgerMessage as exc:
            assert exc.code == code, (payload, exc)
        else:
            raise AssertionError(f"{payload!r} accepted")
    tampered = json.loads(seal(body, LEDGER_KEY))
    blob = bytearray(__import__("base64").b64decode(tampered["sig"]))
    blob[-1] ^= 1
    tampered["sig"] = __import__("base64").b64encode(bytes(blob)).decode()
    try:
        unseal(json.dumps(tampered).encode(), authority.keyring)
    except UnverifiedLedgerMessage as exc:
        assert exc.code == "bad_signature"
    else:
        raise AssertionError("a tampered signature accepted")


def test_forged_occupancy_changes_nothing_at_a_running_gate(tmp_path, broker, authority):
    """`gated run` with capacity 1. The ledger's signed figure (nobody inside, counted past every seq
    of the gate) lets visitors in on the central figure; forged figures saying the zone is full
    (unsigned, another key, stamped in the future, older than the one it has) do not close it."""
    gate, camera = start_gate(tmp_path, authority, broker, capacity=1)
    central = Listener(broker.port, "unused/#")
    published = Listener(broker.port, events_topic(SITE, "g1"))

    def scanned(text: str) -> dict:
        return scanned_event(gate, camera, published, text)

    zones = {"north": {"inside": 0, "capacity": 1, "entries": 0, "exits": 0}}
    full = {"north": {"inside": 1, "capacity": 1, "entries": 1, "exits": 0}}

    def figure(zones, ts_ms, key=LEDGER_KEY):
        body = json.loads(encode_occupancy(SITE, zones, ts_ms, {"g1": 10**6}))
        return seal(body, key) if key is not None else json.dumps(body).encode()

    try:
        now = int(time.time() * 1000)
        central.client.publish(occupancy_topic(SITE), figure(zones, now), 1, retain=True).wait_for_publish(5)
        time.sleep(0.5)
        first = scanned(authority.ticket())
        assert (first["decision"], first["occupancy_source"]) == ("admit", "central"), first
        for forged in (
            figure(full, now + 1000, key=None),
            figure(full, now + 1000, key=authority.command),
            figure(full, now + 10 * 60_000),
            figure(full, now - 60_000),
        ):
            central.client.publish(occupancy_topic(SITE), forged, 1, retain=True).wait_for_publish(5)
        gate.wait_for(
            lambda: (
                len(gate.logged("occupancy message ignored")) == 2
                and len(gate.logged("occupancy message ignored: not from the ledger")) == 2
            ),
            what="the forgeries ignored",
        )
        again = scanned(authority.ticket())
        assert (again["decision"], again["occupancy_source"]) == ("admit", "central"), again
        assert gate.terminate() == 0
    finally:
        central.close()
        published.close()
        camera.close()
        gate.stop_quietly()
