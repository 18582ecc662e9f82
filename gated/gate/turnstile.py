"""The turnstile's hardware, over gpiozero: relay, passage sensor, LEDs, buzzer, emergency input,
optional door/arm position sensor, all from a board profile (gated/gate/boards.py).

Every device is built with the pin factory given (lgpio on a Raspberry Pi, as chosen by
GPIOZERO_PIN_FACTORY; gpiozero's MockFactory in tests and the simulator), so tests and the
simulator run the real gpiozero code on mock pins.

This module decides nothing: the Gate (gated/gate/gate.py) tells it to open, latch or signal, and
gets the inputs through one callback, `on_input(callback)`, called as callback(kind, active)
with kind "passage", "emergency" or "door". gpiozero calls it on its own threads: the callback
must only hand the news on (the Gate puts it in a queue).

Devices are held in attributes named for what they are (relay, passage, emergency, door, green,
red, buzzer): gpiozero output devices, and for the inputs an `Input` (a gpiozero
DigitalInputDevice read at the wiring's polarity, see there); gated/gate/rehearsal/control.py finds
and drives them by those names, with `active_level(name)` for the level that means active.

Safe state (fail-secure: the gate is shut while gated is not running):
- a clean stop: `close()` switches the relay off before closing the devices (on an active-low
  relay board the released pin floats and the board's own pull-up keeps the relay off);
- a crash, a watchdog kill, SIGKILL: the process cannot say what the pin is left at (the kernel
  may keep the line's last level after release), so systemd's stop step `ExecStopPost=gated
  relay-off` runs `relay_off()`, which drives the pin to its inactive level, after any stop;
- power-on: until gated starts, the firmware sets the level (`gpio=17=op,dl` style lines in
  firmware_config/raspberrypi/config.txt, one per board profile).
A turnstile that must open on power loss or during a fire alarm does so through its own
controller (its fail-safe setting, the fire panel wired to it), not through this program.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from gpiozero import LED, Buzzer, DigitalInputDevice, DigitalOutputDevice

from gated.core.decide import GateMode
from gated.core.reasons import Reason
from gated.gate.boards import BoardProfile, Feedback, InputSpec, OutputSpec

INPUT_KINDS = ("passage", "passage_out", "emergency", "door")
OUTPUT_NAMES = ("relay", "green", "red", "buzzer")
PULSE_GAP_S = 0.25  # relay off between two queued pulses, so a pulse-input controller counts both


class Turnstile:
    def __init__(self, profile: BoardProfile, *, pin_factory=None, pulse_ms: int | None = None):
        """Claim the board's pins. `pin_factory` None means gpiozero's default (GPIOZERO_PIN_FACTORY);
        `pulse_ms` overrides the profile's relay pulse (the daemon's timings.relay_pulse_s)."""
        self.profile = profile
        self.pin_factory = pin_factory
        self.pulse_s = (pulse_ms if pulse_ms is not None else profile.relay.pulse_ms) / 1000
        self.mode = GateMode.NORMAL
        self._callback: Callable[[str, bool], None] | None = None
        self._pulse_lock = threading.Lock()
        self._pulses_due = 0
        self._pulser: threading.Thread | None = None
        self._latched = False
        self._closing = threading.Event()
        self.relay = self.passage = self.passage_out = self.emergency = self.door = None
        self.green = self.red = self.buzzer = None
        try:
            self.relay = DigitalOutputDevice(
                profile.relay.pin, active_high=profile.relay.active_high, initial_value=False, pin_factory=pin_factory
            )
            self.green = _output(LED, profile.green, pin_factory)
            self.red = _output(LED, profile.red, pin_factory)
            self.buzzer = _output(Buzzer, profile.buzzer, pin_factory)
            for kind in INPUT_KINDS:
                spec = getattr(profile, kind)
                if spec is not None:
                    setattr(self, kind, self._input(kind, spec))
        except Exception:
            # half-claimed pins would stay reserved in this process: give them back, then say why
            self.close()
            raise

    # --- inputs ---------------------------------------------------------------------------------

    def _input(self, kind: str, spec: InputSpec) -> "Input":
        return Input(spec, pin_factory=self.pin_factory, on_change=lambda active: self._report(kind, active))

    def _report(self, kind: str, active: bool) -> None:
        callback = self._callback
        if callback is not None:
            callback(kind, active)

    def on_input(self, callback: Callable[[str, bool], None] | None) -> None:
        """Where input changes go: callback(kind, active), on gpiozero's threads."""
        self._callback = callback

    def input_active(self, kind: str) -> bool | None:
        """The input's level now (None: the board has no such input)."""
        device = getattr(self, kind)
        return None if device is None else bool(device.is_active)

    def active_level(self, name: str) -> bool:
        """Whether the device `name` (relay, passage, emergency, door, green, red, buzzer) is active
        when its pin is high, as the board profile wires it (the rehearsal controller drives and
        reads mock pins with it)."""
        spec = getattr(self.profile, name, None) if name in INPUT_KINDS + OUTPUT_NAMES else None
        if spec is None:
            raise ValueError(f"the board has no device {name!r}")
        return spec.active == "high" if isinstance(spec, InputSpec) else bool(spec.active_high)

    @property
    def counts_passages(self) -> bool:
        return self.passage is not None or self.door is not None

    # --- relay ----------------------------------------------------------------------------------

    def open(self) -> None:
        """Let one person through: a pulse of pulse_ms, or on until release() (hold mode).
        Pulses asked for while one is running queue up, each its own pulse after a short gap:
        two admissions in quick succession must let two people through, not one."""
        if self.profile.relay.mode == "hold":
            self.relay.on()
            return
        with self._pulse_lock:
            if self._pulser is not None:
                self._pulses_due += 1
                return
            if not self._latched:
                self.relay.on()  # the first pulse starts now, on the caller's thread: the relay command
            self._pulser = threading.Thread(target=self._pulse_train, name="relay-pulses", daemon=True)
            self._pulser.start()

    def _pulse_train(self) -> None:
        """Ends the running pulse, then plays the queued ones, each after a gap."""
        while True:
            self._closing.wait(self.pulse_s)
            with self._pulse_lock:
                if not self._latched and not self.relay.closed:
                    self.relay.off()
            self._closing.wait(PULSE_GAP_S)
            with self._pulse_lock:
                if self._pulses_due == 0 or self._latched or self._closing.is_set():
                    self._pulser = None
                    return
                self._pulses_due -= 1
                self.relay.on()

    def release(self) -> None:
        """No admission waits any more: a held relay lets go (a pulse ends by itself)."""
        if self.profile.relay.mode == "hold":
            self.relay.off()

    def latch(self) -> None:
        """Emergency: relay on and held (free passage), whatever it was doing; queued pulses are dropped."""
        with self._pulse_lock:
            self._latched = True
            self._pulses_due = 0
            self.relay.on()

    def unlatch(self) -> None:
        with self._pulse_lock:
            self._latched = False
            self.relay.off()

    # --- lights and sound -------------------------------------------------------------------------

    def show_mode(self, mode: GateMode) -> None:
        """Steady lights for the gate's mode: locked red, emergency green, normal dark."""
        self.mode = mode
        _set(self.green, mode is GateMode.EMERGENCY)
        _set(self.red, mode is GateMode.LOCKED)

    def signal(self, what: Reason | str) -> Feedback:
        """Feedback for a scan's reason (or "fault"), per the profile's patterns."""
        pattern = self.profile.feedback_for(what)
        self.feedback(pattern)
        return pattern

    def feedback(self, pattern: Feedback) -> None:
        if self.mode is GateMode.NORMAL and pattern.led != "none" and pattern.led_ms > 0:
            led, other = (self.green, self.red) if pattern.led == "green" else (self.red, self.green)
            _set(other, False)
            if led is not None:
                led.blink(on_time=pattern.led_ms / 1000, off_time=0, n=1, background=True)
        if self.buzzer is not None and pattern.beeps > 0 and pattern.beep_ms > 0:
            self.buzzer.blink(
                on_time=pattern.beep_ms / 1000, off_time=pattern.gap_ms / 1000, n=pattern.beeps, background=True
            )

    # --- shutdown (rehearsals drive the mock pins through gated/gate/rehearsal/control.py) -------------

    def close(self) -> None:
        """Relay off first (the safe state), then give every pin back. Safe to call twice."""
        self._callback = None
        self._closing.set()
        pulser = self._pulser
        if pulser is not None:
            pulser.join(timeout=1)
        if self.relay is not None and not self.relay.closed:
            self.relay.off()
        for name in ("passage", "passage_out", "emergency", "door", "green", "red", "buzzer", "relay"):
            device = getattr(self, name)
            if device is not None:
                device.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def relay_off(profile: BoardProfile, *, pin_factory=None) -> None:
    """Drive the board's relay pin to its inactive level, then give it back: the stop step after the
    daemon ended however it ended (`gated relay-off`, systemd's ExecStopPost). Raises gpiozero's
    GPIOPinInUse while a running gate holds the pin."""
    relay = DigitalOutputDevice(
        profile.relay.pin, active_high=profile.relay.active_high, initial_value=False, pin_factory=pin_factory
    )
    try:
        relay.off()
    finally:
        relay.close()


