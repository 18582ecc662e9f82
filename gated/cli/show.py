"""`gated show --config FILE 'TEXT'` (or an image file): hold a ticket up to a gate on this machine.

For a bench gate whose camera is a watched folder (`[camera] source = "files:DIR?watch=1"`,
gated/gate/watchcam.py): the QR text is drawn as a code (segno) and written into the folder
atomically (a temporary name, then a rename), or the image given is copied there; the running gate
shows it for a moment and removes it. `gated show` waits until the gate has taken it. It needs
write access to the folder (root, or the service user), nothing else: no socket, no rehearsal code.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import parse_qsl

from gated.cli.main import CommandError
from gated.cli.options import number


def register(sub) -> None:
    p = sub.add_parser(
        "show", help="hold a ticket (QR text or image) up to a bench gate on this machine (camera: a watched folder)"
    )
    p.add_argument(
        "--config", default="/etc/gated/gated.toml", help="the gate's configuration (default /etc/gated/gated.toml)"
    )
    p.add_argument(
        "--timeout",
        type=number(zero=True),
        default=10.0,
        help="seconds to wait for the gate to take it (default 10; 0: do not wait)",
    )
    p.add_argument("code", metavar="TEXT|IMAGE", help="the QR text (quote it) or an image file of a code")
    p.set_defaults(func=run)


def watched_folder(cfg) -> Path:
    kind, _, rest = cfg.camera.source.partition(":")
    target, _, query = rest.partition("?")
    options = dict(parse_qsl(query))
    if kind != "files" or options.get("watch", "").lower() not in ("1", "true", "yes", "on"):
        raise CommandError(
            f"this gate's camera is {cfg.camera.source}: `gated show` needs a watched folder, "
            f'[camera] source = "files:/var/lib/gated/show?watch=1"'
        )
    return Path(target)


def run(args) -> int:
    from gated.gate import config

    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:
        raise CommandError(f"configuration problems:\n{exc}") from None
    folder = watched_folder(cfg)
    if not folder.is_dir():
        raise CommandError(f"{folder}: no such directory (install -d -m 0700 -o gated {folder})")
    name = f"show-{time.time_ns()}-{os.getpid()}.png"
    temporary = folder / f".{name}.part"
    source = Path(args.code)
    try:
        if source.is_file():
            import cv2

            image = cv2.imread(str(source), cv2.IMREAD_GRAYSCALE)
            encoded = cv2.imencode(".png", image)[1].tobytes() if image is not None else None
            if encoded is None:
                raise CommandError(f"{source}: not an image this gate can read")
        else:
            import io

            import segno

            buffer = io.BytesIO()
            segno.make(args.code, error="m").save(buffer, kind="png", scale=6, border=4)
            encoded = buffer.getvalue()
        with open(temporary, "wb") as fh:  # a hidden name without an image suffix: the gate ignores it
            fh.write(encoded)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, folder / name)
    except PermissionError:
        raise CommandError(f"{folder}: not writable by this user (run as root or as the gate's user)") from None
    finally:
        temporary.unlink(missing_ok=True)
    what = f"image {source.name}" if source.is_file() else f"{args.code[:24]}{'...' if len(args.code) > 24 else ''}"
    if args.timeout <= 0:
        print(f"put {what} in front of gate {cfg.gate.id}")
        return 0
    deadline = time.monotonic() + args.timeout
    while (folder / name).exists():
        if time.monotonic() > deadline:
            (folder / name).unlink(missing_ok=True)
            raise CommandError(
                f"gate {cfg.gate.id} did not take it within {args.timeout:g} s: is it running "
                f"(gated run --config {args.config})?"
            )
        time.sleep(0.05)
    print(f"shown to gate {cfg.gate.id}: {what}")
    return 0
