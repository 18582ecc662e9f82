"""`gated certs` makes what the shipped site broker configuration (systemd/mosquitto/, as it is in
this tree) accepts: a real Mosquitto with gated-site.conf and make-dynsec.py's rules, a gate uplink under its own
certificate, `gated status` as `operator` (never as the ledger: the tools refuse a component's certificate) and `gated command` as `central`, all over TLS."""

from __future__ import annotations

import json
import shutil
import ssl
import stat
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gated.cli import main
from gated.gate.store import GateStore
from gated.gate.uplink import Uplink
from gated.mqtturl import parse_broker_url
from tests.conftest import SITE
from tests.support.sites import shipped_site_broker
from tests.support.uplink import pump

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "systemd" / "mosquitto"


@pytest.fixture
def certs(tmp_path):
    out = tmp_path / "certs"
    assert main(["certs", "--out", str(out), "--site", SITE, "g1", "g2", "central", "ledger", "operator"]) == 0
    return out


@pytest.fixture
def site_broker(tmp_path, certs):
    """The shipped gated-site.conf with the rules make-dynsec.py writes for g1 and g2, paths and port
    moved to tmp, our certificates."""
    broker = shipped_site_broker(tmp_path / "broker", certs, ["g1", "g2"])
    broker.start()
    yield broker
    broker.stop()


def tls_args(port: int, certs: Path, who: str, key_option: str = "--key") -> list[str]:
    return [
        "--broker",
        f"mqtts://127.0.0.1:{port}",
        "--ca",
        str(certs / "ca.crt"),
        "--cert",
        str(certs / f"{who}.crt"),
        key_option,
        str(certs / f"{who}.key"),
    ]


def test_the_layout_names_and_modes(certs):
    names = sorted(p.name for p in certs.iterdir())
    assert names == sorted(
        ["ca.crt", "ca.key", "server.crt", "server.key"]
        + [f"{c}.{e}" for c in ("g1", "g2", "central", "ledger", "operator") for e in ("crt", "key")]
    )
    for path in certs.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == (0o600 if path.suffix == ".key" else 0o644), path
    g1 = x509.load_pem_x509_certificate((certs / "g1.crt").read_bytes())
    assert g1.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "g1"
    assert ExtendedKeyUsageOID.CLIENT_AUTH in g1.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    ca = x509.load_pem_x509_certificate((certs / "ca.crt").read_bytes())
    g1.verify_directly_issued_by(ca)
    # a second run keeps what exists and adds a gate
    before = (certs / "g1.crt").read_bytes()
    assert main(["certs", "--out", str(certs), "g3"]) == 0
    assert (certs / "g1.crt").read_bytes() == before
    x509.load_pem_x509_certificate((certs / "g3.crt").read_bytes()).verify_directly_issued_by(ca)
    assert main(["certs", "--out", str(certs), "../evil"]) == 2


def connects(port: int, ca: Path, cert: Path, key: Path) -> bool:
    result = threading.Event()
    ok = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(key), cert_reqs=ssl.CERT_REQUIRED)
    client.on_connect = lambda c, u, f, rc, p: (ok.append(not rc.is_failure), result.set())
    client.on_connect_fail = lambda c, u: result.set()
    client.connect_async("127.0.0.1", port)
    client.loop_start()
    result.wait(5)
    client.disconnect()
    client.loop_stop()
    return ok == [True]


def test_a_certificate_from_another_ca_is_refused(site_broker, certs, tmp_path):
    assert connects(site_broker.port, certs / "ca.crt", certs / "g2.crt", certs / "g2.key")
    other = tmp_path / "other"
    assert main(["certs", "--out", str(other), "g2"]) == 0
    assert not connects(site_broker.port, certs / "ca.crt", other / "g2.crt", other / "g2.key")


def test_a_gate_status_and_command_work_through_tls_and_the_shipped_acl(site_broker, certs, tmp_path, authority):
    mode = ["online"]
    applied = []

    def on_command(name):
        applied.append(name)
        mode[0] = {"lock": "locked", "unlock": "online"}.get(name, mode[0])

    with GateStore(tmp_path / "g1.db", site=SITE, gate="g1") as store:
        settings = parse_broker_url(
            f"mqtts://127.0.0.1:{site_broker.port}?ca={certs}/ca.crt&cert={certs}/g1.crt&key={certs}/g1.key",
            reconnect_min_s=0.1,
        )
        uplink = Uplink(
            store=store,
            keyring=authority.keyring,
            settings=settings,
            site=SITE,
            gate="g1",
            on_command=on_command,
            status=lambda: {"state": mode[0]},
        )
        uplink.start()
        try:
            pump([uplink], lambda: uplink.connected, what="g1 connected over TLS")
            uplink.poll(0.3)  # its status (published on connect) on its way
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "gated.cli",
                    "status",
                    "--json",
                    "--site",
                    SITE,
                    *tls_args(site_broker.port, certs, "operator"),
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=60,
            )
            assert out.returncode == 0, out.stderr
            [row] = json.loads(out.stdout)
            assert row["gate"] == "g1" and row["online"] and row["mode"] == "online"
            command = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gated.cli",
                    "command",
                    "--site",
                    SITE,
                    "--signing-key",
                    str(authority.key_dir / "command.key"),
                    *tls_args(site_broker.port, certs, "central"),
                    "g1",
                    "lock",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            pump([uplink], lambda: command.poll() is not None, timeout=60, what="gated command finished")
            stdout, stderr = command.communicate()
        finally:
            uplink.stop()
    assert command.returncode == 0, stdout + stderr
    assert applied == ["lock"] and "g1  lock: ok  now locked" in stdout


def test_private_keys_the_walkthroughs_create_are_ignored_by_git():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for path in (
        "central/box-office.key",
        "central/revocations.key",
        "certs/ca.key",
        "certs/g1.key",
        "site/central/command.key",
    ):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0, path
    assert subprocess.run(["git", "check-ignore", "-q", "gated/central/certs.py"], cwd=ROOT).returncode == 1
