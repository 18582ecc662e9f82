"""Board profiles: every shipped file loads, and a wrong profile says everything wrong at once."""

from __future__ import annotations

import pytest

from gated.core.reasons import Reason
from gated.gate import boards
from gated.gate.boards import BoardError, Feedback, board_from_dict, load_board, shipped_boards

SHIPPED = shipped_boards()


def test_at_least_three_profiles_are_shipped():
    assert len(SHIPPED) >= 3
    assert {"generic-relay", "tripod-rotation", "pi-relay-hat"} <= {p.stem for p in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_profile_loads(path):
    profile = load_board(path)
    assert profile.name == path.stem  # the name the config refers to is the file's
    assert profile.description
    assert profile.relay.pin.startswith("GPIO")
    pins = [
        spec.pin
        for spec in (
            profile.relay,
            profile.passage,
            profile.emergency,
            profile.door,
            profile.green,
            profile.red,
            profile.buzzer,
        )
        if spec is not None
    ]
    assert len(pins) == len(set(pins))
    assert profile.feedback_for(Reason.OK).led in ("green", "none")
    assert profile.feedback_for(Reason.REVOKED).led in ("red", "none")
    text = path.read_text()
    assert text.lstrip().startswith("#") and "Wiring" in text  # commented with pins and wiring
    if profile.relay.mode == "hold":
        assert profile.counts_passages


def test_profiles_load_by_name():
    assert load_board("tripod-rotation").passage.sensor == "rotation"


def test_the_relay_hat_is_active_low_on_bcm26():
    hat = load_board("pi-relay-hat")
    assert (hat.relay.pin, hat.relay.active_high) == ("GPIO26", False)
    assert hat.door is not None and hat.passage is None and hat.counts_passages


def test_a_board_without_sensors_does_not_count_passages():
    only = load_board("relay-only")
    assert not only.counts_passages and only.relay.mode == "pulse"


MINIMAL = {"board": {"name": "x"}, "relay": {"pin": 17}}


@pytest.mark.parametrize("pin", [17, "17", "GPIO17", "BCM17", "BOARD11", "J8:11", "WPI0"])
def test_pin_names_are_normalised(pin):
    assert board_from_dict({**MINIMAL, "relay": {"pin": pin}}).relay.pin == "GPIO17"


def test_defaults():
    profile = board_from_dict(MINIMAL)
    assert profile.relay == boards.RelaySpec("GPIO17", True, "pulse", 500)
    assert profile.passage is profile.emergency is profile.door is profile.buzzer is None
    assert profile.timing == boards.Timing(8.0, 30.0)
    assert profile.feedback_for(Reason.OK) == boards.DEFAULT_FEEDBACK["admit"]
    assert profile.feedback_for(Reason.ALREADY_USED) == boards.DEFAULT_FEEDBACK["deny"]
    assert profile.feedback_for("fault") == boards.DEFAULT_FEEDBACK["fault"]


def test_feedback_per_reason_class_falls_back_to_deny():
    profile = board_from_dict(
        {
            **MINIMAL,
            "leds": {"red": 6},
            "feedback": {"used": {"led": "red", "beeps": 2, "beep_ms": 100}, "deny": {"led": "red", "led_ms": 900}},
        }
    )
    assert profile.feedback_for(Reason.ALREADY_USED) == Feedback("red", 0, 2, 100, 100)
    assert profile.feedback_for(Reason.EXPIRED) == Feedback("red", 900, 0, 0, 100)
    assert profile.feedback_for(Reason.EMERGENCY) == boards.DEFAULT_FEEDBACK["emergency"]
    assert set(boards.REASON_CLASS) == set(Reason)  # every reason has a class


def test_every_problem_is_reported_at_once_with_its_key_path():
    data = {
        "board": {"name": ""},
        "relay": {"pin": "GPIO99", "mode": "hold", "pulse_ms": 5, "colour": "red"},
        "passage": {"pin": 2, "pull": "down", "sensor": "laser"},
        "emergency": {"pin": 17, "active": "sideways"},
        "leds": {"green": "GND", "active_high": "yes"},
        "buzzer": {},
        "timing": {"passage_timeout_s": 0},
        "feedback": {"admit": {"led": "blue"}, "cheer": {}},
        "turbo": True,
    }
    with pytest.raises(BoardError) as caught:
        board_from_dict(data, source="bad.toml")
    paths = [p.split(":")[0] for p in caught.value.problems]
    assert paths == [
        "turbo",
        "board.name",
        "relay.colour",
        "relay.pin",
        "relay.pulse_ms",
        "passage.pin",
        "passage.sensor",
        "emergency.active",
        "leds.active_high",
        "leds.green",
        "buzzer.pin",
        "timing.passage_timeout_s",
        "feedback.cheer",
        "feedback.admit.led",
    ]
    assert "bad.toml" in str(caught.value)
    text = "\n".join(caught.value.problems)
    assert "fixed pull-up" in text  # GPIO2 cannot be pulled down
    assert "'GPIO99' is not a GPIO pin" in text


def test_hold_mode_needs_a_sensor():
    with pytest.raises(BoardError, match="relay.mode: 'hold' needs"):
        board_from_dict({**MINIMAL, "relay": {"pin": 17, "mode": "hold"}})


def test_a_pin_used_twice_is_an_error_whatever_its_name():
    with pytest.raises(BoardError, match=r"leds.red: GPIO17 is already used by relay.pin"):
        board_from_dict({**MINIMAL, "leds": {"red": "BOARD11"}})


def test_a_pattern_for_a_missing_led_is_an_error():
    with pytest.raises(BoardError, match=r"feedback.admit.led: 'green' but \[leds\] has no green pin"):
        board_from_dict({**MINIMAL, "feedback": {"admit": {"led": "green", "led_ms": 100}}})


def test_missing_file_names_the_shipped_profiles(tmp_path):
    with pytest.raises(BoardError, match="tripod-rotation"):
        load_board("no-such-board")


def test_broken_toml_is_a_board_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[relay\npin = 17\n")
    with pytest.raises(BoardError, match="not valid TOML"):
        load_board(path)


def test_profiles_can_live_elsewhere(tmp_path):
    (tmp_path / "mine.toml").write_text('[board]\nname = "mine"\n[relay]\npin = "GPIO4"\n')
    assert load_board("mine", boards_dir=tmp_path).relay.pin == "GPIO4"


def test_profiles_are_frozen():
    profile = board_from_dict(MINIMAL)
    with pytest.raises(AttributeError):
        profile.relay = None


RPI_CONFIG = boards.BOARDS_DIR.parent / "raspberrypi" / "config.txt"


def test_raspberrypi_config_fragment_is_well_formed():
    active = [
        line.strip()
        for line in RPI_CONFIG.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for line in active:
        assert line.startswith("[") or "=" in line, line
    keys = {line.split("=", 1)[0] for line in active if "=" in line}
    assert {"camera_auto_detect", "dtparam", "gpio"} <= keys
    assert "dtparam=watchdog=on" in active


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_raspberrypi_config_names_the_power_on_level_of_every_board_relay(path):
    """The gpio= line the fragment gives for a board must hold that board's relay off at boot."""
    profile = load_board(path)
    number = profile.relay.pin.removeprefix("GPIO")
    level = "dl" if profile.relay.active_high else "dh"
    lines = [line for line in RPI_CONFIG.read_text().splitlines() if path.name in line]
    assert lines, f"config.txt has no power-on line for {path.name}"
    assert f"gpio={number}=op,{level}" in lines[0]
