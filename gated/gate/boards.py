"""Board profiles: the pin map and wiring of one turnstile model, from a TOML file.

Format (firmware_config/boards/*.toml; every table but [board] and [relay] is optional):

    [board]      name = "tripod-rotation"          description = "..."
    [relay]      pin = "GPIO17"                    active_high = true
                 mode = "pulse" | "hold"           pulse_ms = 500
                 # pulse: the relay closes for pulse_ms per admission (a turnstile controller's
                 #        "one passage" input); hold: closed until the passage or the timeout
                 #        (a door strike, a drop arm). "hold" needs a passage or door sensor.
    [passage]    pin, sensor = "beam" | "rotation", pull = "up" | "down" | "none",
                 active = "low" | "high", bounce_ms = 20
    [passage_out] pin, pull, active, bounce_ms     # a sensor that tells direction: its second
                 # contact, active once per person going out (a tripod controller's "passage B"
                 # output). With it [passage] means "in"; a gate with `direction = "both"` counts
                 # each "out" as a free exit (docs/protocol.md part 2, "Exits, re-entry and occupancy")
    [emergency]  pin, pull, active, bounce_ms      # fire-alarm dry contact: relay latched open
    [door]       pin, pull, active, bounce_ms      # arm/door position: active = open
    [leds]       green = pin, red = pin, active_high = true
    [buzzer]     pin, active_high = true
    [timing]     passage_timeout_s = 8.0, held_open_s = 30.0   # defaults for the daemon
    [feedback.<class>]  led = "green" | "red" | "none", led_ms, beeps, beep_ms, gap_ms

Pins are BCM numbers (17) or gpiozero names ("GPIO17", "BCM17", "BOARD11", "J8:11"); they are
checked against the 40-pin header and stored as "GPIO<n>". An input's `active` level may be
either level whatever its pull: an NC contact with a pull-up reads high when it opens (on
alarm, or when its wire is cut, which is why emergency contacts should be NC).

Feedback classes (a reason's class picks the pattern; a missing class falls back to `deny`):
    admit: ok        invalid: malformed unsupported unknown_key bad_signature static_copy
    wrong_place: wrong_event wrong_zone       wrong_time: not_yet_valid expired stale_code
    used: already_used   revoked: revoked unpaid unapproved questions   locked: locked capacity
    emergency: emergency   (rules: wrong_time)
    fault: the store failed (not a reason: the gate could not record the scan)

`load_board()` reports every problem at once, each with its key path (BoardError.problems); the tables
are declared below as frozen dataclasses and read by gated/tomlcheck.py, like the gate's config.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from gated.core.errors import GatedError, undecodable
from gated.core.reasons import Reason
from gated.tomlcheck import BAD, Reader, option

SOURCE_BOARDS_DIR = Path(__file__).resolve().parents[2] / "firmware_config" / "boards"
INSTALLED_BOARDS_DIR = Path("/usr/share/gated/boards")  # where docs/install-pi.md puts them beside a wheel
# a source checkout's profiles, else the installed ones (a wheel carries no profiles)
BOARDS_DIR = SOURCE_BOARDS_DIR if SOURCE_BOARDS_DIR.is_dir() else INSTALLED_BOARDS_DIR

REASON_CLASS: dict[Reason, str] = {
    Reason.OK: "admit",
    Reason.MALFORMED: "invalid",
    Reason.UNSUPPORTED: "invalid",
    Reason.UNKNOWN_KEY: "invalid",
    Reason.BAD_SIGNATURE: "invalid",
    Reason.STATIC_COPY: "invalid",
    Reason.WRONG_EVENT: "wrong_place",
    Reason.WRONG_ZONE: "wrong_place",
    Reason.NOT_YET_VALID: "wrong_time",
    Reason.EXPIRED: "wrong_time",
    Reason.STALE_CODE: "wrong_time",
    Reason.ALREADY_USED: "used",
    Reason.REVOKED: "revoked",
    Reason.LOCKED: "locked",
    Reason.CAPACITY: "locked",  # the zone is full: like a locked gate, come back when people have left
    Reason.UNSYNCED: "locked",  # a replaced gate not yet able to check: like a locked gate, use another lane
    Reason.EMERGENCY: "emergency",
    Reason.INTERNAL_ERROR: "fault",
    # a pretix check-in list's own reasons: the holder must go to the box office, as for a revoked ticket
    Reason.UNPAID: "revoked",
    Reason.UNAPPROVED: "revoked",
    Reason.QUESTIONS: "revoked",
    Reason.RULES: "wrong_time",  # mostly when (a time window, once a day, minutes since the last entry)
}
FEEDBACK_CLASSES = (
    "admit",
    "deny",
    "invalid",
    "wrong_place",
    "wrong_time",
    "used",
    "revoked",
    "locked",
    "emergency",
    "fault",
)


class BoardError(GatedError, ValueError):
    """A board profile is wrong; `problems` lists every one, each with its key path."""

    def __init__(self, source: str, problems: list[str]):
        self.source, self.problems = source, problems
        super().__init__(f"{source}: {len(problems)} problem(s) in the board profile:\n  " + "\n  ".join(problems))


def _pin(raw, reader: Reader, path: str, table: dict):
    """A GPIO pin of the 40-pin header, by BCM number or gpiozero name, stored as "GPIO<n>"; each pin
    used once in a profile (reader.context["pins"]: pin -> the first key path using it). An input's
    pin may not be one with a fixed pull-up resistor unless the input pulls up."""
    info = _header_pin(raw)
    if info is None:
        reader.problem(
            path,
            f"{raw!r} is not a GPIO pin of the 40-pin header "
            "(a BCM number 0-27, or a name like 'GPIO17', 'BOARD11', 'J8:11')",
        )
        return BAD
    if path.rsplit(".", 1)[-1] == "pin" and path.split(".")[0] in INPUTS:  # an input: its pull matters
        pull = table.get("pull", "up") if table.get("pull") in PULLS else "up"
        if info.pull == "up" and pull != "up":
            reader.problem(path, f"{info.name} has a fixed pull-up resistor (I2C); use pull = 'up' or another pin")
            return BAD
    pins = reader.context.setdefault("pins", {})
    if info.name in pins:
        reader.problem(path, f"{info.name} is already used by {pins[info.name]}")
        return BAD
    pins[info.name] = path
    return info.name


PIN_DOC = 'BCM number (17) or gpiozero name ("GPIO17", "BOARD11", "J8:11")'
PULLS = ("up", "down", "none")
INPUTS = ("passage", "passage_out", "emergency", "door")


@dataclass(frozen=True)
class Feedback:
    led: str = option("none", doc="LED lit for the pattern", choices=("green", "red", "none"))
    led_ms: int = option(0, doc="how long the LED is lit", minimum=0, maximum=60_000)
    beeps: int = option(0, doc="buzzer beeps", minimum=0, maximum=10)
    beep_ms: int = option(0, doc="length of one beep", minimum=0, maximum=10_000)
    gap_ms: int = option(100, doc="pause between beeps", minimum=0, maximum=10_000)


DEFAULT_FEEDBACK: dict[str, Feedback] = {
    "admit": Feedback("green", 1000, 1, 100),  # green and a short beep
    "deny": Feedback("red", 1500, 1, 600),  # red and a long beep
    "emergency": Feedback("none", 0, 0, 0),  # green is latched on; no noise
    "fault": Feedback("red", 3000, 3, 200, 200),
}


@dataclass(frozen=True)
class RelaySpec:
    pin: str = option(doc=PIN_DOC, parse=_pin)
    active_high: bool = option(True, doc="HIGH energises the relay")
    mode: str = option(
        "pulse",
        doc="pulse: closed pulse_ms per admission; hold: until the passage or the timeout",
        choices=("pulse", "hold"),
    )
    pulse_ms: int = option(500, doc="relay pulse per admission", minimum=20, maximum=60_000)


@dataclass(frozen=True)
class InputSpec:
    pin: str = option(doc=PIN_DOC, parse=_pin)
    pull: str = option("up", doc="internal resistor: up, down, or none (external)", choices=PULLS)
    active: str | None = option(
        None,
        doc="level of the pin when the input is active (default: low, high with pull = down)",
        choices=("low", "high"),
    )
    bounce_ms: int = option(20, doc="debounce time", minimum=0, maximum=1000)
    sensor: str = option("", key=False)  # passage only: "beam" or "rotation"

    def __post_init__(self):
        if self.active is None:
            object.__setattr__(self, "active", "high" if self.pull == "down" else "low")


@dataclass(frozen=True, kw_only=True)
class PassageSpec(InputSpec):
    """The passage sensor: an input that says what kind of sensor it is."""

    sensor: str = option(
        doc="beam (a light barrier) or rotation (the arms' rotation contact)", choices=("beam", "rotation")
    )


@dataclass(frozen=True)
class OutputSpec:
    pin: str = option(doc=PIN_DOC, parse=_pin)
    active_high: bool = option(True, doc="HIGH switches it on")


@dataclass(frozen=True)
class Timing:
    passage_timeout_s: float = option(
        8.0, doc="default for the daemon: nobody passed within this, roll back", minimum=0.5, maximum=600
    )
    held_open_s: float = option(
        30.0, doc="default for the daemon: open longer than this, held_open alarm", minimum=1, maximum=3600
    )


@dataclass(frozen=True)
class _BoardName:
    name: str = option(doc="the profile's name")
    description: str = option("", doc="what the turnstile model is")


@dataclass(frozen=True)
class _Leds:
    active_high: bool = option(True, doc="HIGH lights the LEDs")
    green: str | None = option(None, doc=PIN_DOC, parse=_pin)
    red: str | None = option(None, doc=PIN_DOC, parse=_pin)


def _feedback(raw, reader: Reader, path: str, table: dict):
    """[feedback.<class>] tables: a Feedback per class named (FEEDBACK_CLASSES), each read on its own, so
    that the patterns that are right are known even when another is wrong."""
    if not isinstance(raw, dict):
        return reader.expected(path, "a table of feedback patterns", raw)
    for name in sorted(set(raw) - set(FEEDBACK_CLASSES)):
        reader.problem(f"{path}.{name}", f"unknown key in {path} (known: {', '.join(sorted(FEEDBACK_CLASSES))})")
    patterns = {name: reader.table(Feedback, raw[name], f"{path}.{name}") for name in FEEDBACK_CLASSES if name in raw}
    return {name: pattern for name, pattern in patterns.items() if pattern is not BAD}


@dataclass(frozen=True)
class _ProfileFile:
    """A board profile file, table by table (the format in the module's docstring)."""

    board: _BoardName = option(doc="the profile")
    relay: RelaySpec = option(doc="the relay that lets one person through")
    passage: PassageSpec | None = option(None, doc="the passage sensor")
    passage_out: InputSpec | None = option(None, doc="the passage sensor's out contact (one that tells direction)")
    emergency: InputSpec | None = option(None, doc="the fire-alarm dry contact")
    door: InputSpec | None = option(None, doc="the arm or door position contact (active = open)")
    leds: _Leds | None = option(None, doc="the green and red LEDs")
    buzzer: OutputSpec | None = option(None, doc="the buzzer")
    timing: Timing = option(Timing(), doc="the daemon's default timings for this turnstile")
    feedback: dict | None = option(
        None, doc="feedback patterns per reason class: [feedback.<class>] tables of Feedback", parse=_feedback
    )


@dataclass(frozen=True)
class BoardProfile:
    name: str
    description: str
    relay: RelaySpec
    passage: InputSpec | None = None
    passage_out: InputSpec | None = None  # the out direction of a passage sensor that tells direction
    emergency: InputSpec | None = None
    door: InputSpec | None = None
    green: OutputSpec | None = None
    red: OutputSpec | None = None
    buzzer: OutputSpec | None = None
    timing: Timing = Timing()
    feedback: tuple[tuple[str, Feedback], ...] = tuple(DEFAULT_FEEDBACK.items())
    source: str = "<dict>"

    @property
    def counts_passages(self) -> bool:
        """True if something tells when a person went through (passage or door sensor)."""
        return self.passage is not None or self.door is not None

    def feedback_for(self, what: Reason | str) -> Feedback:
        """The pattern for a reason (or a class name such as "fault")."""
        name = REASON_CLASS.get(what, "deny") if isinstance(what, Reason) else what
        patterns = dict(self.feedback)
        return patterns.get(name) or patterns.get("deny") or DEFAULT_FEEDBACK["deny"]


def shipped_boards(boards_dir: str | os.PathLike | None = None) -> list[Path]:
    return sorted(Path(boards_dir or BOARDS_DIR).glob("*.toml"))


def load_board(name_or_path: str | os.PathLike, boards_dir: str | os.PathLike | None = None) -> BoardProfile:
    """Load a profile by file path, or by name ("tripod-rotation") from `boards_dir`
    (default: firmware_config/boards/ beside the package)."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = Path(boards_dir or BOARDS_DIR) / f"{name_or_path}.toml"
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        known = ", ".join(p.stem for p in shipped_boards(boards_dir))
        where = Path(boards_dir or BOARDS_DIR)
        raise BoardError(
            str(path),
            [
                f"no such board profile (in {where}: {known})"
                if known
                else f"no board profiles in {where}: copy firmware_config/boards/ there "
                "(docs/install-pi.md, step 2) or give a profile's path"
            ],
        ) from None
    except UnicodeDecodeError as exc:
        raise BoardError(str(path), [undecodable(exc)]) from None
    except tomllib.TOMLDecodeError as exc:
        raise BoardError(str(path), [f"not valid TOML: {exc}"]) from None
    except OSError as exc:
        raise BoardError(str(path), [f"cannot read ({exc.strerror})"]) from None
    return board_from_dict(data, source=str(path))


def load_profile(name: str, boards_dir: str | os.PathLike | None = None) -> BoardProfile:
    """The profile a gate's configuration names (`[turnstile] board`, a name, never a path): the file
    NAME.toml in `boards_dir` (default: the shipped firmware_config/boards/)."""
    return load_board(Path(boards_dir or BOARDS_DIR) / f"{name}.toml", boards_dir)


def board_from_dict(data: dict, source: str = "<dict>") -> BoardProfile:
    """Build a profile from parsed TOML (also for a profile embedded in another config)."""
    reader = Reader(context={"pins": {}})
    v = reader.section(_ProfileFile, data)
    board, relay, passage, door, leds = (v.get(k) for k in ("board", "relay", "passage", "door", "leds"))
    written = {key for key, table in data.items() if isinstance(table, dict)}  # tables the file has, right or not
    if "passage_out" in written and "passage" not in written:
        reader.problem("passage_out", "a direction contact needs the [passage] sensor it belongs to")
    green = OutputSpec(leds.green, leds.active_high) if leds is not None and leds.green is not None else None
    red = OutputSpec(leds.red, leds.active_high) if leds is not None and leds.red is not None else None
    stated = v.get("feedback") or {}
    feedback = {**DEFAULT_FEEDBACK, **stated}
    mode = data["relay"].get("mode") if "relay" in written else None
    if mode == "hold" and "passage" not in written and "door" not in written:
        reader.problem("relay.mode", "'hold' needs a [passage] or [door] sensor to know when to let go; use 'pulse'")
    # A board without LEDs or buzzer is fine (a controller with its own lights); a pattern the
    # profile asks for explicitly must have its LED.
    has = {colour: "leds" in written and colour in data["leds"] for colour in ("green", "red")}
    for cls in sorted(stated):
        pattern = stated[cls]
        if pattern.led in has and not has[pattern.led]:
            reader.problem(f"feedback.{cls}.led", f"{pattern.led!r} but [leds] has no {pattern.led} pin")
    if reader.problems:
        raise BoardError(source, [f"{path}: {text}" if path else text for path, text in reader.problems])
    return BoardProfile(
        name=board.name,
        description=board.description,
        relay=relay,
        passage=passage,
        passage_out=v.get("passage_out"),
        emergency=v.get("emergency"),
        door=door,
        green=green,
        red=red,
        buzzer=v.get("buzzer"),
        timing=v["timing"] if "timing" in v else Timing(),
        feedback=tuple(feedback.items()),
        source=source,
    )


def _header_pin(value):
    """gpiozero's own description of the 40-pin header (same on every 40-pin Raspberry Pi)."""
    from gpiozero.pins.pi import PiBoardInfo

    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    board = PiBoardInfo.from_revision(0xA02082)
    for _header, info in board.find_pin(value):
        if "gpio" in info.interfaces and info.name.startswith("GPIO"):
            return info
    return None


# --- wiring diagrams (docs/install-pi.md prints one per shipped profile) ------------------------


def _roles(profile: BoardProfile) -> list[tuple[str, str, str]]:
    """(role, pin name, what the pin does) for every pin the profile uses, header order aside."""
    out = []
    r = profile.relay
    out.append(
        (
            "relay",
            r.pin,
            f"output, {'HIGH' if r.active_high else 'LOW'} energises the relay "
            f"({r.mode}{f' {r.pulse_ms} ms' if r.mode == 'pulse' else ''})",
        )
    )
    for role, spec in (("passage", profile.passage), ("emergency", profile.emergency), ("door", profile.door)):
        if spec is not None:
            kind = f" {spec.sensor} sensor," if spec.sensor else ""
            pull = {"up": "internal pull-up", "down": "internal pull-down", "none": "external resistor"}[spec.pull]
            out.append((role, spec.pin, f"input,{kind} active {spec.active.upper()}, {pull}"))
    for role, spec in (("green LED", profile.green), ("red LED", profile.red), ("buzzer", profile.buzzer)):
        if spec is not None:
            out.append((role, spec.pin, f"output, {'HIGH' if spec.active_high else 'LOW'} = on"))
    return out


def wiring_diagram(profile: BoardProfile) -> str:
    """The 40-pin header with the profile's pins marked, and a line per connection."""
    from gpiozero.pins.pi import PiBoardInfo

    header = PiBoardInfo.from_revision(0xA02082).headers["J8"].pins
    used = {pin: role for role, pin, _ in _roles(profile)}
    left_width = max(len(role) for role in used.values()) if used else 0
    lines = [
        f"{profile.name}: {profile.description}",
        "",
        "Raspberry Pi 40-pin header, seen from above (pin 1 has the square solder pad):",
        "",
    ]
    for odd in range(1, 41, 2):
        a, b = header[odd], header[odd + 1]
        left = used.get(a.name, "")
        right = used.get(b.name, "")
        lines.append(
            f"  {left:>{left_width}} {'--' if left else '  '} {a.name:>6} ({odd:2d}) ({odd + 1:2d}) "
            f"{b.name:<6} {'--' if right else '  '} {right}".rstrip()
        )
    lines += ["", "Connections:"]
    for role, pin, what in _roles(profile):
        number = next(n for n, info in header.items() if info.name == pin)
        lines.append(f"  {role:<10} {pin:<7} pin {number:<3} {what}")
    grounds = ", ".join(str(n) for n, info in header.items() if info.name == "GND")
    lines.append(f"  ground     GND     pins {grounds} (any; share it with every sensor and module)")
    return "\n".join(lines) + "\n"
