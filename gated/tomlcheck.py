"""Reading TOML files that people write: every problem at once, each with its key path.

The one "report every problem" validator behind the gate's configuration (gated/gate/config.py), the
board profiles (gated/gate/boards.py) and the simulator's scenarios (sim/scenario.py). `scalar()`
judges one value against its kind and bounds; `TableReader` walks tables with it, noting
`"<key path>: <what is wrong>"` for each problem and carrying on with a default, so that a file
with five mistakes is reported with five lines, not fixed one run at a time.

Numbers must be finite: TOML has `inf` and `nan`, and a `max_age_s = inf` or `debounce_s = nan`
would silently switch a safety check off.
"""

from __future__ import annotations

import math

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
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum) \
            or (above is not None and value <= above):
        return BAD, expected
    return value, ""


def show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class TableReader:
    """Typed reads from parsed TOML that note every problem (`problems`, "path: text") and go on."""

    _MISSING = object()

    def __init__(self, problems: list[str] | None = None):
        self.problems: list[str] = [] if problems is None else problems

    def problem(self, path: str, text: str) -> None:
        self.problems.append(f"{path}: {text}")

    def table(self, raw, key: str, *, required: bool = False, known=None, prefix: str = "") -> dict | None:
        """The sub-table `key` of `raw` (None when absent or not a table, noted if required); with
        `known`, every other key in it is noted as unknown."""
        path = prefix + key
        value = raw.get(key) if isinstance(raw, dict) else None
        if value is None:
            if required:
                self.problem(f"[{path}]", "required section is missing")
            return None
        if not isinstance(value, dict):
            self.problem(path, f"expected a table, got {type(value).__name__}")
            return None
        if known is not None:
            self.known(value, path, known)
        return value

    def known(self, table, path: str, keys) -> None:
        if isinstance(table, dict):
            for key in sorted(set(table) - set(keys)):
                self.problem(f"{path}.{key}" if path else key, f"unknown key (known: {', '.join(sorted(keys))})")

    def get(self, table, path: str, kind, default=None, *, required: bool | None = None, **limits):
        """The value at `path` (its last part is the key in `table`) if it is a `kind` within
        `limits` (minimum, maximum, above, choices); else `default`, noting why. Without `required`,
        a missing key is a problem only when there is no default."""
        key = path.rsplit(".", 1)[-1]
        if not isinstance(table, dict) or key not in table:
            if required or (required is None and default is None):
                self.problem(path, "required")
            return default
        value, expected = scalar(table[key], kind, **limits)
        if value is BAD:
            self.problem(path, f"expected {expected}, got {show(table[key])}")
            return default
        return value

    # the board profiles' spellings of get()
    def text(self, table, path, required=False, default=None):
        return self.get(table, path, str, default, required=required)

    def boolean(self, table, path, default):
        return self.get(table, path, bool, default, required=False)

    def choice(self, table, path, options, default=None, required=False):
        return self.get(table, path, str, default, required=required, choices=tuple(options))

    def integer(self, table, path, low, high, default):
        return self.get(table, path, int, default, required=False, minimum=low, maximum=high)

    def number(self, table, path, low, high, default):
        return self.get(table, path, float, default, required=False, minimum=low, maximum=high)
