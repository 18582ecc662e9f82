"""The guides stay true: the wiring diagrams in docs/wiring.md are what `gated wiring` makes of the
shipped profiles, and every `gated <command>` the guides tell an operator to type exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gated.cli import build_parser
from gated.gate.boards import load_board, wiring_diagram

ROOT = Path(__file__).resolve().parents[2]
GUIDES = ("README.md", "docs/install-pi.md", "docs/central.md", "docs/metrics.md")


def test_wiring_md_is_generated_from_the_shipped_profiles():
    from gated.cli.wiring import markdown

    assert (ROOT / "docs" / "wiring.md").read_text() == markdown(), (
        "regenerate: gated wiring --all --markdown > docs/wiring.md"
    )


def test_a_wiring_diagram_marks_each_pin_of_the_profile():
    text = wiring_diagram(load_board("generic-relay"))
    assert "relay -- GPIO17 (11) (12) GPIO18" in text
    assert "  emergency  GPIO22  pin 15  input, active LOW, internal pull-up" in text


def _commands(text: str) -> set[tuple[str, ...]]:
    """(command,) or (command, action) of every `gated ...` line inside a fenced code block."""
    found = set()
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):  # any info string: an ```ini block too
        for line in block.splitlines():
            line = line.replace("sudo -u gated ", "")  # the user, not the command
            for match in re.finditer(r"(?:^|[\s;&|(])gated ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", line):
                before = line[: match.start() + 1].split()
                if before and before[-1].startswith("-"):  # `-g gated`: the group, not the command
                    continue
                found.add(match.groups())
    return found


@pytest.mark.parametrize("guide", GUIDES)
def test_every_command_a_guide_names_exists(guide):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001
    commands = sub.choices
    for command, action in _commands((ROOT / guide).read_text()):
        assert command in commands, f"{guide}: `gated {command}` is not a command"
        nested = [a for a in commands[command]._actions if a.dest.endswith("_command")]  # noqa: SLF001
        if nested and action:
            assert action in nested[0].choices, f"{guide}: `gated {command} {action}` is not a command"
