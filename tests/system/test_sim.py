"""The simulator: scenario files, the crowd's ground truth, the control socket, the report, and
whole venues run end to end (real gate processes, a real Mosquitto, the real ledger)."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated import keys
from gated.core import scanned, ticket
from gated.gate.rehearsal.control import Client, ControlError, Controller, serve
from sim import model, report, scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "sim" / "scenarios"


# --- scenarios -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["demo", "outage", "stadium", "pretix", "powercut"])
def test_shipped_scenarios_load(name):
    s = scenario.load(SCENARIOS / f"{name}.toml")
    assert s.name == name
    assert len(s.gate_ids) == s.gates


def test_stadium_is_the_big_one():
    s = scenario.load(SCENARIOS / "stadium.toml")
    assert (s.gates, s.visitors) == (20, 20000)
    assert {f.kind for f in s.faults} == {"broker_down", "gate_kill", "clock_skew", "camera_stall"}


def test_outage_has_broker_loss_and_a_killed_gate():
    s = scenario.load(SCENARIOS / "outage.toml")
    assert s.faults_of("broker_down") and s.faults_of("gate_kill")
    # one gate is killed and restarted inside the outage: no beacon, no NTP when it comes back (issue #11)
    (down,) = s.faults_of("broker_down")
    assert any(down.start_s < k.start_s and k.end_s + 5 < down.end_s for k in s.faults_of("gate_kill"))
    # and its gates ignore the host's NTP, so the kill bites on an NTP-synchronised host too
    assert s.ntp == "ignore"


def test_a_bad_scenario_names_every_problem_with_its_key():
    raw = {
        "scenario": {"name": "x", "site": "s", "event": "E", "duration_s": -1, "colour": "red"},
        "gates": {"count": 1, "zones": "north", "ntp": "never"},
        "arrivals": {"visitors": 10, "profile": [[5, 1], [1, 1]]},
        "fraud": {"two_gates": 1, "forged": 9},
        "faults": [
            {"kind": "broker_down", "start_s": 30, "end_s": 10},
            {"kind": "meteor"},
            {"kind": "gate_kill", "gate": "g9", "at_s": 1},
        ],
    }
    with pytest.raises(scenario.ScenarioError) as err:
        scenario.from_dict(raw, source="bad.toml")
    text = str(err.value)
    for needle in (
        "scenario.duration_s",
        "scenario.colour",
        "gates.zones",
        "arrivals.profile",
        "fraud.two_gates",
        "at most half",
        "faults[0]",
        "faults[1].kind",
        "faults[2].gate",
        "gates.ntp",
    ):
        assert needle in text, needle


# --- ground truth --------------------------------------------------------------------------------


@pytest.fixture
def issuer():
    return Ed25519PrivateKey.generate()


def test_the_crowd_matches_the_scenario(issuer):
    s = scenario.load(SCENARIOS / "demo.toml")
    crowd = model.build(s, issuer, int(time.time()), speed=1.0)
    assert len({a.visitor for a in crowd.attempts}) == s.visitors
    kinds = Counter(a.kind for a in crowd.attempts)
    for kind, n in s.fraud.items():
        assert kinds[kind] == n, kind
    assert kinds["retry"] == sum(1 for a in crowd.attempts if a.kind == "valid" and not a.passes)
    assert all(a.at_s <= s.duration_s for a in crowd.attempts)


def test_expected_codec_denials_are_what_a_gate_reads(issuer):
    """The model states unknown_key, bad_signature, malformed without asking the codec; the codec agrees."""
    s = scenario.load(SCENARIOS / "demo.toml")
    crowd = model.build(s, issuer, int(time.time()), speed=1.0)
    ring = keys.Keyring((keys.trusted("issuer", issuer.public_key(), ["issuer"]),))
    checked = Counter()
    for a in crowd.attempts:
        code = scanned.read_code(a.text, ring) if a.text else None
        if a.kind in ("forged", "tampered"):
            assert isinstance(code, ticket.Rejection) and code.reason.value == a.expect_reason, (a.kind, code)
            checked[a.expect_reason] += 1
        elif a.text:
            assert isinstance(code, ticket.Ticket)
    assert set(checked) == {"unknown_key", "bad_signature", "malformed"}


def test_screenshots_and_static_copies_get_their_reasons(issuer):
    """The GT2 frauds of the model are judged as the model says by the real codec and decide()."""
    from gated.core.decide import GateContext
    from gated.gate.validate import validate

    sc = scenario.from_dict(
        {
            "scenario": {"name": "g", "site": "s", "event": "E", "duration_s": 60},
            "gates": {"count": 1},
            "arrivals": {"visitors": 20},
            "fraud": {"screenshot": 2, "static_copy": 2},
        }
    )
    now = int(time.time())
    crowd = model.build(sc, issuer, now, speed=1.0)
    gate = GateContext(site="s", events=frozenset({"E"}))
    ring = keys.Keyring((keys.trusted("issuer", issuer.public_key(), ["issuer"]),))
    judged = Counter()
    for a in crowd.attempts:
        if a.kind in ("screenshot", "static_copy"):
            decision = validate(model.render(a, now + 5), ring, gate, None, now + 5)
            assert decision.reason.value == a.expect_reason
            judged[a.expect_reason] += 1
    assert judged == {"stale_code": 2, "static_copy": 2}


def test_copies_come_after_their_original(issuer):
    s = scenario.load(SCENARIOS / "demo.toml")
    crowd = model.build(s, issuer, int(time.time()), speed=1.0)
    by_id = {a.id: a for a in crowd.attempts}
    copies = [a for a in crowd.attempts if a.kind in ("used_twice", "two_gates")]
    assert copies
    for c in copies:
        original = by_id[c.after]
        assert original.cti == c.cti and original.expect_admit and original.passes
        assert (c.gate == original.gate) == (c.kind == "used_twice")


def test_arrivals_follow_the_profile():
    import random

    s = scenario.from_dict(
        {
            "scenario": {"name": "r", "site": "s", "event": "E", "duration_s": 100},
            "gates": {"count": 1},
            "arrivals": {"visitors": 4000, "profile": [[0, 0], [50, 0], [51, 1], [100, 1]]},
        }
    )
    times = model.arrival_times(s, 4000, random.Random(1))
    assert sum(1 for t in times if t < 50) == 0
    assert 0 < min(times) and max(times) <= 100


# --- the control socket --------------------------------------------------------------------------


class Camera:
    """A camera that remembers what it was told to show (the synthetic source's show() interface)."""

    def __init__(self):
        self.shown = []

    def show(self, text):
        self.shown.append(text)


@pytest.fixture
def turnstile():
    from gpiozero.pins.mock import MockFactory

    from gated.gate.boards import load_board
    from gated.gate.turnstile import Turnstile

    t = Turnstile(load_board("generic-relay"), pin_factory=MockFactory())
    yield t
    t.close()


def test_control_socket_shows_codes_and_drives_the_beam(tmp_path, turnstile):
    camera = Camera()
    seen = []
    turnstile.on_input(lambda kind, active: seen.append((kind, active)))
    server = serve(tmp_path / "c.sock", camera=camera, turnstile=turnstile)
    client = Client(tmp_path / "c.sock")
    try:
        assert client.request("ping")["pid"] > 0
        client.request("show", text="GT1:ABC")
        client.request("show", text=None)
        assert camera.shown == ["GT1:ABC", None]
        # the beam is active low on this board: "active" must pull the pin low
        client.request("drive", device="passage", active=True)
        assert turnstile.passage.pin.state == 0 and turnstile.input_active("passage")
        client.request("drive", device="passage", active=False)
        assert ("passage", True) in seen and ("passage", False) in seen
        state = client.request("state")["devices"]
        assert state["relay"]["kind"] == "output" and state["relay"]["activations"] == 0
        turnstile.relay.on()
        turnstile.relay.off()
        assert client.request("state")["devices"]["relay"]["activations"] == 1
        with pytest.raises(ControlError, match="no device"):
            client.request("drive", device="trapdoor", active=True)
        with pytest.raises(ControlError, match="output"):
            client.request("drive", device="relay", active=True)
        with pytest.raises(ControlError, match="cannot stall"):
            client.request("stall", seconds=1)
    finally:
        client.close()
        server.stop()
    assert not (tmp_path / "c.sock").exists()


def test_controller_refuses_bad_requests(turnstile):
    c = Controller(camera=Camera(), turnstile=turnstile)
    assert c.handle({"op": "show", "text": 5})["ok"] is False
    assert c.handle({"op": "fly"})["ok"] is False
    assert c.handle({"op": "drive", "device": "passage"})["ok"] is False


# --- the report ----------------------------------------------------------------------------------


def _attempt(i, expect, observed, gate="g1"):
    a = model.Attempt(
        i, i, gate, float(i), "valid" if expect == "ok" else "forged", "GT1:X", None, expect == "ok", expect
    )
    if observed is not None:
        a.observed_admit, a.observed_reason = observed == "ok", observed
        a.shown_at, a.decided_at, a.latency_us = float(i), i + 0.2, 40_000 + i
    return a


def _ledger(events=10, missing=0):
    return {
        "gates": {"g1": {"events": events}},
        "totals": {"events": events, "missing": missing, "chain_breaks": 0, "bad_signatures": 0, "bad_hashes": 0},
    }


def _build(attempts, ledger, made=10, ledger_events=()):
    s = scenario.load(SCENARIOS / "demo.toml")
    return report.build(
        scenario=s,
        attempts=attempts,
        visitors=len(attempts),
        events_made=made,
        ledger=ledger,
        ledger_events=list(ledger_events),
        duplicates_dropped=0,
        tickets={},
        faults=[],
        speed=1.0,
        gate_ids=["g1", "g2"],
    )


def test_report_passes_only_when_everything_matches(tmp_path):
    good = [_attempt(1, "ok", "ok"), _attempt(2, "unknown_key", "unknown_key")]
    r = _build(good, _ledger())
    assert r["ok"] and r["decisions"] == {"expected": 2, "matched": 2, "mismatched": 0}
    assert set(r) >= {
        "scenario",
        "visitors",
        "decisions",
        "events",
        "latency_ms",
        "throughput_per_gate_per_min",
        "denials",
        "admissions_over_limit",
    }
    assert set(r["events"]) == {
        "made",
        "in_ledger",
        "gaps",
        "declared_lost",
        "duplicates",
        "duplicates_dropped",
        "chain_breaks",
        "bad_signatures",
        "conflicts",
    }
    assert r["denials"] == {"unknown_key": 1}

    assert not _build(good + [_attempt(3, "expired", "ok")], _ledger())["ok"]  # a mismatch
    assert not _build(good + [_attempt(3, "expired", None)], _ledger())["ok"]  # no decision at all
    assert not _build(good, _ledger(events=9), made=10)["ok"]  # an event lost
    assert not _build(good, _ledger(missing=1))["ok"]  # a gap
    over = [{"kind": "scan", "id": f"g1:{i}", "decision": "admit", "ticket": "ab" * 16} for i in (1, 2)]
    r = _build(good, _ledger(), ledger_events=over)
    assert r["admissions_over_limit"] == 1 and not r["ok"]
    rolled_back = over + [{"kind": "passage", "id": "g1:3", "ref": "g1:1", "result": "timeout"}]
    assert _build(good, _ledger(), ledger_events=rolled_back)["admissions_over_limit"] == 0
    out_and_back = [
        over[0],
        {"kind": "scan", "id": "g3:1", "decision": "admit", "ticket": "ab" * 16, "dir": "out"},
        dict(over[1], reentry=True),
    ]
    assert _build(good, _ledger(), ledger_events=out_and_back)["admissions_over_limit"] == 0  # no entry spent

    def counted(inside):
        return {**_ledger(), "occupancy": {"zones": {"hall": {"inside": inside, "entries": 5, "exits": 5 - inside}}}}

    s = scenario.load(SCENARIOS / "demo.toml")
    base = dict(
        scenario=s,
        attempts=good,
        visitors=2,
        events_made=10,
        ledger_events=[],
        duplicates_dropped=0,
        tickets={},
        faults=[],
        speed=1.0,
        gate_ids=["g1", "g2"],
    )
    assert report.build(ledger=counted(3), expected_inside={"hall": 3}, **base)["ok"]
    wrong = report.build(ledger=counted(2), expected_inside={"hall": 3}, **base)
    assert not wrong["ok"] and "people inside" in wrong["verdict"]


def test_report_files_open_offline(tmp_path):
    attempts = [_attempt(i, "ok", "ok", gate=f"g{1 + i % 2}") for i in range(20)] + [_attempt(30, "expired", "ok")]
    r = _build(attempts, _ledger())
    r["faults"] = [{"kind": "broker_down", "gate": None, "start_sim_s": 3.0, "end_sim_s": 8.0, "what": "down"}]
    json_path, html_path = report.write(
        tmp_path, r, attempts, [(0.0, {"g1": 1, "g2": 0}), (5.0, {"g1": 3, "g2": 1})], 1.0
    )
    assert json.loads(json_path.read_text())["decisions"]["mismatched"] == 1
    page = html_path.read_text()
    assert page.index("FAIL") < page.index("<h2>")  # the verdict comes first
    assert page.count("data:image/png;base64,") == 4
    assert "http://" not in page and "https://" not in page and "<script" not in page


# --- whole venues --------------------------------------------------------------------------------


def _run_venue(name, tmp_path, speed, ledger_db=None):
    from sim import runner

    s = scenario.load(SCENARIOS / f"{name}.toml")
    result = runner.run(s, tmp_path / "out", speed=speed, progress=False, log=lambda m: None, ledger_db=ledger_db)
    return s, result


def _assert_clean(result, tmp_path, s):
    detail = json.dumps({k: result[k] for k in ("verdict", "mismatches", "events", "notes")}, indent=1)[:4000]
    assert result["decisions"]["mismatched"] == 0, detail
    assert result["decisions"]["matched"] == result["decisions"]["expected"]
    assert result["events"]["made"] == result["events"]["in_ledger"] > 0, detail
    assert result["events"]["gaps"] == result["events"]["chain_breaks"] == result["events"]["bad_signatures"] == 0
    assert result["admissions_over_limit"] == 0
    assert result["denials"] == result["expected_denials"]
    assert result["ok"], detail
    for gate in s.gate_ids:
        assert (tmp_path / "out" / "devices" / f"{gate}.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY")
    assert (tmp_path / "out" / "report.html").exists()


@pytest.mark.slow  # a whole venue: about a minute and a half on two shared cores
def test_demo_venue_with_its_ledger_on_postgres_matches_ground_truth_and_loses_nothing(tmp_path, postgres):
    """`gated sim --ledger-db postgresql://...`: the rehearsal's ledger in a real PostgreSQL (the
    outage venue below keeps the default SQLite ledger)."""
    url = postgres.database()
    s, result = _run_venue("demo", tmp_path, speed=2.0, ledger_db=url)
    _assert_clean(result, tmp_path, s)
    from gated.central.ledger import Ledger

    with Ledger(url) as ledger:
        assert ledger.query("SELECT COUNT(*), COUNT(DISTINCT id) FROM events")[0] == (result["events"]["made"],) * 2
    fraud_reasons = {
        "unknown_key",
        "bad_signature",
        "malformed",
        "revoked",
        "expired",
        "wrong_event",
        "already_used",
        "stale_code",
        "static_copy",
    }
    assert set(result["denials"]) == fraud_reasons


@pytest.mark.slow  # a whole venue with a broker outage and a killed gate: about a minute
def test_outage_venue_loses_nothing(tmp_path):
    s, result = _run_venue("outage", tmp_path, speed=2.0)
    _assert_clean(result, tmp_path, s)
    kinds = {f["kind"] for f in result["faults"]}
    assert {"broker_down", "gate_kill"} <= kinds, result["faults"]


@pytest.mark.slow  # a whole venue with two broker power cuts and a resized ledger: about two minutes
def test_power_cuts_and_a_resized_ledger_lose_nothing(tmp_path):
    """The powercut venue (issue #22): the broker SIGKILLed twice while the gates publish, the ledger
    going 2 -> 3 -> 2 --partition workers, `gated status` run twice: the rehearsal matches the ground
    truth, with no gap and nothing declared lost; report.json says how many duplicates it took."""
    s, result = _run_venue("powercut", tmp_path, speed=1.0)
    _assert_clean(result, tmp_path, s)
    assert result["events"]["declared_lost"] == 0 and isinstance(result["events"]["duplicates"], int)
    faults = [f for f in result["faults"]]
    assert [f["kind"] for f in faults if f["kind"] == "broker_down"] == ["broker_down"] * 2
    assert all("SIGKILL" in f["what"] for f in faults if f["kind"] == "broker_down"), faults
    assert [f["what"] for f in faults if f["kind"] == "ledger_resize"] == [
        "ledger from 2 to 3 --partition workers",
        "ledger from 3 to 2 --partition workers",
    ]
    probes = [f["what"] for f in faults if f["kind"] == "status_probe"]
    assert len(probes) == 2 and all(p.startswith("gated status: exit") and "3 gate rows" in p for p in probes), probes
    ledger_log = (tmp_path / "out").rglob("ledger.log")
    assert not any("already running" in p.read_text() for p in ledger_log)


def test_the_new_fault_kinds_are_read_and_checked():
    raw = {
        "scenario": {
            "name": "x",
            "site": "s",
            "event": "E",
            "seed": 1,
            "duration_s": 30,
            "speed": 1,
            "ledger_partitions": 2,
        },
        "gates": {"count": 1, "board": "generic-relay"},
        "arrivals": {"visitors": 2},
        "faults": [
            {"kind": "broker_down", "start_s": 1, "end_s": 2, "how": "kill"},
            {"kind": "ledger_resize", "at_s": 5, "partitions": 3},
            {"kind": "status_probe", "at_s": 6},
        ],
    }
    s = scenario.from_dict(raw)
    assert s.ledger_partitions == 2
    (down,), (resize,), (probe,) = s.faults_of("broker_down"), s.faults_of("ledger_resize"), s.faults_of("status_probe")
    assert (down.how, resize.partitions, resize.start_s, probe.start_s) == ("kill", 3, 5.0, 6.0)
    raw["faults"] = [
        {"kind": "broker_down", "start_s": 1, "end_s": 2, "how": "gently"},
        {"kind": "ledger_resize", "at_s": 50, "partitions": 0},
    ]
    with pytest.raises(scenario.ScenarioError) as info:
        scenario.from_dict(raw)
    text = str(info.value)
    assert "faults[0].how" in text and "faults[1].at_s" in text and "faults[1].partitions" in text


def test_gated_sim_refuses_a_ledger_database_that_holds_events(tmp_path, postgres, capsys):
    from gated.central.ledger import Ledger
    from gated.cli import main
    from gated.gate.store import GateStore

    url = postgres.database()
    with GateStore(tmp_path / "g.db", site="arena", gate="g1") as store:
        store.record_event({"kind": "state", "state": "online", "rev": 0}, 1_700_000_000_000)
        rows = [event for _, event in store.outbox()]
    with Ledger(url) as ledger:
        ledger.ingest(rows)
    assert (
        main(["sim", str(SCENARIOS / "demo.toml"), "--out", str(tmp_path / "out"), "--ledger-db", url, "--no-progress"])
        == 2
    )
    assert "already holds 1 events" in capsys.readouterr().err


def test_gated_sim_check_validates_a_scenario(tmp_path, capsys):
    from gated.cli import main

    assert main(["sim", "--check", str(SCENARIOS / "stadium.toml")]) == 0
    assert "20 gates, 20000 visitors" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[scenario]\nname = "b"\nsite = "s"\nevent = "E"\nduration_s = 10\n[gates]\ncount = 0\n'
        "[arrivals]\nvisitors = 5\n"
    )
    assert main(["sim", "--check", str(bad)]) == 2
    assert "gates.count" in capsys.readouterr().err


