"""`gated pretix init|keys|sync|upload`: a venue selling with pretix (docs/pretix.md)."""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from gated.atomicfile import write_atomic
from gated.cli.main import CommandError
from gated.cli.options import YEAR_S
from gated.core.errors import undecodable


def _shop_options(p, *, event: bool = True) -> None:
    p.add_argument("--url", required=True, help="the pretix server, e.g. https://pretix.eu")
    p.add_argument("--organizer", required=True, help="the organizer's short form (slug)")
    p.add_argument("--event", required=True, help="the event's short form (slug); also the gates' event id")
    auth = p.add_mutually_exclusive_group(required=True)
    auth.add_argument("--token-file", help="file holding a team API token (pretix: token authentication)")
    auth.add_argument("--device-token-file", help="file holding a device's API token (pretix: device authentication)")
    p.add_argument(
        "--insecure-http",
        action="store_true",
        help="allow a plain http:// URL (a test shop on 127.0.0.1 only: the token and keys cross unprotected)",
    )


def register(sub) -> None:
    from gated.mqtturl import add_broker_arguments

    parser = sub.add_parser("pretix", help="tickets sold with pretix: event keys, revocations, admissions")
    pretix_sub = parser.add_subparsers(dest="pretix_command", required=True, metavar="ACTION")

    i = pretix_sub.add_parser("init", help="initialize this machine as a pretix device (pretix's device handshake)")
    i.add_argument("--url", required=True, help="the pretix server, e.g. https://pretix.eu")
    i.add_argument("--token", required=True, help="the device's initialization token (pretix: Organizer -> Devices)")
    i.add_argument(
        "--insecure-http",
        action="store_true",
        help="allow a plain http:// URL (a test shop on 127.0.0.1 only: the token crosses unprotected)",
    )
    i.add_argument(
        "--device-token-file",
        default="pretix-device.token",
        help="where to keep the device's API token (mode 0600; default pretix-device.token)",
    )
    i.set_defaults(func=run_init)

    k = pretix_sub.add_parser("keys", help="trust the event's pretix_sig1 keys in a gate keyring (role issuer)")
    _shop_options(k)
    k.add_argument("--keyring", required=True)
    k.add_argument(
        "--replace",
        action="store_true",
        help="the keyring trusts other pretix keys for this event: drop them for the ones pretix offers now",
    )
    k.set_defaults(func=run_keys)

    s = pretix_sub.add_parser("sync", help="revoked and blocked secrets -> signed revocation updates, published")
    _shop_options(s)
    s.add_argument("--state", required=True, help="the sync's state (SQLite), created if absent; keep it")
    s.add_argument("--signing-key", metavar="PEM", help="revocation private key (PEM)")
    s.add_argument("--revocation-key", help=argparse.SUPPRESS)  # the old spelling of --signing-key
    s.add_argument("--site", required=True)
    s.add_argument(
        "--first-version",
        type=int,
        default=1,
        help="version of the first update (above what the site's gates hold; default 1)",
    )
    s.add_argument(
        "--every",
        metavar="DURATION",
        default=None,
        help="run as a service: one round every DURATION (30s, 2m, 1h) until SIGTERM",
    )
    s.add_argument(
        "--list",
        dest="checkin_list",
        type=int,
        default=None,
        help="the gates' pretix check-in list id (default: the event's only list)",
    )
    s.add_argument(
        "--out",
        help="also write each update to this directory (rev-VERSION[.partK].cose), and the "
        "signed check-in list (checkin-list.cose)",
    )
    add_broker_arguments(s, required=False)
    s.set_defaults(func=run_sync)

    u = pretix_sub.add_parser("upload", help="the ledger's admissions -> pretix check-ins (idempotent)")
    _shop_options(u)
    u.add_argument("--ledger", required=True, help="the ledger database (read only)")
    u.add_argument("--list", dest="checkin_list", type=int, required=True, help="pretix check-in list id")
    u.add_argument("--state", required=True, help="the sync's state (SQLite): remembers what was uploaded")
    u.add_argument("--site", required=True)
    u.set_defaults(func=run_upload)


def _client(args):
    from gated.central.pretix import PretixClient, PretixError

    path, scheme = (args.token_file, "Token") if args.token_file else (args.device_token_file, "Device")
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise CommandError(f"{path}: {undecodable(exc)}") from None
    if not token or any(c.isspace() for c in token):
        raise CommandError(f"{path}: expected one API token")
    try:
        return PretixClient(args.url, args.organizer, f"{scheme} {token}", insecure_http=args.insecure_http)
    except PretixError as exc:
        raise CommandError(str(exc)) from None


