"""A pretix check-in list through the whole path: signed by the central side, retained at a real broker,
taken by a running gate daemon, kept across a restart. A list that is not signed, signed by a key the
gate does not trust, whose rules the gate cannot evaluate, or older than the one held is refused, and
the gate goes on judging by the last good list."""

from __future__ import annotations

import json
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated import keys
from gated.central.pretix_orders import publish_checkin_list
from gated.cli import main
from gated.core import checkinlist
from gated.core.pretix_secret import Fields, encode_secret
from gated.mqtturl import parse_broker_url
from gated.topics import health_topic
from tests.pretix.test_pretix_venue import CLEAN, retained, shown
from tests.support.gatedaemon import GateProcess, gate_config, write_config

SITE, EVENT = "arena", "final-2026"


def signed_list(key, version: int, rules: dict, name: str = "Gates") -> bytes:
    settings = {
        "id": 3,
        "name": name,
        "include_pending": False,
        "allow_multiple_entries": True,
        "allow_entry_after_exit": True,
        "all_products": True,
        "limit_products": [],
        "subevent": None,
        "rules": json.dumps(rules),
        "exit_all_at": None,
    }
    times = {"tz": "Europe/Berlin", "date_from": 1_780_000_000, "date_to": None, "date_admission": None}
    return checkinlist.encode_list(
        key, site=SITE, version=version, iat=int(time.time()), event=EVENT, settings=settings, times=times, gates={}
    )


def wait_outcome(gate, event: str, count: int) -> dict:
    gate.wait_for(lambda: len(gate.logged(event)) >= count, what=f"{count} x {event!r}")
    return gate.logged(event)[count - 1]


def test_the_last_good_list_stays(tmp_path, broker):
    from gated.gate.rehearsal.control import Client

    ring = tmp_path / "ring"
    issuer, revocation, stranger = (Ed25519PrivateKey.generate() for _ in range(3))
    for name, key, role in (("pretix", issuer, "issuer"), ("rev", revocation, "revocation")):
        (tmp_path / f"{name}.pem").write_bytes(keys.public_pem(key.public_key()))
        extra = ["--event", EVENT] if role == "issuer" else []
        assert (
            main(["keys", "trust", "--keyring", str(ring), "--role", role, *extra, str(tmp_path / f"{name}.pem")]) == 0
        )
    adult = encode_secret(Fields(seed="a1", item=1), issuer)
    child = encode_secret(Fields(seed="c1", item=2), issuer)
    settings = parse_broker_url(broker.url)
    # adults only, once every 30 minutes
    rules = {
        "and": [
            {"==": [{"var": "product"}, 1]},
            {
                "or": [
                    {"==": [{"var": "minutes_since_last_entry"}, -1]},
                    {">=": [{"var": "minutes_since_last_entry"}, 30]},
                ]
            },
        ]
    }
    publish_checkin_list(settings, SITE, signed_list(revocation, 1, rules))

    cfg = gate_config(
        tmp_path,
        keyring=ring,
        broker_url=broker.url,
        camera_source=f"synthetic:?{CLEAN}",
        site=SITE,
        gate="g1",
        event=EVENT,
        camera={"fps": 15.0},
        sim={"control_socket": str(tmp_path / "sim.sock")},
    )
    path = write_config(tmp_path / "gated.toml", cfg)
    gate = GateProcess(path).start()
    try:
        gate.wait_ready()
        assert wait_outcome(gate, "check-in list", 1)["version"] == 1
        client = Client(tmp_path / "sim.sock")
        denied = shown(gate, client, child)
        assert (denied["decision"], denied["reason"]) == ("deny", "rules")
        assert shown(gate, client, adult)["decision"] == "admit"
        assert shown(gate, client, adult)["reason"] == "rules"  # not 30 minutes yet

        bad = [
            b"\xa0not a signed list",
            signed_list(stranger, 5, {}),
            signed_list(revocation, 6, {"weekday_is": [{"var": "now"}, 6]}),
            signed_list(revocation, 1, {}),
        ]
        for blob in bad:
            publish_checkin_list(settings, SITE, blob)
        gate.wait_for(
            lambda: len(gate.logged("check-in list rejected")) >= 3 and gate.logged("check-in list ignored"),
            what="every bad list refused",
        )
        codes = sorted(e["code"] for e in gate.logged("check-in list rejected") + gate.logged("check-in list ignored"))
        assert codes == ["bad_rules", "malformed", "replay", "unknown_key"], codes
        assert shown(gate, client, child)["reason"] == "rules"  # still v1's rules
        client.close()
        assert gate.terminate() == 0
    finally:
        gate.stop_quietly()

    # a restart: the list held comes back from the store (the broker now retains a bad one)
    gate = GateProcess(path).start()
    try:
        gate.wait_ready()
        client = Client(tmp_path / "sim.sock")
        assert shown(gate, client, child)["reason"] == "rules"
        health = json.loads(retained(broker, health_topic(SITE, "g1")))
        assert (health["checkin_list"], health["checkin_list_version"]) == ("Gates", 1)
        client.close()
        assert gate.terminate() == 0
    finally:
        gate.stop_quietly()

    # the list's signer leaves the gate's keyring: the gate says so, once, and judges without the list
    assert (
        main(
            [
                "keys",
                "trust",
                "--keyring",
                str(tmp_path / "ring2"),
                "--role",
                "issuer",
                "--event",
                EVENT,
                str(tmp_path / "pretix.pem"),
            ]
        )
        == 0
    )
    cfg["gate"]["keyring"] = str(tmp_path / "ring2")
    gate = GateProcess(write_config(path, cfg)).start()
    try:
        gate.wait_ready()
        said = wait_outcome(gate, "check-in list held no longer verifies: pretix tickets are judged without it", 1)
        assert said["version"] == 1
        client = Client(tmp_path / "sim.sock")
        assert shown(gate, client, child)["decision"] == "admit"  # one entry, no rules: the gate's own
        client.close()
        assert gate.terminate() == 0
    finally:
        gate.stop_quietly()
    assert len(gate.logged("check-in list held no longer verifies: pretix tickets are judged without it")) == 1