def test_zoned_copies_go_to_a_gate_of_their_zone(issuer):
    """Found by a 20-gate run: a copy shown at another zone's gate is wrong_zone, not already_used."""
    sc = scenario.from_dict(
        {
            "scenario": {"name": "z", "site": "s", "event": "E", "duration_s": 60},
            "gates": {"count": 8, "zones": ["north", "south"]},
            "tickets": {"zoned": True},
            "arrivals": {"visitors": 80},
            "fraud": {"two_gates": 6},
        }
    )
    crowd = model.build(sc, issuer, int(time.time()), speed=1.0)
    by_id = {a.id: a for a in crowd.attempts}
    copies = [a for a in crowd.attempts if a.kind == "two_gates"]
    assert len(copies) == 6
    for c in copies:
        original = by_id[c.after]
        assert c.gate != original.gate and sc.zone_of(c.gate) == sc.zone_of(original.gate)
        assert c.expect_reason == "already_used"


def test_a_gate_install_without_the_sim_extra_gets_a_clear_message(tmp_path):
    """rich and matplotlib are the `sim` extra: without them `gated sim` says how to get them."""
    from tests.support.cli import gated_without

    done = gated_without("matplotlib", "sim", "sim/scenarios/demo.toml", "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "needs matplotlib" in done.stderr and "gated[sim]" in done.stderr
    assert not (tmp_path / "out").exists()


def test_one_percentile_for_every_figure():
    from sim.stats import percentile

    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile(range(101), 99) == 99
    assert percentile([5], 99) == 5 and percentile([], 50) != percentile([], 50)  # NaN: nothing measured
    with pytest.raises(ValueError):
        percentile([1], 0.99 * 1000)


# --- rehearsing with pretix_sig1 tickets -------------------------------------------------------


def test_a_pretix_crowd_is_read_by_the_codec_as_the_model_says(issuer):
    """[tickets] format = "pretix_sig1": every ticket a pretix secret; the codec agrees with the model's
    codec-level answers (forged: bad_signature, as a pretix secret names no key)."""
    from gated.core.pretix_secret import PretixTicket

    s = scenario.load(SCENARIOS / "pretix.toml")
    other = Ed25519PrivateKey.generate()
    crowd = model.build(s, issuer, int(time.time()), speed=1.0, other_event_key=other)
    ring = keys.Keyring(
        (
            keys.trusted("issuer", issuer.public_key(), ["issuer"], [s.event]),
            keys.trusted("other", other.public_key(), ["issuer"], [s.event + "-OTHER"]),
        )
    )
    checked = Counter()
    for a in crowd.attempts:
        code = scanned.read_code(a.text, ring)
        assert not a.text.startswith("GT")
        if a.kind in ("forged", "tampered"):
            assert isinstance(code, ticket.Rejection) and code.reason.value == a.expect_reason, (a.kind, code)
            assert (code.cti.hex() if code.cti else None) == a.cti
            checked[a.expect_reason] += 1
        else:
            assert isinstance(code, PretixTicket) and code.claims.cti.hex() == a.cti
            assert code.claims.aud == (s.event + "-OTHER" if a.kind == "wrong_event" else s.event)
    assert set(checked) == {"bad_signature", "malformed"}
    with pytest.raises(ValueError):
        model.build(s, issuer, int(time.time()), speed=1.0)  # no key for the other event


def test_pretix_format_refuses_what_pretix_tickets_cannot_do():
    raw = {
        "scenario": {"name": "p", "site": "s", "event": "E", "duration_s": 10},
        "gates": {"count": 1, "zones": ["north"]},
        "arrivals": {"visitors": 20},
        "tickets": {"format": "pretix_sig1", "entries": 2, "zoned": True, "dynamic_share": 0.1},
        "fraud": {"screenshot": 1},
    }
    with pytest.raises(scenario.ScenarioError) as err:
        scenario.from_dict(raw)
    assert {p.split(":")[0] for p in err.value.problems} == {
        "tickets.entries",
        "tickets.zoned",
        "tickets.dynamic_share",
        "fraud.screenshot/static_copy",
    }
    raw["tickets"] = {"format": "paper"}
    raw["fraud"] = {}
    with pytest.raises(scenario.ScenarioError, match="tickets.format"):
        scenario.from_dict(raw)


@pytest.mark.slow  # a small venue: about half a minute
def test_pretix_venue_matches_ground_truth(tmp_path):
    s, result = _run_venue("pretix", tmp_path, speed=2.0)
    _assert_clean(result, tmp_path, s)
    assert set(result["denials"]) == {
        "bad_signature",
        "malformed",
        "revoked",
        "expired",
        "wrong_event",
        "already_used",
        "rules",
        "unpaid",
    }


# --- exits, re-entry, a capacity; and `gated report` on the rehearsal's ledger ---------------------


def test_exits_scenario_plans_capacity_denials_reentries_and_free_exits(issuer):
    s = scenario.load(SCENARIOS / "exits.toml")
    assert s.exit_gates == ("g3",) and s.free_exit_gates == ("g4",) and s.capacities == {"hall": 8}
    crowd = model.build(s, issuer, int(time.time()), speed=2.0)
    kinds = Counter((a.kind, a.expect_reason) for a in crowd.attempts)
    assert kinds[("exit", "ok")] and kinds[("free_exit", "ok")] and kinds[("reentry", "ok")]
    assert kinds[("return_unrecorded", "already_used")]  # left through the free exit: no gate knows
    assert sum(n for (k, r), n in kinds.items() if r == "capacity") >= 2  # the crowd meets the full hall
    assert all(a.gate in s.entry_gate_ids for a in crowd.attempts if a.kind not in ("exit", "free_exit"))
    # the ground truth never puts more than the capacity inside
    inside, peak = 0, 0
    for a in crowd.attempts:
        if a.expect_admit and a.passes and a.kind != "forged":
            inside += -1 if a.kind in ("exit", "free_exit") else 1
            peak = max(peak, inside)
    assert peak == 8 and model.expected_inside(s, crowd.attempts) == {"hall": inside}


def test_a_scenario_with_a_capacity_needs_exits_and_names_its_zones():
    raw = {
        "scenario": {"name": "x", "site": "s", "event": "E", "duration_s": 10},
        "gates": {"count": 2, "zones": ["hall"], "exits": ["g5"]},
        "arrivals": {"visitors": 10},
        "capacity": {"attic": 5},
    }
    with pytest.raises(scenario.ScenarioError) as err:
        scenario.from_dict(raw, source="bad.toml")
    text = str(err.value)
    for needle in ("gates.exits", "capacity.attic", "need exit gates"):
        assert needle in text, needle
    raw["capacity"] = {"hall": 0}
    with pytest.raises(scenario.ScenarioError, match="integers >= 1"):
        scenario.from_dict(raw, source="bad.toml")


@pytest.mark.slow  # a whole venue with exits and a capacity: about 35 s on two shared cores
def test_exits_venue_ledger_occupancy_is_the_ground_truth_and_gated_report_agrees(tmp_path, capsys):
    from gated.cli import main
    from tests.system.test_wallet import CHROMIUM, chromium

    s, result = _run_venue("exits", tmp_path, speed=2.0)
    _assert_clean(result, tmp_path, s)
    assert result["occupancy"]["ledger"] == result["occupancy"]["expected"]
    assert result["occupancy"]["ledger"]["hall"] > 0
    assert result["denials"].get("capacity", 0) >= 2 and result["movements"]["reentries"] >= 1

    ledger_db = tmp_path / "out" / "work" / "ledger.db"
    import sqlite3

    with sqlite3.connect(ledger_db) as db:
        sources = {
            json.loads(b).get("occupancy_source") for (b,) in db.execute("SELECT body FROM events WHERE kind = 'scan'")
        }
    assert "central" in sources  # the entry gates heard the ledger's occupancy topic and used it
    day = tmp_path / "day"
    assert main(["report", "--db", str(ledger_db), "--out", str(day), "--bin-minutes", "1"]) == 0, capsys.readouterr()
    report_json = json.loads((day / "report.json").read_text())
    # the same totals as the rehearsal's own report (which counts what the visitors met)
    assert report_json["totals"]["events"] == result["events"]["in_ledger"]
    assert report_json["denials"] == result["denials"]
    assert {k: report_json["totals"][k] for k in ("entries", "reentries", "exits")} == result["movements"]
    assert {z: v["inside_at_end"] for z, v in report_json["occupancy"]["zones"].items()} == result["occupancy"][
        "ledger"
    ]
    assert (
        report_json["occupancy"]["zones"]["hall"]["peak"] == 8 == report_json["occupancy"]["zones"]["hall"]["capacity"]
    )
    assert report_json["integrity"]["over_admitted"] == [] and result["admissions_over_limit"] == 0
    assert report_json["ok"]

    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; make test-tools)")
    page = (day / "report.html").as_uri()
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "CONSOLE" not in done.stderr and "Failed to load" not in done.stderr, done.stderr[-2000:]
    dom = done.stdout
    assert dom.index("CLEAN") < dom.index("<h2>") and dom.count('src="data:image/png;base64,') == 5
    shot = tmp_path / "day.png"
    chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1000,3000")
    import cv2

    image = cv2.imread(str(shot))
    assert image is not None and image.shape[0] == 3000
    assert (image.std(axis=(0, 1)) > 10).all()  # plots drawn, not a blank page


