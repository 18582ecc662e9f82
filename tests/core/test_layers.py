"""The plan of the house, checked: a pure core, a gate side that never needs the central side, a
central side that never needs the gate, and no import cycles anywhere in gated/.

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
FORBIDDEN_IN_CORE = {
    "sqlite3",
    "sqlite_utils",
    "paho",
    "gpiozero",
    "structlog",
    "cv2",
    "socket",
    "threading",
    "time",
    "os",
    "subprocess",
    "asyncio",
    "selectors",
    "logging",
    "pathlib",
    "shutil",
    "io_uring",
    "zxingcpp",
    "pyzbar",
    "picamera2",
    "lgpio",
    "urllib",
    "http",
    "requests",
    "psycopg",
}
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
        elif top not in ("gated", "__future__") and top not in ALLOWED_THIRD_PARTY_IN_CORE and not _is_stdlib_pure(top):
            problems.append(f"{path.name}:{line} imports {name}, not on the core's list")
    assert not problems, "\n".join(problems)


def _is_stdlib_pure(top: str) -> bool:
    return top in {
        "base64",
        "binascii",
        "collections",
        "dataclasses",
        "datetime",
        "enum",
        "functools",
        "hashlib",
        "hmac",
        "io",
        "itertools",
        "json",
        "math",
        "re",
        "struct",
        "typing",
        "string",
        "abc",
    }


def gate_side_modules() -> list[Path]:
    """Everything a gate runs: the package less the central side and the CLI wiring of central commands."""
    central = PACKAGE / "central"
    cli = PACKAGE / "cli"
    return [p for p in modules(PACKAGE) if central not in p.parents and cli not in p.parents]


def imports_of(path: Path, package: str) -> list[str]:
    """`path`'s imports of `package` or anything in it, as "file:line imports name"."""
    return [
        f"{path.name}:{line} imports {name}"
        for line, name in imports(path)
        if name == package or name.startswith(package + ".")
    ]


@pytest.mark.parametrize("path", gate_side_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_gate_side_never_imports_the_central_side(path):
    bad = imports_of(path, "gated.central")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", modules(PACKAGE / "central"), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_central_side_never_imports_the_gate(path):
    """The central side takes the wire formats from gated.core and the plumbing from the top level;
    what runs on a gate (its store, its clock, its uplink) is no business of the centre's."""
    bad = imports_of(path, "gated.gate")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path):
    """The test above would pass on an empty list: show that it reads real imports."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import time\nfrom gated import central\nfrom gated.central.ledger import Ledger\n"
        "def f():\n    import sqlite3\n"
    )
    names = [name for _, name in imports(sample)]
    assert names == ["time", "gated", "gated.central", "gated.central.ledger", "sqlite3"]


SHARED_PLUMBING = {
    "gated.keys",
    "gated.mqtt",
    "gated.mqtturl",
    "gated.topics",
    "gated.logging",
    "gated.tomlcheck",
    "gated.sqlitedb",
    "gated.daystart",
    "gated.metrics_http",
    "gated.atomicfile",
    "gated.brokerdiag",
}


def outside_core_and_plumbing(path: Path) -> list[str]:
    """`path`'s imports of gated modules that are neither the core, the central side nor shared plumbing."""
    return [
        f"{path.name}:{line} imports {name}"
        for line, name in imports(path)
        if name.startswith("gated.")
        and not name.startswith(("gated.core", "gated.central"))
        and name not in SHARED_PLUMBING
    ]


