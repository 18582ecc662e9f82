"""The gate's one configuration schema: /etc/gated/gated.toml, loaded into frozen dataclasses.

Each section below is a dataclass; each field's metadata carries its documentation, so the
schema doubles as the reference (`firmware_config/gated.example.toml` mirrors it, and a test
keeps the two in step). Loading reports *every* problem at once, each with its key path and
what is expected, so one edit-and-retry fixes a whole file:

    gated.toml: gate.events: expected a non-empty list of strings, got 'FINAL'
    gated.toml: timings.relay_pulse_s: expected a finite number > 0 and <= 60, got -1
    gated.toml: mqtt.tls.cafile: unknown key in mqtt.tls (known: ca_file, cert_file, key_file)

Unknown keys are errors (a misspelt key would otherwise silently keep its default). Numbers are
finite (`inf` and `nan` are refused: `max_age_s = inf` would turn a safety check off) and within
their field's range. The board profile is resolved and checked as part of the configuration.
Relative paths are resolved against the directory of the configuration file. Durations are seconds.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gated import tomlcheck
from gated.core.errors import GatedError, undecodable
from gated.core.occupancy import is_zone_name
from gated.gate.frames import EXPOSURE_MODES, KIND_EXAMPLES, spec_problem
from gated.tomlcheck import Reader, option

DEFAULT_PATH = Path("/etc/gated/gated.toml")
NAME = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
)  # site, gate and board names: safe in MQTT topics and file names
NAME_TEXT = "a name of letters, digits, '.', '_' or '-' (at most 64)"
SCANNER_BACKENDS = ("zxing", "pyzbar")
PIN_FACTORIES = ("auto", "lgpio", "rpigpio", "pigpio", "native", "mock")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")
MQTT_SCHEMES = ("mqtt", "mqtts")


class ConfigError(GatedError, ValueError):
    """The configuration file is unusable; `problems` lists every (key path, what is wrong)."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        super().__init__(
            "\n".join(f"{source}: {path}: {what}" if path else f"{source}: {what}" for path, what in problems)
        )


_opt = option  # a schema field (gated/tomlcheck.py)


# --- sections ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateSection:
    site: str = _opt(doc="site name; the MQTT root is gated/v1/<site>/", pattern=NAME, expected=NAME_TEXT)
    id: str = _opt(doc="this gate's id, unique at the site; events are '<id>:<seq>'", pattern=NAME, expected=NAME_TEXT)
    events: tuple[str, ...] = _opt(doc="event ids (ticket aud) this gate admits for", nonempty=True)
    keyring: Path = _opt(doc="keyring directory: trusted public keys and keyring.toml", path=True)
    state_dir: Path = _opt(Path("/var/lib/gated"), doc="directory of the gate's state database (gate.db)", path=True)
    zone: str | None = _opt(
        None,
        doc="the zone this gate leads into (tickets with zon must list it)",
        check=lambda v: None if is_zone_name(v) else "a zone name of at most 128 characters without control characters",
    )
    products: tuple[str, ...] | None = _opt(
        None,
        doc='admit only these products (absent: all): GT ticket types, pretix item ids "12" or item/variation "12/3"',
    )
    pretix_entries: int = _opt(
        1, doc="entries a pretix ticket allows at this site (its code states none); 0 = unlimited", minimum=0
    )
    pretix_questions: str = _opt(
        "deny",
        doc="a pretix check-in list whose product has questions to answer at "
        "check-in: deny (reason `questions`: the box office asks them, as "
        "pretix waits for the answers) or admit (the questions are skipped)",
        choices=("deny", "admit"),
    )
    pretix_subevents: tuple[int, ...] | None = _opt(
        None, doc="pretix event series: admit only these dates (subevent ids; absent: every date)"
    )
    direction: str = _opt(
        "entry",
        doc="entry (scans let people in), exit (people go out; see `exit`), or both "
        "(scans let people in; the board's passage_out contact counts people going "
        "out as free exits)",
        choices=("entry", "exit", "both"),
    )
    exit: str = _opt(
        "scan",
        doc="an exit gate: scan (a ticket is scanned out, its exit recorded, so it may come "
        "back in where re-entry is allowed) or free (anyone goes out; each passage counted; a ticket "
        "shown there anyway has its exit recorded)",
        choices=("scan", "free"),
    )
    reentry: bool = _opt(
        False,
        doc="admit a ticket again, no entry spent, when it has left since it last came in "
        "(more exits recorded than re-entries)",
    )
    capacity: int | None = _opt(
        None,
        doc="people the zone may hold; at this many inside, entries are denied `capacity` until people leave",
        minimum=1,
    )
    until_synced: str = _opt(
        "deny_used_check",
        doc="a replaced gate (a new chain: `gated replace`) until it has "
        "the ledger's admissions snapshot: deny_used_check (tickets with "
        "limited entries are denied `unsynced`: whether they were used "
        "cannot be checked) or admit (admitted, each such scan flagged "
        "`unsynced` for reconciliation)",
        choices=("deny_used_check", "admit"),
    )
    day_starts: str | None = _opt(
        None,
        doc="local time HH:MM at which the count of people inside starts over, "
        "every day (a time the venue is empty; as the ledger's --day-starts); "
        "absent: never",
        check=lambda v: _check_day("time_of_day", v, "a time of day HH:MM (00:00 to 23:59)"),
    )
    timezone: str = _opt(
        "UTC",
        doc="the venue's time zone (IANA name, e.g. Europe/Berlin), for day_starts",
        check=lambda v: _check_day(
            "time_zone", v, "an IANA time zone name this machine knows (e.g. Europe/Berlin, UTC)"
        ),
    )

    @property
    def database(self) -> Path:
        return self.state_dir / "gate.db"


