"""`gated status` and `gated command` against a running rehearsal venue: the simulator's real
Mosquitto, its real `gated run` gates (synthetic cameras, mock pins), time beacons and a published
revocation list; the CLI run as a subprocess, as an operator would."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gated import keys
from sim import scenario
from sim.venue import Venue

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {
    "gate",
    "online",
    "since",
    "since_s",
    "mode",
    "rev",
    "rev_age_s",
    "clock_source",
    "clock_uncertain",
    "clock_offset_ms",
    "outbox",
    "last_scan_age_s",
    "scans_per_min",
    "health_age_s",
    "version",
    "alarms",
    "occupancy",
    "occupancy_source",
    "capacity",  # these three: issue #16, null without a capacity
    "checkin_list",
    "checkin_list_version",
}  # issue #26: the pretix check-in list held, null without one


def gated(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gated.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


@pytest.fixture(scope="module")
def venue(tmp_path_factory):
    s = scenario.load(ROOT / "sim" / "scenarios" / "demo.toml")
    v = Venue(s, tmp_path_factory.mktemp("fleet") / "out", log=lambda m: None)
    try:
        v.start_broker()
        v.prepare_gates()
        v.start_listener()
        v.publish_revocations(1, 0, [])
        v.start_gates()
        first = v.gates[s.gate_ids[0]]
        first.client.request("show", text="GT1:not-a-ticket")  # one scan (a denial), so a gate has a last scan
        deadline = time.monotonic() + 20
        while not any(e.get("kind") == "scan" for e in v.listener.events_of(first.id, 0)):
            assert time.monotonic() < deadline, f"no scan at {first.id}"
            time.sleep(0.05)
        first.client.request("show", text=None)
        yield v
    finally:
        v.close()


def site_args(v: Venue) -> list[str]:
    return ["--broker", v.broker_url, "--site", v.scenario.site]


def status(v: Venue) -> dict[str, dict]:
    out = gated("status", "--json", *site_args(v))
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert isinstance(rows, list)
    return {row["gate"]: row for row in rows}


def wait_status(v: Venue, predicate, what: str, timeout: float = 20) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        rows = status(v)
        if predicate(rows):
            return rows
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {json.dumps(rows, indent=1)}"
        time.sleep(0.5)


def command_key(v: Venue) -> str:
    return str(v.work / "central" / "command.key")


def test_status_json_lists_every_gate_of_a_running_rehearsal(venue):
    gates = venue.scenario.gate_ids
    first = gates[0]
    rows = wait_status(
        venue,
        lambda r: set(r) == set(gates) and r[first]["last_scan_age_s"] is not None,
        "every gate's status and health, with g1's scan",
    )
    for gate, row in rows.items():
        assert set(row) == FIELDS, gate
        assert row["online"] is True and row["mode"] == "online", row
        assert row["rev"] == 1 and 0 <= row["rev_age_s"] < 600, row
        assert row["clock_source"] and row["outbox"] == 0, row
        assert row["since_s"] is not None and row["health_age_s"] is not None, row
        assert isinstance(row["alarms"], list), row
    assert rows[first]["scans_per_min"] >= 1 and rows[first]["last_scan_age_s"] < 120, rows[first]

    table = gated("status", *site_args(venue))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["gate", "state", "since"]
    for gate in gates:
        assert any(line.split()[:2] == [gate, "online"] for line in lines), table.stdout
    assert f"site {venue.scenario.site}: {len(gates)} gate(s), {len(gates)} online" in lines[-1]


def test_status_watch_refreshes_until_interrupted(venue):
    import signal

    watch = subprocess.Popen(
        [sys.executable, "-m", "gated.cli", "status", "--watch", "0.5", *site_args(venue)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    time.sleep(4)
    watch.send_signal(signal.SIGINT)
    out, err = watch.communicate(timeout=20)
    assert watch.returncode == 130, err
    assert out.count("(every 0.5 s; Ctrl-C to stop)") >= 2, out  # refreshed, not printed once
    assert "\x1b[" not in out  # no screen clearing when the output is not a terminal
    for gate in venue.scenario.gate_ids:
        assert f"\n{gate} " in out


def test_command_locks_and_unlocks_a_running_gate_and_reports_it(venue):
    gate = venue.scenario.gate_ids[0]
    locked = gated("command", "--signing-key", command_key(venue), *site_args(venue), gate, "lock")
    assert locked.returncode == 0, locked.stdout + locked.stderr
    assert locked.stdout.split()[:3] == [gate, "lock:", "ok"] and "now locked" in locked.stdout
    assert status(venue)[gate]["mode"] == "locked"
    assert any(e.get("kind") == "state" and e.get("state") == "locked" for e in venue.listener.events_of(gate, 0))

    unlocked = gated("command", "--signing-key", command_key(venue), *site_args(venue), gate, "unlock", "--json")
    assert unlocked.returncode == 0, unlocked.stdout + unlocked.stderr
    [result] = json.loads(unlocked.stdout)
    assert result["gate"] == gate and result["confirmed"] is True and result["mode"] == "online"
    assert status(venue)[gate]["mode"] == "online"


def test_command_to_all_gates_reports_each(venue):
    gates = venue.scenario.gate_ids
    for word, mode in (("lock", "locked"), ("unlock", "online")):
        out = gated("command", "--signing-key", command_key(venue), *site_args(venue), "--all", word, "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        results = json.loads(out.stdout)
        assert [r["gate"] for r in results] == sorted(gates)
        assert all(r["confirmed"] and r["mode"] == mode for r in results), results


def test_a_command_without_a_usable_key_is_refused_with_exit_2(venue, tmp_path):
    gate = venue.scenario.gate_ids[0]
    missing = gated("command", "--signing-key", str(tmp_path / "nope.key"), *site_args(venue), gate, "lock")
    assert missing.returncode == 2
    assert "cannot read the command key" in missing.stderr and "gated keys generate" in missing.stderr
    public = gated(
        "command", "--signing-key", str(venue.work / "central" / "command.pub"), *site_args(venue), gate, "lock"
    )
    assert public.returncode == 2
    assert "is not a usable command key" in public.stderr
    assert status(venue)[gate]["mode"] == "online"


def test_a_command_signed_by_a_key_the_gates_do_not_trust_is_not_confirmed(venue, tmp_path):
    gate = venue.scenario.gate_ids[0]
    private, _ = keys.generate_key_files(tmp_path, "stranger")
    out = gated("command", "--signing-key", str(private), "--timeout", "2", *site_args(venue), gate, "lock")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "NOT CONFIRMED" in out.stdout and "ignored" in out.stdout
    assert status(venue)[gate]["mode"] == "online"


def test_device_keys_are_announced_and_approved_by_kid(venue, tmp_path):
    gates = venue.scenario.gate_ids
    ring = tmp_path / "ledger-keyring"
    kids = {}
    for gate in gates:
        pem = (venue.out / "devices" / f"{gate}.pub").read_bytes()
        kids[gate] = keys.kid_of(keys.load_public_key(pem)).hex()
        shown = gated("keys", "device", "--state", str(venue.gates[gate].db_path))
        assert shown.stdout.encode() == pem and f"kid {kids[gate]}" in shown.stderr
    listed = gated("keys", "enrol", "--keyring", str(ring), *site_args(venue))
    assert listed.returncode == 0, listed.stderr
    for gate in gates:
        assert f"{gate}  kid {kids[gate]}  new: approve with --approve {kids[gate]}" in listed.stdout
    first = gates[0]
    approved = gated("keys", "enrol", "--keyring", str(ring), "--approve", kids[first], *site_args(venue))
    assert approved.returncode == 0, approved.stderr
    assert f"{first}  kid {kids[first]}  trusted" in approved.stdout
    trusted = keys.load_keyring(ring).find(bytes.fromhex(kids[first]), "device")
    assert trusted is not None and trusted.name == first
    assert keys.public_pem(trusted.public_key) == (venue.out / "devices" / f"{first}.pub").read_bytes()
    unknown = gated("keys", "enrol", "--keyring", str(ring), "--approve", "00" * 8, *site_args(venue))
    assert unknown.returncode == 2 and "announces kid 0000000000000000" in unknown.stderr
    # another key already trusted under a gate's name is not silently replaced
    other = tmp_path / "other"
    _, public = keys.generate_key_files(other, gates[1])
    keys.trust_key_file(ring, public, "device", name=gates[1])
    refused = gated("keys", "enrol", "--keyring", str(ring), "--approve", kids[gates[1]], *site_args(venue))
    assert refused.returncode == 2 and "--replace" in refused.stderr
    replaced = gated(
        "keys", "enrol", "--keyring", str(ring), "--approve", kids[gates[1]], "--replace", *site_args(venue)
    )
    assert replaced.returncode == 0 and f"{gates[1]}  kid {kids[gates[1]]}  trusted" in replaced.stdout


def test_a_stopped_gate_shows_offline_with_its_last_known_state(venue):
    gates = venue.scenario.gate_ids
    last = gates[-1]
    assert venue.gates[last].stop() == 0
    rows = wait_status(venue, lambda r: r[last]["online"] is False, f"{last} offline")
    assert rows[last]["mode"] == "online" and "offline" in rows[last]["alarms"]
    assert rows[last]["rev"] == 1
    assert all(rows[g]["online"] for g in gates[:-1])
    out = gated("command", "--signing-key", command_key(venue), "--timeout", "1", *site_args(venue), last, "open")
    assert out.returncode == 1 and "offline" in out.stdout, out.stdout


def test_status_shows_people_inside_against_capacity(tmp_path):
    """The ledger's retained occupancy (per zone) and each gate's own figure from its health: a
    full zone is said to be full, and a gate counting on its own (it cannot hear the ledger) is named."""
    import paho.mqtt.client as mqtt

    from gated.core.occupancy import encode_occupancy
    from gated.topics import gate_topic, occupancy_topic
    from tests.support.broker import Broker

    broker = Broker(tmp_path / "broker").start()
    try:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        now = time.time()
        ts = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now))
        for gate, inside, source in (("g1", 8, "central"), ("g2", 7, "local")):
            client.publish(
                gate_topic("hall-site", gate, "status"),
                json.dumps({"state": "online", "rev": 1, "version": "0.1.0", "ts": ts}),
                qos=1,
                retain=True,
            ).wait_for_publish(5)
            client.publish(
                gate_topic("hall-site", gate, "health"),
                json.dumps(
                    {
                        "ts": ts,
                        "mode": "online",
                        "rev": 1,
                        "occupancy": inside,
                        "occupancy_source": source,
                        "capacity": 8,
                        **({"checkin_list": "Gates", "checkin_list_version": 3} if gate == "g2" else {}),
                    }
                ),
                qos=1,
                retain=True,
            ).wait_for_publish(5)
        zones = {
            "hall": {"inside": 8, "capacity": 8, "entries": 11, "exits": 3},
            "foyer": {"inside": 2, "capacity": None, "entries": 2, "exits": 0},
        }
        client.publish(
            occupancy_topic("hall-site"),
            encode_occupancy("hall-site", zones, int(now * 1000), {"g1": 14}),
            qos=1,
            retain=True,
        ).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()
        table = gated("status", "--broker", broker.url, "--site", "hall-site")
        assert table.returncode == 0, table.stderr
        assert "zone hall: 8 inside of 8 (100 %)  FULL" in table.stdout
        assert "zone foyer: 2 inside, no capacity set" in table.stdout
        assert "cannot hear the ledger): g2" in table.stdout
        assert "pretix check-in list: g2 'Gates' v3" in table.stdout  # the list a gate holds (issue #26)
        rows = {
            r["gate"]: r
            for r in json.loads(gated("status", "--json", "--broker", broker.url, "--site", "hall-site").stdout)
        }
        assert (rows["g2"]["occupancy"], rows["g2"]["occupancy_source"], rows["g2"]["capacity"]) == (7, "local", 8)
    finally:
        broker.stop()


def test_status_survives_garbage_on_the_retained_topics(tmp_path):
    """Status and health come from gates, occupancy from the ledger: outside input. Whatever is
    retained there, `gated status` prints a table (and valid JSON), naming what it could not read."""
    import paho.mqtt.client as mqtt

    from gated.topics import gate_topic, occupancy_topic
    from tests.support.broker import Broker

    broker = Broker(tmp_path / "broker").start()
    try:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        garbage = {
            ("g1", "status"): b"[" * 100_000,
            ("g1", "health"): b'{"clock_source": "ntp", "clock_offset_ms": "abc", "outbox": NaN, "capacity": []}',
            ("g2", "status"): b'{"state": "online", "ts": 5}',
            ("g2", "health"): b"\xff\xfe not utf-8",
        }
        for (gate, leaf), payload in garbage.items():
            client.publish(gate_topic("junk", gate, leaf), payload, qos=1, retain=True).wait_for_publish(5)
        client.publish(
            occupancy_topic("junk"),
            b'{"v": 1, "site": "junk", "zones": {"hall": {"inside": 3, "capacity": 0}}}',
            qos=1,
            retain=True,
        ).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()
        table = gated("status", "--broker", broker.url, "--site", "junk")
        assert table.returncode == 0 and "Traceback" not in table.stderr, table.stderr
        assert "g1" in table.stdout and "status message is not a JSON object" in table.stdout
        assert "zone hall" not in table.stdout  # a capacity of 0 is not the ledger's: no figure rather than a wrong one
        rows = json.loads(gated("status", "--json", "--broker", broker.url, "--site", "junk").stdout)
        assert {r["gate"] for r in rows} == {"g1", "g2"} and rows[0]["outbox"] is None
    finally:
        broker.stop()


def announced(broker, gate: str):
    """A status retained for `gate` at site S announcing a fresh device key, as anyone on the
    bridge may publish it: the key's public half."""
    import paho.mqtt.client as mqtt

    from gated.core.announce import device_announcement
    from gated.topics import status_topic

    key = keys.Ed25519PrivateKey.generate().public_key()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        status_json = json.dumps({"online": True, "mode": "online", **device_announcement(key)})
        client.publish(status_topic("S", gate), status_json, qos=1, retain=True).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
    return key


