"""Real Mosquittos as shipped in systemd/mosquitto/, paths and ports moved to a temporary directory:
one site broker (gated-site.conf with the dynamic-security rules make-dynsec.py writes), or a site
broker bridged over TLS (gated-bridge.conf) to a central broker (gated-central.conf)."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

from tests.support.broker import Broker

SHIPPED = Path(__file__).resolve().parents[2] / "systemd" / "mosquitto"


def localise(config: str, certs: Path, broker: Broker) -> str:
    """A shipped configuration with its certificate and persistence paths and its port moved here."""
    config = config.replace("/etc/mosquitto/gated/", f"{certs}/").replace("/var/lib/mosquitto/", f"{broker.directory}/")
    assert "listener 8883\n" in config
    config = config.replace("listener 8883\n", f"listener {broker.port} 127.0.0.1\n")
    if os.geteuid() == 0:  # mosquitto would drop to user `mosquitto`, who cannot read the temp dir
        config = f"user {pwd.getpwuid(0).pw_name}\n" + config
    return config + "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"


def shipped_site_broker(work: Path, certs: Path, gates: list[str]) -> Broker:
    """A Mosquitto running gated-site.conf as shipped with the rules make-dynsec.py writes for `gates`
    (certificates already in `certs`); not started."""
    subprocess.run(
        [sys.executable, str(SHIPPED / "make-dynsec.py"), str(certs / "dynamic-security.json"), *gates],
        check=True,
        capture_output=True,
    )
    broker = Broker(work)
    broker.config.write_text(localise((SHIPPED / "gated-site.conf").read_text(), certs, broker))
    return broker


class BridgedSite:
    def __init__(self, work: Path, site: str, gates: list[str], ledgers: list[str] = ("ledger",)):
        """`ledgers`: certificate names, each bound at the centre to this site's topics, or to
        another's with NAME=SITE (make-dynsec.py --ledger NAME=SITE)."""
        self.certs = work / "certs"
        clients = [*gates, "central", "beacon", *(n.partition("=")[0] for n in ledgers), f"bridge-{site}"]
        subprocess.run([str(SHIPPED / "make-test-ca.sh"), str(self.certs), *clients], check=True, capture_output=True)
        (self.certs / "central-ca.crt").write_bytes((self.certs / "ca.crt").read_bytes())  # one test CA for both
        (self.certs / "bridge.crt").write_bytes((self.certs / f"bridge-{site}.crt").read_bytes())
        (self.certs / "bridge.key").write_bytes((self.certs / f"bridge-{site}.key").read_bytes())
        os.chmod(self.certs / "bridge.key", 0o600)
        ledger_args = [a for name in ledgers if "=" not in name for a in ("--ledger", name)]
        subprocess.run(
            [
                sys.executable,
                str(SHIPPED / "make-dynsec.py"),
                str(self.certs / "dynamic-security.json"),
                "--site",
                site,
                *ledger_args,
                *gates,
            ],
            check=True,
            capture_output=True,
        )
        bound = [a for name in ledgers for a in ("--ledger", name if "=" in name else f"{name}={site}")]
        subprocess.run(
            [
                sys.executable,
                str(SHIPPED / "make-dynsec.py"),
                str(self.certs / "central-dynsec.json"),
                *bound,
                "--bridge",
                f"bridge-{site}={site}",
            ],
            check=True,
            capture_output=True,
        )
        self.central = Broker(work / "central")
        central_config = localise((SHIPPED / "gated-central.conf").read_text(), self.certs, self.central).replace(
            "dynamic-security.json", "central-dynsec.json"
        )
        self.central.config.write_text(central_config)
        self.site = Broker(work / "site")
        bridge = (
            (SHIPPED / "gated-bridge.conf")
            .read_text()
            .replace("@SITE@", site)
            .replace("@CENTRAL@", f"127.0.0.1:{self.central.port}")
            .replace("restart_timeout 5 60", "restart_timeout 1")
        )
        self.site.config.write_text(
            localise((SHIPPED / "gated-site.conf").read_text(), self.certs, self.site)
            + "\n"
            + bridge.replace("/etc/mosquitto/gated/", f"{self.certs}/")
        )

    def start(self) -> "BridgedSite":
        self.central.start()
        self.site.start()
        return self

    def stop(self) -> None:
        self.site.stop()
        self.central.stop()

    def url(self, broker: Broker, who: str) -> str:
        c = self.certs
        return f"mqtts://127.0.0.1:{broker.port}?ca={c}/ca.crt&cert={c}/{who}.crt&key={c}/{who}.key"
