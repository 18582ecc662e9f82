"""`gated sim SCENARIO [--speed X] [--out DIR] [--broker URL]`: rehearse a venue (sim/)."""

from __future__ import annotations

import sys
from pathlib import Path

from gated.cli.main import CommandError
from gated.cli.options import number


def register(sub) -> None:
    p = sub.add_parser(
        "sim", help="run a whole venue from a scenario (real gates, broker, ledger) and report against ground truth"
    )
    p.add_argument("scenario", help="scenario file, e.g. sim/scenarios/demo.toml")
    p.add_argument(
        "--speed",
        type=number(minimum=0.01, maximum=1000, unit="times"),
        help="time compression (default: the scenario's); 2 = twice as fast",
    )
    p.add_argument("--out", default="sim-out", help="where report.json, report.html and devices/ go (default sim-out)")
    p.add_argument(
        "--broker",
        help="use this broker (mqtt://host:port) instead of starting a Mosquitto; broker_down faults are then skipped",
    )
    p.add_argument(
        "--ledger-db",
        metavar="DB",
        help="the ledger's database: a postgresql://user@host/dbname URL "
        "(rehearse against the central database you will use; it must hold no events) or a SQLite file; "
        "default a SQLite file in the output directory",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress (a live table on a terminal, a line every 5 s otherwise)",
    )
    p.add_argument("--check", action="store_true", help="only load and check the scenario")
    p.set_defaults(func=run_sim)


def run_sim(args) -> int:
    try:
        import matplotlib  # noqa: F401 (the report's plots)
        import rich  # noqa: F401 (the live table)
    except ImportError as exc:
        raise CommandError(
            f"the simulator needs {exc.name}, which a gate does not: pip install 'gated[sim]' (make demo does)"
        ) from None
    from sim import scenario as scenario_mod

    try:
        scenario = scenario_mod.load(args.scenario)
    except scenario_mod.ScenarioError as exc:
        raise CommandError(f"scenario problems:\n{exc}") from None
    if args.check:
        print(
            f"{args.scenario}: {scenario.name}, {scenario.gates} gates, {scenario.visitors} visitors, "
            f"{len(scenario.faults)} faults: ok"
        )
        return 0
    from sim import runner
    from sim.broker import BrokerError
    from sim.venue import VenueError

    def log(message: str) -> None:
        print(f"gated sim: {message}", file=sys.stderr, flush=True)

    def stopped(signum, frame) -> None:  # a SIGTERM (a CI timeout, `kill`) stops the venue's processes too
        raise SystemExit(128 + signum)

    import signal

    signal.signal(signal.SIGTERM, stopped)

    try:
        result = runner.run(
            scenario,
            Path(args.out),
            speed=args.speed,
            broker_url=args.broker,
            progress=not args.no_progress,
            log=log,
            ledger_db=args.ledger_db,
        )  # a table on a terminal, else lines
    except (VenueError, BrokerError) as exc:
        raise CommandError(str(exc)) from None
    print(f"{'PASS' if result['ok'] else 'FAIL'}: {Path(args.out) / 'report.html'}")
    return 0 if result["ok"] else 1
