"""A site's TLS certificates for its broker (systemd/mosquitto/), made with cryptography's x509.

    OUTDIR/ca.crt, ca.key            the site CA (EC P-256, 10 years); made once, reused after
    OUTDIR/server.crt, server.key    the broker: CN and SAN = the server name, plus localhost and 127.0.0.1
    OUTDIR/<client>.crt, .key        one per client: CN = the client name, which the broker takes as the
                                     user name (use_identity_as_username): a gate's id (g1, n-03...),
                                     `central` (publisher, commands, beacons), `ledger`

The same layout as systemd/mosquitto/make-test-ca.sh. Private keys are written 0600 (never
replaced: an existing client's files are kept unless `renew`), certificates 0644. A real site keeps
ca.key off the network once its gates have their certificates.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gated.atomicfile import write_atomic
from gated.core.errors import GatedError

NAME = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
)  # as gated.gate.config.NAME: safe as a topic level and file name
CA_DAYS, LEAF_DAYS = 3650, 825


class CertError(GatedError, ValueError):
    """A name or directory that cannot be used; the message says what to change."""


@dataclass
class Made:
    created: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)


def _write_key(path: Path, key) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_atomic(path, pem, mode=0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    write_atomic(path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)  # a little slack for clocks behind


def _load_ca(out: Path):
    try:
        key = serialization.load_pem_private_key((out / "ca.key").read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    except (OSError, ValueError) as exc:
        raise CertError(f"{out}: ca.key/ca.crt unusable ({exc}); move them away to make a new CA") from None
    return key, cert


def _make_ca(out: Path, site: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"gated {site} CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now())
        .not_valid_after(_now() + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(out / "ca.key", key)
    _write_cert(out / "ca.crt", cert)


def _leaf(out: Path, ca_key, ca_cert, stem: str, cn: str, usage, sans=None) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now())
        .not_valid_after(_now() + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_key(out / f"{stem}.key", key)
    _write_cert(out / f"{stem}.crt", cert)


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make_site_certs(
    out: str | os.PathLike,
    clients: list[str],
    *,
    site: str = "site",
    server_name: str | None = None,
    renew: bool = False,
) -> Made:
    """The CA (if absent), the broker's certificate (if absent, or when `server_name` is given),
    and one client certificate per name (kept if present, unless `renew`)."""
    out = Path(out)
    for client in clients:
        if not NAME.match(client) or client in ("ca", "server"):
            raise CertError(f"{client!r} cannot be a client name: letters, digits, . _ - (up to 64), not ca/server")
    out.mkdir(parents=True, exist_ok=True)
    made = Made()
    if not (out / "ca.key").exists():
        _make_ca(out, site)
        made.created += [out / "ca.crt", out / "ca.key"]
    else:
        made.kept.append(out / "ca.crt")
    ca_key, ca_cert = _load_ca(out)
    if server_name is not None or not (out / "server.crt").exists():
        server = server_name or "localhost"
        sans = [_san(server)] + [x509.DNSName("localhost")] * (server != "localhost")
        if server != "127.0.0.1":
            sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        _leaf(out, ca_key, ca_cert, "server", server, ExtendedKeyUsageOID.SERVER_AUTH, sans)
        made.created.append(out / "server.crt")
    else:
        made.kept.append(out / "server.crt")
    for client in clients:
        if (out / f"{client}.crt").exists() and not renew:
            made.kept.append(out / f"{client}.crt")
            continue
        _leaf(out, ca_key, ca_cert, client, client, ExtendedKeyUsageOID.CLIENT_AUTH)
        made.created.append(out / f"{client}.crt")
    return made
