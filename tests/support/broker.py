"""The tests' Mosquitto is the simulator's (sim/broker.py): loopback only, a free port, persistence
in a temp dir, so it can be stopped and restarted with its retained messages and queued sessions."""

from sim.broker import BrokerError, free_port
from sim.broker import Mosquitto as Broker

__all__ = ["Broker", "BrokerError", "free_port"]
