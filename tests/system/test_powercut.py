"""Power cuts on the gate's state (tests/support/powercut.py, tests/support/cutfs.py): a file system
that loses every unsynced write at a random moment, the store restarted on what survived. A few
cuts here; `make test-powercut` makes a few hundred."""

from __future__ import annotations

import os
import random
import shutil

import pytest

from tests.support.powercut import DaemonRig, cut_daemon_once, cut_once


def _fuse_missing() -> str | None:
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
        return "no FUSE here (/dev/fuse and fuse3's fusermount3; `make test-tools` installs fuse3)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy cannot load libfuse3 ({exc})"
    return None


@pytest.mark.skipif(_fuse_missing() is not None, reason=str(_fuse_missing()))
def test_the_state_survives_power_cuts(tmp_path):
    rng = random.Random(25)
    relays = 0
    for _ in range(4):
        relays += cut_once(tmp_path, rng)["relays"]
    assert relays > 0  # the cuts came while the gate was letting people in


@pytest.mark.skipif(_fuse_missing() is not None, reason=str(_fuse_missing()))
def test_gated_run_starts_again_after_power_cuts_with_every_admission_it_let_through(tmp_path):
    """The whole daemon (synthetic camera, mock pins, no broker) on the cut file system: visitors let
    through, the power cut, `gated run` started again on what survived, twice."""
    rig, rng, relays = DaemonRig(tmp_path), random.Random(7), 0
    for _ in range(2):
        relays += cut_daemon_once(rig, rng)["relays"]
    assert relays > 0


@pytest.mark.skipif(_fuse_missing() is not None, reason=str(_fuse_missing()))
def test_the_cut_file_system_loses_what_was_not_synced(tmp_path):
    """The harness itself: a file rewritten in place without fsync (the old `gated keys trust`) is
    empty after the cut; one written with gated.atomicfile is whole."""
    import signal
    import subprocess
    import sys
    import time

    from tests.support.powercut import ROOT, _wait

    card, mount = tmp_path / "card", tmp_path / "mnt"
    card.mkdir()
    mount.mkdir()
    (card / "keyring.toml").write_text("old keyring\n")
    (card / "atomic.toml").write_text("old keyring\n")
    fs = subprocess.Popen([sys.executable, "-m", "tests.support.cutfs", str(card), str(mount)], cwd=ROOT)
    try:
        _wait(lambda: os.path.ismount(mount), 20, "no mount")
        (mount / "keyring.toml").write_text("new keyring\n")  # in place, no fsync
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from gated.atomicfile import write_atomic; "
                f"write_atomic({str(mount / 'atomic.toml')!r}, 'new keyring\\n')",
            ],
            cwd=ROOT,
            check=True,
        )
        time.sleep(0.1)
        fs.send_signal(signal.SIGUSR1)
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mount)], capture_output=True)
        fs.wait(20)
    assert (card / "keyring.toml").read_text() == ""  # what a power cut did to an unsynced rewrite
    assert (card / "atomic.toml").read_text() == "new keyring\n"
    assert sorted(p.name for p in card.iterdir()) == ["atomic.toml", "keyring.toml"]