@dataclass(frozen=True)
class CameraSection:
    source: str = _opt("v4l2:/dev/video0", doc=f"frame source: {KIND_EXAMPLES}", check=spec_problem)
    width: int = _opt(1280, doc="frame width asked of the camera (pixels)", minimum=16, maximum=16384)
    height: int = _opt(720, doc="frame height asked of the camera (pixels)", minimum=16, maximum=16384)
    fps: float = _opt(30.0, doc="frames per second asked of the camera", above=0, maximum=1000)
    exposure: str = _opt(
        "short",
        doc="auto-exposure of a Raspberry Pi camera (picamera2): short (shorter exposure times and "
        "more gain, so a phone moved into view smears less and is read sooner) or normal "
        "(libcamera's default); USB cameras keep their own auto-exposure",
        choices=tuple(EXPOSURE_MODES),
    )


@dataclass(frozen=True)
class ScannerSection:
    backend: str = _opt("zxing", doc="QR decoder: zxing (zxing-cpp) or pyzbar (libzbar)", choices=SCANNER_BACKENDS)


@dataclass(frozen=True)
class TurnstileSection:
    board: str = _opt(
        doc="board profile: the name of a file in firmware_config/boards/ (without .toml)",
        pattern=NAME,
        expected=NAME_TEXT,
    )
    pin_factory: str = _opt(
        "auto", doc="gpiozero pin factory; auto = gpiozero's choice (GPIOZERO_PIN_FACTORY wins)", choices=PIN_FACTORIES
    )
    boards_dir: Path | None = _opt(
        None, doc="where board profiles live (default: the installed firmware_config/boards)", path=True
    )


@dataclass(frozen=True)
class TimingsSection:
    relay_pulse_s: float | None = _opt(
        None, doc="relay energised this long per admission (default: the board's pulse_ms)", above=0, maximum=60
    )
    passage_timeout_s: float | None = _opt(
        None,
        doc="nobody passed within this after an admission: roll it back (default: the board's)",
        above=0,
        maximum=600,
    )
    held_open_s: float | None = _opt(
        None, doc="door/arm still open after this: held_open alarm (default: the board's)", above=0, maximum=3600
    )
    debounce_s: float = _opt(
        3.0,
        doc="the same code seen again within this is one scan, not two (an admitted code still in view: "
        "not judged again until its visitor has passed, on a board without a passage sensor not while in "
        "view; a code refused for good: not while in view; 0: every frame's sighting judged)",
        minimum=0,
        maximum=3600,
    )


