"""`gated wallet show`: the current GT2 code of a dynamic ticket, as the holder's phone shows it."""

from __future__ import annotations

import sys
import time

from gated.cli.main import CommandError


def register(sub) -> None:
    p = sub.add_parser("wallet", help="holder side of dynamic (GT2) tickets")
    wsub = p.add_subparsers(dest="wallet_command", required=True, metavar="ACTION")
    s = wsub.add_parser("show", help="print (or render to PNG) the current GT2 code; --watch renews it every 30 s")
    s.add_argument("--ticket", required=True, help="TICKET.ticket, as `gated issue --dynamic --out DIR` writes it")
    s.add_argument("--device-key", required=True, help="TICKET.devkey, the holder-device private key (PEM)")
    s.add_argument("--png", help="also write the QR code to this PNG file (rewritten at each new code with --watch)")
    s.add_argument("--terminal", action="store_true", help="draw the QR code in the terminal too")
    s.add_argument("--watch", action="store_true", help="show a fresh code at every 30 s step until interrupted")
    s.add_argument(
        "--static",
        action="store_true",
        help="show the GT1 form instead (what a copy of the ticket file shows: gates deny it static_copy)",
    )
    s.add_argument("--now", default=None, help=_suppress())
    s.set_defaults(func=show)


def _suppress():
    import argparse

    return argparse.SUPPRESS


def show(args) -> int:
    from gated.central import wallet
    from gated.core.ticket import qr_symbol as qr

    try:
        held = wallet.load(args.ticket, args.device_key)
    except wallet.WalletError as exc:
        raise CommandError(str(exc)) from None
    fixed = float(args.now) if args.now else None
    clock = (lambda: fixed) if fixed is not None else time.time

    def render(text: str, left: float) -> None:
        if args.png:
            import io

            from gated.atomicfile import write_atomic

            png = io.BytesIO()
            qr(text).save(png, kind="png", scale=8, border=4)
            write_atomic(args.png, png.getvalue())  # a viewer that reloads it never sees half a code
        if args.terminal:
            qr(text).terminal(out=sys.stdout, compact=True)
        print(text, flush=True)
        if (args.watch or args.terminal) and left != float("inf"):
            print(
                f"ticket {held.claims.cti.hex()} ({held.claims.aud}): next code in {left:.0f} s",
                file=sys.stderr,
                flush=True,
            )

    if args.static:
        render(wallet.static_code(held.cose), float("inf"))
        return 0
    wallet.watch(held, render, now=clock, sleep=time.sleep, renders=None if args.watch else 1)
    return 0
