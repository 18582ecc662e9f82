"""`gated admissions publish`: the ledger's signed admissions snapshot of an event, for replaced gates
(docs/install-pi.md, "Replacing a gate"; gated/central/admissions.py)."""

from __future__ import annotations

import time
from pathlib import Path

from gated.cli.main import CommandError


def register(sub) -> None:
    from gated.cli.options import add_signing_key
    from gated.mqtturl import add_broker_arguments

    parser = sub.add_parser(
        "admissions", help="publish the ledger's admissions snapshot (a replaced gate recovers which tickets were used)"
    )
    actions = parser.add_subparsers(dest="admissions_command", required=True, metavar="ACTION")
    pub = actions.add_parser("publish", help="sign the admissions of an event and publish them, retained")
    pub.add_argument("--db", required=True, help="the ledger (SQLite file or postgresql:// URL)")
    pub.add_argument("--site", required=True)
    pub.add_argument("--event", required=True, action="append", help="event id (ticket aud) (repeat)")
    add_signing_key(pub, "a revocation private key (the gates trust it as `revocation`)", trap_key=False)
    pub.add_argument("--out", help="also write the parts to this directory")
    add_broker_arguments(pub, required=False)
    pub.set_defaults(func=publish)


def publish(args) -> int:
    from gated import keys
    from gated.atomicfile import write_atomic
    from gated.central import admissions
    from gated.central.ledger import Ledger, LedgerError
    from gated.central.ledgerdb import ledger_exists
    from gated.cli.options import SigningKeyMissing, signing_key
    from gated.core import snapshot
    from gated.core.events import is_name
    from gated.identity import ComponentIdentity, refuse_component_identity
    from gated.mqtturl import BrokerUrlError, settings_from_args

    if not args.broker and not args.out:
        raise CommandError("give --broker (publish to the gates) and/or --out DIR")
    for event in args.event:
        if not is_name(event):  # its topic level (and --out's file name)
            raise CommandError(
                f"--event {event[:64]!r}: an event id that is empty, over 128 characters or holds / + # or NUL "
                'has no admissions topic (docs/protocol.md, "Replacing a gate")'
            )
    if not ledger_exists(args.db):
        raise CommandError(f"{args.db}: no ledger here")
    try:
        path = signing_key(args)
        key = keys.load_private_key(path)
    except SigningKeyMissing as exc:
        raise CommandError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise CommandError(f"--signing-key {path}: {exc}") from None
    try:
        settings = settings_from_args(args) if args.broker else None
        if settings is not None:
            refuse_component_identity(settings, "admissions publish")
    except (BrokerUrlError, ComponentIdentity) as exc:
        raise CommandError(str(exc)) from None
    try:
        with Ledger(args.db, site=args.site) as ledger:
            taken = {event: admissions.collect(ledger, event) for event in args.event}
    except LedgerError as exc:
        raise CommandError(str(exc)) from None
    version = time.time_ns() // 1_000_000
    for event, found in taken.items():
        blobs = snapshot.encode(
            key, site=args.site, event=event, version=version, admissions=found, iat=int(time.time())
        )
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            for i, blob in enumerate(blobs):
                write_atomic(Path(args.out) / f"admissions-{event}-{version}-{i}.cose", blob)
        if settings is not None:
            try:
                admissions.publish(settings, args.site, event, blobs)
            except admissions.SnapshotError as exc:
                raise CommandError(str(exc)) from None
        print(
            f"event {event}: {len(found)} admissions in {len(blobs)} part(s), version {version}"
            + (" published" if settings is not None else "")
        )
    return 0
