"""The rehearsal of a replaced gate (sim/scenarios/replace.toml, `[[faults]] kind = "gate_replace"`):
g1's card dies mid-event, its state is wiped and a new one made with `gated replace` (a new chain,
a new device key), approved at the ledger with `gated keys enrol --replace` as docs/install-pi.md
says, and it serves visitors under `until_synced` before the ledger's admissions snapshot goes out.
The ground truth knows the policy."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from sim import runner, scenario

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path, policy):
    s = dataclasses.replace(scenario.load(ROOT / "sim" / "scenarios" / "replace.toml"), until_synced=policy)
    return runner.run(s, tmp_path / "out", speed=1.0, progress=False, log=lambda m: None)


@pytest.mark.slow  # a whole venue: about a minute
@pytest.mark.parametrize("policy", ["deny_used_check", "admit"])
def test_a_replaced_gate_makes_no_conflict_and_admits_no_ticket_used_at_the_dead_card(tmp_path, policy):
    result = _run(tmp_path, policy)
    detail = json.dumps({k: result[k] for k in ("verdict", "mismatches", "events", "notes", "faults")}, indent=1)[:4000]
    assert result["decisions"]["mismatched"] == 0, detail
    events = result["events"]
    assert events["conflicts"] == 0 and events["gaps"] == 0 and events["chain_breaks"] == 0, detail
    assert events["made"] == events["in_ledger"] and events["bad_signatures"] == 0, detail
    assert events["declared_lost"] == 0, detail  # nothing below the new chain's base epoch * 2^40 + 1
    (replaced,) = result["replacements"]  # the ledger reports the replacement: a new chain after the old one
    assert replaced["gate"] == "g1" and replaced["epoch"] >= 1 and replaced["after_epoch"] == 0
    assert result["admissions_over_limit"] == 0, detail  # no ticket admitted beyond its limit unflagged
    reused = [m for m in result["faults"] if m["kind"] == "gate_replace"]
    assert len(reused) == 2 and "synced: True" in reused[1]["what"], reused
    if policy == "deny_used_check":
        assert result["denials"].get("unsynced", 0) >= 2 and result["admissions_flagged_unsynced"] == 0
        assert result["denials"]["already_used"] >= 3  # tickets used at the dead card, shown after the snapshot
    else:
        # each ticket used at the dead card and admitted again before the snapshot: flagged, reported
        assert result["admissions_flagged_unsynced"] >= 2 and len(result["over_admitted_flagged"]) >= 2
        assert "unsynced" not in result["denials"]
    assert result["ok"], detail
