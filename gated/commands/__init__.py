"""Command groups of the `gated` CLI; each module has register(subparsers) and handlers."""
