"""Every benchmark in bench/ starts: its imports resolve and it prints its usage. (bench/latency.py
and bench/payload.py failed at import for several sessions after modules moved, unnoticed because
nothing ran them; the figures docs cite come from running them.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p.name for p in (ROOT / "bench").glob("*.py"))


def test_the_benchmarks_are_found():
    assert {"clips.py", "latency.py", "payload.py", "scan.py", "season.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_benchmark_starts_and_prints_its_usage(script):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in result.stdout.lower() or result.stdout.strip(), result.stdout
