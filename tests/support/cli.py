"""Running the CLI as a user would, in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def gated_without(module: str, *argv: str) -> subprocess.CompletedProcess:
    """`gated ARGV...` in a Python where `module` cannot be imported (an install without an extra)."""
    code = f"import sys; sys.modules[{module!r}] = None; from gated.cli import main; sys.exit(main({list(argv)!r}))"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
