"""Device set-up the pretix way, against the real pretix: `gated pretix init` with a device's one-time
token, sync with the device's API token, the sync as a service that stops cleanly on SIGTERM, and a
revoked device said in words."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request

from tests.pretix.test_pretix_venue import ROOT, gated


def test_init_then_sync_every_then_revoked(tmp_path, pretix):
    pretix.order("adult")  # the event's key exists
    device = pretix.organizer_call(
        "POST",
        "devices/",
        {"name": "box office", "all_events": True, "limit_events": [], "security_profile": "pretixscan"},
    )
    token_file = tmp_path / "dev" / "pretix-device.token"
    init = ["pretix", "init", "--url", pretix.url, "--insecure-http"]
    done = gated(*init, "--token", device["initialization_token"], "--device-token-file", token_file)
    assert f"of organizer '{pretix.organizer}'" in done.stdout
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    shop = [
        "--url",
        pretix.url,
        "--insecure-http",
        "--organizer",
        pretix.organizer,
        "--event",
        pretix.event,
        "--device-token-file",
        token_file,
    ]
    gated("keys", "generate", "--out", tmp_path / "k", "--name", "rev")
    gated("pretix", "keys", *shop, "--keyring", tmp_path / "ring")

    again = gated(
        *init, "--token", device["initialization_token"], "--device-token-file", tmp_path / "other.token", check=False
    )
    assert again.returncode == 2 and "already been used" in again.stderr, again.stderr
    assert not (tmp_path / "other.token").exists()
    assert "exists" in gated(*init, "--token", "x", "--device-token-file", token_file, check=False).stderr

    sync = [
        *shop,
        "--state",
        tmp_path / "sync.db",
        "--signing-key",
        tmp_path / "k" / "rev.key",
        "--site",
        "arena",
        "--list",
        pretix.checkin_list,
        "--out",
        tmp_path / "out",
    ]
    service = subprocess.Popen(
        [sys.executable, "-m", "gated.cli", "pretix", "sync", *map(str, sync), "--every", "1s"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "out" / "checkin-list.cose").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not (tmp_path / "out" / "checkin-list.cose").exists():
            service.kill()
            raise AssertionError(service.communicate()[1][-3000:])
        time.sleep(2.5)  # more rounds
        service.send_signal(signal.SIGTERM)
        out, err = service.communicate(timeout=60)
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    assert service.returncode == 0, err
    rounds = [line for line in out.splitlines() if "changed orders read" in line]
    assert len(rounds) >= 2 and out.rstrip().endswith("stopped"), out + err

    request = urllib.request.Request(
        f"{pretix.url}/api/v1/device/revoke",
        method="POST",
        data=b"{}",
        headers={"Authorization": f"Device {token_file.read_text().strip()}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        json.loads(response.read() or b"null")
    revoked = gated("pretix", "sync", *sync, check=False)
    assert revoked.returncode == 2 and "revoked" in revoked.stderr and "gated pretix init" in revoked.stderr, (
        revoked.stderr
    )
