"""The test and simulator Mosquitto (sim/broker.py): a broker whose port another one holds does
not take that one's listener for its own, and no two brokers of a process get the same port."""

from __future__ import annotations

import pytest

from sim.broker import BrokerError, Mosquitto, free_port


def test_a_broker_whose_port_is_taken_says_so_instead_of_using_the_other(tmp_path):
    """The bridge test once failed this way: the site broker, given the central broker's port, took
    the central's listener for its own; the gates connected to the central and were refused."""
    first = Mosquitto(tmp_path / "first").start()
    second = Mosquitto(tmp_path / "second", port=first.port)
    try:
        with pytest.raises(BrokerError, match="Address already in use"):
            second.start()
        assert not second.running and first.running
    finally:  # the second too: the old start() returned, and it took the port once the first stopped
        second.stop()
        first.stop()


def test_free_ports_are_not_handed_out_twice():
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
