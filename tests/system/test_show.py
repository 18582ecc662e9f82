"""A bench gate: a real `gated run` whose camera is a watched folder admits three tickets shown in
turn, one dropped into the folder, one by `gated show 'TEXT'`, one by `gated show IMAGE`, without a
restart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import segno

from tests.conftest import EVENT, SITE
from tests.support.gatedaemon import GateProcess, gate_config, write_config

GATED = Path(sys.executable).parent / "gated"


def show(config: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(GATED), "show", "--config", str(config), code], capture_output=True, text=True, timeout=60
    )


def test_a_running_gate_admits_three_tickets_shown_in_turn(tmp_path, authority, broker):
    folder = tmp_path / "show"
    folder.mkdir(mode=0o700)
    cfg = gate_config(
        tmp_path,
        keyring=authority.keyring_dir,
        broker_url=broker.url,
        camera_source=f"files:{folder}?watch=1&hold=1",
        site=SITE,
        gate="g1",
        event=EVENT,
    )
    config = write_config(tmp_path / "gated.toml", cfg)
    tickets = [authority.ticket() for _ in range(3)]
    gate = GateProcess(config).start()
    try:
        gate.wait_ready()
        admitted = lambda n: len([s for s in gate.scans() if s.get("decision") == "admit"]) >= n  # noqa: E731

        segno.make(tickets[0], error="m").save(str(folder / ".first.part"), kind="png", scale=6, border=4)
        os.replace(folder / ".first.part", folder / "first.png")  # held up through the folder itself
        gate.wait_for(lambda: admitted(1), 20, "the first ticket admitted")
        assert not (folder / "first.png").exists()  # taken away once shown

        result = show(config, tickets[1])
        assert result.returncode == 0 and "shown to gate g1" in result.stdout, result.stderr
        gate.wait_for(lambda: admitted(2), 20, "the second ticket admitted")

        image = tmp_path / "third.png"
        segno.make(tickets[2], error="m").save(str(image), scale=6, border=4)
        result = show(config, str(image))
        assert result.returncode == 0, result.stderr
        gate.wait_for(lambda: admitted(3), 20, "the third ticket admitted")

        again = show(config, tickets[0])  # the same ticket once more: already used, not a crash
        assert again.returncode == 0, again.stderr
        gate.wait_for(lambda: any(s.get("reason") == "already_used" for s in gate.scans()), 20, "already_used")
        assert gate.process.poll() is None
    finally:
        gate.terminate()
    admits = [s for s in gate.scans() if s.get("decision") == "admit"]
    assert len(admits) == 3 and len({s["id"] for s in admits}) == 3


def test_show_says_when_the_camera_is_not_a_watched_folder(tmp_path, authority):
    cfg = gate_config(
        tmp_path,
        keyring=authority.keyring_dir,
        broker_url="mqtt://127.0.0.1:1",
        camera_source="synthetic:",
        site=SITE,
        gate="g1",
        event=EVENT,
    )
    result = show(write_config(tmp_path / "gated.toml", cfg), "GT1:whatever")
    assert result.returncode == 2 and "needs a watched folder" in result.stderr, result.stderr


def test_show_says_when_no_gate_takes_it(tmp_path, authority):
    folder = tmp_path / "show"
    folder.mkdir()
    cfg = gate_config(
        tmp_path,
        keyring=authority.keyring_dir,
        broker_url="mqtt://127.0.0.1:1",
        camera_source=f"files:{folder}?watch=1",
        site=SITE,
        gate="g1",
        event=EVENT,
    )
    result = subprocess.run(
        [str(GATED), "show", "--config", str(write_config(tmp_path / "gated.toml", cfg)), "--timeout", "0.5", "GT1:x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "did not take it within 0.5 s: is it running" in result.stderr
    assert list(folder.iterdir()) == []  # nothing left behind for a later start
