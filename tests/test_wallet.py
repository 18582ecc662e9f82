"""The holder side as a user runs it: `gated issue --dynamic --out DIR`, then `gated wallet show`,
with the codes judged by `gated verify` (the same validate() the gate uses)."""

from __future__ import annotations

import csv
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gated.central import wallet
from gated.cli import main

GATED = str(Path(sys.executable).with_name("gated"))  # the installed entry point
NOW = 1_790_000_020  # 10 s into a 30 s step


@pytest.fixture
def desk(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["keys", "generate", "--out", "k", "--name", "box"]) == 0
    assert main(["keys", "trust", "--keyring", "ring", "--role", "issuer", "--event", "FINAL", "k/box.pub"]) == 0
    assert main(["issue", "--key", "k/box.key", "--event", "FINAL", "--entries", "0", "--dynamic", "--out", "tix",
                 "--valid-from", "2026-01-01", "--valid-until", "2027-12-31"]) == 0
    with open("tix/tickets.csv") as fh:
        cti = next(csv.DictReader(fh))["ticket_id"]
    return Path("tix") / f"{cti}.ticket", Path("tix") / f"{cti}.devkey"


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def show(capsys, desk, *extra, now=NOW):
    ticket_file, key_file = desk
    code, out, err = run(capsys, "wallet", "show", "--ticket", str(ticket_file), "--device-key", str(key_file),
                         "--now", str(now), *extra)
    assert code == 0, err
    return out.strip()


def verify(capsys, text, now, state="gate.db"):
    code, out, _ = run(capsys, "verify", "--keyring", "ring", "--event", "FINAL", "--json", "--state", state,
                       "--record", "--now", str(now), text)
    return code, json.loads(out)["reason"]


def test_issue_dynamic_writes_ticket_and_private_device_key(desk):
    ticket_file, key_file = desk
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    held = wallet.load(ticket_file, key_file)
    assert held.claims.dev is not None and held.claims.ent == 0


def test_shown_code_admitted_once_per_step_and_screenshot_stale(desk, capsys):
    code = show(capsys, desk)
    assert code.startswith("GT2:") and "\n" not in code
    assert verify(capsys, code, NOW) == (0, "ok")
    assert verify(capsys, code, NOW + 3) == (1, "already_used")
    next_code = show(capsys, desk, now=NOW + 30)
    assert next_code != code
    assert verify(capsys, next_code, NOW + 30) == (0, "ok")
    assert verify(capsys, code, NOW + 60) == (1, "stale_code")  # the screenshot, a minute later


def test_static_rendering_is_denied_static_copy(desk, capsys):
    text = show(capsys, desk, "--static")
    assert text.startswith("GT1:")
    assert verify(capsys, text, NOW) == (1, "static_copy")


def test_png_holds_the_code(desk, capsys, tmp_path):
    import cv2
    import zxingcpp

    png = tmp_path / "code.png"
    text = show(capsys, desk, "--png", str(png))
    results = zxingcpp.read_barcodes(cv2.imread(str(png)))
    assert [r.text for r in results] == [text]


def test_wrong_device_key_is_a_usage_error(desk, capsys):
    ticket_file, _ = desk
    assert main(["keys", "generate", "--out", "k", "--name", "other"]) == 0
    capsys.readouterr()
    code, out, err = run(capsys, "wallet", "show", "--ticket", str(ticket_file), "--device-key", "k/other.key")
    assert code == 2 and "not the device key" in err and out == ""


def test_static_ticket_file_is_refused(desk, capsys, tmp_path):
    from gated import base45

    _, key_file = desk
    text = run(capsys, "issue", "--key", "k/box.key", "--event", "FINAL")[1].strip()
    plain = tmp_path / "plain.ticket"
    plain.write_bytes(base45.decode(text[4:]))
    code, _, err = run(capsys, "wallet", "show", "--ticket", str(plain), "--device-key", str(key_file))
    assert code == 2 and "static ticket" in err


def test_watch_renders_a_new_code_each_step(desk):
    """The --watch loop with a simulated time: one code per 30 s step, re-rendered after each sleep."""
    held = wallet.load(*desk)
    moments = {"t": float(NOW)}
    shown = []
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        moments["t"] += seconds

    count = wallet.watch(held, lambda text, left: shown.append((text, round(left))), now=lambda: moments["t"],
                         sleep=sleep, renders=3)
    assert count == 3
    steps = [wallet.step_of(NOW) + i for i in range(3)]
    assert [text for text, _ in shown] == [wallet.code_at(held.cose, held.device_key, s) for s in steps]
    assert shown[0][1] == 20 and slept[0] == pytest.approx(20.05)


def test_watch_command_keeps_running(desk):
    """`gated wallet show --watch` prints a code at once and keeps going until interrupted."""
    ticket_file, key_file = desk
    proc = subprocess.Popen([GATED, "wallet", "show", "--ticket", str(ticket_file),
                             "--device-key", str(key_file), "--watch"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline().strip()
        assert first.startswith("GT2:")
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)
