"""The turnstile on gpiozero's MockFactory: real gpiozero devices, mock pins, states and their times."""

from __future__ import annotations

import time

import pytest
from gpiozero import Device
from gpiozero.exc import GPIOPinInUse

from gated.core.decide import GateMode
from gated.core.reasons import Reason
from gated.gate.boards import load_board, shipped_boards
from gated.gate.rehearsal import control as simcontrol
from gated.gate.turnstile import Turnstile
from tests.support.pins import drive, level, pins, profile  # noqa: F401  (pins is a fixture)
from tests.support.waiting import wait_for

SHIPPED = shipped_boards()


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_device_uses_the_factory_given_and_starts_safe(pins, path):
    board = load_board(path)
    with Turnstile(board, pin_factory=pins) as turnstile:
        devices = simcontrol.find_devices(turnstile)
        assert devices, "nothing found"
        for name, device in devices.items():
            assert device.pin_factory is pins, name
        assert Device.pin_factory is not pins  # given to each device, not installed as gpiozero's default
        assert turnstile.relay.value == 0
        assert level(pins, board.relay.pin) is (not board.relay.active_high)  # relay off at its polarity
        for kind in ("passage", "passage_out", "emergency", "door"):
            assert (getattr(turnstile, kind) is not None) == (getattr(board, kind) is not None)
            if getattr(board, kind) is not None:
                assert turnstile.input_active(kind) is False  # nothing happening on an idle mock board


def test_pulse_has_its_length(pins):
    board = profile()
    with Turnstile(board, pin_factory=pins) as turnstile:
        relay = pins.pin("GPIO17")
        relay.clear_states()
        turnstile.open()
        assert wait_for(lambda: len(relay.states) >= 3)
        relay.assert_states_and_times([(0.0, False), (0.0, True), (0.1, False)])


def test_pulse_override_and_active_low_relay(pins):
    board = profile(relay={"pin": "GPIO17", "active_high": False, "mode": "pulse", "pulse_ms": 100})
    with Turnstile(board, pin_factory=pins, pulse_ms=200) as turnstile:
        relay = pins.pin("GPIO17")
        assert relay.state is True  # off = high on an active-low module
        relay.clear_states()
        turnstile.open()
        assert wait_for(lambda: len(relay.states) >= 3)
        relay.assert_states_and_times([(0.0, True), (0.0, False), (0.2, True)])


def test_two_quick_admissions_are_two_pulses(pins):
    """A pulse-input turnstile counts pulses: a second open() during a pulse must not merge into it."""
    from gated.gate.turnstile import PULSE_GAP_S

    with Turnstile(profile(), pin_factory=pins) as turnstile:
        relay = pins.pin("GPIO17")
        relay.clear_states()
        turnstile.open()
        time.sleep(0.03)
        turnstile.open()
        assert wait_for(lambda: len(relay.states) >= 5)
        relay.assert_states_and_times([(0.0, False), (0.0, True), (0.1, False), (PULSE_GAP_S, True), (0.1, False)])


def test_hold_mode_stays_on_until_released(pins):
    board = profile(relay={"pin": "GPIO17", "mode": "hold"})
    with Turnstile(board, pin_factory=pins) as turnstile:
        turnstile.open()
        time.sleep(0.15)
        assert turnstile.relay.value == 1
        turnstile.release()
        assert turnstile.relay.value == 0


def test_release_does_not_cut_a_pulse_short(pins):
    with Turnstile(profile(), pin_factory=pins) as turnstile:
        relay = pins.pin("GPIO17")
        relay.clear_states()
        turnstile.open()
        turnstile.release()
        assert wait_for(lambda: len(relay.states) >= 3)
        relay.assert_states_and_times([(0.0, False), (0.0, True), (0.1, False)])


def test_latch_holds_the_relay_through_a_pulse(pins):
    with Turnstile(profile(), pin_factory=pins) as turnstile:
        turnstile.open()
        turnstile.latch()
        time.sleep(0.2)  # longer than the pulse: a latched relay does not drop with it
        assert turnstile.relay.value == 1
        turnstile.unlatch()
        assert turnstile.relay.value == 0


def test_close_switches_the_relay_off_and_gives_the_pins_back(pins):
    board = profile()
    turnstile = Turnstile(board, pin_factory=pins)
    turnstile.latch()
    turnstile.close()
    turnstile.close()  # twice is fine
    relay = pins.pin("GPIO17")
    assert [s.state for s in relay.states][-1] is False  # last level driven was "off"
    assert relay.function == "input"  # released
    Turnstile(board, pin_factory=pins).close()  # the pins can be claimed again


