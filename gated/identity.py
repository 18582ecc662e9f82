"""Tools never take over a running component's session (issue #22).

The site broker takes a client certificate's CN as the user name and the client id
(`use_username_as_clientid`), and MQTT makes a second connection with a client id knock the first
one off. So `gated status`, `gated command` and `gated keys enrol` run with the ledger's or a gate's
certificate would disconnect that ledger or gate, and the broker would hand the tool its session.
Mosquitto cannot refuse such a connection (the protocol says the old one goes), so the tools refuse
to connect with a certificate that is not a tool's: `central` or an operator's (CN `operator` or
`operator-<name>`, made by `gated certs`, given read-mostly rights by make-dynsec.py).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

from gated.core.errors import GatedError

TOOL_IDENTITIES = ("central",)  # and every CN that is `operator` or starts with `operator-`


class ComponentIdentity(GatedError, ValueError):
    """A tool was given a running component's certificate; the message names the component."""


def certificate_cn(path: str) -> str | None:
    try:
        cert = x509.load_pem_x509_certificate(open(path, "rb").read())
    except (OSError, ValueError):
        return None  # the TLS layer says what is wrong with it
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def is_tool_identity(cn: str) -> bool:
    return cn in TOOL_IDENTITIES or cn == "operator" or cn.startswith("operator-")


def refuse_component_identity(settings, tool: str) -> None:
    """ComponentIdentity when `settings` log in with a certificate whose CN is not a tool's."""
    if not settings.cert_file:
        return  # no certificate: the tool's own client id (gated-operator-<site>-<pid>) is sent
    cn = certificate_cn(settings.cert_file)
    if cn is None or is_tool_identity(cn):
        return
    raise ComponentIdentity(
        f"{tool}: {settings.cert_file} is the certificate of {cn!r} (a gate, the ledger or the beacon): the broker "
        f"uses its CN as the client id, so connecting would take over {cn!r}'s session and disconnect it. Use an "
        "operator certificate (`gated certs --out DIR operator`, its rules from make-dynsec.py), or `central`"
    )
