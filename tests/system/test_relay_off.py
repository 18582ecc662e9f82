"""Fail-secure relay (#11 item 12): after any stop, a crash included, the relay pin goes to its
inactive level. What the code controls is tested here: `turnstile.relay_off()` on every shipped
board (MockFactory pins left energised, as a killed process leaves them), the `gated relay-off`
command, and that gated.service runs it after every stop with the daemon's own config."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from gpiozero.exc import GPIOPinInUse

from gated.gate.boards import load_board, shipped_boards
from gated.gate.turnstile import Turnstile, relay_off
from tests.support.gatedaemon import gate_config, write_config
from tests.support.pins import pins, relay_on  # noqa: F401  (pins is a fixture)

ROOT = Path(__file__).resolve().parents[2]


def left_energised(factory, board) -> None:
    """What a killed gate leaves: the relay latched on (an emergency, a held admission), never closed."""
    turnstile = Turnstile(board, pin_factory=factory)
    turnstile.latch()
    assert relay_on(factory, board)
    for name in (
        "relay",
        "passage",
        "passage_out",
        "emergency",
        "door",
        "green",
        "red",
        "buzzer",
    ):  # the process is gone:
        device = getattr(turnstile, name)
        if device is not None:  # an input's pins are reserved by its gpiozero device (Input.device)
            factory.release_all(getattr(device, "device", device))


@pytest.mark.parametrize("path", shipped_boards(), ids=lambda p: p.stem)
def test_relay_off_drives_a_relay_left_on_to_its_inactive_level(pins, path):
    board = load_board(path)
    left_energised(pins, board)
    assert relay_on(pins, board)
    relay_off(board, pin_factory=pins)
    assert not relay_on(pins, board)
    Turnstile(board, pin_factory=pins).close()  # and the pin is free for the next start


def test_relay_off_refuses_a_pin_a_running_gate_holds(pins):
    board = load_board(shipped_boards()[0])
    turnstile = Turnstile(board, pin_factory=pins)
    try:
        with pytest.raises(GPIOPinInUse):
            relay_off(board, pin_factory=pins)
    finally:
        turnstile.close()


def test_gated_relay_off_command(tmp_path, authority):
    cfg = gate_config(
        tmp_path,
        keyring=authority.keyring_dir,
        broker_url="mqtt://127.0.0.1:1",
        camera_source="synthetic:",
        site="arena",
        gate="g1",
        event="E",
        board="tripod-rotation",
    )
    config = write_config(tmp_path / "gated.toml", cfg)
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
    done = subprocess.run(
        [sys.executable, "-m", "gated.cli", "relay-off", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "relay GPIO17 off (driven high, board tripod-rotation)" in done.stdout  # an active-low relay
    cfg["turnstile"]["board"] = "no-such-board"
    write_config(config, cfg)
    done = subprocess.run(
        [sys.executable, "-m", "gated.cli", "relay-off", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2 and "relay not switched off" in done.stderr


def test_gated_service_switches_the_relay_off_after_every_stop():
    unit = (ROOT / "systemd" / "gated.service").read_text()
    start = re.search(r"^ExecStart=(\S+) run (--config \S+)$", unit, re.M)
    stop_post = re.search(r"^ExecStopPost=(\S+) relay-off (--config \S+)$", unit, re.M)
    assert start and stop_post, "gated.service must run `gated relay-off` as ExecStopPost"
    assert stop_post.groups() == start.groups()  # same program, same config (so the same board)
