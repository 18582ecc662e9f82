"""The gate configuration schema: the example loads, every problem is reported at once with its key path."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gated.gate import config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "firmware_config" / "gated.example.toml"

MINIMAL = """
[gate]
site = "arena"
id = "g1"
events = ["FINAL-2026"]
keyring = "keyring"

[turnstile]
board = "generic-relay"

[mqtt]
url = "mqtt://127.0.0.1:1883"
"""


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "gated.toml"
    path.write_text(text)
    return path


def test_example_loads_with_its_values():
    cfg = config.load(EXAMPLE)
    assert cfg.gate.site == "arena" and cfg.gate.id == "north-1"
    assert cfg.gate.events == ("FINAL-2026",)
    assert cfg.gate.database == Path("/var/lib/gated/gate.db")
    assert cfg.mqtt.uses_tls and cfg.mqtt.port == 8883 and cfg.mqtt.host == "broker.arena.example"
    assert cfg.revocations.when_stale == "closed"
    assert cfg.sim is None


def test_example_documents_every_key():
    """Every schema key appears in the example (set or commented out), so it stays the reference."""
    text = EXAMPLE.read_text()
    sections = set(re.findall(r"^#?\s*\[([a-z_.]+)\]", text, re.M))
    keys = set(re.findall(r"^#?\s*([a-z_]+)\s*=", text, re.M))
    for path in config.schema_keys():
        leaf = path.rsplit(".", 1)[-1]
        assert path in sections or leaf in keys, f"{path} is not in {EXAMPLE.name}"


def test_minimal_config_takes_defaults_and_resolves_relative_paths(tmp_path):
    cfg = config.load(write(tmp_path, MINIMAL))
    assert cfg.gate.keyring == tmp_path / "keyring"
    assert cfg.gate.zone is None
    assert cfg.camera.source == "v4l2:/dev/video0" and cfg.scanner.backend == "zxing"
    assert cfg.camera.exposure == "short"  # a phone moved into view smears less (issue 27)
    assert cfg.timings.relay_pulse_s is None and cfg.timings.debounce_s == 3.0
    assert cfg.turnstile.pin_factory == "auto"
    assert cfg.mqtt.port == 1883 and not cfg.mqtt.uses_tls
    assert cfg.source == tmp_path / "gated.toml"


def test_every_problem_is_reported_at_once_with_its_key_path(tmp_path):
    text = """
