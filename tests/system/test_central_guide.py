"""docs/central.md followed as written, on loopback: its `gated` commands, shell variables and file
layout run in order (paths under a temporary root, the broker's host name and port the test's own
Mosquitto running the shipped gated-site.conf), so a step that no longer works fails here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.support.sites import SHIPPED, localise

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SKIP = (
    "apt-get",
    "python3 -m venv",
    "/opt/gated/bin/pip",
    "ln -sf",
    "mkdir -p /usr/src",
    "useradd",
    "systemctl",
    "cat >",
    "chgrp mosquitto",
    "install -m 0644 /usr/src/gated/systemd/",
)


def commands(guide: str, root: Path, port: int) -> list[str]:
    text = (ROOT / guide).read_text()
    lines = []
    for block in re.findall(r"```(?:sh|ini)\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].rstrip()
            if line.startswith("ExecStart="):
                line = line.removeprefix("ExecStart=").replace("/usr/local/bin/gated", "gated") + " --count 1"
            if (
                not line
                or line.startswith(
                    (
                        "#",
                        "[",
                        "Description",
                        "After",
                        "Restart",
                        "WantedBy",
                        "EOF",
                        "BROKER=mqtts://central.arena.example:8883\nSITE",
                    )
                )
                or line.startswith(SKIP)
            ):
                continue
            if re.match(r"^[A-Z_]+=", line) and not line.startswith(("CA=", "BROKER=", "AS_")):
                continue  # ledger.env's lines
            if "--approve" in line or "gated reconcile" in line or "postgresql://" in line:
                continue  # needs a running gate's kid / a ledger that has events / a PostgreSQL server
            line = line.replace(" -o gated-ledger", "").replace(" -g gated-ledger", "")  # useradd: skipped
            lines.append(line)
    script = "\n".join(lines)
    script = (
        script.replace("/etc/gated", f"{root}/etc/gated")
        .replace("/var/lib/gated-central", f"{root}/var/central")
        .replace("/etc/mosquitto/gated", f"{root}/etc/mosquitto/gated")
        .replace("/usr/src/gated/systemd", str(ROOT / "systemd"))
        .replace("central.arena.example:8883", f"127.0.0.1:{port}")
    )
    return script.splitlines()


@pytest.mark.timeout(300)
def test_the_central_guide_runs_as_written(tmp_path):
    broker = Broker(tmp_path / "broker")
    lines = commands("docs/central.md", tmp_path / "root", broker.port)
    assert any(line.startswith("gated certs") for line in lines) and any("gated status" in line for line in lines)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    before_broker = [i for i, line in enumerate(lines) if "make-dynsec.py" in line][0] + 1

    def run(part: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-e", "-c", "\n".join(part)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
        )

    first = run(lines[:before_broker])
    assert first.returncode == 0, first.stdout + first.stderr
    certs = tmp_path / "root" / "etc" / "mosquitto" / "gated"
    broker.config.write_text(localise((SHIPPED / "gated-site.conf").read_text(), certs, broker))
    broker.start()
    try:
        # the rest, with the shell variables the guide set before the broker step
        rest = run(
            [
                "set +e",
                *[
                    line
                    if re.match(r"^(CA|BROKER|AS_[A-Z]+)=", line)
                    else f'{line}; echo "EXIT $? {line.split()[0]} {line.split()[1]}"'
                    for line in lines[before_broker:]
                ],
            ]
        )
    finally:
        broker.stop()
    out = rest.stdout + rest.stderr
    exits = re.findall(r"^EXIT (\d+) (\S+) (\S+)", rest.stdout, re.M)
    assert exits, out
    failed = [(cmd, sub) for code, cmd, sub in exits if code != "0" and (cmd, sub) != ("gated", "command")]
    assert failed == [], out
    assert "site arena: 0 gate(s)" in out, out
    assert "Traceback" not in out and "deprecated" not in out, out
