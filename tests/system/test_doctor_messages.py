"""`gated doctor` speaks plainly on a machine that is not (yet) a gate: no GPIO, a missing password
file, a camera that is not there: one line each, and no library warnings or tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EVENT, SITE
from tests.support.gatedaemon import gate_config, write_config

GATED = Path(sys.executable).parent / "gated"


def on_a_pi() -> bool:
    try:
        return "Raspberry Pi" in Path("/proc/device-tree/model").read_text()
    except OSError:
        return False


@pytest.mark.skipif(on_a_pi(), reason="this machine has GPIO")
def test_no_gpio_a_missing_password_file_and_no_camera_read_as_one_plain_line_each(tmp_path, authority):
    cfg = gate_config(
        tmp_path,
        keyring=authority.keyring_dir,
        broker_url="mqtt://127.0.0.1:1",
        camera_source="v4l2:/dev/video-none",
        site=SITE,
        gate="g1",
        event=EVENT,
        turnstile={"pin_factory": "auto"},
        mqtt={"username": "g1", "password_file": str(tmp_path / "mqtt-password")},
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GPIOZERO_PIN_FACTORY", "OPENCV_LOG_LEVEL")}
    result = subprocess.run(
        [
            str(GATED),
            "doctor",
            "--config",
            str(write_config(tmp_path / "gated.toml", cfg)),
            "--timeout",
            "1",
            "--skip",
            "decoder",
            "--skip",
            "clock",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    out = result.stdout.splitlines()
    gpio = [line for line in out if line.startswith("FAIL  gpio")]
    assert gpio and "no GPIO on this machine (not a Raspberry Pi, or lgpio missing" in gpio[0], result.stdout
    broker = [line for line in out if line.startswith("FAIL  broker")]
    assert broker == [
        f"FAIL  broker      password file {tmp_path / 'mqtt-password'}: No such file or directory; "
        f"create it: install -m 0640 -o root -g gated /dev/stdin {tmp_path / 'mqtt-password'} "
        "<<< 'the-password'"
    ], result.stdout
    assert any(line.startswith("FAIL  camera") for line in out)
    # every line on the screen is a finding or the summary: no warnings, no traceback
    screen = result.stdout.splitlines() + result.stderr.splitlines()
    strays = [line for line in screen if not line.startswith(("ok ", "warn ", "FAIL ")) and "failed" not in line]
    assert strays == [], strays
    assert "Traceback" not in result.stderr and "PinFactoryFallback" not in result.stderr
