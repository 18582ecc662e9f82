"""The repository itself: no merge left its conflict markers in a tracked text file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^(<{7} |>{7} |={7}$)", re.M)


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [
        ROOT / name
        for name in listed.split()
        if name.endswith(
            (".py", ".md", ".toml", ".service", ".conf", ".txt", ".html", ".js", ".json", "Makefile", "run")
        )
    ]


def conflict_markers(text: str) -> list[int]:
    return [text.count("\n", 0, m.start()) + 1 for m in MARKER.finditer(text)]


def test_the_check_sees_a_conflict_marker():
    assert conflict_markers("a\n<<<<<<< HEAD\nb\n=======\nc\n>>>>>>> main\n") == [2, 4, 6]


def test_no_tracked_file_holds_a_conflict_marker():
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in tracked_text_files()
        if path.is_file()
        for line in conflict_markers(path.read_text(errors="replace"))
    ]
    assert not found, found
