"""Building a gate's parts from its configuration: one place for `gated run` (gated/gate/daemon.py),
`gated doctor` and `gated relay-off` (gated/cli/), so the doctor checks the parts the daemon runs.

Each builder takes the config (and the parts it needs) and returns one part, not yet started;
hardware and optional libraries are imported inside the builder that needs them, so importing this
module costs nothing on any machine. Faults a builder knows how to explain are `StartupError`s.
"""

from __future__ import annotations

from gated.core.errors import GatedError
from gated.gate.config import Config


class StartupError(GatedError, RuntimeError):
    """A part of the gate could not be started; the message says which and what to do."""


def uplink_settings(cfg: Config):
    from gated.mqtturl import UplinkSettings

    m = cfg.mqtt
    return UplinkSettings(
        host=m.host,
        port=m.port,
        tls=m.uses_tls,
        ca_file=str(m.tls.ca_file) if m.tls.ca_file else None,
        cert_file=str(m.tls.cert_file) if m.tls.cert_file else None,
        key_file=str(m.tls.key_file) if m.tls.key_file else None,
        # with a client certificate the broker takes its CN as the user name (systemd/mosquitto/):
        # username and password do nothing, and `gated check-config` warns about them
        username=None if m.tls.cert_file else m.username,
        password=None if m.tls.cert_file else m.secret(),
        client_id=m.client_id or f"gated-{cfg.gate.site}-{cfg.gate.id}",
        keepalive_s=m.keepalive_s,
        keep_until_committed=m.keep_until_committed,
        resend_after_s=m.resend_after_s,
        outbox_retention_s=m.outbox_retention_h * 3600,
    )


def open_store(cfg: Config):
    """The gate's state database (created on first use), with the venue's day start if configured."""
    from gated.gate.store import GateStore

    store = GateStore(cfg.gate.database, site=cfg.gate.site, gate=cfg.gate.id, own_directory=True)
    if cfg.gate.day_starts is not None:
        from gated.daystart import DayStart

        store.day_start = DayStart(cfg.gate.day_starts, cfg.gate.timezone).before
    return store


def load_board(cfg: Config):
    from gated.gate import boards

    return boards.load_profile(cfg.turnstile.board, cfg.turnstile.boards_dir)


def make_pin_factory(cfg: Config):
    """The configured gpiozero pin factory; None = gpiozero's own choice (GPIOZERO_PIN_FACTORY, then lgpio...)."""
    import os
    from importlib.metadata import entry_points

    name = os.environ.get("GPIOZERO_PIN_FACTORY") or cfg.turnstile.pin_factory
    if name == "auto":
        return None
    for ep in entry_points(group="gpiozero_pin_factories"):
        if ep.name == name:
            return ep.load()()
    raise StartupError(f"gpiozero pin factory {name!r} is not installed (pip install {name} on a Pi)")


def make_turnstile(cfg: Config):
    """The turnstile on the configured board's pins (claimed now)."""
    from gated.gate import turnstile

    board = load_board(cfg)
    pulse_s = cfg.timings.relay_pulse_s
    return turnstile.Turnstile(
        board, pin_factory=make_pin_factory(cfg), pulse_ms=None if pulse_s is None else int(round(pulse_s * 1000))
    )


def make_scanner(cfg: Config):
    """The camera thread's decoder: with zxing-cpp a Tracker, which reads across frames
    (gated/gate/tracker.py); pyzbar reads frame by frame."""
    from gated.gate.scanner import Scanner
    from gated.gate.tracker import Tracker

    scanner = Scanner(cfg.scanner.backend)
    return Tracker(scanner) if scanner.backend == "zxing" else scanner


def open_camera(cfg: Config):
    """The configured frame source, opened. Width, height and fps from [camera] go to the sources
    that take them, unless the spec itself sets them (`files:/dir?fps=5`)."""
    from urllib.parse import parse_qsl

    from gated.gate import camera

    spec, c = cfg.camera.source, cfg.camera
    kind = spec.partition(":")[0]
    offered = {
        "v4l2": {"width": c.width, "height": c.height, "fps": int(round(c.fps))},
        "picamera2": {"width": c.width, "height": c.height, "exposure": c.exposure},
        "files": {"fps": c.fps},
        "synthetic": {"width": c.width, "height": c.height, "fps": c.fps},
    }.get(kind, {})
    in_spec = {k for k, _ in parse_qsl(spec.partition("?")[2])}
    source = camera.open_source(spec, **{k: v for k, v in offered.items() if k not in in_spec})
    source.open()
    return source


def make_clock(cfg: Config, *, store, keyring):
    """The gate's trusted clock ([clock]), persisting its trust in `store`."""
    from gated.gate import clock

    return clock.TrustedClock.from_config(cfg.clock, store=store, keyring=keyring, site=cfg.gate.site)


def gate_context(cfg: Config):
    """What decide() needs to know of this gate (gated/core/decide.py GateContext)."""
    from gated.core.decide import GateContext

    g = cfg.gate
    return GateContext(
        site=g.site,
        events=frozenset(g.events),
        zone=g.zone,
        skew_s=cfg.clock.skew_s,
        step_window=cfg.clock.step_window,
        products=frozenset(g.products) if g.products is not None else None,
        pretix_entries=g.pretix_entries,
        pretix_questions=g.pretix_questions,
        pretix_subevents=None if g.pretix_subevents is None else frozenset(g.pretix_subevents),
        direction="out" if g.direction == "exit" else "in",
        reentry=g.reentry,
        capacity=g.capacity,
        until_synced=g.until_synced,
    )


def make_gate(cfg: Config, *, store, keyring, turnstile, clock):
    """The gate (gated/gate/gate.py): decisions committed in `store`, then the turnstile moved;
    judged with `clock`'s time. Timings not set in [timings] come from the board profile."""
    from gated.gate.gate import Gate

    board = turnstile.profile
    exit_gate = cfg.gate.direction == "exit"
    return Gate(
        store=store,
        keyring=keyring,
        context=gate_context(cfg),
        turnstile=turnstile,
        clock=clock.now,
        time_reading=clock.reading,
        free_exit=exit_gate and cfg.gate.exit == "free",
        passage_timeout_s=cfg.timings.passage_timeout_s or board.timing.passage_timeout_s,
        held_open_s=cfg.timings.held_open_s or board.timing.held_open_s,
    )


def make_uplink(cfg: Config, *, store, keyring, clock=None, on_command=None, status=None):
    """The uplink (not started): events out, revocations, peer admissions and commands in; commands'
    age judged by `clock` when there is one. Extra topics (beacons, occupancy) are the caller's."""
    from gated.gate.uplink import Uplink

    return Uplink(
        store=store,
        keyring=keyring,
        settings=uplink_settings(cfg),
        site=cfg.gate.site,
        gate=cfg.gate.id,
        on_command=on_command,
        status=status,
        command_max_age_s=cfg.mqtt.command_max_age_s,
        time_reading=clock.reading if clock is not None else None,
    )
