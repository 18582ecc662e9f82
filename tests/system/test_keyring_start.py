"""`gated run` with a hand-edited keyring whose fields have the wrong type: start-up fails, exit 2,
with the keyring's problems logged (before: an AttributeError traceback from the loader)."""

from __future__ import annotations

from gated import keys
from tests.support.gatedaemon import GateProcess, gate_config, write_config


def test_a_keyring_with_an_unquoted_time_stops_start_up_with_its_problem(tmp_path):
    ring = tmp_path / "keyring"
    keys.generate_key_files(ring, "box")
    (ring / "keyring.toml").write_text(
        '[[key]]\nname = "box"\nfile = "box.pub"\nroles = ["issuer"]\nnot_after = 1700000000\n'
    )
    cfg = gate_config(
        tmp_path,
        keyring=ring,
        broker_url="mqtt://127.0.0.1:1",
        camera_source="synthetic:",
        site="arena",
        gate="g1",
        event="E",
    )
    gate = GateProcess(write_config(tmp_path / "gated.toml", cfg)).start()
    assert gate.process.wait(60) == 2
    gate._reader.join(5)
    failed = gate.logged("gate cannot run")
    assert failed and "key[0] (box): not_after: must be an ISO 8601 time in quotes" in failed[0]["error"], gate.raw
    assert not any("Traceback" in line for line in gate.raw)