@dataclass(frozen=True)
class ClockSection:
    skew_s: int = _opt(60, doc="allowed clock skew when checking a ticket's nbf/exp (seconds)", minimum=0, maximum=3600)
    step_window: int = _opt(
        1, doc="GT2 codes this many 30 s steps away from now are still accepted", minimum=0, maximum=10
    )
    beacons: bool = _opt(True, doc="use signed time beacons (gated/v1/<site>/time) to bound the clock's error")
    trust_system_clock: bool = _opt(
        False,
        doc="treat the system clock as synchronised even when the kernel does not "
        "report NTP sync (battery-backed RTC, test bench)",
    )
    ntp: str = _opt(
        "auto",
        doc="'auto': the system clock counts as a time source while the kernel reports NTP "
        "synchronisation; 'ignore': it never does (a site whose NTP is not trusted: the "
        "gate then rests on beacons, an RTC or trust_system_clock)",
        choices=("auto", "ignore"),
    )
    when_uncertain: str = _opt(
        "deny",
        doc="no NTP and no recent beacon, or they disagree: 'deny' time-dependent "
        "checks, or judge with the 'beacon' time",
        choices=("deny", "beacon"),
    )
    max_offset_s: float = _opt(
        30.0, doc="a clock further than this from the beacons is implausible: alarm", above=0, maximum=86400
    )
    beacon_max_age_s: float = _opt(
        600.0, doc="a beacon older than this no longer bounds the clock", above=0, maximum=86400
    )
    max_beacon_step_s: float = _opt(
        60.0,
        doc="a beacon further ahead than this of another source (NTP or RTC, "
        "else the beacons so far) is refused, even while the clock is "
        "uncertain: bad beacons cannot move the time",
        above=0,
        maximum=86400,
    )
    rtc: bool = _opt(
        False,
        doc="the board has a battery-backed real-time clock: after a reboot its time counts as "
        "a source, like NTP (only while /dev/rtc0 or /sys/class/rtc/rtc0 exists)",
    )


@dataclass(frozen=True)
class RevocationsSection:
    max_age_s: float = _opt(
        86400.0, doc="the list is stale when its newest update is older than this", above=0, maximum=30 * 86400
    )
    when_stale: str = _opt(
        "closed",
        doc="stale list: 'closed' denies every ticket, 'open' keeps admitting; an alarm is raised either way",
        choices=("open", "closed"),
    )


@dataclass(frozen=True)
class StateSection:
    expired_margin_h: float = _opt(
        48.0,
        doc="admissions of a ticket go this long after it expired (decide() says "
        "`expired` before it looks at them); at least a day, so the day's "
        "count of people inside keeps them",
        minimum=24,
        maximum=87600,
    )
    peer_retention_days: float = _opt(
        7.0,
        doc="peers' admissions of tickets this gate never admitted (their expiry "
        "unknown here) go this long after they were made at the least; longer "
        "when this gate has admitted a longer-lived ticket (its validity plus "
        "expired_margin_h)",
        minimum=1,
        maximum=3650,
    )
    dropped_event_days: float = _opt(
        7.0,
        doc="the admissions of an event taken out of [gate] events go once it has been out this "
        "long (its tickets are wrong_event here then); put back sooner, its used tickets stay used",
        minimum=1,
        maximum=3650,
    )
    open_ended_days: float | None = _opt(
        None,
        doc="tickets valid without end (a pretix code without validUntil or validFrom): how long "
        "after its last admission such a ticket can still be shown, for a valid one; its admissions, "
        "and peers' admissions at a gate that has admitted one, go this long plus expired_margin_h "
        "after they were made. Unset (the default): kept until their event has been out of "
        "[gate] events for dropped_event_days",
        minimum=1,
        maximum=3650,
    )
    prune_every_s: float = _opt(
        300.0, doc="how often the pruning starts (in small batches between scans)", minimum=1, maximum=86400
    )


@dataclass(frozen=True)
class TlsSection:
    ca_file: Path | None = _opt(None, doc="CA certificate(s) that sign the broker's certificate (PEM)", path=True)
    cert_file: Path | None = _opt(None, doc="client certificate for mutual TLS (PEM)", path=True)
    key_file: Path | None = _opt(None, doc="client private key for mutual TLS (PEM)", path=True)


