"""The rehearsal report reads at a glance: seconds everywhere, a glossary of denial reasons, the
gate's answer time and the queueing time named for what they measure, the backlog's drain after
a broker outage."""

from __future__ import annotations

from pathlib import Path

from gated.core.reasons import MEANING, Reason
from sim import model, report, scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "sim" / "scenarios"


def attempt(i, expect, observed, *, queued_at, shown_at, decided_at, event_id=None):
    a = model.Attempt(
        i, i, "g1", float(i), "valid" if expect == "ok" else "forged", "GT1:X", None, expect == "ok", expect
    )
    a.observed_admit, a.observed_reason = observed == "ok", observed
    a.queued_at, a.shown_at, a.decided_at, a.latency_us, a.event_id = queued_at, shown_at, decided_at, 40_000, event_id
    return a


def test_every_reason_has_a_meaning():
    assert set(MEANING) == set(Reason) and all(MEANING.values())


def test_answer_queueing_backlog_and_glossary(tmp_path):
    attempts = [
        attempt(1, "ok", "ok", queued_at=1.0, shown_at=1.0, decided_at=1.25, event_id="g1:1"),
        attempt(2, "revoked", "revoked", queued_at=2.0, shown_at=3.0, decided_at=3.5, event_id="g1:2"),
        attempt(3, "ok", "ok", queued_at=6.0, shown_at=11.0, decided_at=11.5, event_id="g1:3"),
    ]
    faults = [{"kind": "broker_down", "gate": None, "start_sim_s": 10.0, "end_sim_s": 30.0, "what": "down"}]
    s = scenario.load(SCENARIOS / "demo.toml")
    r = report.build(
        scenario=s,
        attempts=attempts,
        visitors=3,
        events_made=3,
        ledger={"gates": {"g1": {"events": 3}}, "totals": {"events": 3}},
        ledger_events=[],
        duplicates_dropped=0,
        tickets={},
        faults=faults,
        speed=2.0,
        gate_ids=["g1"],
        arrivals={"g1:1": 1.3, "g1:2": 3.6, "g1:3": 18.0},
    )
    assert r["answer_s"]["p50"] == 0.5
    assert r["queue_wait_s"] == {"p50": 1.0, "p99": 4.92, "max": 5.0}
    # broker down from 5 to 15 wall seconds (speed 2): attempt 3 decided at 11.5 arrived at 18.0
    assert r["backlog_drain_s"] == [{"outage_start_s": 10.0, "back_s": 30.0, "scans_held": 1, "drained_after_s": 3.0}]
    _, html_path = report.write(tmp_path, r, attempts, [(0.0, {"g1": 1}), (6.0, {"g1": 2})], 2.0)
    page = html_path.read_text()
    assert "visitor&#x27;s wait" not in page and "visitor's wait" not in page
    assert "from showing the code to the gate&#x27;s signed scan event" in page
    assert "in line before reaching the reader" in page
    assert "1 scans made meanwhile all reached it 3.0 s (wall) after it came back" in page
    assert "<code>revoked</code></td><td>refunded or cancelled" in page
    assert (
        "simulated seconds from the doors opening" in page
        and "minute" not in page.split("<h2>Plots")[1].split("<figure")[0]
    )
