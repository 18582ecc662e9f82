"""Mistakes caught before the gates open: each of the ones that used to pass every check is named by
`gated check-config` or `gated doctor`, against the shipped site broker (real Mosquitto, TLS, the
dynamic-security rules) with the certificates `gated certs` writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gated.cli import main
from tests.conftest import EVENT, SITE
from tests.support.gatedaemon import gate_config, write_config
from tests.support.sites import shipped_site_broker

GATED = Path(sys.executable).parent / "gated"
CHECKS = [
    "--skip",
    "camera",
    "--skip",
    "decoder",
    "--skip",
    "gpio",
    "--skip",
    "clock",
    "--skip",
    "state",
    "--skip",
    "revocations",
    "--skip",
    "disk",
]


@pytest.fixture
def certs(tmp_path):
    out = tmp_path / "certs"
    assert main(["certs", "--out", str(out), "--site", SITE, "n1", "north-1", "central", "ledger"]) == 0
    return out


@pytest.fixture
def site_broker(tmp_path, certs):
    broker = shipped_site_broker(tmp_path / "broker", certs, ["n1"])
    broker.start()
    yield broker
    broker.stop()


def tls_config(tmp_path, authority, port, certs, *, gate="n1", cert="n1", ca=None, **mqtt) -> Path:
    tls = {"ca_file": str(ca or certs / "ca.crt")}
    if cert:
        tls.update(cert_file=str(certs / f"{cert}.crt"), key_file=str(certs / f"{cert}.key"))
    cfg = gate_config(
        tmp_path,
        keyring=authority.keyring_dir,
        broker_url=f"mqtts://127.0.0.1:{port}",
        camera_source="synthetic:",
        site=SITE,
        gate=gate,
        event=EVENT,
    )
    cfg["mqtt"]["tls"] = tls
    cfg["mqtt"].update(mqtt)
    for key, value in list(cfg["mqtt"]["tls"].items()):
        if value is None:
            del cfg["mqtt"]["tls"][key]
    return write_config(tmp_path / "gated.toml", cfg)


def check_config(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(GATED),
            "check-config",
            str(path),
            "--user",
            os.environ.get("USER") or __import__("pwd").getpwuid(os.geteuid()).pw_name,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def doctor(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(GATED), "doctor", "--config", str(path), "--timeout", "3", *CHECKS],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"},
    )


def broker_line(result) -> str:
    found = [line for line in result.stdout.splitlines() if line[6:17].strip() == "broker"]
    assert len(found) == 1, result.stdout + result.stderr
    return found[0]


def test_a_ready_gate_publishes_and_subscribes_as_itself(tmp_path, authority, site_broker, certs):
    result = doctor(tls_config(tmp_path, authority, site_broker.port, certs))
    line = broker_line(result)
    assert line.startswith("ok ") and "connected as gate n1" in line and "test publish and subscribe" in line, line
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_key_path_is_named_by_check_config_and_doctor(tmp_path, authority, site_broker, certs):
    config = tls_config(tmp_path, authority, site_broker.port, certs)
    text = config.read_text().replace(str(certs / "n1.key"), str(certs / "n1-typo.key"))
    config.write_text(text)
    result = check_config(config)
    assert result.returncode == 1
    assert f"mqtt.tls.key_file: {certs / 'n1-typo.key'}: no such file" in result.stderr, result.stderr
    line = broker_line(doctor(config))
    assert line.startswith("FAIL") and str(certs / "n1-typo.key") in line and "Errno" not in line, line


def test_a_certificate_for_another_gate_is_named(tmp_path, authority, site_broker, certs):
    config = tls_config(tmp_path, authority, site_broker.port, certs, cert="north-1")
    result = check_config(config)
    assert result.returncode == 1
    assert "certificate CN north-1 ≠ [gate] id n1" in result.stderr, result.stderr
    line = broker_line(doctor(config))
    assert line.startswith("FAIL") and "certificate CN north-1 ≠ [gate] id n1" in line, line


def test_leftover_password_keys_beside_certificates_are_a_warning_not_a_missing_file(
    tmp_path, authority, site_broker, certs
):
    config = tls_config(
        tmp_path, authority, site_broker.port, certs, username="n1", password_file=str(tmp_path / "no-such-password")
    )
    result = check_config(config)
    assert result.returncode == 0, result.stderr
    assert "mqtt.username: username, password_file do nothing with a client certificate" in result.stderr
    assert "remove them" in result.stderr
    out = doctor(config)
    assert "warn  config" in out.stdout and "password_file do nothing" in out.stdout, out.stdout
    assert broker_line(out).startswith("ok "), out.stdout


def test_a_refused_port_is_named(tmp_path, authority, certs):
    from tests.support.broker import free_port

    line = broker_line(doctor(tls_config(tmp_path, authority, free_port(), certs)))
    assert line.startswith("FAIL") and "connection refused" in line and "no broker listens" in line, line


def test_a_ca_that_did_not_sign_the_broker_is_our_side(tmp_path, authority, site_broker, certs):
    other = tmp_path / "other-ca"
    assert main(["certs", "--out", str(other), "x"]) == 0
    line = broker_line(doctor(tls_config(tmp_path, authority, site_broker.port, certs, ca=other / "ca.crt")))
    assert line.startswith("FAIL") and "TLS verification failed on our side" in line, line
    assert f"not signed by the CA file {other / 'ca.crt'}" in line, line


def test_a_missing_client_certificate_is_named(tmp_path, authority, site_broker, certs):
    line = broker_line(doctor(tls_config(tmp_path, authority, site_broker.port, certs, cert=None)))
    assert line.startswith("FAIL") and "requires a client certificate and none was given" in line, line


def test_a_client_certificate_from_another_ca_is_the_brokers_side(tmp_path, authority, site_broker, certs):
    other = tmp_path / "other-ca"
    assert main(["certs", "--out", str(other), "n1"]) == 0
    config = tls_config(tmp_path, authority, site_broker.port, certs)
    config.write_text(config.read_text().replace(str(certs / "n1."), str(other / "n1.")))
    line = broker_line(doctor(config))
    assert line.startswith("FAIL") and "TLS verification failed on the broker's side" in line, line


def test_a_gate_the_rules_do_not_know_is_not_authorised(tmp_path, authority, site_broker, certs):
    # north-1 has a certificate from the site CA but no access rules: connect works, publishing does not
    line = broker_line(doctor(tls_config(tmp_path, authority, site_broker.port, certs, gate="north-1", cert="north-1")))
    assert line.startswith("FAIL") and "not authorised" in line and "make-dynsec.py" in line, line


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to judge for another user")
def test_a_key_the_service_user_cannot_read_is_named(tmp_path, authority, certs):
    import shutil
    import tempfile

    place = Path(tempfile.mkdtemp(dir="/tmp"))  # tmp_path's parents are root's own (0700)
    try:
        os.chmod(place, 0o755)
        shutil.copytree(certs, place / "certs")
        shutil.copytree(authority.keyring_dir, place / "keyring")
        for path in [place / "certs", place / "keyring", *(place / "keyring").iterdir()]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        config = tls_config(place, authority, 8883, place / "certs")
        config.write_text(config.read_text().replace(str(authority.keyring_dir), str(place / "keyring")))
        key = place / "certs" / "n1.key"
        os.chmod(key, 0o600)  # root's own: the service user (here: nobody) cannot read it
        result = subprocess.run(
            [str(GATED), "check-config", str(config), "--user", "nobody"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 1
        assert f"mqtt.tls.key_file: {key}: not readable by user nobody" in result.stderr, result.stderr
        os.chmod(key, 0o644)
        again = subprocess.run(
            [str(GATED), "check-config", str(config), "--user", "nobody"], capture_output=True, text=True, timeout=60
        )
        assert again.returncode == 0, again.stderr
    finally:
        shutil.rmtree(place)


def test_gated_run_and_status_name_the_cause(tmp_path, authority, site_broker, certs):
    from tests.support.gatedaemon import GateProcess

    config = tls_config(tmp_path, authority, site_broker.port, certs)
    config.write_text(config.read_text().replace(str(certs / "n1.key"), str(certs / "gone.key")))
    gate = GateProcess(config).start()
    try:
        failed = gate.wait_for(lambda: gate.logged("gate cannot run"), 60, "gate cannot run")
    finally:
        gate.stop_quietly()
    assert f"client key {certs / 'gone.key'}: no such file" in failed[0]["error"], failed

    other = tmp_path / "other-ca"
    assert main(["certs", "--out", str(other), "x"]) == 0
    status = subprocess.run(
        [
            str(GATED),
            "status",
            "--broker",
            f"mqtts://127.0.0.1:{site_broker.port}",
            "--ca",
            str(other / "ca.crt"),
            "--cert",
            str(certs / "central.crt"),
            "--key",
            str(certs / "central.key"),
            "--site",
            SITE,
            "--timeout",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 2 and "TLS verification failed on our side" in status.stderr, status.stderr