@dataclass(frozen=True)
class MqttSection:
    url: str = _opt(doc="broker: mqtt://host[:1883] or mqtts://host[:8883] (TLS)", check=lambda v: _check_url(v))
    username: str | None = _opt(None, doc="broker user name")
    password: str | None = _opt(None, doc="broker password (prefer password_file)")
    password_file: Path | None = _opt(None, doc="file holding the broker password (first line)", path=True)
    client_id: str | None = _opt(None, doc="MQTT client id (default: gated-<site>-<gate>)")
    keepalive_s: int = _opt(30, doc="MQTT keep-alive (seconds)", minimum=5, maximum=65535)
    command_max_age_s: float = _opt(
        60.0,
        doc="a remote command issued longer ago than this (its iat, by the gate's "
        "trusted clock) is ignored and logged: an 'open' queued while the gate "
        "was offline; with the clock untrusted, open/unlock are refused",
        above=0,
        maximum=86400,
    )
    keep_until_committed: bool | None = _opt(
        None,
        doc="no longer needed: a gate always keeps each event until the "
        "ledger says it holds it (read, logged, changes nothing)",
    )
    resend_after_s: float = _opt(
        30.0,
        doc="re-send what the ledger lacks when it has confirmed nothing for this long (doubling, at most an hour)",
        above=0,
        maximum=86400,
    )
    outbox_retention_h: float = _opt(
        168.0,
        doc="drop events the broker acknowledged this long ago that no ledger "
        "confirmed (bounds the outbox; each one counted and logged)",
        above=0,
        maximum=24 * 366,
    )
    tls: TlsSection = _opt(TlsSection(), doc="TLS files")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or {"mqtt": 1883, "mqtts": 8883}[parts.scheme]

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    def secret(self) -> str | None:
        """The password, read from password_file when that is given."""
        if self.password_file is not None:
            try:
                text = self.password_file.read_bytes().decode()
            except UnicodeDecodeError as exc:
                raise ConfigError(str(self.password_file), [("", undecodable(exc))]) from None
            return text.splitlines()[0] if text else ""
        return self.password


@dataclass(frozen=True)
class LoggingSection:
    level: str = _opt("info", doc="debug, info, warning or error", choices=LOG_LEVELS)
    format: str = _opt(
        "auto", doc="auto: JSON lines under systemd or without a terminal, readable on a terminal", choices=LOG_FORMATS
    )


@dataclass(frozen=True)
class HealthSection:
    interval_s: float = _opt(30.0, doc="how often the retained health message is published", above=0, maximum=86400)
    textfile: Path | None = _opt(None, doc="optional Prometheus textfile (node_exporter textfile collector)", path=True)


@dataclass(frozen=True)
class MetricsSection:
    listen: str | None = _opt(
        None,
        doc="opt-in Prometheus endpoint, host:port (e.g. 127.0.0.1:9108; a port alone "
        "listens on 127.0.0.1): GET /metrics serves the last health report's figures",
        check=lambda v: _check_listen(v),
    )


@dataclass(frozen=True)
class SimSection:
    control_socket: Path | None = _opt(
        None, doc="simulator only: a Unix socket to steer the camera and mock pins", path=True
    )


@dataclass(frozen=True)
class Config:
    gate: GateSection = _opt(doc="who and where this gate is")
    turnstile: TurnstileSection = _opt(doc="the turnstile's board profile and GPIO access")
    mqtt: MqttSection = _opt(doc="the broker")
    camera: CameraSection = _opt(CameraSection(), doc="where frames come from")
    scanner: ScannerSection = _opt(ScannerSection(), doc="how QR codes are decoded")
    timings: TimingsSection = _opt(TimingsSection(), doc="relay, passage and debounce timings")
    clock: ClockSection = _opt(ClockSection(), doc="clock skew and time beacons")
    revocations: RevocationsSection = _opt(RevocationsSection(), doc="what a stale revocation list does")
    state: StateSection = _opt(StateSection(), doc="how long the gate's state keeps what no longer decides anything")
    logging: LoggingSection = _opt(LoggingSection(), doc="log level and format")
    health: HealthSection = _opt(HealthSection(), doc="health reporting")
    metrics: MetricsSection = _opt(MetricsSection(), doc="Prometheus HTTP endpoint")
    sim: SimSection | None = _opt(None, doc="simulator hooks; never on a real gate")
    source: Path | None = _opt(None, key=False)  # the file this was loaded from (not a key)


# --- loading ----------------------------------------------------------------------------------


