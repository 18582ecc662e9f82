"""The holder side as a user runs it: `gated issue --dynamic --out DIR`, then `gated wallet show`,
with the codes judged by `gated verify` (the same validate() the gate uses)."""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

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
    assert (
        main(
            [
                "issue",
                "--signing-key",
                "k/box.key",
                "--event",
                "FINAL",
                "--entries",
                "0",
                "--dynamic",
                "--out",
                "tix",
                "--valid-from",
                "2026-01-01",
                "--valid-until",
                "2027-12-31",
            ]
        )
        == 0
    )
    with open("tix/tickets.csv") as fh:
        cti = next(csv.DictReader(fh))["ticket_id"]
    return Path("tix") / f"{cti}.ticket", Path("tix") / f"{cti}.devkey"


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def show(capsys, desk, *extra, now=NOW):
    ticket_file, key_file = desk
    code, out, err = run(
        capsys, "wallet", "show", "--ticket", str(ticket_file), "--device-key", str(key_file), "--now", str(now), *extra
    )
    assert code == 0, err
    return out.strip()


def verify(capsys, text, now, state="gate.db"):
    code, out, _ = run(
        capsys,
        "verify",
        "--keyring",
        "ring",
        "--event",
        "FINAL",
        "--json",
        "--state",
        state,
        "--record",
        "--now",
        str(now),
        text,
    )
    return code, json.loads(out)["reason"]


def test_issue_dynamic_writes_ticket_and_private_device_key(desk):
    ticket_file, key_file = desk
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    held = wallet.load(ticket_file, key_file)
    assert held.claims.dev is not None and held.claims.ent == 0


def test_dynamic_ticket_too_long_for_a_gate_is_refused_at_issue(desk, capsys):
    zones = [f"--zone=Z{i:03d}-north-stand-upper-tier" for i in range(25)]
    code, out, err = run(
        capsys, "issue", "--signing-key", "k/box.key", "--event", "FINAL", "--dynamic", "--out", "long", *zones
    )
    assert code == 2 and "over the 1024" in err and not Path("long/tickets.csv").exists()


def test_device_key_made_private_even_over_an_old_file(tmp_path, authority):
    from gated.central.issuer import issue, new_claims, write_batch

    item = issue(new_claims(event="FINAL", nbf=0, exp=2**31), authority.issuer, dynamic=True)
    old = tmp_path / f"{item.claims.cti.hex()}.devkey"
    old.write_bytes(b"stale")
    old.chmod(0o644)
    write_batch([item], tmp_path)
    assert stat.S_IMODE(os.stat(old).st_mode) == 0o600 and old.read_bytes().startswith(b"-----BEGIN PRIVATE KEY")


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
    from gated.core import base45

    _, key_file = desk
    text = run(capsys, "issue", "--signing-key", "k/box.key", "--event", "FINAL")[1].strip()
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

    count = wallet.watch(
        held, lambda text, left: shown.append((text, round(left))), now=lambda: moments["t"], sleep=sleep, renders=3
    )
    assert count == 3
    steps = [wallet.step_of(NOW) + i for i in range(3)]
    assert [text for text, _ in shown] == [wallet.code_at(held.cose, held.device_key, s) for s in steps]
    assert shown[0][1] == 20 and slept[0] == pytest.approx(20.05)


