"""`gated wiring`: a board profile's wiring diagram (the 40-pin header with its pins marked)."""

from __future__ import annotations

from gated.cli.main import CommandError

INTRO = """# Wiring diagrams

One per shipped board profile (`firmware_config/boards/`), generated from the profile by
`gated wiring --all --markdown > docs/wiring.md` (a test keeps this file in step). For your own
profile: `gated wiring --board FILE`. The comments at the top of each profile say what to connect
to each pin (relay module, sensor outputs, fire-alarm contact, LEDs).
"""


def register(sub) -> None:
    p = sub.add_parser("wiring", help="print a board profile's wiring diagram (40-pin header, a line per connection)")
    p.add_argument("--board", help="profile name (firmware_config/boards/) or file")
    p.add_argument("--boards-dir", help="directory of board profiles")
    p.add_argument("--all", action="store_true", help="every profile in the boards directory")
    p.add_argument("--markdown", action="store_true", help="as Markdown (docs/wiring.md)")
    p.set_defaults(func=run)


def markdown(boards_dir=None) -> str:
    from gated.gate.boards import load_board, shipped_boards, wiring_diagram

    parts = [INTRO]
    for path in shipped_boards(boards_dir):
        profile = load_board(path)
        parts.append(f"## {profile.name}\n\n```\n{wiring_diagram(profile)}```\n")
    return "\n".join(parts)


def run(args) -> int:
    from gated.gate.boards import BoardError, load_board, shipped_boards, wiring_diagram

    if bool(args.board) == bool(args.all):
        raise CommandError("give --board NAME or --all")
    try:
        if args.all and args.markdown:
            print(markdown(args.boards_dir), end="")
            return 0
        paths = shipped_boards(args.boards_dir) if args.all else [args.board]
        texts = [wiring_diagram(load_board(p, args.boards_dir)) for p in paths]
    except BoardError as exc:
        raise CommandError(str(exc)) from None
    print("\n".join(texts), end="")
    return 0