def run_keys(args) -> int:
    """Trust the event's keys; a keyring that already trusts other pretix keys for the event is left
    alone unless --replace (a changed key is a key rotation in pretix, or a shop that is not the one
    trusted before: the operator compares the fingerprints)."""
    from gated import keys
    from gated.central.pretix import PretixError, fetch_keys
    from gated.core.cose import kid_of

    try:
        pems = fetch_keys(_client(args), args.event)
    except PretixError as exc:
        raise CommandError(str(exc)) from None
    if not pems:
        raise CommandError(
            f"event {args.event} has no pretix_sig1 key yet: set its ticket code generator to "
            "pretix_sig1 and issue one ticket (pretix makes the key with the first)"
        )
    offered = {}
    for i, pem in enumerate(pems):
        try:
            public_key = keys.load_public_key(pem)
        except ValueError as exc:
            raise CommandError(f"event {args.event}: key {i}: {exc}") from None
        offered[kid_of(public_key)] = (pem, keys.fingerprint(public_key))
    prefix = f"pretix-{args.event}-"
    trusted = {}
    if (Path(args.keyring) / keys.KEYRING_FILE).exists():
        try:
            ring = keys.load_keyring(args.keyring)
        except keys.KeyringError as exc:
            raise CommandError(str(exc)) from None
        ours = re.compile(re.escape(prefix) + "[0-9a-f]{8}")  # what this command names them (not another event's)
        trusted = {
            key.kid: key
            for key in ring.keys
            if ours.fullmatch(key.name) and "issuer" in key.roles and args.event in key.events
        }
    unnamed = [f"{prefix}{kid.hex()[:8]}" for kid in offered if kid not in trusted]
    if any(not keys.KEY_NAME.match(name) for name in unnamed):  # before anything is dropped
        raise CommandError(f"event {args.event}: cannot name its keys {unnamed[0]!r}: not {keys.KEY_NAME_TEXT}")
    stale = {kid: key for kid, key in trusted.items() if kid not in offered}
    if (stale or set(offered) - set(trusted)) and trusted and not args.replace:
        before = "; ".join(f"{key.name} sha256 {keys.fingerprint(key.public_key)}" for key in trusted.values())
        now = "; ".join(f"sha256 {fp}" for _, fp in offered.values())
        raise CommandError(
            f"event {args.event}: {args.keyring} trusts {before}, but the shop now offers {now}. "
            f"A changed issuer key is a key rotation in pretix or a shop that is not the one "
            f"trusted before: compare the fingerprints with pretix's, then pass --replace"
        )
    if stale:
        keys.forget_keys(args.keyring, [key.name for key in stale.values()])
        for key in stale.values():
            print(f"dropped {key.name} (sha256 {keys.fingerprint(key.public_key)}) for event {args.event}")
    with tempfile.TemporaryDirectory() as tmp:
        for kid, (pem, fp) in offered.items():
            if kid in trusted:
                print(f"already trusted {trusted[kid].name} (sha256 {fp}) as issuer for event {args.event}")
                continue
            path = Path(tmp) / f"{prefix}{kid.hex()[:8]}.pem"
            path.write_bytes(pem)
            key = keys.trust_key_file(args.keyring, path, "issuer", events=[args.event])
            print(
                f"trusted {key.name} (kid {kid.hex()}, sha256 {fp}) as issuer for event {args.event} in {args.keyring}"
            )
    return 0


