"""No tool takes over a running component's session (issue #22, item 3). With the shipped site broker
(client id = certificate CN), a ledger and a gate running: `gated status`, `gated command` and `gated
keys enrol` with the operator's certificate (make-dynsec.py's `operator`) leave both sessions alone
(Mosquitto logs every takeover: "already connected, closing old connection"; none here), and the
same tools given the ledger's or a gate's certificate refuse before connecting, naming it."""

from __future__ import annotations

import subprocess
import threading

import pytest

from gated.cli import main
from gated.gate.store import GateStore
from gated.gate.uplink import Uplink
from gated.mqtturl import parse_broker_url
from tests.conftest import SITE
from tests.support.sites import shipped_site_broker
from tests.support.uplink import LedgerThread, admit, pump
from tests.system.test_broker_acl import GATES, SHIPPED, Client

CLIENTS = (*GATES, "central", "beacon", "ledger", "operator")


@pytest.fixture
def site(tmp_path):
    certs = tmp_path / "certs"
    subprocess.run([str(SHIPPED / "make-test-ca.sh"), str(certs), *CLIENTS], check=True, capture_output=True)
    broker = shipped_site_broker(tmp_path / "broker", certs, list(GATES))
    broker.config.write_text(broker.config.read_text() + "log_type information\n")
    broker.start()
    broker.certs = certs
    yield broker
    broker.stop()


def tls(broker, who: str) -> list[str]:
    c = broker.certs
    return ["--broker", f"mqtts://127.0.0.1:{broker.port}", "--ca", f"{c}/ca.crt", "--cert", f"{c}/{who}.crt"]


def test_tools_with_the_operator_certificate_take_no_session(site, tmp_path, authority, capsys):
    c = site.certs
    with GateStore(tmp_path / "g1.db", site=SITE, gate="g1") as store:
        admit(store)
        settings = parse_broker_url(
            f"mqtts://127.0.0.1:{site.port}?ca={c}/ca.crt&cert={c}/g1.crt&key={c}/g1.key", reconnect_min_s=0.1
        )
        uplink = Uplink(store=store, keyring=authority.keyring, settings=settings, site=SITE, gate="g1")
        ledger_url = f"mqtts://127.0.0.1:{site.port}?ca={c}/ca.crt&cert={c}/ledger.crt&key={c}/ledger.key"
        with LedgerThread(tmp_path / "ledger.db", ledger_url, SITE) as ledger:
            uplink.start()
            try:
                pump([uplink], lambda: uplink.connected and ledger.count() == 1, what="g1 online, its event stored")
                for who in ("ledger", "g1"):  # a running component's certificate: refused, before connecting
                    assert main(["status", *tls(site, who), "--key", f"{c}/{who}.key", "--site", SITE]) == 2
                    assert f"is the certificate of '{who}'" in capsys.readouterr().err
                assert main(
                    ["status", *tls(site, "operator"), "--key", f"{c}/operator.key", "--site", SITE, "--json"]
                ) in (0, 1)
                assert '"gate": "g1"' in capsys.readouterr().out
                assert main(
                    [
                        "keys",
                        "enrol",
                        *tls(site, "operator"),
                        "--key",
                        f"{c}/operator.key",
                        "--site",
                        SITE,
                        "--keyring",
                        str(tmp_path / "ring"),
                    ]
                ) in (0, 1)
                stop = threading.Event()
                poller = threading.Thread(target=lambda: [uplink.poll(0.05) for _ in iter(stop.is_set, True)])
                poller.start()  # the gate's owner loop, while `gated command` waits for its acknowledgement
                try:
                    command = main(
                        [
                            "command",
                            *tls(site, "operator"),
                            "--key",
                            f"{c}/operator.key",
                            "--site",
                            SITE,
                            "--signing-key",
                            str(authority.key_dir / "command.key"),
                            "--timeout",
                            "15",
                            "g1",
                            "open",
                        ]
                    )
                finally:
                    stop.set()
                    poller.join(10)
                assert command == 0
                # what a takeover looks like in the log: a second connection with g2's certificate
                first, second = Client(site, "g2"), Client(site, "g2")
                first.close()
                second.close()
            finally:
                uplink.stop()
    log = site.log.read_text(errors="replace")
    assert "operator" in log  # the tools did connect (information level is on)
    takeovers = [line for line in log.splitlines() if "already connected, closing old connection" in line]
    assert any("g2" in line for line in takeovers), log[-3000:]  # the check can see one
    assert not [line for line in takeovers if "ledger" in line or "g1" in line], takeovers