def test_pins_in_use_are_refused_and_nothing_stays_claimed(pins):
    first = Turnstile(profile(), pin_factory=pins)
    with pytest.raises(GPIOPinInUse):
        Turnstile(profile(), pin_factory=pins)
    first.close()
    Turnstile(profile(), pin_factory=pins).close()


def test_inputs_report_kind_and_activity(pins):
    board = profile()
    seen = []
    with Turnstile(board, pin_factory=pins) as turnstile:
        turnstile.on_input(lambda kind, active: seen.append((kind, active)))
        drive(pins, board.passage, True)
        assert turnstile.input_active("passage") is True
        drive(pins, board.passage, False)
        drive(pins, board.emergency, True)
        assert seen == [("passage", True), ("passage", False), ("emergency", True)]
        assert pins.pin("GPIO27").state is True  # pull-up, idle high; the beam pulled it low and let go


def test_nc_contact_on_a_pull_up_is_active_high(pins):
    # a fire-alarm NC contact: closed (low) normally, opens (high) on alarm or a cut wire
    board = profile(emergency={"pin": "GPIO22", "pull": "up", "active": "high"})
    seen = []
    with Turnstile(board, pin_factory=pins) as turnstile:
        assert turnstile.input_active("emergency") is True  # nothing wired to a mock pin: contact open
        turnstile.on_input(lambda kind, active: seen.append((kind, active)))
        pins.pin("GPIO22").drive_low()  # the contact closes
        assert turnstile.input_active("emergency") is False
        pins.pin("GPIO22").drive_high()  # the alarm opens it
        assert seen == [("emergency", False), ("emergency", True)]
        assert turnstile.emergency.pull_up is True and turnstile.emergency.is_active


@pytest.mark.parametrize(
    "pull, active, idle_active",
    [("down", "high", False), ("down", "low", True), ("none", "high", False), ("none", "low", True)],
)
def test_other_wirings(pins, pull, active, idle_active):
    board = profile(passage={"pin": "GPIO27", "sensor": "beam", "pull": pull, "active": active})
    seen = []
    with Turnstile(board, pin_factory=pins) as turnstile:
        assert turnstile.input_active("passage") is idle_active  # a mock pin idles low
        turnstile.on_input(lambda kind, active_: seen.append(active_))
        drive(pins, board.passage, False)
        drive(pins, board.passage, True)
        assert turnstile.input_active("passage") is True
        assert seen == ([True] if not idle_active else [False, True])


def test_rehearsal_control_drives_mock_pins_at_the_right_level(pins):
    board = profile(emergency={"pin": "GPIO22", "pull": "up", "active": "high"})
    with Turnstile(board, pin_factory=pins) as turnstile:
        control = simcontrol.Controller(camera=None, turnstile=turnstile)
        control.drive("emergency", active=False)
        assert pins.pin("GPIO22").state is False
        control.drive("passage", active=True)
        assert pins.pin("GPIO27").state is False and turnstile.input_active("passage")
        with pytest.raises(simcontrol.ControlError, match="no device 'door'"):
            control.drive("door", active=True)


def test_simcontrol_drives_the_turnstile_by_device_name(pins):
    board = profile()
    seen = []
    with Turnstile(board, pin_factory=pins) as turnstile:
        turnstile.on_input(lambda kind, active: seen.append((kind, active)))
        control = simcontrol.Controller(camera=None, turnstile=turnstile)
        assert control.handle({"op": "drive", "device": "passage", "active": True}) == {"ok": True}
        assert seen == [("passage", True)]
        turnstile.open()
        assert control.handle({"op": "state"})["devices"]["relay"]["activations"] == 1


def test_admit_feedback_green_and_a_short_beep(pins):
    board = profile()
    with Turnstile(board, pin_factory=pins) as turnstile:
        green, red, buzzer = pins.pin("GPIO5"), pins.pin("GPIO6"), pins.pin("GPIO13")
        for pin in (green, red, buzzer):
            pin.clear_states()
        assert turnstile.signal(Reason.OK) == board.feedback_for(Reason.OK)
        assert wait_for(lambda: len(green.states) >= 3 and len(buzzer.states) >= 3)
        green.assert_states_and_times([(0.0, False), (0.0, True), (0.1, False)])
        buzzer.assert_states_and_times([(0.0, False), (0.0, True), (0.05, False)])
        assert len(red.states) == 1  # red never lit


