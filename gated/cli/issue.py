"""`gated issue`: sign tickets and print their QR texts or write QR images."""

from __future__ import annotations

import time

from gated import keys
from gated.cli.main import CommandError, iso_option
from gated.cli.options import add_signing_key, signing_key


def register(sub) -> None:
    p = sub.add_parser("issue", help="issue signed tickets (QR texts, or PNG images with --out)")
    add_signing_key(p, "issuer private key")
    p.add_argument("--event", required=True, help="event id (aud)")
    p.add_argument("--type", default="general", help="ticket type: adult, child, staff, vip... (default general)")
    p.add_argument("--entries", type=int, default=1, help="admissions allowed, 0 = unlimited (default 1)")
    p.add_argument("--zone", action="append", default=[], help="zone it may enter (repeat; default every zone)")
    p.add_argument("--seat", help="seat label")
    p.add_argument(
        "--reentry",
        action="store_true",
        help="the ticket may come in again after a recorded exit, no entry spent (claim rex, an extension)",
    )
    p.add_argument("--valid-from", help="ISO 8601 (default now)")
    p.add_argument("--valid-until", help="ISO 8601 (default 24 hours after valid-from)")
    p.add_argument("--issuer-name", help="iss claim (informational)")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--dynamic", action="store_true", help="bind each ticket to a new holder-device key (GT2)")
    p.add_argument("--out", help="directory: write PNG QR codes and tickets.csv instead of printing texts")
    p.set_defaults(func=run)


def run(args) -> int:
    from gated.central.issuer import issue, new_claims, write_batch

    if args.count < 1:
        raise CommandError("--count must be at least 1")
    if args.entries < 0:
        raise CommandError("--entries must be 0 (unlimited) or more")
    path = signing_key(args)
    try:
        key = keys.load_private_key(path)
    except ValueError as exc:
        raise CommandError(f"--signing-key {path}: {exc}") from None
    now = int(time.time())
    nbf = iso_option(args.valid_from, "--valid-from", now)
    exp = iso_option(args.valid_until, "--valid-until", nbf + 86400)
    if exp < nbf:
        raise CommandError("--valid-until is before --valid-from")
    try:
        batch = [
            issue(
                new_claims(
                    event=args.event,
                    nbf=nbf,
                    exp=exp,
                    typ=args.type,
                    ent=args.entries,
                    zones=args.zone,
                    seat=args.seat,
                    iss=args.issuer_name,
                    iat=now,
                    rex=args.reentry,
                ),
                key,
                dynamic=args.dynamic,
            )
            for _ in range(args.count)
        ]
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.out:
        csv_path = write_batch(batch, args.out)
        print(f"{len(batch)} ticket(s) written to {args.out} (ids in {csv_path})")
    else:
        if args.dynamic:
            raise CommandError("--dynamic needs --out (each ticket comes with its device key file)")
        for item in batch:
            print(item.text)
    return 0
