"""Mock pins for the turnstile and gate tests: gpiozero's own MockFactory, driven as the world would.

`drive()` works from the board profile's wiring alone (pull and active level), not through the
Turnstile, so a test that drives a pin checks the turnstile's polarity handling rather than
repeating it."""

from __future__ import annotations

import threading

import pytest
from gpiozero.pins.mock import MockFactory

from gated.gate.boards import BoardProfile, InputSpec, board_from_dict


@pytest.fixture
def pins():
    """A fresh MockFactory per test (pins and reservations start clean)."""
    factory = MockFactory()
    yield factory
    factory.reset()


def drive(factory: MockFactory, spec: InputSpec, active: bool) -> None:
    """Put an input's pin at the level that means `active` for its wiring."""
    high = (spec.active == "high") == active
    pin = factory.pin(spec.pin)
    pin.drive_high() if high else pin.drive_low()


def level(factory: MockFactory, pin_name: str) -> bool:
    return bool(factory.pin(pin_name).state)


def relay_on(factory: MockFactory, profile: BoardProfile) -> bool:
    """Is the relay energised (whatever its polarity)?"""
    return level(factory, profile.relay.pin) == profile.relay.active_high


class FakeClock:
    """A wall clock the test moves by hand (thread-safe: gpiozero callbacks read it)."""

    def __init__(self, start: float = 1_790_000_000.0):
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now


def profile(**overrides) -> BoardProfile:
    """A test board: pulse relay on GPIO17, beam on GPIO27, emergency on GPIO22, LEDs 5/6,
    buzzer 13, short feedback patterns. Tables in `overrides` replace (None: remove) the default's."""
    data = {
        "board": {"name": "test-board", "description": "tests"},
        "relay": {"pin": "GPIO17", "active_high": True, "mode": "pulse", "pulse_ms": 100},
        "passage": {"pin": "GPIO27", "sensor": "beam", "pull": "up", "active": "low", "bounce_ms": 0},
        "emergency": {"pin": "GPIO22", "pull": "up", "active": "low"},
        "leds": {"green": "GPIO5", "red": "GPIO6"},
        "buzzer": {"pin": "GPIO13"},
        "feedback": {
            "admit": {"led": "green", "led_ms": 100, "beeps": 1, "beep_ms": 50},
            "deny": {"led": "red", "led_ms": 150, "beeps": 1, "beep_ms": 150},
            "used": {"led": "red", "led_ms": 100, "beeps": 2, "beep_ms": 50, "gap_ms": 50},
        },
    }
    for key, value in overrides.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return board_from_dict(data, source="tests.support.pins.profile")