surprise = 1
[gate]
site = "the arena"
events = "FINAL-2026"
keyring = "keyring"
day_starts = "4 am"
timezone = "Europe/Atlantis"
[turnstile]
board = "generic-relay"
pin_factory = "gpio"
[timings]
relay_pulse_s = -1
debounce_s = "3"
[camera]
source = "usb:0"
exposure = "fast"
[mqtt]
url = "http://broker"
[mqtt.tls]
cafile = "ca.pem"
[revocations]
when_stale = "maybe"
"""
    with pytest.raises(config.ConfigError) as caught:
        config.load(write(tmp_path, text))
    paths = [path for path, _ in caught.value.problems]
    assert paths == [
        "surprise",
        "gate.site",
        "gate.id",
        "gate.events",
        "gate.day_starts",
        "gate.timezone",
        "turnstile.pin_factory",
        "mqtt.url",
        "mqtt.tls.cafile",
        "camera.source",
        "camera.exposure",
        "timings.relay_pulse_s",
        "timings.debounce_s",
        "revocations.when_stale",
    ]
    message = str(caught.value)
    assert "surprise: unknown key" in message
    assert "gate.id: missing, and required" in message
    assert "gate.events: expected a non-empty list of strings, got 'FINAL-2026'" in message
    assert "turnstile.pin_factory: expected one of 'auto'" in message
    assert "timings.relay_pulse_s: expected a finite number > 0 and <= 60, got -1" in message
    assert "timings.debounce_s: expected a finite number >= 0 and <= 3600, got '3'" in message
    assert "mqtt.tls.cafile: unknown key in mqtt.tls (known: ca_file, cert_file, key_file)" in message
    assert "revocations.when_stale: expected one of 'open', 'closed'" in message
    assert "camera.source: expected one of v4l2:" in message
    assert "camera.exposure: expected one of 'short', 'normal'" in message
    assert "gate.day_starts: expected a time of day HH:MM (00:00 to 23:59), got '4 am'" in message
    assert (
        "gate.timezone: expected an IANA time zone name this machine knows (e.g. Europe/Berlin, UTC), "
        "got 'Europe/Atlantis'"
    ) in message
    assert "mqtt.url: expected mqtt://host[:port] or mqtts://host[:port], got 'http://broker'" in message


def test_missing_sections_name_what_they_need(tmp_path):
    with pytest.raises(config.ConfigError) as caught:
        config.load(write(tmp_path, "[logging]\nlevel = 'info'\n"))
    message = str(caught.value)
    assert "gate: required section [gate] is missing (needs site, id, events, keyring)" in message
    assert "turnstile: required section [turnstile] is missing (needs board)" in message
    assert "mqtt: required section [mqtt] is missing (needs url)" in message


@pytest.mark.parametrize(
    "extra, path, words",
    [
        ("[mqtt.tls]\nca_file = 'ca.pem'\n", "mqtt.url", "plain text"),
        ("[mqtt.tls]\ncert_file = 'c.pem'\n", "mqtt.tls.key_file", "go together"),
        ("[timings]\nrelay_pulse_s = 2.0\nheld_open_s = 1.0\n", "timings.held_open_s", "at least relay_pulse_s"),
        ("[clock]\nntp = 'ignore'\ntrust_system_clock = true\n", "clock.ntp", "contradicts trust_system_clock"),
        ("[clock]\nntp = 'sometimes'\n", "clock.ntp", "ignore"),
        ("", None, None),
    ],
)
def test_cross_key_checks(tmp_path, extra, path, words):
    text = MINIMAL + extra
    if "cert_file" in extra:
        text = text.replace("mqtt://", "mqtts://")
    if path is None:
        config.load(write(tmp_path, text))
        return
    with pytest.raises(config.ConfigError) as caught:
        config.load(write(tmp_path, text))
    assert [(p, words in what) for p, what in caught.value.problems] == [(path, True)]


def test_password_needs_a_user_and_only_one_source(tmp_path):
    text = MINIMAL.replace(
        'url = "mqtt://127.0.0.1:1883"', 'url = "mqtt://127.0.0.1:1883"\npassword = "x"\npassword_file = "pw"'
    )
    with pytest.raises(config.ConfigError) as caught:
        config.load(write(tmp_path, text))
    assert {p for p, _ in caught.value.problems} == {"mqtt.password_file", "mqtt.username"}


def test_credentials_in_the_url_are_refused(tmp_path):
    text = MINIMAL.replace("mqtt://127.0.0.1:1883", "mqtt://user:secret@127.0.0.1:1883")
    with pytest.raises(config.ConfigError) as caught:
        config.load(write(tmp_path, text))
    assert caught.value.problems[0][0] == "mqtt.url"


def test_password_file_is_read(tmp_path):
    (tmp_path / "pw").write_text("s3cret\n")
    text = MINIMAL.replace(
        'url = "mqtt://127.0.0.1:1883"', 'url = "mqtt://127.0.0.1:1883"\nusername = "g1"\npassword_file = "pw"'
    )
    assert config.load(write(tmp_path, text)).mqtt.secret() == "s3cret"


def test_sim_section_is_optional_and_checked(tmp_path):
    cfg = config.load(write(tmp_path, MINIMAL + "[sim]\ncontrol_socket = 'sim.sock'\n"))
    assert cfg.sim.control_socket == tmp_path / "sim.sock"
    with pytest.raises(config.ConfigError) as caught:
        config.load(write(tmp_path, MINIMAL + "[sim]\nsocket = 'sim.sock'\n"))
    assert caught.value.problems[0][0] == "sim.socket"


def test_config_is_frozen(tmp_path):
    cfg = config.load(write(tmp_path, MINIMAL))
    with pytest.raises(AttributeError):
        cfg.gate.site = "elsewhere"  # type: ignore[misc]


def test_not_toml_and_unreadable(tmp_path):
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(write(tmp_path, "[gate\n"))
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.load(tmp_path / "absent.toml")


def test_check_config_command(tmp_path):
    good = write(tmp_path, MINIMAL)
    gated = Path(sys.executable).parent / "gated"
    run = lambda *a: subprocess.run([str(gated), *a], capture_output=True, text=True)  # noqa: E731
    missing = run("check-config", str(good))  # every file it names is checked too: the keyring is not there
    assert missing.returncode == 1 and f"gate.keyring: {tmp_path / 'keyring'}: no such directory" in missing.stderr
    (tmp_path / "keyring").mkdir()
    (tmp_path / "keyring" / "keyring.toml").write_text("")
    ok = run("check-config", str(good))
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout
    (tmp_path / "bad.toml").write_text(MINIMAL.replace('id = "g1"', "id = 7") + "[timings]\nheld_open_s = 0\n")
    bad = run("check-config", str(tmp_path / "bad.toml"))
    assert bad.returncode == 2
    assert (
        "gate.id: expected a name" in bad.stderr and "timings.held_open_s: expected a finite number > 0" in bad.stderr
    )


def test_check_config_names_a_state_dir_that_is_a_file(tmp_path, capsys):
    """A state_dir that is a regular file passed check-config; `gated run` then failed with
    `File exists`."""
    from gated.cli import main

    (tmp_path / "keyring").mkdir()
    (tmp_path / "keyring" / "keyring.toml").write_text("")
    (tmp_path / "sfile").write_text("")
    good = write(tmp_path, MINIMAL.replace('keyring = "keyring"', 'keyring = "keyring"\nstate_dir = "sfile"'))
    user = __import__("pwd").getpwuid(os.geteuid()).pw_name
    assert main(["check-config", str(good), "--user", user]) == 1
    assert f"gate.state_dir: {tmp_path / 'sfile'}: not a directory" in capsys.readouterr().err
    (tmp_path / "sfile").unlink()  # not there yet: run makes it
    assert main(["check-config", str(good), "--user", user]) == 0, capsys.readouterr().err


def test_check_config_refuses_inf_nan_out_of_range_numbers_and_an_unknown_board(tmp_path):
    """`max_age_s = inf` turned the stale-list lock off, `debounce_s = nan` meant a code was never
    read again, and a board profile that does not exist passed: each is now listed with its key."""
    from gated.cli import main

    text = (
        MINIMAL.replace('board = "generic-relay"', 'board = "no-such-board"').replace(
            'url = "mqtt://127.0.0.1:1883"', 'url = "mqtt://127.0.0.1:1883"\nkeepalive_s = 70000'
        )
        + "[revocations]\nmax_age_s = inf\n"
        + "[timings]\ndebounce_s = nan\nrelay_pulse_s = -inf\npassage_timeout_s = 1e9\n"
        + "[camera]\nfps = nan\nwidth = 100000\n"
        + "[health]\ninterval_s = inf\n"
        + "[clock]\nskew_s = 1000000000\nbeacon_max_age_s = inf\n"
    )
    path = write(tmp_path, text)
    with pytest.raises(config.ConfigError) as caught:
        config.load(path)
    keys = [k for k, _ in caught.value.problems]
    assert sorted(keys) == sorted(
        [
            "revocations.max_age_s",
            "timings.debounce_s",
            "timings.relay_pulse_s",
            "timings.passage_timeout_s",
            "camera.fps",
            "camera.width",
            "health.interval_s",
            "mqtt.keepalive_s",
            "clock.skew_s",
            "clock.beacon_max_age_s",
            "turnstile.board",
        ]
    )
    assert main(["check-config", str(path)]) == 2
    err = str(caught.value)
    assert "revocations.max_age_s: expected a finite number > 0 and <= 2592000, got inf" in err
    assert "timings.debounce_s: expected a finite number >= 0 and <= 3600, got nan" in err
    assert re.search(r"turnstile.board: profile 'no-such-board' .*no such board profile .*generic-relay", err)


def test_a_board_profile_with_problems_is_a_configuration_problem(tmp_path):
    boards = tmp_path / "boards"
    boards.mkdir()
    (boards / "mine.toml").write_text('[board]\nname = "mine"\n[relay]\npin = "GPIO99"\nmode = "hold"\n')
    text = MINIMAL.replace('board = "generic-relay"', 'board = "mine"\nboards_dir = "boards"')
    with pytest.raises(config.ConfigError) as caught:
        config.load(write(tmp_path, text))
    problems = [what for key, what in caught.value.problems if key == "turnstile.board"]
    assert len(problems) == 2 and any("relay.pin" in p for p in problems) and any("relay.mode" in p for p in problems)
    (boards / "mine.toml").write_text('[board]\nname = "mine"\n[relay]\npin = "GPIO4"\n')
    assert config.load(write(tmp_path, text)).turnstile.boards_dir == boards


@pytest.mark.parametrize("path", sorted((ROOT / "firmware_config").rglob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_file_still_loads(path):
    from gated.gate.boards import load_board

    if path.parent.name == "boards":
        assert load_board(path).name
    else:
        assert config.load(path).gate.id


def test_one_reader_judges_numbers_for_config_boards_and_scenarios():
    """gated/tomlcheck.py is the one validator: inf and nan are refused by all three readers."""
    from gated.gate.boards import BoardError, board_from_dict
    from gated.tomlcheck import BAD, scalar
    from sim.scenario import ScenarioError
    from sim.scenario import from_dict as scenario_from_dict

    assert scalar(float("nan"), float)[0] is BAD and scalar(float("inf"), float, minimum=0)[0] is BAD
    assert scalar(True, int)[0] is BAD and scalar(3, float) == (3.0, "")
    with pytest.raises(BoardError, match=r"relay.pulse_ms: expected a whole number"):
        board_from_dict({"board": {"name": "b"}, "relay": {"pin": "GPIO17", "pulse_ms": float("nan")}}, source="b.toml")
    with pytest.raises(ScenarioError, match=r"behaviour.pass_time_s: expected a finite number"):
        scenario_from_dict(
            {
                "scenario": {"name": "x", "site": "s", "event": "E", "duration_s": 60},
                "gates": {"count": 1},
                "arrivals": {"visitors": 1, "profile": [[0, 1], [60, 1]]},
                "behaviour": {"pass_time_s": float("inf")},
            },
            source="s.toml",
        )