@pytest.mark.parametrize("path", modules(PACKAGE / "central"), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_central_side_imports_only_the_core_and_shared_plumbing(path):
    bad = outside_core_and_plumbing(path)
    assert not bad, "\n".join(bad)


def test_the_side_checks_see_a_violation(tmp_path):
    """Both rules (gate -> central, central -> gate) on planted imports, one inside a function."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from gated import central\nfrom gated.central.ledger import Ledger\nimport gated.gatekeeper\n"
        "def f():\n    from gated.gate import store\n"
    )
    assert imports_of(sample, "gated.central") == [
        "sample.py:1 imports gated.central",
        "sample.py:2 imports gated.central.ledger",
    ]
    assert imports_of(sample, "gated.gate") == ["sample.py:5 imports gated.gate"]
    assert outside_core_and_plumbing(sample) == [
        "sample.py:3 imports gated.gatekeeper",
        "sample.py:5 imports gated.gate",
    ]


# --- no import cycles (as python-zeroconf's tests/test_circular_imports.py) ---------------------------


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path) -> dict[str, dict[str, str]]:
    """module -> {module it imports: "file:line"} for the modules of `package`, every import counted
    (inside functions too: a lazy import is still a cycle, only one that bites later). `from a import b`
    is an import of a.b when a.b is a module."""
    paths = {module_name(path, package): path for path in modules(package)}
    graph: dict[str, dict[str, str]] = {}
    for name, path in paths.items():
        edges: dict[str, str] = {}
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the importing module's package
                    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                if target in paths and target != name:
                    edges.setdefault(target, f"{path.relative_to(package.parent)}:{node.lineno}")
        graph[name] = edges
    return graph


def import_cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """Each cycle once, as the modules around it (Tarjan's strongly connected components, then one
    shortest way round each)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(set(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_way_round(graph, min(component), component) for component in components]


def _way_round(graph, start: str, within: set[str]) -> list[str]:
    """The shortest path from `start` back to itself inside one component (breadth first)."""
    paths = {start: [start]}
    queue = [start]
    for node in queue:
        for nxt in sorted(graph[node]):
            if nxt == start:
                return paths[node] + [start]
            if nxt in within and nxt not in paths:
                paths[nxt] = paths[node] + [nxt]
                queue.append(nxt)
    raise AssertionError(f"no way round from {start}")


def describe(graph, cycle: list[str]) -> str:
    return " -> ".join(f"{a} ({graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_no_import_cycles_anywhere_in_gated():
    graph = import_graph(PACKAGE)
    assert len(graph) > 50 and graph["gated.gate.daemon"]
    cycles = import_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(describe(graph, cycle) for cycle in cycles)


def test_the_cycle_check_sees_a_cycle(tmp_path):
    """A planted cycle through an import inside a function, a relative import and a `from package
    import module`, beside a module that is imported twice without a cycle."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\nimport pkg.leaf\n")
    (package / "sub" / "b.py").write_text("def later():\n    from .c import thing\n")
    (package / "sub" / "c.py").write_text("import pkg.leaf\nfrom pkg import a\n")
    (package / "leaf.py").write_text("import os\n")
    graph = import_graph(package)
    assert graph["pkg.sub.b"] == {"pkg.sub.c": "pkg/sub/b.py:2"}
    cycles = import_cycles(graph)
    assert cycles == [["pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg.a"]]
    assert describe(graph, cycles[0]) == (
        "pkg.a (pkg/a.py:1) -> pkg.sub.b (pkg/sub/b.py:2) -> pkg.sub.c (pkg/sub/c.py:2) -> pkg.a"
    )
    (package / "sub" / "c.py").write_text("import pkg.leaf\n")
    assert import_cycles(import_graph(package)) == []


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


def clock_calls(path: Path) -> list[str]:
    """Calls of a method named like a clock reading (`datetime.now()`, `time.monotonic()`...) in `path`."""
    return [
        f"{path.name}:{node.lineno} calls .{node.func.attr}()"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CLOCK_CALLS
    ]


@pytest.mark.parametrize("path", modules(CORE), ids=lambda p: p.name)
def test_core_modules_read_no_clock_through_datetime_either(path):
    """`datetime` is allowed in the core (formatting a given time), `datetime.now()` is not: `now` is
    a parameter."""
    calls = clock_calls(path)
    assert not calls, "\n".join(calls)


def test_the_clock_check_sees_a_clock_call(tmp_path):
    """The check above, run on a planted clock reading inside a function (and on a harmless call)."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from datetime import datetime\ndef f(moment):\n    moment.isoformat()\n    return datetime.now()\n"
    )
    assert clock_calls(sample) == ["sample.py:4 calls .now()"]
    sample.write_text("from datetime import datetime\ndef f(now):\n    return datetime.fromtimestamp(now)\n")
    assert clock_calls(sample) == []
