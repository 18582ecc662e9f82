"""Shared fixtures: real keys, a real keyring on disk, real SQLite stores in temp dirs.

Topic-specific fixtures (a Mosquitto broker, mock pins) live in tests/support/ and are
imported by the tests that need them."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated import keys
from gated.core import ticket
from gated.core.decide import GateContext
from gated.gate.store import GateStore

os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")

EVENT = "FINAL-2026"
SITE = "arena"


@dataclass
class Authority:
    """The central side's private keys and the gate keyring that trusts their public halves."""

    issuer: Ed25519PrivateKey
    revocation: Ed25519PrivateKey
    command: Ed25519PrivateKey
    keyring: keys.Keyring
    keyring_dir: Path
    key_dir: Path

    def ticket(self, **overrides) -> str:
        return ticket.encode_static(self.claims(**overrides), self.issuer)

    def claims(self, **overrides) -> ticket.Claims:
        now = int(time.time())
        fields = dict(cti=os.urandom(16), aud=EVENT, nbf=now - 3600, exp=now + 3600)
        fields.update(overrides)
        return ticket.Claims(**fields)


@pytest.fixture
def authority(tmp_path) -> Authority:
    key_dir, ring_dir = tmp_path / "keys", tmp_path / "keyring"
    made = {}
    for name, role in (("issuer", "issuer"), ("revocation", "revocation"), ("command", "command")):
        private_path, public_path = keys.generate_key_files(key_dir, name)
        keys.trust_key_file(ring_dir, public_path, role)
        made[name] = keys.load_private_key(private_path)
    from tests.support.uplink import trust_ledger_key

    trust_ledger_key(ring_dir)  # the test ledgers sign committed and occupancy with LEDGER_KEY
    return Authority(keyring=keys.load_keyring(ring_dir), keyring_dir=ring_dir, key_dir=key_dir, **made)


@pytest.fixture
def store(tmp_path):
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g1") as s:
        yield s


@pytest.fixture
def gate_context() -> GateContext:
    return GateContext(site=SITE, events=frozenset({EVENT}), zone="north")


@pytest.fixture
def broker(tmp_path):
    """A running Mosquitto on 127.0.0.1 and a free port (tests.support.broker.Broker)."""
    from tests.support.broker import Broker

    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL cluster for this test process (tests.support.postgres.Postgres); the tests
    that need one are skipped, with why, where it cannot run."""
    from tests.support import postgres as pg

    why = pg.available()
    if why is not None:
        pytest.skip(why)
    server = pg.Postgres().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_db(request, tmp_path):
    """Where a ledger test keeps its ledger: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.db")
    return request.getfixturevalue("postgres").database()
