"""`gated revoke`: write signed revocation update files (PROTOCOL §4)."""

from __future__ import annotations

import time
from pathlib import Path

from gated import keys
from gated.atomicfile import write_atomic
from gated.cli.main import CommandError
from gated.cli.options import add_signing_key, signing_key
from gated.core import cose, revocation
from gated.core.errors import undecodable
from gated.core.signed import Keyring, trusted


def register(sub) -> None:
    p = sub.add_parser("revoke", help="write a signed revocation update (snapshot or delta)")
    add_signing_key(p, "revocation private key")
    p.add_argument("--site", required=True)
    p.add_argument("--version", required=True, type=int, help="new list version (> the gates' current)")
    p.add_argument("--base", type=int, default=0, help="0 = snapshot (default); else a delta on top of this version")
    p.add_argument("--parts", type=int, help="split a snapshot into N parts (default: as needed for 1 MiB)")
    p.add_argument(
        "--add-file", action="append", default=[], help="file of ticket ids (hex, one per line, or tickets.csv)"
    )
    p.add_argument("--remove-file", action="append", default=[], help="file of ticket ids to un-revoke")
    p.add_argument("--remove", action="append", default=[], metavar="TICKET_ID_HEX", help="ticket id to un-revoke")
    p.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="TEXT",
        help="revoke the ticket this QR text carries (GT1, GT2 or pretix_sig1; repeat)",
    )
    p.add_argument("--out", required=True, help="output file; parts go to NAME.partK.EXT")
    p.add_argument("ticket_ids", nargs="*", metavar="TICKET_ID_HEX", help="ticket ids to revoke")
    p.set_defaults(func=run)


def parse_id(text: str, where: str) -> bytes:
    try:
        cti = bytes.fromhex(text.strip())
    except ValueError:
        cti = b""
    if len(cti) != 16:
        raise CommandError(f"{where}: {text.strip()!r} is not a ticket id (32 hex digits)")
    return cti


def read_ids(path: str) -> list[bytes]:
    """Ticket ids from a file: one per line, or the first column of a tickets.csv; # comments."""
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError as exc:
        raise CommandError(f"{path}: {undecodable(exc)}") from None
    ids = []
    for number, line in enumerate(text.splitlines(), start=1):
        field = line.split("#", 1)[0].split(",", 1)[0].strip()
        if not field or (number == 1 and field == "ticket_id"):
            continue
        ids.append(parse_id(field, f"{path}:{number}"))
    return ids


def code_id(text: str) -> bytes:
    """The ticket id a QR text carries, whatever its format; read without keys (no signature is
    needed to name a ticket; the gates check signatures when it is shown)."""
    from gated.core.scanned import read_code

    cti = read_code(text, Keyring()).cti
    if cti is None:
        raise CommandError(f"--code {text[:40]!r}: not a ticket this project reads (GT1, GT2, pretix_sig1)")
    return cti


def part_paths(out: Path, count: int) -> list[Path]:
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}.part{i}{out.suffix}") for i in range(count)]


def readable(messages: list[bytes], key, site: str) -> None:
    """Read each message back as a gate does (parse_update with the signer's public key trusted):
    what no gate would take is refused here, not written for an operator to believe in."""
    if not messages:
        raise CommandError("nothing to write: the update came out as no message")
    keyring = Keyring((trusted("revoke", key.public_key(), ["revocation"]),))
    for message in messages:
        try:
            update = revocation.parse_update(message, keyring)
        except revocation.UpdateRejected as exc:
            raise CommandError(f"a gate would reject this update ({exc.code}): {exc.detail}") from None
        if update.site != site:
            raise CommandError(f"the update reads back for site {update.site!r}, not {site!r}")


def run(args) -> int:
    add = [parse_id(t, "argument") for t in args.ticket_ids] + [code_id(text) for text in args.code]
    for path in args.add_file:
        add += read_ids(path)
    remove = [parse_id(t, "--remove") for t in args.remove]
    for path in args.remove_file:
        remove += read_ids(path)
    if args.version < 1 or args.base < 0 or (args.base and args.base >= args.version):
        raise CommandError("--version must be above 0 and above --base")
    if args.version > cose.UINT_MAX:
        raise CommandError(f"--version {args.version} is above {cose.UINT_MAX}, the most a gate takes")
    if args.parts is not None and args.parts < 1:
        raise CommandError(f"--parts {args.parts}: a snapshot is at least 1 part")
    path = signing_key(args)
    try:
        key = keys.load_private_key(path)
    except ValueError as exc:
        raise CommandError(f"--signing-key {path}: {exc}") from None
    try:
        messages = revocation.encode_updates(
            key,
            site=args.site,
            version=args.version,
            base=args.base,
            add=add,
            remove=remove,
            iat=int(time.time()),
            parts=args.parts,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    readable(messages, key, args.site)
    paths = part_paths(Path(args.out), len(messages))
    for path in paths:
        if path.is_dir():
            raise CommandError(f"--out {path} is a directory; name a file")
    for path, message in zip(paths, messages):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, message)
    kind = "snapshot" if args.base == 0 else f"delta on v{args.base}"
    print(
        f"v{args.version} {kind}: {len(set(add))} revoked, {len(set(remove))} un-revoked -> "
        + ", ".join(str(p) for p in paths)
    )
    return 0
