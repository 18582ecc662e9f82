"""gated/cli/stopping.py: SIGTERM and Ctrl-C stop a long-running command between two steps; a second
Ctrl-C interrupts; the handlers are put back; from another thread nothing is touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from gated.cli.stopping import stop_on_signals
from gated.topics import command_topic
from sim.broker import free_port
from tests.conftest import SITE
from tests.support.uplink import Listener


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_sets_the_stop_and_the_handlers_are_put_back(signum):
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with stop_on_signals() as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), signum)
        assert stop.wait(5)  # set, and no exception raised here
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_second_ctrl_c_interrupts_a_stop_that_hangs():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with stop_on_signals() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.wait(5)
            os.kill(os.getpid(), signal.SIGINT)
            threading.Event().wait(5)  # the stop hanging: the second Ctrl-C ends the wait
    assert signal.getsignal(signal.SIGINT) == before


def test_from_another_thread_nothing_is_touched():
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def run():
        with stop_on_signals() as stop:
            seen.append((stop.is_set(), signal.getsignal(signal.SIGTERM)))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(5)
    assert seen == [(False, before)]


def test_a_ledger_still_waiting_for_its_broker_stops_at_once(tmp_path):
    """Ctrl-C while `gated ledger` waits for its first subscription (nothing listens on the port): it
    stops then, with its summary, instead of after the 10 s wait and the broker probe."""
    ledger = subprocess.Popen(
        [sys.executable, "-m", "gated.cli", "ledger", "--broker", f"mqtt://127.0.0.1:{free_port()}"]
        + ["--site", SITE, "--db", str(tmp_path / "ledger.db")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        said = ledger.stderr.readline()  # "ledger: URL site S -> DB": its handlers are in place
        assert said.startswith("ledger: mqtt://"), said
        ledger.send_signal(signal.SIGINT)
        err = ledger.communicate(timeout=6)[1]
    finally:
        ledger.kill()
    assert ledger.returncode == 0, err
    assert "ledger: 0 messages" in err and "not connected after" not in err


def test_a_command_stopped_while_it_waits_for_the_acknowledgement_says_what_it_knows(tmp_path, broker):
    """Ctrl-C while `gated command` waits for a gate's acknowledgement (a gate that is not there): it
    stops then, says the broker has the command and no acknowledgement came, and exits 130; it does
    not wait out its --timeout, and ends without a traceback."""
    from gated.cli.main import main

    assert main(["keys", "generate", "--out", str(tmp_path / "k"), "--name", "command"]) == 0
    listener = Listener(broker.port, command_topic(SITE, "gate-nobody"))
    command = subprocess.Popen(
        [sys.executable, "-m", "gated.cli", "command", "--broker", broker.url, "--site", SITE, "--timeout", "60"]
        + ["--signing-key", str(tmp_path / "k" / "command.key"), "gate-nobody", "lock"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sent = time.monotonic() + 30
        while not listener.on(command_topic(SITE, "gate-nobody")):  # connected, settled, the command sent
            assert time.monotonic() < sent and command.poll() is None, "the command was never sent"
            time.sleep(0.05)
        command.send_signal(signal.SIGINT)
        out, err = command.communicate(timeout=10)
    finally:
        command.kill()
        listener.close()
    assert command.returncode == 130, out + err
    assert "gate-nobody  lock: NOT CONFIRMED  stopped waiting before its acknowledgement came" in out, out + err
    assert "Traceback" not in err, err
