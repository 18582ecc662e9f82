"""No second process takes a running component's place (issue #22, item 3): a second `gated run` on
one state directory, or a second ledger worker for the same site and partition, refuses to start
before it connects, naming the holder (gated/lockfile.py). Real processes."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.conftest import SITE
from tests.support.gatedaemon import GATED, GateProcess, gate_config, write_config  # noqa: F401


def _ledger(broker, db, *extra) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gated.cli",
            "ledger",
            "--broker",
            broker.url,
            "--site",
            SITE,
            "--db",
            str(db),
            "--workers",
            "1",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_line(proc, text: str, timeout: float = 30.0) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen += line
        if text in line:
            return seen
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no {text!r} from the ledger; it said:\n{seen}")


def _second_ledger_refused(broker, db, *extra):
    first = _ledger(broker, db, *extra)
    try:
        _wait_line(first, "ledger: subscribed")
        second = _ledger(broker, db, *extra)
        _out, err = second.communicate(timeout=60)
        assert second.returncode == 2, err
        assert "already running" in err and ("partition" in err or "site" in err), err
        assert first.poll() is None  # the first keeps running, its session untouched
        other = _ledger(broker, db, "--partition", "1/2") if "--partition" in extra else None
        if other is not None:  # another partition is another role
            try:
                _wait_line(other, "ledger: subscribed")
            finally:
                other.terminate()
                other.wait(20)
    finally:
        first.terminate()
        first.wait(20)


def test_a_second_ledger_worker_for_the_same_partition_refuses_to_start(broker, tmp_path):
    _second_ledger_refused(broker, tmp_path / "ledger.db", "--partition", "0/2")


def test_a_second_whole_ledger_on_one_postgres_refuses_to_start(broker, postgres):
    _second_ledger_refused(broker, postgres.database())


def test_a_second_gated_run_on_one_state_directory_refuses_to_start(tmp_path, broker, authority):
    from tests.system.test_hostile_peers import start_gate

    gate, camera = start_gate(tmp_path, authority, broker)
    try:
        second = subprocess.run(
            [str(GATED), "run", "--config", str(tmp_path / "gated.toml")], capture_output=True, text=True, timeout=60
        )
        assert second.returncode != 0
        assert "gated run for gate g1 is already running (pid" in second.stderr + second.stdout, second.stderr
        assert not gate.logged("uplink disconnected")  # the first kept its session
        assert gate.terminate() == 0
    finally:
        camera.close()
        gate.stop_quietly()


def test_doctor_knows_a_gate_is_running_from_its_lock(tmp_path, broker, authority):
    """`gated doctor` must not log in with a running gate's certificate (the broker would take its CN,
    the gate id, as the client id and knock the gate off): it sees the state directory's lock, and
    then checks only that the broker is reachable (gated/cli/doctor.py check_broker)."""
    from gated.cli.doctor import gate_running
    from gated.gate import config
    from tests.system.test_hostile_peers import start_gate

    gate, camera = start_gate(tmp_path, authority, broker)
    try:
        cfg = config.load(tmp_path / "gated.toml")
        assert gate_running(cfg)
        assert gate.terminate() == 0
        assert not gate_running(cfg)  # the lock went with the process
    finally:
        camera.close()
        gate.stop_quietly()
