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

`load_board()` reports every problem at once, each with its key path (BoardError.problems).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from gated.core.errors import GatedError
from gated.core.reasons import Reason
from gated.tomlcheck import TableReader

SOURCE_BOARDS_DIR = Path(__file__).resolve().parents[2] / "firmware_config" / "boards"
INSTALLED_BOARDS_DIR = Path("/usr/share/gated/boards")  # where docs/install-pi.md puts them beside a wheel
# a source checkout's profiles, else the installed ones (a wheel carries no profiles)
BOARDS_DIR = SOURCE_BOARDS_DIR if SOURCE_BOARDS_DIR.is_dir() else INSTALLED_BOARDS_DIR

REASON_CLASS: dict[Reason, str] = {
    Reason.OK: "admit",
    Reason.MALFORMED: "invalid", Reason.UNSUPPORTED: "invalid", Reason.UNKNOWN_KEY: "invalid",
    Reason.BAD_SIGNATURE: "invalid", Reason.STATIC_COPY: "invalid",
    Reason.WRONG_EVENT: "wrong_place", Reason.WRONG_ZONE: "wrong_place",
    Reason.NOT_YET_VALID: "wrong_time", Reason.EXPIRED: "wrong_time", Reason.STALE_CODE: "wrong_time",
    Reason.ALREADY_USED: "used", Reason.REVOKED: "revoked", Reason.LOCKED: "locked",
    Reason.CAPACITY: "locked",  # the zone is full: like a locked gate, come back when people have left
    Reason.EMERGENCY: "emergency", Reason.INTERNAL_ERROR: "fault",
    # a pretix check-in list's own reasons: the holder must go to the box office, as for a revoked ticket
    Reason.UNPAID: "revoked", Reason.UNAPPROVED: "revoked", Reason.QUESTIONS: "revoked",
    Reason.RULES: "wrong_time",  # mostly when (a time window, once a day, minutes since the last entry)
}
FEEDBACK_CLASSES = ("admit", "deny", "invalid", "wrong_place", "wrong_time", "used", "revoked", "locked",
                    "emergency", "fault")