def test_enrol_refuses_a_gate_id_naming_another_keys_file(broker, tmp_path):
    """A gate chooses its own id, and `keys enrol --approve` trusts its key under that name: a gate
    calling itself `box` must not write box.pub, the issuer key's file, and so become an issuer."""
    issuer_pub = keys.generate_key_files(tmp_path / "office", "issuer")[1]
    ring = tmp_path / "ring"
    ring.mkdir()
    (ring / "box.pub").write_bytes(issuer_pub.read_bytes())
    (ring / "keyring.toml").write_text('[[key]]\nname = "issuer-a"\nfile = "box.pub"\nroles = ["issuer"]\n')
    before = (ring / "keyring.toml").read_bytes()
    hostile = announced(broker, "box")
    kid = keys.kid_of(hostile).hex()
    out = gated("keys", "enrol", "--keyring", str(ring), "--approve", kid, "--broker", broker.url, "--site", "S")
    assert out.returncode == 2 and "box.pub is the key file of 'issuer-a'" in out.stderr, out.stdout + out.stderr
    assert (ring / "keyring.toml").read_bytes() == before and (ring / "box.pub").read_bytes() == issuer_pub.read_bytes()
    assert keys.load_keyring(ring).find(keys.kid_of(hostile), "issuer") is None


def test_enrol_lists_a_gate_id_no_key_can_be_named_after_as_unusable(broker, tmp_path):
    """A status topic anyone on the bridge may write, for a gate id `--approve` would refuse (here
    `-x`): listed as unusable with why, not as a new key to approve."""
    announced(broker, "-x")
    out = gated("keys", "enrol", "--keyring", str(tmp_path / "ring"), "--broker", broker.url, "--site", "S")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "-x  kid -  unusable: the gate id is not a name of letters" in out.stdout, out.stdout
