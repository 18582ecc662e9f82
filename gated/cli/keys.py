"""`gated keys generate|trust|list`: make key pairs and keep the gate's keyring."""

from __future__ import annotations

import sys

from gated import keys
from gated.cli.main import CommandError, iso_option
from gated.cli.options import number


def register(sub) -> None:
    parser = sub.add_parser("keys", help="make key pairs, trust public keys, list a keyring")
    keys_sub = parser.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    gen = keys_sub.add_parser("generate", help="make an Ed25519 key pair (NAME.key mode 0600, NAME.pub)")
    gen.add_argument("--out", required=True, help="directory for the key files")
    gen.add_argument("--name", required=True)
    gen.set_defaults(func=generate)

    trust = keys_sub.add_parser("trust", help="add a public key to a keyring with a role")
    trust.add_argument("--keyring", required=True)
    trust.add_argument("--role", required=True, choices=keys.ROLES)
    trust.add_argument("--name", help="name in the keyring (default: file name)")
    trust.add_argument("--event", action="append", default=[], help="issuer scope: event id it may sign for (repeat)")
    trust.add_argument("--not-before", help="ISO 8601 start of the key's signing window")
    trust.add_argument("--not-after", help="ISO 8601 end of the key's signing window")
    trust.add_argument(
        "--replace",
        action="store_true",
        help="the name already holds a different key: drop it (and its roles, events, window) for this one",
    )
    trust.add_argument("pubfile")
    trust.set_defaults(func=trust_key)

    lst = keys_sub.add_parser("list", help="list the keys of a keyring")
    lst.add_argument("--keyring", required=True)
    lst.set_defaults(func=list_keys)

    dev = keys_sub.add_parser("device", help="print a gate's device public key (PEM) for the central keyring")
    dev.add_argument("--state", required=True, help="the gate's state database")
    dev.set_defaults(func=device_key)

    from gated.mqtturl import add_broker_arguments

    enrol = keys_sub.add_parser(
        "enrol",
        help="list the device keys gates announce in their status; approve one by kid into the ledger's keyring",
    )
    add_broker_arguments(enrol)
    enrol.add_argument("--site", required=True)
    enrol.add_argument("--keyring", required=True, help="the ledger's keyring (created if absent)")
    enrol.add_argument(
        "--approve",
        action="append",
        default=[],
        metavar="KID",
        help="trust the key with this kid (as the gate shows it: `gated keys device`) (repeat)",
    )
    enrol.add_argument(
        "--replace", action="store_true", help="let an approved key replace another key trusted for the same gate"
    )
    enrol.add_argument("--timeout", type=number(), default=10.0, help="seconds to wait for the broker (default 10)")
    enrol.set_defaults(func=enrol_keys)


def generate(args) -> int:
    try:
        private_path, public_path = keys.generate_key_files(args.out, args.name)
    except FileExistsError:
        raise CommandError(f"{args.out}/{args.name}.key exists; pick another --name or remove it first") from None
    print(f"private key {private_path} (mode 0600: keep it off the gates)\npublic key  {public_path}")
    return 0


def trust_key(args) -> int:
    try:
        key = keys.trust_key_file(
            args.keyring,
            args.pubfile,
            args.role,
            name=args.name,
            events=args.event,
            not_before=iso_option(args.not_before, "--not-before"),
            not_after=iso_option(args.not_after, "--not-after"),
            replace=args.replace,
        )
    except keys.KeyringError as exc:  # names the keyring file (or the name) itself
        raise CommandError(str(exc)) from None
    except ValueError as exc:
        raise CommandError(f"{args.pubfile}: {exc}") from None
    print(f"trusted {key.name} (kid {key.kid.hex()}) as {', '.join(sorted(key.roles))} in {args.keyring}")
    return 0


def list_keys(args) -> int:
    ring = keys.load_keyring(args.keyring)
    print(f"{'name':24} {'kid':16}  {'roles':28} scope")
    for key in ring.keys:
        scope = []
        if key.events:
            scope.append("events " + ",".join(sorted(key.events)))
        if key.not_before is not None:
            scope.append("from " + keys.format_time(key.not_before))
        if key.not_after is not None:
            scope.append("until " + keys.format_time(key.not_after))
        print(f"{key.name:24} {key.kid.hex():16}  {','.join(sorted(key.roles)):28} {'; '.join(scope) or 'any'}")
    return 0


def device_key(args) -> int:
    """The device key is made on the gate's first start and kept in its state DB (never leaves it)."""
    from pathlib import Path

    from gated.gate.store import GateStore

    if not Path(args.state).is_file():
        raise CommandError(f"{args.state}: no gate state here (the gate makes it, and its key, on first start)")
    with GateStore(args.state) as store:
        print(keys.public_pem(store.device_public_key).decode(), end="")
        print(
            f"# kid {keys.kid_of(store.device_public_key).hex()} (what `gated keys enrol` lists for this gate)",
            file=sys.stderr,
        )
        print(
            f"# gate {store.gate} at site {store.site}: trust it with "
            f"`gated keys trust --keyring DIR --role device --name {store.gate} FILE`",
            file=sys.stderr,
        )
    return 0


def enrol_keys(args) -> int:
    from pathlib import Path

    from gated.central.fleet import FleetError, announcements, approve
    from gated.cli.fleet import STOPPED, _watch
    from gated.cli.stopping import stop_on_signals

    keyring = keys.load_keyring(args.keyring) if (Path(args.keyring) / keys.KEYRING_FILE).exists() else None
    with stop_on_signals() as stopped:
        watch = _watch(args, stopped)
        watch.stop()
    if stopped.is_set():  # the gates' announcements not all read: approve nothing
        print("gated keys enrol: stopped before the gates' status was read: nothing approved", file=sys.stderr)
        return STOPPED
    found = announcements(watch.views, keyring)
    wanted = {kid.lower() for kid in args.approve}
    by_kid = {a.kid: a for a in found if a.kid}
    missing = sorted(wanted - set(by_kid))
    if missing:
        raise CommandError(
            f"no gate at {args.site} announces kid {', '.join(missing)} "
            f"(announced: {', '.join(sorted(by_kid)) or 'none'})"
        )
    for kid in sorted(wanted):
        try:
            approve(args.keyring, by_kid[kid], replace=args.replace)
        except FleetError as exc:
            raise CommandError(str(exc)) from None
        print(f"approved {by_kid[kid].gate} kid {kid}: trusted as its device key in {args.keyring}")
    if wanted:
        found = announcements(watch.views, keys.load_keyring(args.keyring))
    if not found:
        print(f"no gate status at site {args.site} yet")
    for a in found:
        what = {
            "new": f"new: approve with --approve {a.kid}",
            "trusted": "trusted",
            "different": f"DIFFERENT from the trusted key (kid {a.trusted_kid})",
            "unusable": f"unusable: {a.problem}",
        }[a.state]
        print(f"{a.gate}  kid {a.kid or '-'}  {what}")
    return 0