class BoardError(GatedError, ValueError):
    """A board profile is wrong; `problems` lists every one, each with its key path."""

    def __init__(self, source: str, problems: list[str]):
        self.source, self.problems = source, problems
        super().__init__(f"{source}: {len(problems)} problem(s) in the board profile:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class Feedback:
    led: str = "none"  # "green", "red" or "none"
    led_ms: int = 0
    beeps: int = 0
    beep_ms: int = 0
    gap_ms: int = 100


DEFAULT_FEEDBACK: dict[str, Feedback] = {
    "admit": Feedback("green", 1000, 1, 100),  # green and a short beep
    "deny": Feedback("red", 1500, 1, 600),  # red and a long beep
    "emergency": Feedback("none", 0, 0, 0),  # green is latched on; no noise
    "fault": Feedback("red", 3000, 3, 200, 200),
}


@dataclass(frozen=True)
class RelaySpec:
    pin: str
    active_high: bool = True
    mode: str = "pulse"  # "pulse" or "hold"
    pulse_ms: int = 500


@dataclass(frozen=True)
class InputSpec:
    pin: str
    pull: str = "up"  # "up", "down", "none" (external resistor)
    active: str = "low"  # level of the pin when the input is active
    bounce_ms: int = 20
    sensor: str = ""  # passage only: "beam" or "rotation"


@dataclass(frozen=True)
class OutputSpec:
    pin: str
    active_high: bool = True


@dataclass(frozen=True)
class Timing:
    passage_timeout_s: float = 8.0
    held_open_s: float = 30.0


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
        raise BoardError(str(path), [f"no such board profile (in {where}: {known})" if known else
                                     f"no board profiles in {where}: copy firmware_config/boards/ there "
                                     "(docs/install-pi.md, step 2) or give a profile's path"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
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
    c = _Checker()
    c.known(data, "", {"board", "relay", "passage", "passage_out", "emergency", "door", "leds", "buzzer", "timing",
                      "feedback"})
    board = c.table(data, "board", required=True)
    c.known(board, "board", {"name", "description"})
    name = c.text(board, "board.name", required=True)
    description = c.text(board, "board.description", default="")

    relay = _relay(c, c.table(data, "relay", required=True))
    passage = _input(c, data, "passage")
    passage_out = _input(c, data, "passage_out")
    if passage_out is not None and passage is None:
        c.problem("passage_out", "a direction contact needs the [passage] sensor it belongs to")
    emergency = _input(c, data, "emergency")
    door = _input(c, data, "door")
    green = red = buzzer = None
    if (leds := c.table(data, "leds")) is not None:
        c.known(leds, "leds", {"green", "red", "active_high"})
        active_high = c.boolean(leds, "leds.active_high", default=True)
        if "green" in leds:
            green = OutputSpec(c.pin(leds, "leds.green"), active_high)
        if "red" in leds:
            red = OutputSpec(c.pin(leds, "leds.red"), active_high)
    if (buzz := c.table(data, "buzzer")) is not None:
        c.known(buzz, "buzzer", {"pin", "active_high"})
        buzzer = OutputSpec(c.pin(buzz, "buzzer.pin", required=True), c.boolean(buzz, "buzzer.active_high", default=True))
    timing = Timing()
    if (t := c.table(data, "timing")) is not None:
        c.known(t, "timing", {"passage_timeout_s", "held_open_s"})
        timing = Timing(c.number(t, "timing.passage_timeout_s", 0.5, 600, default=8.0),
                        c.number(t, "timing.held_open_s", 1, 3600, default=30.0))
    feedback = dict(DEFAULT_FEEDBACK)
    if (fb := c.table(data, "feedback")) is not None:
        c.known(fb, "feedback", set(FEEDBACK_CLASSES))
        for cls in FEEDBACK_CLASSES:
            if (pattern := c.table(fb, cls, prefix="feedback.")) is not None:
                feedback[cls] = _feedback(c, pattern, f"feedback.{cls}")

    if relay is not None and relay.mode == "hold" and passage is None and door is None:
        c.problem("relay.mode", "'hold' needs a [passage] or [door] sensor to know when to let go; use 'pulse'")
    # A board without LEDs or buzzer is fine (a controller with its own lights); a pattern the
    # profile asks for explicitly must have its LED.
    for cls in sorted(fb or {}):
        pattern = feedback.get(cls)
        if pattern is not None and (pattern.led == "green" and green is None or pattern.led == "red" and red is None):
            c.problem(f"feedback.{cls}.led", f"{pattern.led!r} but [leds] has no {pattern.led} pin")
    if c.problems:
        raise BoardError(source, c.problems)
    return BoardProfile(name=name, description=description, relay=relay, passage=passage, passage_out=passage_out,
                        emergency=emergency,
                        door=door, green=green, red=red, buzzer=buzzer, timing=timing,
                        feedback=tuple(feedback.items()), source=source)


# --- parts ----------------------------------------------------------------------------------

def _relay(c: "_Checker", t: dict | None) -> RelaySpec | None:
    if t is None:
        return None
    c.known(t, "relay", {"pin", "active_high", "mode", "pulse_ms"})
    return RelaySpec(pin=c.pin(t, "relay.pin", required=True),
                     active_high=c.boolean(t, "relay.active_high", default=True),
                     mode=c.choice(t, "relay.mode", ("pulse", "hold"), default="pulse"),
                     pulse_ms=c.integer(t, "relay.pulse_ms", 20, 60_000, default=500))


def _input(c: "_Checker", data: dict, key: str) -> InputSpec | None:
    t = c.table(data, key)
    if t is None:
        return None
    extra = {"sensor"} if key == "passage" else set()
    c.known(t, key, {"pin", "pull", "active", "bounce_ms"} | extra)
    pull = c.choice(t, f"{key}.pull", ("up", "down", "none"), default="up")
    spec = InputSpec(pin=c.pin(t, f"{key}.pin", required=True, pull=pull),
                     pull=pull,
                     active=c.choice(t, f"{key}.active", ("low", "high"), default="low" if pull != "down" else "high"),
                     bounce_ms=c.integer(t, f"{key}.bounce_ms", 0, 1000, default=20),
                     sensor=c.choice(t, f"{key}.sensor", ("beam", "rotation"), required=True) if extra else "")
    return spec


def _feedback(c: "_Checker", t: dict, path: str) -> Feedback:
    c.known(t, path, {"led", "led_ms", "beeps", "beep_ms", "gap_ms"})
    return Feedback(led=c.choice(t, f"{path}.led", ("green", "red", "none"), default="none"),
                    led_ms=c.integer(t, f"{path}.led_ms", 0, 60_000, default=0),
                    beeps=c.integer(t, f"{path}.beeps", 0, 10, default=0),
                    beep_ms=c.integer(t, f"{path}.beep_ms", 0, 10_000, default=0),
                    gap_ms=c.integer(t, f"{path}.gap_ms", 0, 10_000, default=100))


class _Checker(TableReader):
    """The shared reader (gated/tomlcheck.py) plus GPIO pins, each used once."""

    def __init__(self):
        super().__init__()
        self.pins: dict[str, str] = {}  # "GPIO17" -> first key path using it

    def table(self, t: dict, key: str, required: bool = False, prefix: str = "") -> dict | None:
        value = t.get(key) if isinstance(t, dict) else None
        if value is None and required:
            self.problem(prefix + key, "required table")
            return None
        return super().table(t, key, prefix=prefix)

    def pin(self, t, path, required=True, pull=None) -> str:
        key = path.rsplit(".", 1)[-1]
        if not isinstance(t, dict) or key not in t:
            if required:
                self.problem(path, "required")
            return ""
        value = t[key]
        info = _header_pin(value)
        if info is None:
            self.problem(path, f"{value!r} is not a GPIO pin of the 40-pin header "
                               "(a BCM number 0-27, or a name like 'GPIO17', 'BOARD11', 'J8:11')")
            return ""
        if pull is not None and info.pull == "up" and pull != "up":
            self.problem(path, f"{info.name} has a fixed pull-up resistor (I2C); use pull = 'up' or another pin")
        if info.name in self.pins:
            self.problem(path, f"{info.name} is already used by {self.pins[info.name]}")
        else:
            self.pins[info.name] = path
        return info.name


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
    out.append(("relay", r.pin, f"output, {'HIGH' if r.active_high else 'LOW'} energises the relay "
                                f"({r.mode}{f' {r.pulse_ms} ms' if r.mode == 'pulse' else ''})"))
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
    lines = [f"{profile.name}: {profile.description}", "",
             "Raspberry Pi 40-pin header, seen from above (pin 1 has the square solder pad):", ""]
    for odd in range(1, 41, 2):
        a, b = header[odd], header[odd + 1]
        left = used.get(a.name, "")
        right = used.get(b.name, "")
        lines.append(f"  {left:>{left_width}} {'--' if left else '  '} {a.name:>6} ({odd:2d}) ({odd + 1:2d}) "
                     f"{b.name:<6} {'--' if right else '  '} {right}".rstrip())
    lines += ["", "Connections:"]
    for role, pin, what in _roles(profile):
        number = next(n for n, info in header.items() if info.name == pin)
        lines.append(f"  {role:<10} {pin:<7} pin {number:<3} {what}")
    grounds = ", ".join(str(n) for n, info in header.items() if info.name == "GND")
    lines.append(f"  ground     GND     pins {grounds} (any; share it with every sensor and module)")
    return "\n".join(lines) + "\n"
