"""The plan of the house, checked: a pure core, a gate side that never needs the central side.

Reads every module's imports with `ast` (nothing is imported), so a violation is named with its
file and line. See gated/core/__init__.py for what the core is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gated"
CORE = PACKAGE / "core"
# I/O, threads and clocks: the shell's business, never the core's.
FORBIDDEN_IN_CORE = {"sqlite3", "sqlite_utils", "paho", "gpiozero", "structlog", "cv2", "socket", "threading",
                     "time", "os", "subprocess", "asyncio", "selectors", "logging", "pathlib", "shutil", "io_uring",
                     "zxingcpp", "pyzbar", "picamera2", "lgpio", "urllib", "http", "requests", "psycopg"}
# Third-party libraries a core module may use: encodings and arithmetic, no I/O.
ALLOWED_THIRD_PARTY_IN_CORE = {"cbor2", "cryptography", "nacl", "segno"}


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in `path`, including those inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            if node.module == "gated":  # `from gated import x` imports gated.x
                found += [(node.lineno, f"gated.{alias.name}") for alias in node.names]
    return found


def modules(folder: Path, recursive: bool = True) -> list[Path]:
    return sorted(folder.rglob("*.py") if recursive else folder.glob("*.py"))


def test_the_core_and_the_gate_side_exist():
    assert {p.stem for p in modules(CORE)} >= {"base45", "cose", "ticket", "reasons", "decide", "gatestate", "events"}


@pytest.mark.parametrize("path", modules(CORE), ids=lambda p: p.name)
def test_core_modules_do_no_io_and_read_no_clock(path):
    problems = []
    for line, name in imports(path):
        top = name.split(".")[0]
        if top in FORBIDDEN_IN_CORE:
            problems.append(f"{path.name}:{line} imports {name} (I/O, threads or a clock)")
        elif top == "gated" and not (name == "gated" or name.startswith("gated.core")):
            problems.append(f"{path.name}:{line} imports {name}, outside gated.core")
        elif top not in ("gated", "__future__") and top not in ALLOWED_THIRD_PARTY_IN_CORE \
                and not _is_stdlib_pure(top):
            problems.append(f"{path.name}:{line} imports {name}, not on the core's list")
    assert not problems, "\n".join(problems)


def _is_stdlib_pure(top: str) -> bool:
    return top in {"base64", "binascii", "collections", "dataclasses", "datetime", "enum", "functools", "hashlib",
                   "hmac", "io", "itertools", "json", "math", "re", "struct", "typing", "string", "abc"}


def gate_side_modules() -> list[Path]:
    """Everything a gate runs: the package less the central side and the CLI wiring of central commands."""
    central = PACKAGE / "central"
    cli = PACKAGE / "cli"
    return [p for p in modules(PACKAGE) if central not in p.parents and cli not in p.parents]


@pytest.mark.parametrize("path", gate_side_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_gate_side_never_imports_the_central_side(path):
    bad = [f"{path.name}:{line} imports {name}" for line, name in imports(path)
           if name == "gated.central" or name.startswith("gated.central.")]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path):
    """The test above would pass on an empty list: show that it reads real imports."""
    sample = tmp_path / "sample.py"
    sample.write_text("import time\nfrom gated import central\nfrom gated.central.ledger import Ledger\n"
                      "def f():\n    import sqlite3\n")
    names = [name for _, name in imports(sample)]
    assert names == ["time", "gated", "gated.central", "gated.central.ledger", "sqlite3"]


def test_every_error_class_of_ours_inherits_gated_error():
    """GatedError is the one base (gated/core/errors.py): the daemon and the CLI catch it alone."""
    import importlib
    import inspect
    import pkgutil

    import gated
    import sim
    from gated.core.errors import GatedError

    missing = []
    for package in (gated, sim):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for name, cls in inspect.getmembers(module, inspect.isclass):
                if cls.__module__ == info.name and issubclass(cls, Exception) and not issubclass(cls, GatedError):
                    missing.append(f"{info.name}.{name}")
    assert not missing, "errors that do not inherit GatedError: " + ", ".join(missing)


CLOCK_CALLS = {"now", "utcnow", "today", "monotonic", "perf_counter", "time_ns", "process_time"}


@pytest.mark.parametrize("path", modules(CORE), ids=lambda p: p.name)
def test_core_modules_read_no_clock_through_datetime_either(path):
    """`datetime` is allowed in the core (formatting a given time), `datetime.now()` is not: `now` is
    a parameter."""
    calls = [f"{path.name}:{node.lineno} calls .{node.func.attr}()"
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CLOCK_CALLS]
    assert not calls, "\n".join(calls)


def test_the_clock_check_sees_a_clock_call(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from datetime import datetime\ndef f():\n    return datetime.now()\n")
    assert [n.func.attr for n in ast.walk(ast.parse(sample.read_text()))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)] == ["now"]