def run_init(args) -> int:
    """pretix's device initialization: the one-time token for the device's API token, kept 0600."""
    import os

    from gated import __version__
    from gated.central.pretix import PretixError, initialize_device

    path = Path(args.device_token_file)
    if path.exists():
        raise CommandError(
            f"{path} exists: this machine is initialized already (remove the file to initialize "
            "it as a new device; a token used once cannot be used again)"
        )
    try:
        device = initialize_device(args.url, args.token, software_version=__version__, insecure_http=args.insecure_http)
    except PretixError as exc:
        raise CommandError(
            f"{exc} (make a new device in pretix and use its token if this one was used or revoked)"
        ) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(device["api_token"] + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    print(
        f"initialized as pretix device {device['device_id']} ({device['name']!r}) of organizer "
        f"{device['organizer']!r}; API token in {path} (0600). Use --organizer {device['organizer']} "
        f"--device-token-file {path}"
    )
    return 0


def run_sync(args) -> int:
    from gated import keys
    from gated.central.publisher import publish_revocations, read_update
    from gated.cli.ledger import _settings
    from gated.cli.revoke import part_paths

    if not args.broker and not args.out:
        raise CommandError("give --broker (publish to the gates) and/or --out DIR (write update files)")
    period = _duration(args.every) if args.every is not None else None
    client = _client(args)
    if args.revocation_key:
        from gated.cli.options import deprecated

        deprecated("--revocation-key", "--signing-key")
        args.signing_key = args.signing_key or args.revocation_key
    from gated.cli.options import signing_key

    path = signing_key(args)
    try:
        key = keys.load_private_key(path)
    except ValueError as exc:
        raise CommandError(f"--signing-key {path}: {exc}") from None
    settings = _settings(args, None, tool=f"gated pretix {args.pretix_command}") if args.broker else None

    def publish(blobs):
        if args.out:
            by_version = {}
            for blob in blobs:
                update = read_update(blob)  # our own, just signed: only its version and part are needed
                by_version.setdefault(update.version, []).append((update.part, blob))
            for version, parts in by_version.items():
                for path, (_, blob) in zip(
                    part_paths(Path(args.out) / f"rev-{version}.cose", len(parts)), sorted(parts)
                ):
                    path.parent.mkdir(parents=True, exist_ok=True)
                    write_atomic(path, blob)
        if settings is not None:
            publish_revocations(settings, args.site, blobs)

    if period is not None:
        return _every(args, period, lambda: _sync_round(args, client, key, settings, publish))
    return _sync_round(args, client, key, settings, publish)


def _sync_round(args, client, key, settings, publish) -> int:
    from gated.central import pretix_orders
    from gated.central.pretix import PretixError, SyncState, sync_revocations
    from gated.central.publisher import PublishError

    try:
        with SyncState(args.state, event=args.event, site=args.site) as state:
            orders = pretix_orders.sync_orders(client, state, event=args.event)
            result = sync_revocations(
                client,
                state,
                event=args.event,
                site=args.site,
                key=key,
                publish=publish,
                first_version=args.first_version,
                cancelled=pretix_orders.tickets_in(state, "cancelled"),
            )
            version, name = pretix_orders.sync_checkin_list(
                client, state, event=args.event, site=args.site, key=key, list_id=args.checkin_list
            )
            sent = _deliver_checkin_list(args, settings, state)
    except (PretixError, PublishError) as exc:
        hint = (
            "; this pretix device was revoked: make a new one and run `gated pretix init` with its token"
            if "Device access has been revoked" in str(exc)
            else " (nothing is lost: run again)"
        )
        raise CommandError(f"{exc}{hint}") from None
    except ValueError as exc:  # an update the protocol cannot carry (a delta over 1 MiB)
        raise CommandError(f"{exc}; nothing was signed or sent") from None
    print(
        f"pretix {args.event}: {orders.orders_seen} changed orders read ({orders.cancelled} tickets cancelled, "
        f"{orders.pending} unpaid, {orders.unapproved} awaiting approval); "
        f"{result.revoked_seen} revoked and {result.blocked_seen} blocked entries read; "
        f"list v{result.version} (+{result.added} -{result.removed}); "
        f"published {', '.join(f'v{v}' for v in result.published) or 'nothing new'}; "
        + (
            f"check-in list {name!r} v{version}{' published' if sent else ''}"
            if version
            else "no check-in list in pretix (unpaid and unapproved orders are not enforced)"
        )
    )
    return 0


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        seconds = -1
    if not 0 < seconds <= YEAR_S:  # NaN and infinity too
        raise CommandError(f"--every {text!r}: a duration such as 30s, 2m or 1h")
    return seconds


def _every(args, period: float, round_) -> int:
    """One round every `period` seconds until SIGTERM or SIGINT; a failed round, whatever failed, is
    said on stderr and the next one tries again (every round is safe to repeat). Exits 0 when
    stopped; a second Ctrl-C interrupts at once (gated/cli/stopping.py)."""
    import time

    from gated.cli.stopping import stop_on_signals

    print(f"pretix {args.event}: syncing every {period:g} s until stopped", flush=True)
    with stop_on_signals() as stop:
        while not stop.is_set():
            started = time.monotonic()
            try:
                round_()
            except CommandError as exc:
                print(f"gated pretix sync: {exc}", file=sys.stderr, flush=True)
            except Exception as exc:  # noqa: BLE001 - a round's fault must not end the service (revocations stop)
                print(
                    f"gated pretix sync: the round failed ({type(exc).__name__}: {exc}); trying again next round",
                    file=sys.stderr,
                    flush=True,
                )
            sys.stdout.flush()
            stop.wait(max(0.0, period - (time.monotonic() - started)))
    print(f"pretix {args.event}: stopped", flush=True)
    return 0


def _deliver_checkin_list(args, settings, state) -> bool:
    """Write the newest signed list to --out and publish what the broker has not taken yet."""
    from gated.central import pretix_orders

    latest = pretix_orders.latest_list(state)
    if latest is None:
        return False
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        write_atomic(Path(args.out) / "checkin-list.cose", latest[1])
    waiting = pretix_orders.pending_lists(state)
    if not waiting:
        return False
    if settings is not None:
        pretix_orders.publish_checkin_list(settings, args.site, waiting[-1][1])
    pretix_orders.mark_published(state, waiting[-1][0])
    return True


def run_upload(args) -> int:
    from gated.central.pretix import PretixError, SyncState, upload_admissions

    client = _client(args)
    try:
        with SyncState(args.state, event=args.event, site=args.site) as state:
            result = upload_admissions(
                client, state, ledger_path=args.ledger, event=args.event, site=args.site, checkin_list=args.checkin_list
            )
    except PretixError as exc:
        raise CommandError(f"{exc} (what was uploaded is remembered: run again)") from None
    for line in result.refused:
        print(f"refused by pretix: {line}", file=sys.stderr)
    print(
        f"pretix {args.event}: {result.uploaded} admissions uploaded, {result.already} uploaded before, "
        f"{result.unknown} not pretix tickets of this event, {len(result.refused)} refused"
    )
    return 0