def _output(cls, spec: OutputSpec | None, pin_factory):
    if spec is None:
        return None
    return cls(spec.pin, active_high=spec.active_high, initial_value=False, pin_factory=pin_factory)


def _set(device, on: bool) -> None:
    if device is not None:
        device.on() if on else device.off()


class Input:
    """One input of the board: a gpiozero DigitalInputDevice, read at the level that means active
    for its wiring (the board profile's `active`).

    gpiozero ties an input's active level to its pull resistor (pulled up: active low; pulled
    down: active high) and refuses an explicit `active_state` beside a pull; setting the pull
    after construction would re-claim the line on lgpio and lose its edge alerts. So the device
    keeps gpiozero's polarity, and this class keeps the wiring's: when the two differ (an NC
    contact on a pull-up, which is active when it opens and reads high) `is_active`, `value`
    and the change callback are the inverse of the device's. Only gpiozero's public API is used.
    """

    def __init__(self, spec: InputSpec, *, pin_factory=None, on_change: Callable[[bool], None]):
        pull_up = {"up": True, "down": False, "none": None}[spec.pull]
        self.active_high = spec.active == "high"
        self.device = DigitalInputDevice(
            spec.pin,
            pull_up=pull_up,
            active_state=self.active_high if pull_up is None else None,
            bounce_time=spec.bounce_ms / 1000 if spec.bounce_ms else None,
            pin_factory=pin_factory,
        )
        # gpiozero's active level is the opposite of the pull's idle level; ours is the profile's
        self.inverted = pull_up is not None and self.active_high == pull_up
        self.device.when_activated = lambda: on_change(not self.inverted)
        self.device.when_deactivated = lambda: on_change(self.inverted)

    @property
    def is_active(self) -> bool:
        return bool(self.device.is_active) != self.inverted

    @property
    def value(self) -> int:
        return int(self.is_active)

    @property
    def pin(self):
        return self.device.pin

    @property
    def pin_factory(self):
        return self.device.pin_factory

    @property
    def pull_up(self) -> bool | None:
        return self.device.pull_up

    @property
    def closed(self) -> bool:
        return self.device.closed

    def close(self) -> None:
        self.device.close()

    def __repr__(self) -> str:
        return f"<gated Input on {self.device!r}, active {'high' if self.active_high else 'low'}>"