def load(path: str | Path) -> Config:
    """Read and check a configuration file; ConfigError lists every problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(str(path), [("", f"cannot read ({exc.strerror})")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [("", undecodable(exc))]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [("", f"not valid TOML: {exc}")]) from None
    return from_dict(raw, base_dir=path.resolve().parent, source=str(path))


def from_dict(raw: dict, *, base_dir: Path = Path("."), source: str = "<config>") -> Config:
    reader = Reader(base_dir=base_dir)
    values = reader.section(Config, raw)
    problems = reader.problems
    _cross_checks(values, problems)  # only sections that parsed cleanly are in `values`
    if problems:
        raise ConfigError(source, problems)
    return Config(**values, source=Path(source) if source != "<config>" else None)


def _check_day(reader: str, text: str, expected: str) -> str | None:
    """`expected` when gated.daystart's `reader` (time_of_day, time_zone) refuses `text`."""
    from gated import daystart

    try:
        getattr(daystart, reader)(text)
    except daystart.DayStartError:
        return expected
    return None


def _check_listen(text: str) -> str | None:
    from gated.gate.metrics import check_listen

    return check_listen(text)


def _check_url(url: str) -> str | None:
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if parts.scheme not in MQTT_SCHEMES or not parts.hostname or not port_ok:
        return "mqtt://host[:port] or mqtts://host[:port]"
    if parts.username or parts.password or parts.query:
        return "a URL without credentials or options (they have their own keys: username, password_file, tls.*)"
    return None


def _cross_checks(v: dict, problems: list) -> None:
    """Checks that span keys (not the machine: that is `gated doctor`)."""
    mqtt = v.get("mqtt")
    if mqtt is not None:
        if mqtt.password is not None and mqtt.password_file is not None:
            problems.append(("mqtt.password_file", "give password or password_file, not both"))
        if (mqtt.password is not None or mqtt.password_file is not None) and mqtt.username is None:
            problems.append(("mqtt.username", "required when a password is given"))
        if (mqtt.tls.cert_file is None) != (mqtt.tls.key_file is None):
            problems.append(("mqtt.tls.key_file", "cert_file and key_file go together (mutual TLS needs both)"))
        has_tls_files = any(x is not None for x in (mqtt.tls.ca_file, mqtt.tls.cert_file, mqtt.tls.key_file))
        if has_tls_files and not mqtt.uses_tls:
            problems.append(("mqtt.url", "TLS files are set but mqtt:// is plain text; use mqtts://"))
    turnstile = v.get("turnstile")
    if turnstile is not None:
        from gated.gate.boards import BoardError, load_profile

        try:
            load_profile(turnstile.board, turnstile.boards_dir)
        except BoardError as exc:
            problems.extend(
                ("turnstile.board", f"profile {turnstile.board!r} ({exc.source}): {problem}")
                for problem in exc.problems
            )
    gate, turnstile = v.get("gate"), v.get("turnstile")
    if gate is not None and turnstile is not None and gate.direction == "both":
        from gated.gate.boards import BoardError, load_profile

        try:
            if load_profile(turnstile.board, turnstile.boards_dir).passage_out is None:
                problems.append(
                    (
                        "gate.direction",
                        f"'both' needs a passage sensor that tells direction: board "
                        f"{turnstile.board!r} has no [passage_out]",
                    )
                )
        except BoardError:
            pass  # reported above
    clock = v.get("clock")
    if clock is not None and clock.trust_system_clock and clock.ntp == "ignore":
        problems.append(
            (
                "clock.ntp",
                "'ignore' contradicts trust_system_clock = true (which trusts the system clock always); choose one",
            )
        )
    timings = v.get("timings")
    if (
        timings is not None
        and None not in (timings.held_open_s, timings.relay_pulse_s)
        and timings.held_open_s < timings.relay_pulse_s
    ):
        problems.append(
            (
                "timings.held_open_s",
                f"expected at least relay_pulse_s ({timings.relay_pulse_s}), got {timings.held_open_s}",
            )
        )


# --- reference ----------------------------------------------------------------------------------


def schema_keys(cls=Config, prefix: str = "") -> list[str]:
    """Every key path of the schema (sections included), for docs and the example-file test."""
    return tomlcheck.schema_keys(cls, prefix)
