"""`gated replace --config FILE`: start a replaced gate's state as a new chain (docs/install-pi.md,
"Replacing a gate"; docs/protocol.md, "Replacing a gate").

On the new card (or after moving a damaged gate.db aside): a new state with a new device key whose
event chain is a new epoch of the same gate id (seqs epoch * 2^40 + 1, ...), so the ledger keeps it
apart from the old chain instead of quarantining its events as conflicts; the gate then follows
`[gate] until_synced` until it has the ledger's admissions snapshot."""

from __future__ import annotations

import secrets
import sys
import time

from gated.cli.main import CommandError


def register(sub) -> None:
    p = sub.add_parser(
        "replace",
        help="on a replaced gate: make its new state a new chain of the same gate id "
        "(new device key; until_synced until the admissions snapshot)",
    )
    p.add_argument(
        "--config", default="/etc/gated/gated.toml", help="configuration file (default /etc/gated/gated.toml)"
    )
    p.add_argument(
        "--move-aside",
        action="store_true",
        help="an old (damaged) gate.db is there: rename it to gate.db.replaced-<unix time> first",
    )
    p.set_defaults(func=replace_gate)


def replace_gate(args) -> int:
    from gated import keys
    from gated.core.events import MAX_EPOCH, is_name
    from gated.gate.config import ConfigError, load
    from gated.gate.store import GateStore

    try:
        cfg = load(args.config)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    no_topic = [event for event in cfg.gate.events if not is_name(event)]  # no admissions snapshot can reach them
    if no_topic and cfg.gate.until_synced != "admit":
        raise CommandError(
            f"event id {', '.join(repr(e[:64]) for e in no_topic)} cannot be an MQTT topic level (/, +, #, NUL, "
            "empty, over 128 characters), so no admissions snapshot can reach the new chain: it would deny "
            'tickets with limited entries as unsynced for good. Set [gate] until_synced = "admit" (admitted and '
            "flagged for reconciliation) to replace this gate"
        )
    path = cfg.gate.database
    if path.exists():
        if not args.move_aside:
            raise CommandError(
                f"{path} exists: this gate has a state. Stop gated and pass --move-aside to keep the old "
                'file aside and start a new chain (docs/install-pi.md, "Replacing a gate")'
            )
        aside = path.with_name(f"{path.name}.replaced-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            old = path.with_name(path.name + suffix)
            if old.exists():
                old.rename(aside.with_name(aside.name + suffix))
        print(f"moved the old state aside: {aside}")
    epoch = 1 + secrets.randbelow(MAX_EPOCH)  # random: a fresh card knows no earlier epoch; collisions ~ 1 in 8 million
    with GateStore(path, site=cfg.gate.site, gate=cfg.gate.id, own_directory=True) as store:
        store.start_epoch(epoch, time.time_ns() // 1_000_000)
        kid = keys.kid_of(store.device_public_key).hex()
    print(
        f"gate {cfg.gate.id} at {cfg.gate.site}: new chain, epoch {epoch} (its events start at seq {epoch << 40 | 1})"
    )
    print(
        f"device key kid {kid}: approve it at the ledger: gated keys enrol --site {cfg.gate.site} --keyring DIR "
        f"--replace --approve {kid}"
    )
    print(
        f"until the admissions snapshot is in (gated admissions publish ...), tickets with limited entries are "
        f"{'admitted and flagged' if cfg.gate.until_synced == 'admit' else 'denied unsynced'} "
        f'([gate] until_synced = "{cfg.gate.until_synced}")'
        + (
            f"; for {', '.join(repr(e[:64]) for e in no_topic)} (no topic level: no snapshot can come) for as long "
            "as this chain runs"
            if no_topic
            else ""
        ),
        file=sys.stderr,
    )
    return 0