def test_watch_command_keeps_running(desk):
    """`gated wallet show --watch` prints a code at once and keeps going until interrupted."""
    ticket_file, key_file = desk
    proc = subprocess.Popen(
        [GATED, "wallet", "show", "--ticket", str(ticket_file), "--device-key", str(key_file), "--watch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline().strip()
        assert first.startswith("GT2:")
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- the static wallet page (docs/wallet/), in headless Chromium ----------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
PAGE = Path(__file__).resolve().parents[2] / "docs" / "wallet" / "index.html"
# `make test` installs Chromium; in CI its absence is a failure, not a silent skip.
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="Chromium is not installed (apt-get install chromium)"
)


ENCODER = PAGE.parent / "node_modules" / "qrcode-generator" / "dist" / "qrcode.js"


def test_the_page_takes_its_qr_encoder_from_npm_pinned():
    """Only our code in the repository: the QR encoder is qrcode-generator from the npm registry,
    pinned by the lockfile (with its integrity hash), installed by `make wallet-deps` where
    index.html loads it; no copy of it is kept beside the page."""
    lock = json.loads((PAGE.parent / "package-lock.json").read_text())
    wanted = json.loads((PAGE.parent / "package.json").read_text())["dependencies"]["qrcode-generator"]
    pinned = lock["packages"]["node_modules/qrcode-generator"]
    assert pinned["version"] == wanted and pinned["integrity"].startswith("sha512-")
    assert '<script src="node_modules/qrcode-generator/dist/qrcode.js"></script>' in PAGE.read_text()
    tracked = subprocess.run(
        ["git", "ls-files", str(PAGE.parent)], capture_output=True, text=True, cwd=PAGE.parent
    ).stdout.split()
    assert not [f for f in tracked if f.endswith("qrcode.js")], tracked


def page_url(ticket_file, key_file, now) -> str:
    def b64url(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    fragment = urlencode({"ticket": b64url(Path(ticket_file).read_bytes()), "key": b64url(Path(key_file).read_bytes())})
    return f"{PAGE.as_uri()}?now={now}#{fragment}"


def chromium(tmp_path, url: str, *extra) -> str:
    assert ENCODER.exists(), f"{ENCODER} is missing: run `make wallet-deps` (npm ci in docs/wallet)"
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=10000",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@needs_chromium
def test_wallet_page_renders_the_same_code_and_a_scannable_qr(desk, capsys, tmp_path):
    import cv2
    import zxingcpp

    ticket_file, key_file = desk
    url = page_url(ticket_file, key_file, NOW)
    dom = chromium(tmp_path, url, "--dump-dom")
    match = re.search(r'<pre id="code" data-step="(\d+)">(GT2:[^<]+)</pre>', dom)
    assert match, dom[-3000:]
    step, text = int(match.group(1)), match.group(2)
    held = wallet.load(ticket_file, key_file)
    assert step == wallet.step_of(NOW)
    assert text == held.code(NOW)  # Ed25519 is deterministic: byte for byte what `gated wallet show` makes
    assert verify(capsys, text, NOW) == (0, "ok")
    assert verify(capsys, text, NOW + 60) == (1, "stale_code")

    shot = tmp_path / "page.png"
    chromium(tmp_path, url, f"--screenshot={shot}", "--window-size=500,900")
    found = [r.text for r in zxingcpp.read_barcodes(cv2.imread(str(shot)))]
    assert found == [text]


@needs_chromium
def test_wallet_page_refuses_a_key_of_another_device(desk, tmp_path):
    ticket_file, _ = desk
    assert main(["keys", "generate", "--out", "k", "--name", "stranger"]) == 0
    dom = chromium(tmp_path, page_url(ticket_file, "k/stranger.key", NOW), "--dump-dom")
    assert 'data-state="error"' in dom and "not the one the ticket is bound to" in dom
    assert re.search(r'<pre id="code"[^>]*>GT2:', dom) is None


def test_a_given_device_key_binds_a_dynamic_ticket_and_only_a_dynamic_one():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gated.central.issuer import issue, new_claims
    from gated.core import ticket

    issuer, device = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    claims = new_claims(event="E", nbf=0, exp=10**9)
    issued = issue(claims, issuer, dynamic=True, device_key=device)
    assert issued.device_key is device and issued.claims.dev == ticket.raw_public(device.public_key())
    with pytest.raises(ValueError, match="binds a dynamic ticket"):
        issue(claims, issuer, device_key=device)
