"""`gated ledger -v`: one line per stored event; the link's states in words (no paho tuples)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import SITE
from tests.support import gateproc

GATED = Path(sys.executable).parent / "gated"


def test_verbose_ledger_logs_each_stored_event_and_link_states_in_words(tmp_path, broker):
    ledger = subprocess.Popen(
        [
            str(GATED),
            "ledger",
            "-v",
            "--broker",
            broker.url,
            "--site",
            SITE,
            "--db",
            str(tmp_path / "ledger.db"),
            "--exit-after",
            "8",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    try:
        for line in ledger.stderr:  # the events go to whoever is subscribed: wait for the ledger
            seen.append(line)
            if line.startswith("ledger: subscribed"):
                break
        gate = gateproc.spawn(
            "--db",
            str(tmp_path / "g1.db"),
            "--site",
            SITE,
            "--gate",
            "g1",
            "--broker",
            broker.url,
            "--make",
            "3",
            "--exit-when-drained",
        )
        gate.wait(60)
        out, err = ledger.communicate(timeout=60)
    finally:
        if ledger.poll() is None:
            ledger.kill()
    text = "".join(seen) + out + err
    stored = [line for line in text.splitlines() if line.startswith("ledger: stored ")]
    assert [line.split()[2] for line in stored] == ["g1:1", "g1:2", "g1:3"], text
    assert "state online" in stored[0]
    assert "connected, new session" in text or "connected, session resumed" in text, text
    assert "detail=(" not in text and "(1, " not in text, text
