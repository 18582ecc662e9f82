"""The guides' snippets run as written: README's "Five minutes at a desk", line by line in bash, on
any day (each `gated verify` says what its comment says it will), and every option a guide gives a
`gated` command is one that command has (an old spelling such as --cert-key fails here)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gate.test_guides import GUIDES, ROOT

BIN = Path(sys.executable).parent


def snippet(text: str, heading: str) -> str:
    section = text.split(heading, 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def test_five_minutes_at_a_desk_runs_as_written(tmp_path):
    block = snippet((ROOT / "README.md").read_text(), "## Five minutes at a desk")
    lines, expected = [f"export PATH={BIN}:$PATH"], []
    for line in block.splitlines():
        if line.startswith("export PATH="):
            continue  # the venv of a checkout: here, this test's own
        lines.append(line)
        if line.startswith("gated verify"):
            comment = line.split("#", 1)[1].strip() if "#" in line else ""
            expected.append(comment.split()[1] if comment.startswith("DENY") else "admit")
            lines.append('echo "VERDICT=$?"')
    result = subprocess.run(["bash", "-c", "\n".join(lines)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    verdicts = re.findall(r"^(ADMIT|DENY)\b\s*(\w*)", result.stdout, re.M)
    seen = ["admit" if word == "ADMIT" else reason for word, reason in verdicts]
    assert seen == expected, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "error:" not in result.stderr, result.stderr


def _invocations(text: str):
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for match in re.finditer(r"(?:^|[\s;&|(=])(?:/usr/local/bin/)?gated ([a-z][a-z-]*)((?: [^;&|#)]*)?)", line):
                yield match.group(1), match.group(2)


DOCUMENTS = sorted({*GUIDES, "sim/README.md", *(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))})


@pytest.mark.parametrize("guide", DOCUMENTS)
def test_every_option_a_guide_gives_a_command_exists(guide):
    import argparse

    from gated.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices  # noqa: SLF001
    text = (ROOT / guide).read_text()
    for command, rest in _invocations(text):
        if command not in commands:
            continue  # `-g gated` and the like: test_guides checks the command names
        target = commands[command]
        try:
            words = shlex.split(rest)
        except ValueError:
            words = rest.split()
        nested = [a for a in target._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
        if nested and words and words[0] in nested[0].choices:
            target = nested[0].choices[words[0]]
        known = {
            o
            for a in target._actions
            for o in a.option_strings  # noqa: SLF001
            if a.help != argparse.SUPPRESS
        }
        for word in words:
            option = word.split("=", 1)[0]
            if option.startswith("--") and re.fullmatch(r"--[a-z][a-z-]*", option):
                assert option in known, f"{guide}: `gated {command}` has no option {option}"
