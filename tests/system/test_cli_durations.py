"""Durations and factors on the command line: NaN, infinity, 0 or a negative where a wait is meant
is argparse's one-line error, exit 2. Before, `status --watch nan` spun at full CPU and ignored
SIGTERM, `--watch 0` printed tables back to back, `--timeout nan` or `-5` was a traceback and
`beacon --interval nan` published beacons back to back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gated.cli import main

ROOT = Path(__file__).resolve().parents[2]
BROKER = ["--broker", "mqtt://127.0.0.1:1", "--site", "S"]  # never reached: the words are refused first

REFUSED = [
    (["status", *BROKER, "--watch", "nan"], "--watch"),
    (["status", *BROKER, "--watch", "0"], "--watch"),
    (["status", *BROKER, "--watch", "-1"], "--watch"),
    (["status", *BROKER, "--timeout", "nan"], "--timeout"),
    (["status", *BROKER, "--timeout", "-5"], "--timeout"),
    (["status", *BROKER, "--timeout", "1e300"], "--timeout"),
    (["command", *BROKER, "--timeout", "inf", "--all", "lock"], "--timeout"),
    (["keys", "enrol", *BROKER, "--keyring", "ring", "--timeout", "nan"], "--timeout"),
    (["beacon", *BROKER, "--signing-key", "k", "--interval", "nan"], "--interval"),
    (["beacon", *BROKER, "--signing-key", "k", "--interval", "0"], "--interval"),
    (["doctor", "--timeout", "-1"], "--timeout"),
    (["ledger", *BROKER, "--db", "l.db", "--exit-after", "nan"], "--exit-after"),
    (["sim", "demo.toml", "--speed", "nan"], "--speed"),
    (["sim", "demo.toml", "--speed", "0"], "--speed"),
    (["show", "--timeout", "-1", "GT1:x"], "--timeout"),
    (["show", "--timeout", "nan", "GT1:x"], "--timeout"),
    (["scan", "--hold-off", "nan", "x.png"], "--hold-off"),
]


@pytest.mark.parametrize(("argv", "option"), REFUSED, ids=[" ".join(a[-3:]) for a, _ in REFUSED])
def test_a_bad_duration_is_one_line_and_exit_2(argv, option, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(
        tmp_path
    )  # were a word taken after all, what it writes (l.db, its lock) stays out of the repository
    with pytest.raises(SystemExit) as ended:
        main(argv)
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: '{argv[argv.index(option) + 1]}' is not a number of" in err
    assert "Traceback" not in err


def test_status_watch_nan_is_refused_not_a_busy_loop(broker):
    """With a broker there, NaN reached the refresh loop: it never returned (a hang is the defect,
    so this runs the CLI as a process with a timeout)."""
    out = subprocess.run(
        [sys.executable, "-m", "gated.cli", "status", "--broker", broker.url, "--site", "S", "--watch", "nan"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert out.returncode == 2 and "argument --watch: 'nan'" in out.stderr, out.stderr
    assert out.stdout == ""
