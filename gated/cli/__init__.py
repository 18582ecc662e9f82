"""The `gated` command line: one module per command group, each with register(subparsers).

Named `cli` so that "command" means one thing in this code base: a signed remote command
(gated/core/command.py). The entry point is gated.cli.main:main.
"""

from gated.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
