"""Reading TOML files that people write: every problem at once, each with its key path.

The one way to declare and read a TOML schema, behind the gate's configuration (gated/gate/config.py),
the board profiles (gated/gate/boards.py) and the simulator's scenarios (sim/scenario.py):

    @dataclass(frozen=True)
    class RelaySpec:                                   # one table: a frozen dataclass
        pin: str = option(doc="...", parse=pin)        # no default: required
        mode: str = option("pulse", doc="...", choices=("pulse", "hold"))
        pulse_ms: int = option(500, doc="...", minimum=20, maximum=60_000)

    reader = Reader()
    values = reader.section(Profile, raw)              # the values that parsed, by field name
    reader.problems                                    # [(key path, what is wrong), ...]

A field's type says what it holds (bool, int, float, str, Path, tuple[str, ...], tuple[int, ...], a
nested table's dataclass, any of them `| None`); its `option()` says the default, the documentation
(the schema doubles as the reference) and the checks. The reader notes `(key path, what is wrong)`
for each problem and carries on, so that a file with five mistakes is reported with five lines, not
fixed one run at a time: unknown keys of a table first, then its fields in the order declared.
`scalar()` judges one value against its kind and bounds.

Numbers must be finite: TOML has `inf` and `nan`, and a `max_age_s = inf` or `debounce_s = nan`
would silently switch a safety check off.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import MISSING, field, fields, is_dataclass
from pathlib import Path

BAD = object()  # what scalar() returns for a value that does not fit; never a valid value


def bounds_text(*, minimum=None, maximum=None, above=None) -> str:
    parts = [f"> {above}"] if above is not None else [f">= {minimum}"] if minimum is not None else []
    if maximum is not None:
        parts.append(f"<= {maximum}")
    return (" " + " and ".join(parts)) if parts else ""


def scalar(value, kind, *, minimum=None, maximum=None, above=None, choices=None):
    """`(value, "")` when `value` is a `kind` (bool, int, float or str) within the bounds, else
    `(BAD, what was expected)`. An int is taken for a float; booleans are never numbers."""
    bounds = bounds_text(minimum=minimum, maximum=maximum, above=above)
    if kind is bool:
        return (value, "") if type(value) is bool else (BAD, "true or false")
    if kind is int:
        expected = "a whole number" + bounds
        if type(value) is not int:
            return BAD, expected
    elif kind is float:
        expected = "a finite number" + bounds
        if type(value) not in (int, float) or not math.isfinite(value):
            return BAD, expected
        value = float(value)
    elif kind is str:
        expected = ("one of " + ", ".join(map(repr, choices))) if choices else "a non-empty string"
        if type(value) is not str or not value.strip() or (choices and value not in choices):
            return BAD, expected
        return value, ""
    else:
        raise TypeError(f"scalar() reads bool, int, float or str, not {kind}")
    if (
        (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
        or (above is not None and value <= above)
    ):
        return BAD, expected
    return value, ""


def show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def option(default=MISSING, doc: str = "", **checks):
    """A schema field: `doc` for people; checks: choices=, minimum=, above=, maximum=, pattern= (with
    expected= to say what it means), path=True (relative to the file's directory), nonempty=True,
    check=(value -> what was expected, or None), key=False (not read from the file), and parse= for
    values of a shape the types do not say (a GPIO pin, a list of pairs): `parse(raw, reader, path,
    table)` returns the value, or BAD after noting the problem (`reader.expected()` or
    `reader.problem()`); `table` is the whole table as written. Numbers are always finite."""
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for list defaults")
    kwargs = {"metadata": {"doc": doc, **checks}}
    if default is not MISSING:
        kwargs["default"] = default
    return field(**kwargs)


def unwrap(kind):
    """(inner type, optional?) for `X | None`."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return args[0], True
    return kind, False


def keys_of(cls) -> list:
    """The fields of a table that are read from the file."""
    return [f for f in fields(cls) if f.metadata.get("key", True)]


def schema_keys(cls, prefix: str = "") -> list[str]:
    """Every key path of a schema (tables included), for docs and example-file tests."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in keys_of(cls):
        inner = unwrap(hints[f.name])[0]
        out.append(prefix + f.name)
        if is_dataclass(inner):
            out.extend(schema_keys(inner, prefix + f.name + "."))
    return out


class Reader:
    """Reads tables into their declared dataclasses, noting every problem (`problems`: (key path,
    what is wrong)) and going on. `base_dir`: what relative paths are relative to; `context`: for the
    fields' own readers (the pins a board profile has used so far, say)."""

    def __init__(self, *, base_dir: Path = Path("."), context: dict | None = None):
        self.problems: list[tuple[str, str]] = []
        self.base_dir = base_dir
        self.context = {} if context is None else context

    def problem(self, path: str, text: str) -> None:
        self.problems.append((path, text))

    def expected(self, path: str, expected: str, raw):
        """Note "expected ..., got ..." at `path`; BAD, for a field's reader to return."""
        self.problem(path, f"expected {expected}, got {show(raw)}")
        return BAD

    def section(self, cls, raw, prefix: str = "") -> dict:
        """The values of table `raw` by field name, for the fields that parsed (a field missing from
        the file is left out when it has a default: the dataclass fills it in)."""
        where = prefix.rstrip(".") or "the top level"
        if not isinstance(raw, dict):
            self.problem(prefix.rstrip("."), f"expected a table [{prefix.rstrip('.')}], got {show(raw)}")
            return {}
        hints = typing.get_type_hints(cls)
        known = keys_of(cls)
        names = {f.name for f in known}
        for key in raw:
            if key not in names:
                self.problem(prefix + key, f"unknown key in {where} (known: {', '.join(sorted(names))})")
        values: dict = {}
        for f in known:
            path = prefix + f.name
            if f.name not in raw:
                if f.default is MISSING:
                    inner = unwrap(hints[f.name])[0]
                    if is_dataclass(inner):  # a required table: say what it needs rather than just "missing"
                        values[f.name] = self._missing_table(inner, path)
                    else:
                        self.problem(
                            path, "missing, and required" + (f" ({f.metadata['doc']})" if f.metadata.get("doc") else "")
                        )
                continue
            value = self.value(hints[f.name], raw[f.name], path, f.metadata, raw)
            if value is not BAD:
                values[f.name] = value
        return values

    def sections(self, cls, raw) -> dict[str, dict]:
        """For a file whose tables are checked against each other (a scenario): each table of `cls`
        (a field whose type is a dataclass) as the values of it that parsed, {} when absent (noted
        when required); other fields as their value, if it parsed. Unknown tables are noted."""
        hints = typing.get_type_hints(cls)
        known = keys_of(cls)
        names = {f.name for f in known}
        for key in raw:
            if key not in names:
                self.problem(key, f"unknown key in the top level (known: {', '.join(sorted(names))})")
        out: dict = {}
        for f in known:
            inner = unwrap(hints[f.name])[0]
            if f.name not in raw:
                if f.default is MISSING and is_dataclass(inner):
                    self._missing_table(inner, f.name)
                if is_dataclass(inner):
                    out[f.name] = {}
            elif is_dataclass(inner):
                out[f.name] = self.section(inner, raw[f.name], f.name + ".")
            elif (value := self.value(hints[f.name], raw[f.name], f.name, f.metadata, raw)) is not BAD:
                out[f.name] = value
        return out

    def table(self, cls, raw, path: str):
        """Table `raw` as a `cls`, or BAD when any of it is wrong (each problem noted)."""
        before = len(self.problems)
        values = self.section(cls, raw, path + ".")
        return cls(**values) if len(self.problems) == before else BAD

    def _missing_table(self, cls, path: str):
        required = [f.name for f in keys_of(cls) if f.default is MISSING]
        if required:
            self.problem(path, f"required section [{path}] is missing (needs {', '.join(required)})")
            return None
        return cls(**self.section(cls, {}, path + "."))

    def value(self, kind, raw, path: str, meta: dict, table: dict):
        """One value of table `table` (as written in the file): the field's type and `meta` say how."""
        inner, _optional = unwrap(kind)
        if "parse" in meta:
            return meta["parse"](raw, self, path, table)
        if is_dataclass(inner):
            return self.table(inner, raw, path)
        if inner in (bool, int, float):
            value, expected = scalar(raw, inner, **{k: meta[k] for k in ("minimum", "maximum", "above") if k in meta})
            return self.expected(path, expected, raw) if value is BAD else value
        if inner is Path:
            if not isinstance(raw, str) or not raw:
                return self.expected(path, "a path (string)", raw)
            p = Path(raw).expanduser()
            return p if p.is_absolute() else (self.base_dir / p)
        if inner is str:
            if (
                not isinstance(raw, str)
                or not raw.strip()
                or ("choices" in meta and raw not in meta["choices"])
                or ("pattern" in meta and not meta["pattern"].match(raw))
            ):
                return self.expected(path, _str_expected(meta), raw)
            if "check" in meta and (expected := meta["check"](raw)):
                return self.expected(path, expected, raw)
            return raw
        if typing.get_origin(inner) is tuple and typing.get_args(inner)[0] is int:
            if not isinstance(raw, list) or not all(type(x) is int and x >= 0 for x in raw):
                return self.expected(path, "a list of integers >= 0", raw)
            return tuple(raw)
        if typing.get_origin(inner) is tuple:
            if (
                not isinstance(raw, list)
                or not all(isinstance(x, str) and x for x in raw)
                or (meta.get("nonempty") and not raw)
            ):
                return self.expected(
                    path, "a non-empty list of strings" if meta.get("nonempty") else "a list of strings", raw
                )
            return tuple(raw)
        raise TypeError(f"schema type {kind} at {path} is not supported")


def _str_expected(meta) -> str:
    if "choices" in meta:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    if "pattern" in meta:
        return meta.get("expected", f"text matching {meta['pattern'].pattern}")
    return "a non-empty string"