def test_sim_check_refuses_a_scenario_no_run_could_finish(tmp_path, capsys):
    """visitors = 10^17, duration_s = 1e300 and speed = 1e-300 passed `sim --check`: a run that
    would never end, or not fit in memory. Each is a scenario problem, listed with the others."""
    from gated.cli import main

    bad = tmp_path / "huge.toml"
    bad.write_text(
        '[scenario]\nname = "h"\nsite = "s"\nevent = "E"\nduration_s = 1e300\nspeed = 1e-300\n'
        "[gates]\ncount = 2\n[arrivals]\nvisitors = 99999999999999999\n"
    )
    assert main(["sim", "--check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "scenario.duration_s" in err and "scenario.speed" in err and "arrivals.visitors" in err, err
    good = tmp_path / "good.toml"
    good.write_text(
        '[scenario]\nname = "h"\nsite = "s"\nevent = "E"\nduration_s = 604800\nspeed = 1000\n'
        "[gates]\ncount = 2\n[arrivals]\nvisitors = 1000000\n"
    )
    assert main(["sim", "--check", str(good)]) == 0, capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # argparse's own refusal of the option
        main(["sim", "--check", "--speed", "1e-300", str(good)])
    assert refused.value.code == 2
    assert "--speed: '1e-300' is not a number of times from 0.01 to 1000" in capsys.readouterr().err
