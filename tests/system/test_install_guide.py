"""docs/install-pi.md, step 3 to 5, on a bench: its install lines as written (paths under a temporary
root), the example configuration with the edits the guide lists (and the bench's: a watched folder
for a camera, mock pins, a trusted clock), check-config, doctor against the shipped site broker, the
first revocation list, then the gate running and admitting a ticket shown with `gated show`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gated.cli import main
from tests.conftest import SITE
from tests.support.gatedaemon import GateProcess
from tests.support.sites import shipped_site_broker

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def guide_lines(root: Path) -> list[str]:
    """Step 3's shell lines, paths moved under `root` (the group: this machine has no `gated`)."""
    text = (ROOT / "docs" / "install-pi.md").read_text().split("## 3.", 1)[1].split("## 4.", 1)[0]
    block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    lines = [line.split("  #")[0] for line in block.splitlines() if not line.startswith("editor ")]
    return [
        line.replace("/etc/gated", f"{root}/etc/gated")
        .replace("/usr/src/gated", str(ROOT))
        .replace("-g gated", "-g root")
        for line in lines
    ]


@pytest.mark.timeout(300)
def test_install_pi_steps_3_to_5_on_a_bench(tmp_path, authority):
    assert SITE == "arena"  # the example configuration's site
    root = tmp_path / "root"
    assert main(["certs", "--out", str(tmp_path), "--site", SITE, "north-1", "central"]) == 0
    lines = guide_lines(root)
    assert any("install -m 0640" in line and "north-1.crt" in line for line in lines), lines
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "GPIOZERO_PIN_FACTORY": "mock"}
    done = subprocess.run(
        ["bash", "-e", "-c", "\n".join(lines[:3])], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    subprocess.run(["cp", "-r", str(authority.keyring_dir), str(root / "etc" / "gated" / "keyring")], check=True)
    broker = shipped_site_broker(tmp_path / "broker", tmp_path, ["north-1"])
    broker.start()
    try:
        config = root / "etc" / "gated" / "gated.toml"
        show = tmp_path / "show"
        show.mkdir(mode=0o700)
        text = config.read_text()
        text = (
            text.replace("/etc/gated", f"{root}/etc/gated")
            .replace('"/var/lib/gated"', f'"{tmp_path / "state"}"')
            .replace("mqtts://broker.arena.example:8883", f"mqtts://127.0.0.1:{broker.port}")
            .replace('source = "v4l2:/dev/video0"', f'source = "files:{show}?watch=1"')
            .replace('pin_factory = "auto"', 'pin_factory = "mock"')
            .replace("trust_system_clock = false", "trust_system_clock = true")
        )
        config.write_text(text)
        events = re.search(r"^events = \[(.*?)\]", text, re.M).group(1)
        assert '"FINAL-2026"' in events  # the authority's tickets are for this event

        check = subprocess.run(["gated", "check-config", str(config)], env=env, capture_output=True, text=True)
        assert check.returncode == 0 and "warning" not in check.stderr, check.stdout + check.stderr
        doctor = subprocess.run(
            ["gated", "doctor", "--config", str(config), "--timeout", "3", "--skip", "clock"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "test publish and subscribe" in doctor.stdout

        # docs/central.md step 4: the first list, so the gate does not stay locked
        assert (
            main(
                [
                    "revoke",
                    "--signing-key",
                    str(authority.key_dir / "revocation.key"),
                    "--site",
                    SITE,
                    "--version",
                    "1",
                    "--out",
                    str(tmp_path / "rev-1.cose"),
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    "publish-revocations",
                    "--broker",
                    f"mqtts://127.0.0.1:{broker.port}",
                    "--ca",
                    str(tmp_path / "ca.crt"),
                    "--cert",
                    str(tmp_path / "central.crt"),
                    "--key",
                    str(tmp_path / "central.key"),
                    "--site",
                    SITE,
                    str(tmp_path / "rev-1.cose"),
                ]
            )
            == 0
        )
        gate = GateProcess(config).start()
        try:
            gate.wait_ready(60)
            gate.wait_for(
                lambda: any(e.get("event") == "revocations applied" or e.get("rev") == 1 for e in gate.logs),
                30,
                "the revocation list",
            )
            shown = subprocess.run(
                ["gated", "show", "--config", str(config), authority.ticket()],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert shown.returncode == 0, shown.stderr
            gate.wait_for(lambda: [s for s in gate.scans() if s.get("decision") == "admit"], 30, "an admission")
        finally:
            gate.terminate()
    finally:
        broker.stop()