def test_deny_feedback_red_and_a_long_beep(pins):
    board = profile()
    with Turnstile(board, pin_factory=pins) as turnstile:
        red, buzzer = pins.pin("GPIO6"), pins.pin("GPIO13")
        red.clear_states()
        buzzer.clear_states()
        turnstile.signal(Reason.EXPIRED)  # no pattern for wrong_time: the deny pattern
        assert wait_for(lambda: len(red.states) >= 3 and len(buzzer.states) >= 3)
        red.assert_states_and_times([(0.0, False), (0.0, True), (0.15, False)])
        buzzer.assert_states_and_times([(0.0, False), (0.0, True), (0.15, False)])


def test_feedback_pattern_per_reason_class(pins):
    board = profile()
    with Turnstile(board, pin_factory=pins) as turnstile:
        buzzer = pins.pin("GPIO13")
        buzzer.clear_states()
        turnstile.signal(Reason.ALREADY_USED)  # two short beeps
        assert wait_for(lambda: len(buzzer.states) >= 5)
        buzzer.assert_states_and_times([(0.0, False), (0.0, True), (0.05, False), (0.05, True), (0.05, False)])


def test_mode_lights_and_feedback_while_locked(pins):
    board = profile()
    with Turnstile(board, pin_factory=pins) as turnstile:
        turnstile.show_mode(GateMode.LOCKED)
        assert (turnstile.green.value, turnstile.red.value) == (0, 1)
        buzzer = pins.pin("GPIO13")
        turnstile.signal(Reason.LOCKED)
        assert wait_for(lambda: len(buzzer.states) >= 3)
        assert turnstile.red.value == 1  # the steady red is not blinked away
        turnstile.show_mode(GateMode.EMERGENCY)
        assert (turnstile.green.value, turnstile.red.value) == (1, 0)
        turnstile.show_mode(GateMode.NORMAL)
        assert (turnstile.green.value, turnstile.red.value) == (0, 0)


def test_a_board_without_lights_or_buzzer_still_signals(pins):
    board = profile(leds=None, buzzer=None, feedback=None)
    with Turnstile(board, pin_factory=pins) as turnstile:
        turnstile.signal(Reason.OK)
        turnstile.signal("fault")
        turnstile.show_mode(GateMode.LOCKED)
        assert turnstile.green is turnstile.red is turnstile.buzzer is None


def test_bounce_time_reaches_the_pin(pins):
    board = profile(passage={"pin": "GPIO27", "sensor": "rotation", "bounce_ms": 30})
    with Turnstile(board, pin_factory=pins) as turnstile:
        assert turnstile.passage.pin.bounce == pytest.approx(0.03)
        assert turnstile.emergency.pin.bounce == pytest.approx(0.02)  # the default
    with Turnstile(profile(), pin_factory=pins) as turnstile:
        assert turnstile.passage.pin.bounce is None  # bounce_ms = 0: no debouncing


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_the_turnstile_says_each_devices_active_level_from_the_board(pins, path):
    board = load_board(path)
    with Turnstile(board, pin_factory=pins) as turnstile:
        for name in simcontrol.find_devices(turnstile):
            spec = getattr(board, name)
            expected = spec.active == "high" if hasattr(spec, "active") else spec.active_high
            assert turnstile.active_level(name) is expected, name
        with pytest.raises(ValueError, match="no device 'lamp'"):
            turnstile.active_level("lamp")


def test_the_nc_contact_is_read_at_its_wiring_and_counted_by_the_rehearsal_control(pins):
    board = profile(emergency={"pin": "GPIO22", "pull": "up", "active": "high"})
    with Turnstile(board, pin_factory=pins) as turnstile:
        control = simcontrol.Controller(camera=None, turnstile=turnstile)
        assert turnstile.emergency.device.is_active is False  # gpiozero's own view: a pull-up is active low
        assert control.state()["emergency"]["active"] is True
        pins.pin("GPIO22").clear_states()  # the pull-up raised it when claimed
        control.drive("emergency", active=False)
        control.drive("emergency", active=True)
        assert control.state()["emergency"]["activations"] == 1


def test_no_private_gpiozero_attributes_are_used():
    import re
    from pathlib import Path

    private = re.compile(
        r"\._(active_state|inactive_state|fire_events|last_active|active_event|inactive_event|"
        r"state_to_value|pin_changed)\b"
    )
    root = Path(__file__).resolve().parents[2] / "gated"
    found = [
        f"{p.relative_to(root)}:{n}"
        for p in root.rglob("*.py")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert found == []
