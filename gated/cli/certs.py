"""`gated certs`: a site CA, the broker's certificate and client certificates (gated/central/certs.py)."""

from __future__ import annotations

from gated.cli.main import CommandError


def register(sub) -> None:
    p = sub.add_parser("certs", help="make a site CA, the broker certificate and client certificates (CN = gate id)")
    p.add_argument(
        "--out",
        required=True,
        help="directory (the layout of systemd/mosquitto/: ca.crt, server.crt, <client>.crt and their .key files)",
    )
    p.add_argument("--site", default="site", help="site name, written into the CA's name")
    p.add_argument(
        "--server-name", help="the broker's host name (its certificate is remade when given; default localhost)"
    )
    p.add_argument("--renew", action="store_true", help="remake the named clients' certificates and keys")
    p.add_argument(
        "clients", nargs="*", metavar="CLIENT", help="gate ids, and `central` and `ledger` for the central side"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from gated.central.certs import CertError, make_site_certs

    try:
        made = make_site_certs(args.out, args.clients, site=args.site, server_name=args.server_name, renew=args.renew)
    except CertError as exc:
        raise CommandError(str(exc)) from None
    for path in made.created:
        print(f"made   {path}")
    for path in made.kept:
        print(f"kept   {path} (exists; --renew remakes a client's)")
    print(
        "broker: copy ca.crt server.crt server.key to /etc/mosquitto/gated/; each gate gets ca.crt and its own "
        "<gate>.crt/.key (docs/central.md). Keep ca.key offline."
    )
    return 0
