"""One vocabulary: --ca/--cert/--key are the TLS files on every command that talks to a broker,
--signing-key is the key that signs wherever something is signed, and no option means two things."""

from __future__ import annotations

import argparse

import pytest

from gated.cli import build_parser, main

SIGNING = {"issue", "revoke", "command", "beacon"}


def _subparsers(parser):
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    for name, p in sub.choices.items():
        nested = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
        if nested:
            for inner, q in nested[0].choices.items():
                yield f"{name} {inner}", q
        else:
            yield name, p


def _options(p) -> dict[str, argparse.Action]:
    return {o: a for a in p._actions for o in a.option_strings if a.help != argparse.SUPPRESS}  # noqa: SLF001


def test_every_broker_command_has_the_same_tls_options_and_signing_is_signing_key():
    seen_key_dests = set()
    for name, p in _subparsers(build_parser()):
        options = _options(p)
        if "--broker" in options and name != "sim":  # sim's --broker: a plain rehearsal broker, no TLS
            assert {"--ca", "--cert", "--key"} <= set(options), name
            assert options["--key"].dest == "cert_key", name
        if "--key" in options:
            seen_key_dests.add(options["--key"].dest)
        if name.split()[0] in SIGNING or name == "pretix sync":
            assert "--signing-key" in options, name
        assert "--cert-key" not in options and "--revocation-key" not in options, name
    assert seen_key_dests == {"cert_key"}  # --key means one thing


def test_key_where_a_signing_key_is_meant_says_the_new_spelling(tmp_path, capsys):
    assert main(["issue", "--key", "box.key", "--event", "E"]) == 2
    assert "give the signing key as --signing-key box.key" in capsys.readouterr().err
    assert main(["command", "--broker", "mqtt://127.0.0.1:1", "--site", "s", "--key", "command.key", "g1", "lock"]) == 2
    assert "give the command key as --signing-key command.key" in capsys.readouterr().err
    assert (
        main(["beacon", "--broker", "mqtt://127.0.0.1:1", "--site", "s", "--key", "command.key", "--count", "1"]) == 2
    )
    assert "give the command key as --signing-key command.key" in capsys.readouterr().err
    assert (
        main(
            [
                "command",
                "--broker",
                "mqtts://127.0.0.1:1",
                "--site",
                "s",
                "--key",
                "command.key",
                "--cert-key",
                "central.key",
                "--cert",
                "central.crt",
                "g1",
                "lock",
            ]
        )
        == 2
    )
    assert "write --signing-key command.key --key central.key" in capsys.readouterr().err


def test_help_groups_the_commands():
    text = build_parser().format_help()
    for title in ("the gate:", "tickets and keys:", "the central side:", "the fleet:", "rehearsal:"):
        assert title in text
    assert text.index("the gate:") < text.index("  run ") < text.index("tickets and keys:")


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "--keyring", "k", "--event", "E", "GT1:AAAA", "BBBB"],
        ["GT2:abcdefgh"],
    ],
)
def test_an_argument_error_with_a_code_says_to_quote_it(argv, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    err = capsys.readouterr().err
    assert "put it in single quotes" in err, err


def test_an_ordinary_argument_error_has_no_quoting_hint(capsys):
    with pytest.raises(SystemExit):
        main(["verify", "--keyring", "k"])
    assert "single quotes" not in capsys.readouterr().err
