"""`gated doctor`: one line per check, exit 0 on a ready machine, non-zero and the reason on a broken one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gated.core import revocation
from gated.gate import revocations
from gated.gate.store import GateStore
from tests.conftest import EVENT, SITE
from tests.support.gatedaemon import gate_config, write_config

GATED = Path(sys.executable).parent / "gated"


def doctor(config: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
    return subprocess.run(
        [str(GATED), "doctor", "--config", str(config), "--timeout", "3", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def lines(result) -> dict[str, tuple[str, str]]:
    out = {}
    for line in result.stdout.splitlines():
        status, check, message = line[:5].strip(), line[6:17].strip(), line[18:]
        if status in ("ok", "warn", "FAIL"):
            out[check] = (status, message)
    return out


def provision(store_dir: Path, authority, *, age_s: int = 0) -> None:
    """A state database with a revocation snapshot, as the gate would have after its first run."""
    with GateStore(store_dir / "gate.db", site=SITE, gate="g1") as store:
        blob = revocation.encode_updates(
            authority.revocation, site=SITE, version=1, add=[os.urandom(16)], iat=int(time.time()) - age_s
        )[0]
        outcome = revocations.apply_update(store, blob, authority.keyring, site=SITE, now_ms=int(time.time() * 1000))
        assert outcome.status != "rejected", outcome


def test_a_ready_machine_passes_every_check(tmp_path, authority, broker):
    provision(tmp_path / "state", authority)
    cfg = gate_config(
        tmp_path,
        keyring=authority.keyring_dir,
        broker_url=broker.url,
        camera_source="synthetic:",
        site=SITE,
        gate="g1",
        event=EVENT,
        revocations={"when_stale": "closed"},
    )
    result = doctor(write_config(tmp_path / "gated.toml", cfg))
    found = lines(result)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(found) == {
        "config",
        "keyring",
        "state",
        "revocations",
        "disk",
        "clock",
        "decoder",
        "camera",
        "gpio",
        "broker",
    }
    assert all(status in ("ok", "warn") for status, _ in found.values()), found
    assert found["broker"][0] == "ok" and "connected" in found["broker"][1]
    assert found["gpio"][0] == "ok" and "GPIO17" in found["gpio"][1]
    assert found["decoder"][0] == "ok"
    assert found["camera"][0] == "ok" and "frames of 640x480" in found["camera"][1]
    assert result.stdout.strip().endswith("all checks passed")
    assert found["state"][0] == "ok" and "intact" in found["state"][1]
    assert found["revocations"] == ("ok", found["revocations"][1]) and found["revocations"][1].startswith("v1")


def test_a_misconfigured_machine_says_what_is_wrong(tmp_path, authority):
    (tmp_path / "state").write_text("a file where the state directory should be")
    cfg = gate_config(
        tmp_path,
        keyring=tmp_path / "no-keyring",
        broker_url="mqtt://127.0.0.1:1",
        camera_source="v4l2:/dev/video-none",
        site=SITE,
        gate="g1",
        event=EVENT,
        revocations={"when_stale": "closed"},
    )
    result = doctor(write_config(tmp_path / "gated.toml", cfg))
    found = lines(result)
    assert result.returncode == 1
    for check, words in (
        ("keyring", "no keyring here"),
        ("state", "not a directory"),
        ("camera", "v4l2:/dev/video-none"),
        ("broker", "connection refused"),
    ):
        assert found[check][0] == "FAIL", (check, found[check])
        assert words in found[check][1], (check, found[check])
    # no list before the first start is what every new gate sees: said plainly, not a failure
    assert found["revocations"][0] == "warn" and "no list yet" in found["revocations"][1]
    assert "expected before the gate's first start" in found["revocations"][1] and "locked" in found["revocations"][1]
    assert "failed" in result.stderr
    # a board profile that does not exist is a configuration problem (config.py resolves it)
    cfg["turnstile"]["board"] = "no-such-board"
    result = doctor(write_config(tmp_path / "gated.toml", cfg))
    assert result.returncode == 2 and "turnstile.board" in result.stderr and "no such board profile" in result.stderr


def test_a_stale_list_fails_when_the_policy_is_closed_and_warns_when_open(tmp_path, authority):
    provision(tmp_path / "state", authority, age_s=7200)
    for policy, status in (("closed", "FAIL"), ("open", "warn")):
        cfg = gate_config(
            tmp_path,
            keyring=authority.keyring_dir,
            broker_url="mqtt://127.0.0.1:1",
            camera_source="synthetic:",
            site=SITE,
            gate="g1",
            event=EVENT,
            revocations={"when_stale": policy, "max_age_s": 3600.0},
        )
        result = doctor(write_config(tmp_path / "gated.toml", cfg), "--skip", "broker", "--skip", "camera")
        found = lines(result)
        assert found["revocations"][0] == status, found["revocations"]
        assert "stale" in found["revocations"][1]
        assert result.returncode == (1 if status == "FAIL" else 0), result.stdout


def test_state_of_another_gate_is_refused(tmp_path, authority):
    provision(tmp_path / "state", authority)
    cfg = gate_config(
        tmp_path,
        keyring=authority.keyring_dir,
        broker_url="mqtt://127.0.0.1:1",
        camera_source="synthetic:",
        site=SITE,
        gate="g2",
        event=EVENT,
    )
    result = doctor(write_config(tmp_path / "gated.toml", cfg), "--skip", "broker", "--skip", "camera")
    found = lines(result)
    assert found["state"][0] == "FAIL" and "belongs to gate 'g1'" in found["state"][1]
    assert result.returncode == 1


def test_a_bad_config_is_a_usage_error_listing_every_problem(tmp_path):
    (tmp_path / "gated.toml").write_text("[gate]\nsite = 'arena'\n[timings]\ndebounce_s = -1\n")
    result = doctor(tmp_path / "gated.toml")
    assert result.returncode == 2
    assert "gate.id: missing" in result.stderr and "timings.debounce_s" in result.stderr
    assert "mqtt: required section" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_state_directory_fails(tmp_path, authority):
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o500)
    try:
        cfg = gate_config(
            tmp_path,
            keyring=authority.keyring_dir,
            broker_url="mqtt://127.0.0.1:1",
            camera_source="synthetic:",
            site=SITE,
            gate="g1",
            event=EVENT,
        )
        found = lines(doctor(write_config(tmp_path / "gated.toml", cfg), "--skip", "broker", "--skip", "camera"))
        assert found["state"][0] == "FAIL" and "not writable" in found["state"][1]
    finally:
        state.chmod(0o700)


def test_the_clock_line_says_when_the_sites_ntp_is_ignored(tmp_path, authority):
    """[clock] ntp = "ignore": doctor does not call the clock NTP-synchronised, whatever the host says."""
    cfg = gate_config(
        tmp_path,
        keyring=authority.keyring_dir,
        broker_url="mqtt://127.0.0.1:1",
        camera_source="synthetic:",
        site=SITE,
        gate="g1",
        event=EVENT,
        clock={"ntp": "ignore", "trust_system_clock": False, "beacons": True},
    )
    found = lines(doctor(write_config(tmp_path / "gated.toml", cfg)))
    assert found["clock"][0] == "warn" and 'NTP ignored by configuration ([clock] ntp = "ignore")' in found["clock"][1]
