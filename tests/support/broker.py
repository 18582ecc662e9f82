"""The tests' Mosquitto is the simulator's (sim/broker.py): loopback only, a free port, persistence
in a temp dir, so it can be stopped and restarted with its retained messages and queued sessions."""

from sim.broker import BrokerError, Mosquitto as Broker, free_port  # noqa: F401
